"""Channel-importance maps: the planted channels rank first; PNG and CSV written (issue 13, METHODS.md §2)."""

from __future__ import annotations

import csv

import numpy as np
import torch

from training.embedding import SMALL_OPTIONS, embed, train_embedding
from training.maps import channel_importance, embedding_score, lowpass_noise, write_maps
from training.zeroshot_synth import synthesize_embedding_world


def test_lowpass_noise_keeps_each_rows_mean_and_variance_and_is_smooth():
    rng = np.random.default_rng(0)
    like = rng.standard_normal((20, 64)) * 3 + 5
    noise = lowpass_noise(rng, like, cutoff=0.25)
    assert np.allclose(noise.mean(1), like.mean(1)) and np.allclose(noise.std(1), like.std(1))
    # low-passed: much less sample-to-sample change than white noise of the same power
    assert np.mean(np.abs(np.diff(noise, axis=1))) < 0.6 * np.mean(np.abs(np.diff(like, axis=1)))


def test_planted_channels_rank_first(tmp_path):
    torch.set_num_threads(1)
    w = synthesize_embedding_world(seed=1)
    tr, va = w.rows(w.train_classes), w.rows(w.val_classes)
    fit = train_embedding(w.X, w.image_emb[w.images], w.labels, tr, va, w.class_table, encoder="nice",
                          objective="infonce", options=SMALL_OPTIONS["nice"], epochs=8, lr=3e-3)  # fmt: skip
    te = w.rows(w.test_classes)
    labels = np.searchsorted(w.test_classes, w.labels[te])
    table = w.class_table[w.test_classes]
    score = embedding_score(lambda X: embed(fit.model, X), table, labels)
    imp = channel_importance(score, w.X[te], labels, len(table), n_windows=2)
    overall = np.nanmean(imp, axis=(0, 1))
    top = {w.channels[i] for i in np.argsort(-overall)[: len(w.informative)]}
    assert top == set(w.informative), dict(zip(w.channels, overall.round(3), strict=True))
    png, csv_path = write_maps(imp[:2], w.channels, ["a", "b"], tmp_path, window_edges_s=[0, 0.25, 0.5])
    assert png.stat().st_size > 1000
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 2 * 2 * len(w.channels) and {r["rank"] for r in rows} >= {"1"}


def test_bci_train_maps_on_the_real_n170_recording(tmp_path):
    # an untrained classifier with an N170 card: the command cuts the epochs as the daemon would, writes PNG + CSV
    from pathlib import Path

    import pytest

    from bci_stream.card import InputSpec, ModelCard, OutputSpec, Preprocessing
    from training.cli import main
    from training.export import export_onnx
    from training.students import build_student

    run = Path("/work/shared/data/n170/sub-01_ses-01_run-06_eeg.fif")
    if not run.is_file():
        pytest.skip("N170 data not here")
    channels = ["TP9", "AF7", "AF8", "TP10"]
    torch.manual_seed(0)
    model = build_student("conv1d", 4, 2, 64, 256.0, filters=(4,)).eval()
    card = ModelCard(name="n170-untrained", input=InputSpec(sfreq=256.0, n_times=64, channels=channels),
                     preprocessing=Preprocessing(bandpass=(1.0, 30.0), notch=None),
                     output=OutputSpec(classes=["face", "house"]))  # fmt: skip
    path = export_onnx(model, card, tmp_path / "m.onnx")
    args = [str(path), "--recording", str(run), "--out", str(tmp_path / "maps"), "--windows", "2"]
    assert main(["maps", *args, "--label-regex", "stim/(?P<label>face|house)"]) == 0
    rows = list(csv.DictReader((tmp_path / "maps" / "importance.csv").open()))
    assert len(rows) == 2 * 2 * 4 and {r["channel"] for r in rows} == set(channels)
    assert (tmp_path / "maps" / "maps.png").stat().st_size > 1000
    # a label regex that yields labels the model does not know: exit 2, the labels named
    assert main(["maps", *args, "--label-regex", "(?P<label>stim/\\w+)"]) == 2
