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
    assert top == set(w.informative), dict(zip(w.channels, overall.round(3)))
    png, csv_path = write_maps(imp[:2], w.channels, ["a", "b"], tmp_path, window_edges_s=[0, 0.25, 0.5])
    assert png.stat().st_size > 1000
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 2 * 2 * len(w.channels) and {r["rank"] for r in rows} >= {"1"}
