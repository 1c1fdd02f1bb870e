"""``bci-train crossval`` on real recordings: same folds for every model, results.json, report, leaks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from training.cli import main
from training.crossval import StudentSpec, block_ids, make_folds, permutation_p
from training.realdata import LabelRule, RealDataError, load_epochs

from .conftest import LABEL

FAST = ["--tmax", "0.5", "--epochs", "1", "--permutations", "50", "--bandpass", "1", "30"]


@pytest.fixture(scope="module")
def copied(sub02, tmp_path_factory) -> list[Path]:
    """sub-02 runs 1 and 2, and run 1 again under another name: a copied file."""
    folder = tmp_path_factory.mktemp("copied")
    copy = folder / "sub-02_ses-01_run-03_eeg.fif"
    shutil.copyfile(sub02[0], copy)
    return [*sub02, copy]


@pytest.fixture(scope="module")
def crossval_out(sub02, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cv")
    rc = main(["crossval", "--recordings", *map(str, sub02), "--label", LABEL, *FAST,
               "--students", "conv1d,conv1d+aug+bal", "--baseline", "xdawn", "--out", str(out)])  # fmt: skip
    assert rc == 0
    return out


def test_results_json_has_exactly_the_promised_shape(crossval_out: Path) -> None:
    results = json.loads((crossval_out / "results.json").read_text())
    assert set(results) == {"chance", "split", "n_trials", "warnings", "models"}
    assert results["split"] == "by-recording" and results["n_trials"] == 395 and results["warnings"] == []
    assert 0.5 <= results["chance"] < 0.55
    assert set(results["models"]) == {"xdawn (baseline)", "conv1d", "conv1d+aug+bal"}
    for m in results["models"].values():
        assert set(m) == {"accuracy", "auc", "p_value", "folds"}
        assert 0 < m["p_value"] <= 1 and 0 <= m["accuracy"] <= 1
        # the same folds for every model: one per recording, each run tested once
        assert [f["fold"] for f in m["folds"]] == ["sub-02_ses-01_run-01_eeg.fif", "sub-02_ses-01_run-02_eeg.fif"]
        assert sum(f["n_test"] for f in m["folds"]) == 395
        assert np.isclose(m["accuracy"], np.mean([f["accuracy"] for f in m["folds"]]))


def test_report_has_the_table_and_a_plot(crossval_out: Path) -> None:
    report = (crossval_out / "report.md").read_text()
    assert "| xdawn (baseline) |" in report and "![per-fold accuracy](folds.png)" in report
    assert "permuted within each test fold" in report and "chance (majority class)" in report
    assert (crossval_out / "folds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_copied_recording_is_flagged_in_results_and_report(copied, tmp_path: Path, capsys) -> None:
    rc = main(["crossval", "--recordings", *map(str, copied), "--label", LABEL, *FAST, "--students", "",
               "--out", str(tmp_path)])  # fmt: skip
    assert rc == 0
    warnings = json.loads((tmp_path / "results.json").read_text())["warnings"]
    assert any("identical recordings" in w and "run-01" in w and "run-03" in w for w in warnings), warnings
    # the folds that test run 1 or its copy have every test epoch also in training
    assert sum("test epochs are identical to training epochs" in w for w in warnings) == 2, warnings
    assert "Leak warnings" in (tmp_path / "report.md").read_text()
    assert "WARNING leak" in capsys.readouterr().out


def test_strict_refuses_a_copied_recording_before_fitting(copied, tmp_path: Path, capsys) -> None:
    rc = main(["crossval", "--recordings", *map(str, copied), "--label", LABEL, *FAST, "--students", "",
               "--strict", "--out", str(tmp_path)])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "refusing to fit (--strict)" in err and "sub-02_ses-01_run-03_eeg.fif" in err
    assert not (tmp_path / "results.json").exists()


def test_block_split_never_puts_one_block_on_both_sides(eeglab) -> None:
    data = load_epochs([eeglab], events="^square", rule=LabelRule(field="position"), tmin=0.0, tmax=0.44,
                       bandpass=(1.0, 40.0))  # fmt: skip
    blocks = block_ids(data)
    assert len(np.unique(blocks)) == 13  # 80 trials in blocks of 5; neighbouring same-class blocks merge
    for train, test in make_folds(data, "by-block", n_folds=5):
        assert not set(blocks[train]) & set(blocks[test])
    shuffled = make_folds(data, "shuffled", n_folds=5)
    assert any(set(blocks[tr]) & set(blocks[te]) for tr, te in shuffled)  # the leaky protocol, for comparison


def test_permutation_p_separates_signal_from_none() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    folds = [(np.arange(100, 200), np.arange(100)), (np.arange(100), np.arange(100, 200))]
    assert permutation_p(y, y.copy(), folds, 200, 0) < 0.01  # perfect predictions
    assert permutation_p(y, np.zeros_like(y), folds, 200, 0) == 1.0  # one class always: no information
    assert permutation_p(y, rng.integers(0, 2, 200), folds, 200, 0) > 0.05


def test_student_flags_parse_and_unknown_ones_are_refused() -> None:
    spec = StudentSpec.parse("eegnet+aug+bal", epochs=3)
    assert (spec.name, spec.augment, spec.balanced, spec.epochs, spec.label) == ("eegnet", True, True, 3,
                                                                                 "eegnet+aug+bal")  # fmt: skip
    with pytest.raises(RealDataError, match="unknown flag"):
        StudentSpec.parse("eegnet+mixup")
    with pytest.raises(RealDataError, match="unknown student"):
        StudentSpec.parse("resnet")


def test_block_permutation_is_coarser_than_trial_permutation() -> None:
    # 4 blocks of 10 trials, two per class, one test fold: a block-level "hit" is only 1 in 6 label arrangements
    y = np.repeat([0, 1, 0, 1], 10)
    units = np.repeat([0, 1, 2, 3], 10)
    folds = [(np.zeros(0, dtype=int), np.arange(40))]
    trial_p = permutation_p(y, y.copy(), folds, 500, 0)
    block_p = permutation_p(y, y.copy(), folds, 500, 0, units=units)
    assert trial_p < 0.01 and block_p > 0.1
