"""``bci-train evaluate RUN``: honest evaluation of a finished run folder (``training.runs.fit_run``).

The run's data are rebuilt exactly as :func:`training.runs.fit_run` cut them: the saved ``RUN/config.toml`` is read
by :func:`training.runs.load_config`, the recordings by ``training.runs._load_data``, epochs by
:func:`training.fit.cut_epochs` and the split by :func:`training.fit.split_by_group` with the config's seed and
validation fraction; normalisation is fitted on the training split only (the same statistics as the card's). The
best model (``RUN/model.pt``, :func:`training.runs.load_run_model`) predicts the run's **held-out test** split
(``[train] test_fraction`` > 0: whole images drawn before any training, never used for early stopping or selection;
checked against ``RUN/split.json``). Without one it predicts the **validation** split, which also chose the epoch
(early stopping on the validation loss), so its accuracy is optimistic; it is not a test result. The report says
which in its first lines (after the confound warning, when there is one).

``evaluate_run(RUN, loso=True)`` adds leave-one-subject-out (:func:`leave_one_subject_out`): the run's config retrained
once per held-out subject for the run's best epoch count, reported per subject with chance and permutation p.

:func:`training.evaluate.evaluate` gives accuracy, top-5 (≥ 5 classes), chance, the permutation p-value and — when
the data hold more than one recording (subject or session) — per-recording accuracy; the confound probes run on all
epochs with blocks = the recording (session) of each epoch and order = the epoch's index within its recording.
Written to ``RUN/evaluation.md`` and ``RUN/evaluation.json`` by :func:`training.evaluate.write_report`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bci_stream.errors import ConfigError

from .evaluate import jsonable

TEST_NOTE = (
    "Split evaluated: the held-out test split of the run (whole images drawn before any training), never used for "
    "early stopping or selection."
)
VALIDATION_NOTE = (
    "Split evaluated: the validation split of the run. The same split was used for early stopping (it chose the "
    "best epoch), so this accuracy is optimistic: it is not a held-out test result."
)


def _recording_of_each_epoch(recordings: list[Any], markers: list[Any]) -> np.ndarray:
    """Index of the recording each epoch came from (``cut_epochs`` concatenates recordings in order)."""
    keys = [{(m.value, m.time) for m in rec.markers} for rec in recordings]
    out = np.empty(len(markers), dtype=np.int64)
    r = 0
    for i, m in enumerate(markers):
        while r < len(keys) and (m.value, m.time) not in keys[r]:
            r += 1
        if r == len(keys):
            raise AssertionError(f"epoch {i} ({m.value!r} at {m.time:g} s) matches no recording")
        out[i] = r
    return out


def _recording_names(config: Any, recordings: list[Any]) -> list[str]:
    d = config.data
    if d.synth is not None:
        from .runs import synth_subjects

        return [
            f"subject {subject}, session seed {seed}" for subject in synth_subjects(config) for seed in d.synth.seeds
        ]
    assert d.recordings is not None
    return [Path(p).name for p in d.recordings]


def _rebuild(
    run: Path, config: Any, card: Any, recordings: list[Any]
) -> tuple[Any, np.ndarray, list[str], tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """A run's epochs, targets, classes, split (checked against ``RUN/split.json``) and normalised epochs, rebuilt
    with fit_run's own functions; :class:`ConfigError` when anything differs from what the run recorded."""
    from bci_stream.card import Preprocessing
    from bci_stream.signal import fit_channel_normalization, normalize

    from .fit import cut_epochs
    from .runs import check_recorded_split, split_epochs

    d = config.data
    cp = card.preprocessing
    prep = Preprocessing(bandpass=cp.bandpass, notch=cp.notch, filter=cp.filter)  # as fit_run: no normalisation
    data = cut_epochs(recordings, card.input, prep, events=d.events, label_regex=d.rule().cut_regex,
                      image_regex=d.image_regex or None)  # fmt: skip
    classes = list(card.provenance["labels"]["classes"])
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(data.labels) - set(index))
    if unknown:
        raise ConfigError(f"{run}: labels {unknown[:5]} are not among the run's classes")
    y = np.array([index[label] for label in data.labels], dtype=np.int64)
    plan, parts = split_epochs(data, config, str(run / "config.toml"))  # the split unit fit_run chose
    data.split_unit = plan.name.removeprefix("by-")  # what the report names
    check_recorded_split(run, plan, parts, "evaluate")  # runs before split.json have no test split
    norm = fit_channel_normalization(data.X[parts[0]])  # training split only, as in fit_run
    saved = cp.normalization
    if saved.kind == "channel":
        # both are kind "channel" (fit_channel_normalization's always is), whose validator requires a mean
        assert norm.mean is not None and saved.mean is not None
        if not np.allclose(norm.mean, saved.mean, rtol=1e-6, atol=0):
            raise ConfigError(f"{run}: the rebuilt training split does not match the run's (normalisation differs)")
    return data, y, classes, parts, normalize(data.X, norm).astype(np.float32)


def evaluate_run(run: str | Path, *, n_permutations: int = 1000, loso: bool = False) -> dict[str, Any]:
    """Evaluate the best model of the finished run ``run``; write ``RUN/evaluation.md`` and ``RUN/evaluation.json``.

    The split evaluated is the run's held-out **test** split when it has one (``[train] test_fraction`` > 0; checked
    against ``RUN/split.json``), else its validation split (optimistic: it chose the epoch). Returns
    :func:`training.evaluate.evaluate`'s results plus ``report`` (the Markdown path), ``split``, ``split_kind``
    ("test" or "validation") and ``note``. ``loso=True`` adds ``loso``: :func:`leave_one_subject_out`.
    """
    import torch

    from .evaluate import evaluate, write_report
    from .fit import predict_logits
    from .runs import _load_data, load_config, load_run_model

    run = Path(run)
    if not (run / "config.toml").is_file():
        raise ConfigError(f"{run}: not a run folder (no config.toml)")
    if load_config(run / "config.toml").embedding is not None:  # an embedding run: zero-shot on its test classes
        from .embedding_run import evaluate_embedding_run

        if loso:
            raise ConfigError(f"{run}: an embedding run has no leave-one-subject-out; drop --loso")
        return evaluate_embedding_run(run, n_permutations=n_permutations)
    config = load_config(run / "config.toml")
    model, card = load_run_model(run)
    tr = config.train
    if tr.threads is not None:
        torch.set_num_threads(tr.threads)

    # ---- the data, as fit_run cut and split them (its own functions, its own config)
    recordings, _teacher = _load_data(config)
    spec = card.input
    data, y, classes, (train_idx, val_idx, test_idx), X = _rebuild(run, config, card, recordings)
    held_out = len(test_idx) > 0
    eval_idx = test_idx if held_out else val_idx

    # ---- blocks = recording (session), order = epoch index in its recording
    rec_of = _recording_of_each_epoch(recordings, data.markers)
    names = _recording_names(config, recordings)
    blocks = np.array([names[r] for r in rec_of])
    order = np.zeros(len(y), dtype=np.float64)
    for r in np.unique(rec_of):
        m = rec_of == r
        order[m] = np.arange(int(m.sum()))
    several = len(recordings) > 1
    subjects = blocks.tolist() if several else None

    logits = predict_logits(model, X[eval_idx], threads=None)
    dataset = (f"Run {run.name}: held-out test split, never used for selection" if held_out
               else f"Run {run.name}: validation split (optimistic: also used for early stopping)")  # fmt: skip
    results = evaluate(
        y.tolist(), blocks.tolist(), X=data.X, logits=logits, test_index=eval_idx.tolist(), classes=classes,
        subjects=subjects, order=order.tolist(), sfreq=spec.sfreq, dataset=dataset,
        n_permutations=n_permutations, seed=tr.seed,
    )  # fmt: skip
    counts = f"{len(train_idx)} train / {len(val_idx)} validation / {len(test_idx)} test epochs"
    results.update(
        {
            "run": str(run),
            "split": (
                f"held-out test, never used for selection (by {data.split_unit}, {counts})"
                if held_out
                else f"validation (by {data.split_unit}, {counts})"
            )
            + (
                "; by trial is leaky: trials of one recording are not independent" if data.split_unit == "trial" else ""
            ),
            "split_kind": "test" if held_out else "validation",
            "note": TEST_NOTE if held_out else VALIDATION_NOTE,
            "n_recordings": len(recordings),
            "student": card.provenance.get("student"),
            "best_epoch": dict(card.provenance.get("metrics") or {}).get("best_epoch"),  # type: ignore[call-overload]
        }
    )
    if loso:
        results["loso"] = leave_one_subject_out(
            run, config, card, data, recordings, _teacher, X_raw=data.X, y=y, n_permutations=n_permutations
        )
    path = write_report(run / "evaluation.md", results)
    _add_note(path, results, several)
    if loso:
        _add_loso(path, results["loso"])
    results["report"] = str(path)
    path.with_suffix(".json").write_text(json.dumps(results, indent=2, default=jsonable))
    return results


def _add_note(path: Path, results: dict[str, Any], several: bool) -> None:
    """Put the validation-split note right under the title (the confound warning, when any, stays first)."""
    lines = path.read_text().split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("# ")) + 1
    extra = ["", f"**{results['note']}**", "", f"Run: `{results['run']}`; {results['split']}."]
    if several:
        extra.append("Per-subject table: one row per recording (subject / session) of the run's data.")
    extra.append(
        "Confound probes on all epochs of the run: blocks = the recording (session) of each epoch, "
        "order = the epoch's index within its recording."
    )
    lines[at:at] = extra
    if results.get("split_kind") == "test":
        heading = "## Test predictions (held-out test, never used for selection)"
    else:
        heading = "## Validation predictions (the split that chose the epoch: optimistic)"
    lines = [heading if line == "## Test predictions" else line for line in lines]
    path.write_text("\n".join(lines))


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The numbers ``bci-train evaluate RUN`` prints."""
    if results.get("task") == "embedding":
        from .embedding_run import headline as embedding_headline

        return embedding_headline(results)
    p = results["predictions"]
    out = {
        "report": results.get("report"),
        "split": (
            "held-out test, never used for selection"
            if results.get("split_kind") == "test"
            else "validation (also used for early stopping: optimistic)"
        ),
        "n": p["n"],
        "accuracy": p["accuracy"],
        "chance_majority": p["chance_majority"],
        "chance_uniform": p["chance_uniform"],
        "p_value_permutation": p["p_value_permutation"],
        "confounded": results["confounded"],
    }
    if "top5" in p:
        out["top5"] = p["top5"]
    if p.get("per_subject"):
        out["per_subject"] = {s: v["accuracy"] for s, v in p["per_subject"].items()}
    if results.get("loso"):
        out["loso"] = {s: {k: v[k] for k in ("accuracy", "chance_majority", "p_value_permutation")}
                       for s, v in results["loso"]["subjects"].items()}  # fmt: skip
    return out


def leave_one_subject_out(
    run: Path, config: Any, card: Any, data: Any, recordings: list[Any], teacher: Any, *, X_raw: np.ndarray,
    y: np.ndarray, n_permutations: int = 1000,
) -> dict[str, Any]:  # fmt: skip
    """Retrain the run's config once per subject on all other subjects and test on the held-out subject.

    Each fold trains a fresh student for exactly the run's best epoch count (no validation split, no early
    stopping: nothing is selected on the held-out subject), with normalisation fitted on the training subjects only.
    Subjects come from :func:`training.runs.recording_subjects` (synthetic ``subjects`` or ``[data] subjects``);
    at least two are needed. Images may recur across subjects: LOSO tests generalisation to a new subject.
    """
    from bci_stream.signal import fit_channel_normalization, normalize

    from .evaluate import evaluate_predictions
    from .fit import predict_logits
    from .runs import recording_subjects, train_fixed_epochs

    per_recording = recording_subjects(config)
    if per_recording is None or len(set(per_recording)) < 2:
        raise ConfigError(
            f"{run}: leave-one-subject-out needs at least two subjects (synth 'subjects = [1, 2]' or "
            "[data] 'subjects' with one id per recording)"
        )
    subject = np.array([per_recording[r] for r in _recording_of_each_epoch(recordings, data.markers)])
    classes = list(card.provenance["labels"]["classes"])
    epochs = int(dict(card.provenance.get("metrics") or {}).get("best_epoch") or config.train.epochs)
    loss_name = str(card.provenance.get("loss") or "ce")
    t_logits = teacher.lookup(data.groups, classes) if teacher is not None else None
    out: dict[str, Any] = {"epochs": epochs, "loss": loss_name, "subjects": {}}
    for held in sorted(set(per_recording), key=lambda s: (len(s), s)):
        test_idx = np.flatnonzero(subject == held)
        train_idx = np.flatnonzero(subject != held)
        assert not set(test_idx) & set(train_idx)
        norm = fit_channel_normalization(X_raw[train_idx])  # training subjects only
        X = normalize(X_raw, norm).astype(np.float32)
        model = train_fixed_epochs(config, X, y, t_logits, train_idx, len(classes), epochs, loss_name,
                                   card.input.sfreq)  # fmt: skip
        logits = predict_logits(model, X[test_idx], threads=None)
        ev = evaluate_predictions(y[test_idx], logits, classes, n_permutations=n_permutations, seed=config.train.seed)
        out["subjects"][held] = {
            "n_train": len(train_idx),
            "n_test": len(test_idx),
            "accuracy": ev["accuracy"],
            "chance_majority": ev["chance_majority"],
            "chance_uniform": ev["chance_uniform"],
            "p_value_permutation": ev["p_value_permutation"],
        }
    accs = [v["accuracy"] for v in out["subjects"].values()]
    out["mean_accuracy"] = float(np.mean(accs))
    return out


def _add_loso(path: Path, loso: dict[str, Any]) -> None:
    rows = [
        "",
        "## Leave-one-subject-out (retrained per held-out subject)",
        "",
        f"Each fold trains the run's config on the other subjects for a fixed {loso['epochs']} epochs (the run's best "
        "epoch count; no early stopping, nothing selected on the held-out subject), normalisation from the training "
        "subjects only.",
        "",
        "| held-out subject | train epochs | test epochs | accuracy | chance (majority / 1/n) | permutation p |",
        "| --- | --- | --- | --- | --- | --- |",
        *(f"| {s} | {v['n_train']} | {v['n_test']} | {100 * v['accuracy']:.1f}% | "
          f"{100 * v['chance_majority']:.1f}% / {100 * v['chance_uniform']:.1f}% | {v['p_value_permutation']:.3g} |"
          for s, v in loso["subjects"].items()),
        "",
        f"Mean held-out-subject accuracy: {100 * loso['mean_accuracy']:.1f}%.",
        "",
    ]  # fmt: skip
    path.write_text(path.read_text().rstrip("\n") + "\n" + "\n".join(rows))


__all__ = ["TEST_NOTE", "VALIDATION_NOTE", "evaluate_run", "headline", "leave_one_subject_out"]
