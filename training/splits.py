"""The train / validation / test split of labelled epochs, shared by ``bci-train fit`` (``[data] split``) and
``bci-train distil`` (``--split``): the unit no two parts share (image, recording, block or, warned as leaky, trial),
its default, the refusals of impossible splits, and the split itself (asserted disjoint, and refused when it leaves a
class out of a part: :func:`check_class_coverage`).

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
    ``image_regex`` the image-id pattern's setting (``image_setting`` in full), ``test`` what asks for a test split; ``judged`` which
    accuracy a by-trial split makes optimistic (in :attr:`leak`, the note such a split carries); ``strict`` the setting that refuses leaks (and so a by-trial split); ``seed`` the setting
    that seeds which units go to which part."""

    key: str
    setting: str
    choose: str
    image_regex: str
    image_setting: str
    test: str
    judged: str  # which accuracy a by-trial split makes optimistic
    strict: str
    seed: str

    def set_to(self, value: str | None) -> str:
        return self.setting.format(value)

    @property
    def leak(self) -> str:
        return (
            f"leaky: trials of one recording are not independent (they share slow drifts and blocks), so {self.judged} "
            f"optimistic; choose {self.set_to('by-recording')} or {self.set_to('by-block')}"
        )

    def choice(self, *values: str) -> str:
        return " or ".join(self.choose.format(v) for v in values)


#: ``bci-train fit --config``: ``[data] split``.
CONFIG_OPTION = SplitOption(
    key="[data] split", setting="[data] split = {!r}", choose="split = {!r}", image_regex="image_regex",
    image_setting="[data] image_regex", test="[train] test_fraction > 0",
    judged="validation and test accuracy are",
    strict="[data] strict = true", seed="[train] seed",
)  # fmt: skip
#: ``bci-train distil``: ``--split``.
CLI_OPTION = SplitOption(
    key="--split", setting="--split {}", choose="--split {}", image_regex="--image-regex",
    image_setting="--image-regex", test="a test split",
    judged="the validation accuracy is",
    strict="--strict", seed="--seed",
)  # fmt: skip
#: :func:`training.fit.train_student` called from Python: its ``split`` argument.
API_OPTION = SplitOption(
    key="split", setting="split={!r}", choose="split={!r}", image_regex="image_regex",
    image_setting="image_regex", test="a test split",
    judged="the validation accuracy is",
    strict="strict=True", seed="seed",
)  # fmt: skip


@dataclass(frozen=True)
class SplitPlan:
    """How epochs are split: ``name`` (a :data:`SPLITS` value), the unit id of every epoch, why this split (the
    setting or the default's reason) and, for a leaky split, the note recorded with the run or model; ``key`` (the
    source and the setting with its value) and ``option`` name the split in the refusals of :meth:`parts`."""

    name: str
    groups: list[str]
    chosen: str
    leak: str | None = None
    key: str = ""
    option: SplitOption = CONFIG_OPTION

    @property
    def unit(self) -> str:
        return self.name.removeprefix("by-")

    def parts(
        self, labels: list[str], *, val_fraction: float, seed: int, test_fraction: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Indices (train, validation, test) of this plan's units (:func:`split_parts`); refusals name ``key``."""
        return split_parts(self.groups, labels, self.unit, val_fraction=val_fraction, seed=seed,
                           test_fraction=test_fraction, key=self.key or None, option=self.option)  # fmt: skip

    def info(self, parts: dict[str, np.ndarray], labels: list[str]) -> dict[str, Any]:
        """What ``metrics.json`` and the card record: the split, its unit, why, group counts per part, epochs per
        class per part (:func:`class_counts`), leak."""
        counts = {name: len({self.groups[int(i)] for i in idx}) for name, idx in parts.items()}
        return {"split": self.name, "unit": self.unit, "chosen": self.chosen, "groups": counts,
                "classes": class_counts(labels, parts), "leaky": self.leak}  # fmt: skip


def class_counts(labels: list[str], parts: dict[str, np.ndarray]) -> dict[str, dict[str, int]]:
    """Epochs of every class (all classes of ``labels``, sorted; 0 where a part has none) in each part of ``parts``
    (part name → epoch indices), as ``split.json``, ``metrics.json`` and the card record them."""
    classes = sorted(set(labels))
    out: dict[str, dict[str, int]] = {}
    for name, idx in parts.items():
        per = dict.fromkeys(classes, 0)
        for i in idx:
            per[labels[int(i)]] += 1
        out[name] = per
    return out


def leaky_refusal(key: str, option: SplitOption) -> ConfigError:
    """The error that refuses a by-trial (leaky) split under ``option.strict``: one message for ``[data] strict``,
    ``--strict`` and ``train_student(strict=True)``. ``key`` names the source and the split setting."""
    return ConfigError(
        f"{key}: refusing a leaky split ({option.strict}): trials of one recording are not independent (they "
        f"share slow drifts and blocks), so held-out accuracy would be optimistic; choose "
        f"{option.choice('by-recording')} (whole recordings, 2+; 3+ with a test split), "
        f"{option.choice('by-block')} (runs of same-class trials) or {option.choice('by-image')} (markers with "
        f"image ids, {option.image_setting}), or leave out {option.strict} to train on it with a warning"
    )


def check_class_coverage(
    labels: list[str],
    groups: list[str],
    parts: dict[str, np.ndarray],
    unit: str,
    *,
    key: str | None = None,
    option: SplitOption = CONFIG_OPTION,
) -> None:
    """Refuse a split that leaves a class out of one of its ``parts``.

    A class missing from validation (or test) is missing from the accuracy that picks the epoch and goes on the card,
    and the chance level reported with it (1/k or the majority rate) is not that of the classes evaluated; a class
    missing from training cannot be learnt. No part may lack a class, whatever the split.

    Parameters
    ----------
    labels, groups
        The class and the split unit (image, recording, block, trial id) of every epoch.
    parts
        Part name (``train``, ``validation`` and, when there is one, ``test``) → epoch indices.
    unit
        The split unit's name (``recording``, ...): the split is ``by-UNIT``.
    key, option
        How the message names the source and the split setting (default ``split by UNIT``), and the settings it
        suggests (:class:`SplitOption`: ``[data] split`` / ``[train] seed``, ``--split`` / ``--seed``, ...).

    Raises
    ------
    ConfigError
        Naming ``key``, each missing class and the part it is missing from (and where its epochs are), the epochs
        per class in every part, and what to do: more recordings (when a class has fewer units than there are
        parts, no seed can help), another split, or, split by whole recordings (not stratified by class), another
        seed.
    """
    counts = class_counts(labels, parts)
    missing = {part: [c for c, n in per.items() if n == 0] for part, per in counts.items()}
    missing = {part: cs for part, cs in missing.items() if cs}
    if not missing:
        return
    key = key or f"split by {unit}"
    name = f"by-{unit}"
    absent = sorted({c for cs in missing.values() for c in cs})
    n_units = {c: len({g for g, y in zip(groups, labels, strict=True) if y == c}) for c in absent}

    def held(c: str) -> str:
        return " and ".join(f"{part} ({per[c]})" for part, per in counts.items() if per[c])

    where = "; ".join(f"class {c!r} is not in {part} (its epochs are all in {held(c)})"
                      for part, cs in missing.items() for c in cs)  # fmt: skip
    shown = "; ".join(f"{part} " + ", ".join(f"{c!r} {n}" for c, n in per.items()) for part, per in counts.items())
    few = [c for c in absent if n_units[c] < len(parts)]
    todo = []
    if few:
        more = "that hold it" if unit == "recording" else f"(more {unit}s of it)"
        todo.append(", ".join(f"{c!r} is in only {n_units[c]} {unit}(s)" for c in few)
                    + f" for {len(parts)} parts: give more recordings {more}")  # fmt: skip
    else:
        todo.append("give more recordings")
    others = [s for s in ("by-recording", "by-block", "by-image") if s != name]
    todo.append(f"choose another split ({option.choice(*others)})")
    if unit == "recording" and not few:  # whole recordings, not stratified by class: the seed picks which
        todo.append(f"try another seed ({option.seed}): it picks which recordings are held out")
    raise ConfigError(
        f"{key} leaves a class out of a part: {where}; the accuracy and chance level of that part would leave it out "
        f"(epochs per class: {shown}); {', '.join(todo[:-1])} or {todo[-1]}"
    )


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
        return SplitPlan(name, list(data.groups), chosen, key=key, option=option)
    if name == "by-recording":
        groups = [names[int(r)] for r in rec]
        if n_rec < need:
            raise ConfigError(
                f"{key} needs at least {need} recordings ({parts} each take whole recordings), got {n_rec}; "
                f"choose {option.choice('by-block')} (runs of same-class trials) or give more recordings"
            )
        return SplitPlan(name, groups, chosen, key=key, option=option)
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
        return SplitPlan(name, groups, chosen, key=key, option=option)
    if strict:
        raise leaky_refusal(key, option)
    counter: dict[int, int] = {}
    groups = []
    for r in rec.tolist():
        groups.append(f"trial{r}:{counter.get(r, 0)}")
        counter[r] = counter.get(r, 0) + 1
    log.warning("%s: %s", key, option.leak)
    return SplitPlan(name, groups, chosen, leak=option.leak, key=key, option=option)


def split_parts(
    groups: list[str],
    labels: list[str],
    unit: str = "image",
    *,
    val_fraction: float,
    seed: int,
    test_fraction: float = 0.0,
    key: str | None = None,
    option: SplitOption = CONFIG_OPTION,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (train, validation, test), by group (``unit``: image, block, trial or recording), chosen before any
    training.

    Single-class groups are split stratified by class (:func:`training.fit.split_by_group`); recordings, which hold
    every class, as whole groups (:func:`training.fit.split_whole_groups`). With ``test_fraction`` > 0 the test
    groups are drawn first (seed + 1), then the rest is split into train / validation exactly as without a test
    split. Asserts that no group is in two parts, and refuses (:func:`check_class_coverage`, naming ``key`` and
    ``option``'s settings) a split that leaves a class out of a part: every class must be in train, validation and,
    with ``test_fraction``, test.
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
    covered = {"train": train_idx, "validation": val_idx, **({"test": test_idx} if test_fraction > 0 else {})}
    check_class_coverage(labels, groups, covered, unit, key=key, option=option)
    return train_idx, val_idx, test_idx


__all__ = [
    "API_OPTION", "CLI_OPTION", "CONFIG_OPTION", "SPLITS", "SplitOption", "SplitPlan", "check_class_coverage",
    "class_counts", "leaky_refusal", "plan", "split_parts",
]  # fmt: skip
