"""`bci-train`: synth writes a readable FIF + teacher; errors are one line and a non-zero exit; no torch for synth."""

from __future__ import annotations

import subprocess
import sys

import mne
import numpy as np

from bci_stream.recordings import read_recording
from training.cli import main
from training.teachers import PrecomputedTeacher


def test_synth_writes_fif_and_teacher(tmp_path, capsys):
    out = tmp_path / "demo.fif"
    assert main(["synth", "--out", str(out), "--seconds", "8", "--seed", "7", "--classes", "4", "--subject", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    raw = mne.io.read_raw_fif(out, preload=True, verbose="error")
    assert raw.info["nchan"] == 128 and raw.info["sfreq"] == 1000.0 and raw.n_times == 8000
    assert len(raw.annotations) >= 10 and all(d.startswith("stim/n") for d in raw.annotations.description)
    teacher = PrecomputedTeacher.load(tmp_path / "demo.teacher.npz")
    assert len(teacher.classes) == 4 and teacher.class_names is not None
    images = {d.rsplit("/", 1)[1] for d in raw.annotations.description}
    assert images <= set(teacher.images)
    rec = read_recording(out)  # the product's own reader sees the same markers
    assert [m.value for m in rec.markers] == list(raw.annotations.description)
    assert np.allclose(rec.data[:, :3], raw.get_data()[:3].T)


def test_missing_files_give_a_clear_error(tmp_path, capsys):
    code = main(
        ["distil", "--recording", str(tmp_path / "nope.fif"), "--out", str(tmp_path / "m.onnx"), "--epochs", "1"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "nope.fif" in err and "not found" in err
    assert not (tmp_path / "m.onnx").exists()


def test_bad_teacher_file_is_reported(tmp_path, capsys):
    bad = tmp_path / "t.npz"
    bad.write_bytes(b"not a zip")
    main(["synth", "--out", str(tmp_path / "r.fif"), "--seconds", "4"])
    code = main(
        ["distil", "--recording", str(tmp_path / "r.fif"), "--teacher", str(bad), "--out", str(tmp_path / "m.onnx")]
    )
    assert code == 2 and "t.npz" in capsys.readouterr().err


def test_synth_does_not_import_torch():
    code = "import sys, training.cli, training.synthetic, training.teachers; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_distil_from_files_exports_a_carded_model(tmp_path, capsys):
    from bci_stream.card import read_card

    for seed in (1, 2):
        main(
            ["synth", "--out", str(tmp_path / f"s{seed}.fif"), "--seconds", "10", "--seed", str(seed), "--classes", "3"]
        )
    out = tmp_path / "exported" / "mini.onnx"
    argv = ["distil", "--recording", str(tmp_path / "s1.fif"), str(tmp_path / "s2.fif")]
    argv += ["--teacher", str(tmp_path / "s1.teacher.npz"), "--out", str(out), "--epochs", "1", "--hidden", "4"]
    assert main(argv) == 0
    card = read_card(out)
    assert card.name == "mini" and card.provenance["loss"] == "kd-supervised" and len(card.output.classes) == 3
    assert '"val_accuracy"' in capsys.readouterr().out
