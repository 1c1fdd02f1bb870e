"""``training.valence.cli.main``: synth → fit → evaluate → export on a tiny configuration."""

from __future__ import annotations

import json
from pathlib import Path

from bci_stream.card import read_card
from training.valence.cli import load_config, main

TINY = """
[synth]
subjects = 2
trials = 2
seconds = 10.0
sfreq = 128.0
channels = "deap"
teacher_dim = 8
seed = 3

[fit]
channels = [8, 8]
steps = 4
batch_size = 4
crop = 16

[evaluate]
folds = 2

[export]
name = "valence-tiny"
version = "0.0.1"
"""


def test_cli_synth_fit_evaluate_export(tmp_path: Path, one_thread: None) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    data = tmp_path / "data"
    assert main(["-q", "synth", "--config", str(config), "--out", str(data)]) == 0
    assert len(list(data.glob("*.npz"))) == 4

    ckpt = tmp_path / "m.pt"
    assert main(["-q", "fit", "--config", str(config), "--data", str(data), "--out", str(ckpt)]) == 0
    assert main(["-q", "fit", "--config", str(config), "--synth", "--out", str(tmp_path / "s.pt")]) == 0
    assert main(["-q", "fit", "--config", str(config), "--data", str(data), "--no-kd", "--out", str(ckpt)]) == 0

    report, js = tmp_path / "report.md", tmp_path / "report.json"
    args = ["-q", "evaluate", "--config", str(config), "--data", str(data), "--report", str(report), "--json", str(js)]
    assert main(args) == 0
    text = report.read_text()
    assert "## trial-level random shuffling (trs, 2 folds)" in text and "## leave-one-subject-out (loso" in text
    assert "Wilcoxon p =" in text
    runs = json.loads(js.read_text())["runs"]
    assert [r["scheme"] for r in runs] == ["trs", "loso"]
    assert set(runs[0]["conditions"]) == {"kd", "no-kd"}

    onnx_path = tmp_path / "v.onnx"
    args = ["-q", "export", "--config", str(config), "--checkpoint", str(ckpt), "--out", str(onnx_path)]
    assert main([*args, "--metrics", str(js)]) == 0
    card = read_card(onnx_path)
    assert card.name == "valence-tiny" and card.version == "0.0.1" and card.task == "valence"
    assert card.provenance["kd_weight"] == 0.0
    metrics = card.provenance["metrics"]
    assert isinstance(metrics, dict) and {"trs", "loso"} <= set(metrics)
    assert "wilcoxon_p_folds" in metrics["trs"]


def test_cli_reports_bad_input(tmp_path: Path) -> None:
    assert main(["-q", "fit", "--data", str(tmp_path), "--out", str(tmp_path / "m.pt")]) == 2  # no .npz files
    bad = tmp_path / "bad.toml"
    bad.write_text("[synth]\nsubject = 3\n")
    other = tmp_path / "other.toml"
    other.write_text("[export]\nnmae = 'x'\n")
    assert main(["-q", "fit", "--config", str(other), "--synth", "--out", str(tmp_path / "m.pt")]) == 2
    try:
        load_config(bad)
    except ValueError as exc:
        assert "unknown [synth] key" in str(exc)
    else:
        raise AssertionError("an unknown key must be refused")
