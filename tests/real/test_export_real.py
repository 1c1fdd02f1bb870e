"""``crossval --export``: the best student retrained on all data, its card carrying the cross-validated numbers;
the same sources give the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bci_stream.card import read_card
from bci_stream.pipeline import epochs_from_recording
from bci_stream.recordings import read_recording
from bci_stream.signal import normalize
from training.cli import main
from training.realdata import file_sha256

from .conftest import LABEL


def _export(sub02: list[Path], folder: Path) -> Path:
    out = folder / "n170-tiny.onnx"
    rc = main(["crossval", "--recordings", *map(str, sub02), "--label", LABEL, "--tmax", "0.5", "--epochs", "1",
               "--permutations", "50", "--bandpass", "1", "30", "--reject-uv", "150", "--students", "conv1d,eegnet",
               "--baseline", "none", "--out", str(folder / "cv"), "--export", str(out)])  # fmt: skip
    assert rc == 0
    return out


def test_exported_student_card_records_crossval_rule_data_and_is_rebuilt_byte_for_byte(sub02, tmp_path: Path) -> None:
    a = _export(sub02, tmp_path / "a")
    b = _export(sub02, tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()

    card = read_card(a)
    results = json.loads((tmp_path / "a" / "cv" / "results.json").read_text())
    best = max(results["models"], key=lambda k: results["models"][k]["accuracy"])
    prov = card.provenance
    assert prov["student"]["name"] == best.split("+")[0]  # type: ignore[index]
    cv = prov["crossval"]
    assert cv["split"] == "by-recording" and cv["chance"] == round(results["chance"], 6)  # type: ignore[index]
    assert np.isclose(cv["accuracy"], results["models"][best]["accuracy"])  # type: ignore[index]
    assert set(cv) >= {"auc", "p_value", "folds", "n_trials"}  # type: ignore[arg-type]
    assert prov["data"] == [{"file": p.name, "sha256": file_sha256(p)} for p in sub02]
    assert "torch" in prov["packages"] and prov["seed"] == 0  # type: ignore[operator]
    assert card.input.events == "^stim/" and card.input.label == LABEL
    assert card.output.classes == ["face", "house"]

    # the model file scores a recording cut by the daemon's path
    rec = read_recording(sub02[0])
    es = epochs_from_recording(rec, card.input, card.preprocessing, events=card.input.events)
    x = normalize(es.X, card.preprocessing.normalization).astype(np.float32)
    logits = ort.InferenceSession(str(a), providers=["CPUExecutionProvider"]).run(None, {"eeg": x})[0]
    assert logits.shape == (len(es.markers), 2) and np.isfinite(logits).all()


def test_exported_student_of_a_label_map_carries_the_map_for_the_daemon(sub02, tmp_path: Path) -> None:
    out = tmp_path / "n170-map.onnx"
    rc = main(["crossval", "--recordings", *map(str, sub02), "--label-map", "stim/face=face,stim/house=house",
               "--tmax", "0.5", "--epochs", "1", "--permutations", "50", "--bandpass", "1", "30",
               "--students", "eegnet", "--baseline", "none", "--out", str(tmp_path / "cv"), "--export", str(out)])  # fmt: skip
    assert rc == 0
    card = read_card(out)
    assert card.input.label_map == {"stim/face": "face", "stim/house": "house"} and card.input.label is None
    assert card.output.classes == ["face", "house"]


def test_a_conv1d_student_exports_its_tuple_options_as_the_card_reads_them(sub02, tmp_path: Path) -> None:
    out = tmp_path / "conv1d.onnx"
    rc = main(["crossval", "--recordings", *map(str, sub02), "--label", LABEL, "--tmax", "0.3", "--epochs", "1",
               "--permutations", "50", "--bandpass", "1", "30", "--students", "conv1d", "--baseline", "none",
               "--out", str(tmp_path / "cv"), "--export", str(out)])  # fmt: skip
    assert rc == 0
    assert read_card(out).provenance["student"]["filters"] == [16, 32]  # type: ignore[index]
