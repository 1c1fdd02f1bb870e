"""Channel-importance scalp maps (METHODS.md §2).

Importance of channel *c* in time window *w* = the mean drop of a per-epoch score when that channel's samples in
that window are replaced by low-pass-filtered Gaussian noise with that epoch-channel-window's own mean and
variance (so the channel keeps its level and power, and loses its information). The score is the compatibility
(cosine) of the EEG embedding with its class's table embedding for embedding models, or the log-probability of the
true class for classifiers. Averaged per class; :func:`write_maps` draws MNE topomaps (standard 10-20 montage by
channel name) and writes the numbers as CSV.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .errors import TrainingDataError

log = logging.getLogger(__name__)

ScoreFn = Callable[[np.ndarray], np.ndarray]  # (n, n_times, n_chans) → per-epoch score (n,)


def lowpass_noise(rng: np.random.Generator, like: np.ndarray, cutoff: float = 0.25) -> np.ndarray:
    """Noise shaped like ``like`` (n, n_times): Gaussian, zero-phase Butterworth low-pass at ``cutoff`` × Nyquist,
    then rescaled to each row's own mean and standard deviation."""
    from scipy.signal import butter, sosfiltfilt

    n, n_times = like.shape
    pad = 3 * n_times  # filter a longer stretch so the edges of the kept middle are settled
    white = rng.standard_normal((n, n_times + 2 * pad))
    noise = sosfiltfilt(butter(4, cutoff, output="sos"), white, axis=1)[:, pad : pad + n_times]
    noise = (noise - noise.mean(1, keepdims=True)) / np.maximum(noise.std(1, keepdims=True), 1e-12)
    return noise * like.std(1, keepdims=True) + like.mean(1, keepdims=True)


def channel_importance(
    score: ScoreFn, X: np.ndarray, labels: np.ndarray, n_classes: int, *, n_windows: int = 1,
    cutoff: float = 0.25, seed: int = 0,
) -> np.ndarray:  # fmt: skip
    """Importance ``(n_classes, n_windows, n_chans)``: mean score drop per class when one channel in one window
    (``n_windows`` equal parts of the epoch) is replaced by :func:`lowpass_noise`."""
    X = np.asarray(X, dtype=np.float32)
    labels = np.asarray(labels)
    if len(X) != len(labels) or len(X) == 0:
        raise TrainingDataError(
            f"channel importance needs epochs with labels; got {len(X)} epochs, {len(labels)} labels"
        )
    rng = np.random.default_rng(seed)
    base = score(X)
    edges = np.linspace(0, X.shape[1], n_windows + 1).astype(int)
    out = np.zeros((n_classes, n_windows, X.shape[2]))
    for w in range(n_windows):
        a, b = edges[w], edges[w + 1]
        for c in range(X.shape[2]):
            Xp = X.copy()
            Xp[:, a:b, c] = lowpass_noise(rng, X[:, a:b, c], cutoff)
            drop = base - score(Xp)
            for k in range(n_classes):
                out[k, w, c] = drop[labels == k].mean() if np.any(labels == k) else np.nan
    return out


def embedding_score(embed: Callable[[np.ndarray], np.ndarray], table: np.ndarray, labels: np.ndarray) -> ScoreFn:
    """Per-epoch compatibility: cosine of the embedding with its own class's row of ``table``."""
    t = table / np.linalg.norm(table, axis=1, keepdims=True)

    def score(X: np.ndarray) -> np.ndarray:
        e = embed(X)
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        return np.sum(e * t[labels], axis=1)

    return score


def class_logprob_score(logits: Callable[[np.ndarray], np.ndarray], labels: np.ndarray) -> ScoreFn:
    """Per-epoch log-probability of the true class (softmax of the model's logits)."""

    def score(X: np.ndarray) -> np.ndarray:
        z = logits(X).astype(np.float64)
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return logp[np.arange(len(labels)), labels]

    return score


def write_maps(
    importance: np.ndarray, channels: Sequence[str], classes: Sequence[str], out: str | Path, *,
    window_edges_s: Sequence[float] | None = None, title: str = "",
) -> tuple[Path, Path]:  # fmt: skip
    """``out``/importance.csv (class, window, channel, importance, rank) and ``out``/maps.png: one row of topomaps
    per class (one per window, plus the whole epoch averaged over windows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mne

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_classes, n_windows, _ = importance.shape
    csv_path = out / "importance.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["class", "window", "t0_s", "t1_s", "channel", "importance", "rank"])
        for k in range(n_classes):
            for w in range(n_windows):
                ranks = np.argsort(np.argsort(-importance[k, w])) + 1
                t0, t1 = (window_edges_s[w], window_edges_s[w + 1]) if window_edges_s else ("", "")
                for c, ch in enumerate(channels):
                    writer.writerow([classes[k], w, t0, t1, ch, f"{importance[k, w, c]:.6g}", int(ranks[c])])
    info = mne.create_info(list(channels), 100.0, "eeg")
    # MNE 1.13 renamed the standard 10-20 montage (same positions); older MNE only knows the old name
    name = "colin27_1020" if "colin27_1020" in mne.channels.get_builtin_montages() else "standard_1020"
    info.set_montage(name, on_missing="warn")
    cols = n_windows + (1 if n_windows > 1 else 0)
    fig, axes = plt.subplots(n_classes, cols, figsize=(2.6 * cols, 2.4 * n_classes), squeeze=False)
    for k in range(n_classes):
        panels = [importance[k, w] for w in range(n_windows)] + ([importance[k].mean(0)] if n_windows > 1 else [])
        for j, values in enumerate(panels):
            ax = axes[k, j]
            lim = float(np.nanmax(np.abs(values))) or 1.0  # symmetric: red = information lost, blue = gained
            mne.viz.plot_topomap(values, info, axes=ax, show=False, names=list(channels), cmap="RdBu_r",
                                 vlim=(-lim, lim), sensors=True, contours=0)  # fmt: skip
            when = (
                "whole epoch"
                if j == n_windows
                else (f"{window_edges_s[j]:.2f}–{window_edges_s[j + 1]:.2f} s" if window_edges_s else f"window {j}")
            )
            ax.set_title(f"{classes[k]}\n{when}\nmax {values.max():.3g}", fontsize=8)
    fig.suptitle(title or "channel importance (score drop)", fontsize=9, y=1.03)
    png_path = out / "maps.png"
    fig.savefig(png_path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    log.info("wrote %s and %s", png_path, csv_path)
    return png_path, csv_path


def maps_for_model(
    model_path: str | Path, recordings: Sequence[str | Path], out: str | Path, *, label_regex: str,
    events: str | None, table_path: str | Path | None = None, n_windows: int = 3, seed: int = 0,
) -> tuple[Path, Path, np.ndarray]:  # fmt: skip
    """Maps of an exported model (ONNX Runtime) on the epochs of ``recordings``, cut exactly as the daemon cuts
    them for its card. Embedding models score against the card's table or ``table_path`` (``classes`` must be
    the labels); classifiers by the log-probability of the true class."""
    import re

    import onnxruntime as ort

    from bci_stream.card import read_card
    from bci_stream.recordings import read_recording

    from .fit import normalized_epochs

    card = read_card(model_path)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])

    def run(X: np.ndarray) -> np.ndarray:
        return np.concatenate([session.run(None, {card.input.name: X[i : i + 256]})[0] for i in range(0, len(X), 256)])

    Xs, names = [], []
    for path in recordings:
        X, markers = normalized_epochs(read_recording(path), card, events=events)
        Xs.append(X)
        for m in markers:
            found = re.search(label_regex, m.value)
            if found is None:
                raise TrainingDataError(f"{path}: marker {m.value!r} does not match the label regex {label_regex!r}")
            names.append(found.groupdict().get("label") or found.group(1))
    X = np.concatenate(Xs)
    if card.task == "embedding":
        if table_path is not None:
            from bci_stream.zeroshot import load_table

            classes, table = load_table(table_path)
        elif card.output.table is not None:
            classes, table = list(card.output.classes), np.asarray(card.output.table, dtype=np.float32)
        else:
            raise TrainingDataError(f"{model_path}: an embedding model needs a class table (card or --classes)")
    else:
        classes, table = list(card.output.classes), None
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise TrainingDataError(f"labels {unknown} of the recordings are not among the model's classes {classes}")
    labels = np.array([classes.index(n) for n in names])
    score = class_logprob_score(run, labels) if table is None else embedding_score(run, table, labels)
    imp = channel_importance(score, X, labels, len(classes), n_windows=n_windows, seed=seed)
    edges = list(np.linspace(0, card.input.duration, n_windows + 1) + card.input.tmin)
    png, csv_path = write_maps(imp, card.input.channels, classes, out, window_edges_s=edges,
                               title=f"{Path(model_path).name}: channel importance on {len(X)} epochs")  # fmt: skip
    return png, csv_path, imp
