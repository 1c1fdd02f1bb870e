"""Block-wise vs shuffled cross-validation on the EEGLAB test recording: how much does a block design inflate accuracy?

``/work/shared/data/eeglab/test_raw.set`` (32 channels, 128 Hz) has 80 ``square`` trials, ``position`` 1 or 2,
presented in blocks of 5 consecutive trials of one class (two neighbouring blocks of a class are indistinguishable, so
the groups are the runs of consecutive same-label trials). Epochs are cut by the daemon's own path
(:func:`training.fit.cut_epochs`: causal Butterworth 1–40 Hz over the continuous recording, tmin 0, 0.44 s =
56 samples). Both models see the SAME folds:

* **block-wise**: StratifiedGroupKFold by run (no run in train and test, classes balanced as far as runs allow);
* **shuffled**: trial-wise StratifiedKFold (shuffled, seeded), the protocol that lets block identity leak.

Models: every registered student (:data:`training.students.STUDENTS`, built by
:func:`training.students.build_student` with the small options of :data:`STUDENT_OPTIONS`, a fixed number of Adam
epochs, normalisation fitted on the training fold only, the model after the last epoch: no selection on the test
fold) and xDAWN covariances + tangent space + logistic regression (pyriemann, scikit-learn). Default 2 seeded fold
draws × 5 folds, to keep the whole run within a few minutes on one CPU thread.

Prints a Markdown table (mean ± sd over folds, chance 50 %, leakage gap = shuffled − block-wise) and writes it to
``runs/eeglab_blocks.md``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bci_stream.cli_common import HelpFormatter

DEFAULT_PATH = Path("/work/shared/data/eeglab/test_raw.set")


def load_epochs(path: Path = DEFAULT_PATH) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """``X`` (80, 56, 32) volts, ``y`` (0/1), run id per trial, run lengths — trials in time order."""
    from bci_stream.card import InputSpec, Preprocessing
    from bci_stream.recordings import read_recording
    from training.fit import cut_epochs

    rec = read_recording(path, event_fields=["position"])
    channels = [c for c, t in zip(rec.ch_names, rec.ch_types, strict=True) if t == "eeg"]
    spec = InputSpec(sfreq=rec.sfreq, n_times=56, tmin=0.0, channels=channels, units="V")
    prep = Preprocessing(bandpass=(1.0, 40.0), notch=None, filter="causal-butter-4")
    data = cut_epochs([rec], spec, prep, events=r"^square/", label_regex=r"position=(?P<label>\d)", image_regex=None)
    times = np.array([m.time for m in data.markers])
    if np.any(np.diff(times) <= 0):
        raise AssertionError("epochs are not in time order")
    y = np.array([int(label) - 1 for label in data.labels])
    runs = np.concatenate([[0], np.cumsum(y[1:] != y[:-1])])
    lengths = np.bincount(runs).tolist()
    if len(y) != 80 or any(n % 5 for n in lengths):
        raise AssertionError(f"expected 80 trials in blocks of 5, got {len(y)} trials in runs of {lengths}")
    return data.X, y, runs, lengths


def folds(y: np.ndarray, runs: np.ndarray, n_folds: int = 5, seed: int = 0) -> dict[str, list[tuple]]:
    """The same folds for every model: ``blockwise`` (StratifiedGroupKFold by run) and ``shuffled`` (by trial)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    from training.data import assert_disjoint

    # stratified as far as whole runs allow: with plain GroupKFold a fold's test classes are anti-correlated with
    # its training classes, which pushes a biased classifier below chance
    block = list(StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(y, y, runs))
    for tr, te in block:
        assert_disjoint({"train": tr, "test": te}, block=runs)
    shuffled = list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(y, y))
    return {"blockwise": block, "shuffled": shuffled}


#: Small options per registered student (every name in :data:`training.students.STUDENTS`), so each fold stays fast.
STUDENT_OPTIONS: dict[str, dict] = {
    "cogninet-blstm": {"hidden": 32, "n_layers": 2, "n_features": 32},
    "eegimagenet-lstm": {"hidden": 32, "n_features": 32},
    "conv1d": {"filters": (16, 32), "kernel_size": 7},
    "joint-encoder": {"rnn_hidden": 32, "embedding": 32, "filters": (16, 32), "kernel_size": 5},
    "eegnet": {},
    "shallow-fbcsp": {},
}


def student(name: str, epochs: int = 30, seed: int = 0, **options) -> Callable:
    """Fit-predict with the registered student ``name``: normalisation from the training fold, fixed epochs of Adam
    (batch 16, lr 1e-3), the model after the last epoch."""

    def fit_predict(X_tr: np.ndarray, y_tr: np.ndarray, X_te: np.ndarray) -> np.ndarray:
        import torch

        from bci_stream.signal import fit_channel_normalization, normalize
        from training.fit import predict_logits
        from training.students import build_student

        norm = fit_channel_normalization(X_tr)
        Xtr = torch.from_numpy(normalize(X_tr, norm).astype(np.float32))
        ytr = torch.from_numpy(y_tr.astype(np.int64))
        torch.manual_seed(seed)
        model = build_student(name, X_tr.shape[2], 2, X_tr.shape[1], 128.0, **options)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(ytr), generator=gen)
            for i in range(0, len(order), 16):
                idx = order[i : i + 16]
                if len(idx) < 2:  # a batch of one breaks batch norm
                    continue
                loss = torch.nn.functional.cross_entropy(model(Xtr[idx]), ytr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        return predict_logits(model, normalize(X_te, norm).astype(np.float32)).argmax(1)

    return fit_predict


def blstm(epochs: int = 30, hidden: int = 32, seed: int = 0) -> Callable:
    """Fit-predict with the CogniNet BLSTM (hidden ``hidden``, 2 layers): :func:`student` ``"cogninet-blstm"``."""
    return student("cogninet-blstm", epochs, seed, hidden=hidden, n_layers=2, n_features=32)


def _label(name: str, options: dict) -> str:
    shown = ", ".join(f"{k} {'/'.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in options.items())
    return f"{name} ({shown})" if shown else f"{name} (defaults)"


def xdawn_ts_lr(X_tr: np.ndarray, y_tr: np.ndarray, X_te: np.ndarray) -> np.ndarray:
    """xDAWN covariances (2 filters, OAS) → tangent space → logistic regression; data in µV, (n, chans, times)."""
    from pyriemann.estimation import XdawnCovariances
    from pyriemann.tangentspace import TangentSpace
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    clf = make_pipeline(XdawnCovariances(nfilter=2, estimator="oas"), TangentSpace(), LogisticRegression(max_iter=1000))
    clf.fit(np.transpose(X_tr, (0, 2, 1)) * 1e6, y_tr)
    return clf.predict(np.transpose(X_te, (0, 2, 1)) * 1e6)


def run(
    path: Path = DEFAULT_PATH,
    *,
    n_folds: int = 5,
    repeats: int = 2,
    blstm_epochs: int = 30,
    seed: int = 0,
    students: list[str] | None = None,
) -> dict:
    """Accuracy per fold for each model and scheme, over ``repeats`` seeded fold draws (same folds for all models).

    ``students``: registered student names (default: every name in :data:`training.students.STUDENTS`), each with
    :data:`STUDENT_OPTIONS` and ``blstm_epochs`` epochs; xDAWN + TS + LR is always included.
    """
    import torch

    from training.students import STUDENTS

    t0 = time.perf_counter()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    chosen = list(STUDENTS) if students is None else students
    labels = {n: _label(n, STUDENT_OPTIONS.get(n, {})) for n in chosen}
    names = [*labels.values(), "xDAWN + TS + LR"]
    acc: dict[str, dict[str, list[float]]] = {n: {"blockwise": [], "shuffled": []} for n in names}
    test_chance: dict[str, list[float]] = {"blockwise": [], "shuffled": []}
    seconds = dict.fromkeys(names, 0.0)
    try:
        X, y, runs, lengths = load_epochs(path)
        for rep in range(repeats):
            splits = folds(y, runs, n_folds, seed + rep)
            fns = [student(n, blstm_epochs, seed + rep, **STUDENT_OPTIONS.get(n, {})) for n in chosen]
            models = dict(zip(names, [*fns, xdawn_ts_lr], strict=True))
            for scheme, fs in splits.items():
                test_chance[scheme] += [float(max(np.mean(y[te]), 1 - np.mean(y[te]))) for _, te in fs]
                for name, fit_predict in models.items():
                    t = time.perf_counter()
                    acc[name][scheme] += [float((fit_predict(X[tr], y[tr], X[te]) == y[te]).mean()) for tr, te in fs]
                    seconds[name] += time.perf_counter() - t
    finally:
        torch.set_num_threads(previous)
    return {"acc": acc, "test_chance": test_chance, "seconds": seconds, "total_seconds": time.perf_counter() - t0,
            "n": len(y), "run_lengths": lengths, "n_folds": n_folds, "repeats": repeats,
            "blstm_epochs": blstm_epochs, "X_shape": X.shape}  # fmt: skip


def table(r: dict) -> str:
    k, reps = r["n_folds"], r["repeats"]
    lines = [
        f"# EEGLAB test recording: block-wise vs shuffled {k}-fold CV ({reps} seeds × {k} folds)",
        "",
        f"{r['n']} `square` trials (position 1 vs 2), epochs {r['X_shape'][1]} samples × {r['X_shape'][2]} channels "
        f"(128 Hz, causal 1–40 Hz, tmin 0); groups = {len(r['run_lengths'])} runs of consecutive same-label trials "
        f"(lengths {r['run_lengths']}). Chance 50%. Every registered student with small options: "
        f"{r['blstm_epochs']} epochs of Adam (batch 16, lr 1e-3), last model, normalisation from the training fold. "
        f"Mean ± sd over the {k * reps} folds ({reps} seeds × {k} folds, reduced from 5 × {k} to keep the run short); "
        "the same folds for every model.",
        "",
        "| model | block-wise CV | shuffled CV | leakage gap (shuffled − block-wise) | repeat means (block / shuffled) | time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, a in r["acc"].items():
        b, s = np.array(a["blockwise"]), np.array(a["shuffled"])
        rep_b, rep_s = b.reshape(reps, k).mean(1), s.reshape(reps, k).mean(1)
        reps_txt = " ".join(f"{v:.2f}" for v in rep_b) + " / " + " ".join(f"{v:.2f}" for v in rep_s)
        lines.append(
            f"| {name} | {100 * b.mean():.1f} ± {100 * b.std(ddof=1):.1f}% | {100 * s.mean():.1f} ± "
            f"{100 * s.std(ddof=1):.1f}% | {100 * (s.mean() - b.mean()):+.1f} pts | {reps_txt} | "
            f"{r['seconds'][name]:.1f} s |"
        )
    tc = r["test_chance"]
    lines += [
        "",
        f"Majority-class share of the test folds, mean (max): block-wise {np.mean(tc['blockwise']):.2f} "
        f"({np.max(tc['blockwise']):.2f}), shuffled {np.mean(tc['shuffled']):.2f} ({np.max(tc['shuffled']):.2f}).",
        "",
        f"Total run time {r['total_seconds']:.1f} s (1 torch thread).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    ap.add_argument("--path", type=Path, default=DEFAULT_PATH, help="the EEGLAB test recording (.set)")
    ap.add_argument("--out", type=Path, default=Path("runs/eeglab_blocks.md"), help="Markdown table to write")
    ap.add_argument("--folds", type=int, default=5, help="k of both k-fold schemes")
    ap.add_argument("--repeats", type=int, default=2, help="seeded fold draws (few, to stay within minutes)")
    ap.add_argument("--blstm-epochs", type=int, default=30, help="training epochs of every student")
    ap.add_argument(
        "--students", nargs="+", default=None, metavar="NAME", help="student names (default: all registered)"
    )
    ap.add_argument("--seed", type=int, default=0, help="base seed of the fold draws and the training")
    args = ap.parse_args(argv)
    text = table(
        run(
            args.path,
            n_folds=args.folds,
            repeats=args.repeats,
            blstm_epochs=args.blstm_epochs,
            seed=args.seed,
            students=args.students,
        )
    )
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
