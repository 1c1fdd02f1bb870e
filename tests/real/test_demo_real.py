"""The shipped N170 student: its card, and ``make demo-real``'s promise that live and offline accuracy agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bci_stream.card import read_card
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
