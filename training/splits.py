"""The train / validation / test split of labelled epochs, shared by ``bci-train fit`` (``[data] split``) and
``bci-train distil`` (``--split``): the unit no two parts share (image, recording, block or, warned as leaky, trial),
its default, the refusals of impossible splits, and the split itself (asserted disjoint).

Kept apart from :mod:`training.runs` (config runs) and :mod:`training.fit` (``train_student``) so both use one
implementation; only the words of messages differ (:class:`SplitOption`: the config key or the command-line option).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bci_stream.errors import ConfigError

from .errors import TrainingDataError

log = logging.getLogger(__name__)

#: Split values: the unit that no two parts (train / validation / test) share.
SPLITS = ("by-image", "by-recording", "by-block", "by-trial")


@dataclass(frozen=True)
class SplitOption:
    """How messages name the split setting: ``setting`` formats the key with a value, ``choose`` a value to choose,
    ``image_regex`` the image-id pattern's setting (``image_setting`` in full), ``test`` what asks for a test split; ``leak`` is the note a
    by-trial split carries; ``strict`` the setting that refuses leaks (and so a by-trial split)."""

    key: str
    setting: str
    choose: str
    image_regex: str
    image_setting: str
    test: str
    leak: str
    strict: str

    def set_to(self, value: str) -> str:
        return self.setting.format(value)

    def choice(self, *values: str) -> str:
        return " or ".join(self.choose.format(v) for v in values)


#: ``bci-train fit --config``: ``[data] split``.
CONFIG_OPTION = SplitOption(
    key="[data] split", setting="[data] split = {!r}", choose="split = {!r}", image_regex="image_regex",
    image_setting="[data] image_regex", test="[train] test_fraction > 0",
    leak="leaky: trials of one recording are not independent (they share slow drifts and blocks), so validation and "
         "test accuracy are optimistic; choose [data] split = 'by-recording' or 'by-block'",
    strict="[data] strict = true",
)  # fmt: skip
#: ``bci-train distil``: ``--split``.
CLI_OPTION = SplitOption(
    key="--split", setting="--split {}", choose="--split {}", image_regex="--image-regex",
    image_setting="--image-regex", test="a test split",
    leak="leaky: trials of one recording are not independent (they share slow drifts and blocks), so the validation "
         "accuracy is optimistic; choose --split by-recording or --split by-block",
    strict="--strict",
)  # fmt: skip
#: :func:`training.fit.train_student` called from Python: its ``split`` argument.
API_OPTION = SplitOption(
    key="split", setting="split={!r}", choose="split={!r}", image_regex="image_regex",
    image_setting="image_regex", test="a test split",
    leak="leaky: trials of one recording are not independent (they share slow drifts and blocks), so the validation "
         "accuracy is optimistic; choose split='by-recording' or split='by-block'",
    strict="strict=True",
)  # fmt: skip


@dataclass(frozen=True)
class SplitPlan:
    """How epochs are split: ``name`` (a :data:`SPLITS` value), the unit id of every epoch, why this split (the
    setting or the default's reason) and, for a leaky split, the note recorded with the run or model."""

    name: str
    groups: list[str]
    chosen: str
    leak: str | None = None

    @property
    def unit(self) -> str:
        return self.name.removeprefix("by-")

    def info(self, parts: dict[str, np.ndarray]) -> dict[str, Any]:
        """What ``metrics.json`` and the card record: the split, its unit, why, group counts per part, leak."""
        counts = {name: len({self.groups[int(i)] for i in idx}) for name, idx in parts.items()}
        return {"split": self.name, "unit": self.unit, "chosen": self.chosen, "groups": counts, "leaky": self.leak}


def _recording_names(sources: list[str]) -> list[str]:
    names = [Path(s).name for s in sources]
    return names if len(set(names)) == len(names) else [f"{i}:{n}" for i, n in enumerate(names)]


def plan(
    data: Any,
    split: str | None,
    *,
    image_regex: str | None,
    test: bool = False,
    option: SplitOption = CONFIG_OPTION,
    source: str = "run config",
    strict: bool = False,
) -> SplitPlan:
    """The split unit of every epoch of ``data`` (:class:`training.fit.LabelledEpochs`) for ``split``, or the
    default: by image when the markers carry image ids, else by recording with at least 3 recordings, else by block
    (runs of consecutive same-class trials in each recording, :func:`training.crossval.same_class_runs`) — never
    silently by trial.

    Raises :class:`ConfigError` (naming ``option``, the value, the number of groups and what to choose instead) when
    the split cannot give every part (train, validation and, with ``test``, test) its own groups; a by-trial split
    is logged as a warning and carries ``option.leak`` — or, with ``strict`` (real recordings under ``option.strict``),
    is refused with a :class:`ConfigError` naming ``option.key`` and the leak-free splits.
    """
    from .crossval import same_class_runs

    if split is not None and split not in SPLITS:
        raise ConfigError(f"{source}: {option.key} {split!r} is not a split; choose one of {', '.join(SPLITS)}")
    rec = data.recording if data.recording is not None else np.zeros(len(data.labels), dtype=np.int64)
    names = _recording_names(data.sources)
    n_rec = len(set(rec.tolist()))
    if split is not None:
        name, chosen = split, option.key
    elif data.split_unit == "image":
        name, chosen = "by-image", f"default: the markers carry image ids ({option.image_setting})"
    elif n_rec >= 3:
        name, chosen = "by-recording", f"default: no image ids, {n_rec} recordings"
    else:
        name, chosen = "by-block", f"default: no image ids, {n_rec} recording(s) (by-recording needs 3)"
    need = 3 if test else 2
    parts = f"train, validation and test ({option.test})" if need == 3 else "train and validation"
    key = f"{source}: {option.set_to(name)}" + ("" if split is not None else " (the default)")
    if name == "by-image":
        if data.split_unit != "image":
            raise ConfigError(f"{key}: {option.image_regex} {image_regex!r} matches no marker, so there are no image "
                              f"ids; fix {option.image_regex} or choose {option.choice('by-recording', 'by-block')}")  # fmt: skip
        return SplitPlan(name, list(data.groups), chosen)
    if name == "by-recording":
        groups = [names[int(r)] for r in rec]
        if n_rec < need:
            raise ConfigError(
                f"{key} needs at least {need} recordings ({parts} each take whole recordings), got {n_rec}; "
                f"choose {option.choice('by-block')} (runs of same-class trials) or give more recordings"
            )
        return SplitPlan(name, groups, chosen)
    if name == "by-block":
        blocks = same_class_runs(np.asarray(data.labels), rec)
        groups = [f"{names[int(r)]}#block{int(b)}" for r, b in zip(rec, blocks, strict=True)]
        per_class = {c: len({g for g, y in zip(groups, data.labels, strict=True) if y == c})
                     for c in sorted(set(data.labels))}  # fmt: skip
        cls, fewest = min(per_class.items(), key=lambda kv: kv[1])
        if fewest < need:
            by_rec = option.choice("by-recording")
            other = by_rec if n_rec >= need else f"{need} or more recordings with {by_rec}"
            raise ConfigError(
                f"{key} needs at least {need} blocks of every class ({parts} each take whole blocks), but class "
                f"{cls!r} has {fewest} (of {len(set(groups))} blocks in {n_rec} recording(s)); choose {other}"
            )
        return SplitPlan(name, groups, chosen)
    if strict:
        raise ConfigError(
            f"{key}: refusing a leaky split ({option.strict}): trials of one recording are not independent (they "
            f"share slow drifts and blocks), so held-out accuracy would be optimistic; choose "
            f"{option.choice('by-recording')} (whole recordings, 2+; 3+ with a test split), "
            f"{option.choice('by-block')} (runs of same-class trials) or {option.choice('by-image')} (markers with "
            f"image ids, {option.image_setting}), or leave out {option.strict} to train on it with a warning"
        )
    counter: dict[int, int] = {}
    groups = []
    for r in rec.tolist():
        groups.append(f"trial{r}:{counter.get(r, 0)}")
        counter[r] = counter.get(r, 0) + 1
    log.warning("%s: %s", key, option.leak)
    return SplitPlan(name, groups, chosen, leak=option.leak)


def split_parts(
    groups: list[str],
    labels: list[str],
    unit: str = "image",
    *,
    val_fraction: float,
    seed: int,
    test_fraction: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (train, validation, test), by group (``unit``: image, block, trial or recording), chosen before any
    training.

    Single-class groups are split stratified by class (:func:`training.fit.split_by_group`); recordings, which hold
    every class, as whole groups (:func:`training.fit.split_whole_groups`). With ``test_fraction`` > 0 the test
    groups are drawn first (seed + 1), then the rest is split into train / validation exactly as without a test
    split. Asserts that no group is in two parts.
    """
    from .fit import split_by_group, split_whole_groups

    def split(gs: list[str], ls: list[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if unit == "recording":
            return split_whole_groups(gs, val_fraction=fraction, seed=seed)
        return split_by_group(gs, ls, val_fraction=fraction, seed=seed)

    if test_fraction > 0:
        rest, test_idx = split(groups, labels, test_fraction, seed + 1)
        sub_t, sub_v = split([groups[i] for i in rest], [labels[i] for i in rest], val_fraction, seed)
        train_idx, val_idx = rest[sub_t], rest[sub_v]
        if len(test_idx) == 0:
            raise TrainingDataError(f"the test split is empty: every class needs at least two {unit}s")
    else:
        train_idx, val_idx = split(groups, labels, val_fraction, seed)
        test_idx = np.zeros(0, dtype=np.int64)
    if len(val_idx) == 0:
        raise TrainingDataError(f"the validation split is empty: every class needs at least two {unit}s")
    parts = [{groups[i] for i in idx} for idx in (train_idx, val_idx, test_idx)]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        overlap = parts[a] & parts[b]
        assert not overlap, f"split leaks {unit}s into two parts: {sorted(overlap)[:5]}"
    return train_idx, val_idx, test_idx


__all__ = ["API_OPTION", "CLI_OPTION", "CONFIG_OPTION", "SPLITS", "SplitOption", "SplitPlan", "plan", "split_parts"]
