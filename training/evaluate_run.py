"""``bci-train evaluate RUN``: honest evaluation of a finished run folder (``training.runs.fit_run``).

The run's data are rebuilt exactly as :func:`training.runs.fit_run` cut them: the saved ``RUN/config.toml`` is read
by :func:`training.runs.load_config`, the recordings by ``training.runs._load_data``, epochs by
:func:`training.fit.cut_epochs` and the split by :func:`training.fit.split_by_group` with the config's seed and
validation fraction; normalisation is fitted on the training split only (the same statistics as the card's). The
best model (``RUN/model.pt``, :func:`training.runs.load_run_model`) predicts the **validation** split.

That split also chose the epoch (early stopping on the validation loss), so its accuracy is optimistic; it is not a
test result. The report says so in its first lines (after the confound warning, when there is one).

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

from .runs import ConfigError

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
        return [f"subject {d.synth.subject}, session seed {seed}" for seed in d.synth.seeds]
    assert d.recordings is not None
    return [Path(p).name for p in d.recordings]


def evaluate_run(run: str | Path, *, n_permutations: int = 1000) -> dict[str, Any]:
    """Evaluate the best model of the finished run ``run`` on its validation split; write ``RUN/evaluation.md``.

    Returns :func:`training.evaluate.evaluate`'s results plus ``report`` (the Markdown path), ``split`` and
    ``note`` (the validation-split warning).
    """
    import torch

    from bci_stream.card import Preprocessing
    from bci_stream.signal import fit_channel_normalization, normalize

    from .evaluate import evaluate, write_report
    from .fit import cut_epochs, predict_logits, split_by_group
    from .runs import _load_data, load_config, load_run_model

    run = Path(run)
    if not (run / "config.toml").is_file():
        raise ConfigError(f"{run}: not a run folder (no config.toml)")
    config = load_config(run / "config.toml")
    model, card = load_run_model(run)
    d, tr = config.data, config.train
    if tr.threads is not None:
        torch.set_num_threads(tr.threads)

    # ---- the data, as fit_run cut and split them (its own functions, its own config)
    recordings, _teacher = _load_data(config)
    spec = card.input
    cp = card.preprocessing
    prep = Preprocessing(bandpass=cp.bandpass, notch=cp.notch, filter=cp.filter)  # as fit_run: no normalisation
    data = cut_epochs(recordings, spec, prep, events=d.events, label_regex=d.label_regex,
                      image_regex=d.image_regex or None)  # fmt: skip
    classes = list(card.provenance["labels"]["classes"])  # type: ignore[index]
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(data.labels) - set(index))
    if unknown:
        raise ConfigError(f"{run}: labels {unknown[:5]} are not among the run's classes")
    y = np.array([index[label] for label in data.labels], dtype=np.int64)
    train_idx, val_idx = split_by_group(data.groups, data.labels, val_fraction=tr.val_fraction, seed=tr.seed)
    if len(val_idx) == 0:
        raise ConfigError(f"{run}: the validation split is empty")
    norm = fit_channel_normalization(data.X[train_idx])  # training split only, as in fit_run
    saved = card.preprocessing.normalization
    if saved.kind == "channel" and not np.allclose(norm.mean, saved.mean, rtol=1e-6, atol=0):  # type: ignore[arg-type]
        raise ConfigError(f"{run}: the rebuilt training split does not match the run's (normalisation differs)")
    X = normalize(data.X, norm).astype(np.float32)

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

    logits = predict_logits(model, X[val_idx], threads=None)
    results = evaluate(
        y.tolist(), blocks.tolist(), X=data.X, logits=logits, test_index=val_idx.tolist(), classes=classes, subjects=subjects, order=order.tolist(),
        sfreq=spec.sfreq, dataset=f"Run {run.name}: validation split (optimistic: also used for early stopping)",
        n_permutations=n_permutations, seed=tr.seed,
    )  # fmt: skip
    results.update(
        {
            "run": str(run),
            "split": f"validation (by {data.split_unit}, {len(train_idx)} train / {len(val_idx)} validation epochs)",
            "note": VALIDATION_NOTE,
            "n_recordings": len(recordings),
            "student": card.provenance.get("student"),
            "best_epoch": dict(card.provenance.get("metrics") or {}).get("best_epoch"),  # type: ignore[call-overload]
        }
    )
    path = write_report(run / "evaluation.md", results)
    _add_note(path, results, several)
    results["report"] = str(path)
    path.with_suffix(".json").write_text(json.dumps(results, indent=2, default=_jsonable))
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
    lines = [
        "## Validation predictions (the split that chose the epoch: optimistic)" if line == "## Test predictions"
        else line
        for line in lines
    ]  # fmt: skip
    path.write_text("\n".join(lines))


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The numbers ``bci-train evaluate RUN`` prints."""
    p = results["predictions"]
    out = {
        "report": results.get("report"),
        "split": "validation (also used for early stopping: optimistic)",
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
    return out


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


__all__ = ["VALIDATION_NOTE", "evaluate_run", "headline"]
