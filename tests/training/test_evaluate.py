"""Honest evaluation: metrics with chance and permutation p, and confound probes that must catch block leakage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data import load_eeg_imagenet, synthetic_eeg_imagenet
from training.evaluate import evaluate_eeg_imagenet, evaluate_predictions, write_report


def test_metrics_chance_and_permutation_p():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), 10)
    subjects = np.tile([1, 2], 30)
    perfect = np.eye(6)[y] + 0.01 * rng.standard_normal((60, 6))
    r = evaluate_predictions(y, perfect, [f"c{i}" for i in range(6)], subjects)
    assert r["accuracy"] == 1.0 and r["top5"] == 1.0
    assert r["p_value_permutation"] == pytest.approx(1 / 1001)
    assert r["chance_uniform"] == pytest.approx(1 / 6) and r["chance_majority"] == pytest.approx(1 / 6)
    assert r["per_subject"]["1"] == {"n": 30, "accuracy": 1.0}
    noise = evaluate_predictions(y, rng.standard_normal((60, 6)), seed=1)
    assert noise["p_value_permutation"] > 0.01
    assert "top5" not in evaluate_predictions([0, 1, 1], np.eye(2)[[0, 1, 0]])
    with pytest.raises(ValueError, match="1000"):
        evaluate_predictions(y, perfect, n_permutations=100)


def _dataset(tmp_path, **kwargs):
    path = tmp_path / "eeg.pth"
    torch.save(synthetic_eeg_imagenet(n_classes=4, n_subjects=2, images_per_class=12, **kwargs), path)
    return load_eeg_imagenet(path)


def test_drift_only_block_design_is_flagged(tmp_path):
    # no stimulus information at all: labels are predictable only through the slow drift shared within each block
    d = _dataset(tmp_path, design="block", stimulus=0.0, seed=1)
    logits = np.eye(4)[d.y]  # even a "perfect" classifier must not hide the warning
    r = evaluate_eeg_imagenet(d, logits=logits, n_permutations=1000)
    p = r["probes"]
    assert r["confounded"], r["sentence"]
    assert p["label_purity"] == 1.0
    assert p["block"]["accuracy"] > 0.6 > p["block"]["chance"]  # block identity is readable from the features
    assert p["shuffled_within_blocks"]["accuracy"] > 0.6  # labels survive shuffling within blocks
    assert p["highpassed"]["accuracy"] < 0.5  # and vanish once the drift is high-passed away
    assert p["time"]["r2"] > 0.5
    report = write_report(tmp_path / "report.md", r).read_text()
    first = report.splitlines()[0]
    assert first.startswith("**WARNING: labels are confounded with recording blocks")
    assert "block design" in report and "Treat the accuracy as block-design leakage" in first
    assert (tmp_path / "report.json").exists()


def test_interleaved_design_with_stimulus_is_not_flagged(tmp_path):
    d = _dataset(tmp_path, design="interleaved", stimulus=1.5, seed=1)
    r = evaluate_eeg_imagenet(d)
    p = r["probes"]
    assert not r["confounded"], r["sentence"]
    assert p["labels"]["accuracy"] > 0.8  # the stimulus is decodable
    assert p["shuffled_within_blocks"]["accuracy"] < 0.45  # and nothing is left once labels are shuffled in blocks
    report = write_report(tmp_path / "ok.md", {**r, "design": "mixed blocks"}).read_text()
    assert "WARNING" not in report and report.startswith("# EEG-ImageNet")


def test_eeglab_blocks_benchmark_smoke():
    from training.benchmarks import eeglab_blocks as bench

    if not bench.DEFAULT_PATH.exists():
        pytest.skip("shared EEGLAB test recording not available")
    X, y, runs, lengths = bench.load_epochs()
    assert X.shape == (80, 56, 32) and sum(lengths) == 80 and all(n % 5 == 0 for n in lengths)
    splits = bench.folds(y, runs)
    for tr, te in splits["blockwise"]:
        assert not set(runs[tr]) & set(runs[te])
    pred = bench.xdawn_ts_lr(X[splits["blockwise"][0][0]], y[splits["blockwise"][0][0]], X[:5])
    assert pred.shape == (5,)
