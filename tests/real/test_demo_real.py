"""The shipped N170 student: its card, and ``make demo-real``'s promise that live and offline accuracy agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bci_stream.card import card_event_fields, read_card
from bci_stream.demo import run_demo

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "exported" / "n170-faces-houses.onnx"
RUN6 = REPO / "data" / "n170" / "sub-01_ses-01_run-06_eeg.fif"
CONFIG = REPO / "configs" / "daemon.toml"  # events and label come from the card


def test_shipped_card_records_leave_one_run_out_numbers_on_runs_1_to_5() -> None:
    card = read_card(MODEL)
    cv = card.provenance["crossval"]
    assert isinstance(cv, dict) and cv["split"] == "by-recording"
    assert {"accuracy", "auc", "chance", "p_value", "n_trials", "folds"} <= set(cv)
    assert cv["accuracy"] > cv["chance"] and cv["p_value"] < 0.05
    files = [d["file"] for d in card.provenance["data"]]  # type: ignore[union-attr]
    assert files == [f"sub-01_ses-01_run-0{r}_eeg.fif" for r in range(1, 6)]  # run 6 never trained on
    assert card.input.events == "^stim/" and card.input.label is not None
    assert card.output.classes == ["face", "house"] and card.input.channels == ["TP9", "AF7", "AF8", "TP10"]


@pytest.mark.e2e
def test_demo_real_live_accuracy_equals_offline_accuracy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # the demo writes build/demo-logs here
    lines: list[str] = []
    rc = run_demo(RUN6, MODEL, CONFIG, speed=10.0, timeout=120.0, quiet=True, out=lines.append, offline=True)
    summary = lines[-1]
    assert rc == 0, lines
    live = re.search(r" accuracy=(\S+)", summary)
    offline = re.search(r" offline_accuracy=(\S+)", summary)
    assert live and offline, summary
    assert "drops=0" in summary and live.group(1) == offline.group(1) != "n/a", summary


@pytest.mark.e2e
def test_demo_on_eeglab_reads_the_cards_label_field_live_and_offline(
    eeglab: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A model labelled by the EEGLAB event field ``position`` (``distil --event-fields position``): the demo reads
    the field from the card's label rule into the replayed markers and the offline cut, so both accuracies exist."""
    pytest.importorskip("torch")
    from training.cli import main

    model = tmp_path / "eeglab.onnx"
    assert main(["distil", "--recording", str(eeglab), "--events", "^square", "--event-fields", "position",
                 "--tmax", "0.3", "--hidden", "8", "--layers", "1", "--epochs", "1", "--notch", "0",
                 "--out", str(model)]) == 0  # fmt: skip
    monkeypatch.chdir(tmp_path)  # the demo writes build/demo-logs here
    lines: list[str] = []
    rc = run_demo(eeglab, model, CONFIG, speed=20.0, timeout=120.0, quiet=True, out=lines.append, offline=True)
    summary = lines[-1]
    assert rc == 0, lines
    live = re.search(r" accuracy=(\S+)", summary)
    offline = re.search(r" offline_accuracy=(\S+)", summary)
    assert live and offline, summary
    assert "markers=80" in summary and "drops=0" in summary, summary
    assert live.group(1) == offline.group(1) != "n/a", summary


@pytest.mark.e2e
def test_demo_event_fields_option_reads_fields_the_card_does_not_name(eeglab: Path, tmp_path: Path) -> None:
    """A card whose label regex (``position=(?P<label>\\d)``) is not the field rule: ``bci-stream demo --event-fields
    position`` reads the field for the replay and the offline cut, through the real command line."""
    import os
    import subprocess
    import sys

    pytest.importorskip("torch")
    from training.cli import main

    model = tmp_path / "eeglab.onnx"
    assert main(["distil", "--recording", str(eeglab), "--events", "^square", "--event-fields", "position",
                 "--label-regex", r"position=(?P<label>\d)", "--tmax", "0.3", "--hidden", "8", "--layers", "1",
                 "--epochs", "1", "--notch", "0", "--out", str(model)]) == 0  # fmt: skip
    # the regex names no field rule, so only the recorded input.event_fields tell the demo what to read
    card = read_card(model)
    assert card_event_fields(card) == card.input.event_fields == ["position"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "bci_stream.cli", "demo", "--recording", str(eeglab), "--model", str(model),
           "--config", str(CONFIG), "--speed", "20", "--timeout", "120", "--quiet", "--offline-accuracy",
           "--event-fields", "position"]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stderr[-2000:]
    live = re.search(r" accuracy=(\S+)", summary)
    offline = re.search(r" offline_accuracy=(\S+)", summary)
    assert live and offline, summary
    assert live.group(1) == offline.group(1) != "n/a", summary
