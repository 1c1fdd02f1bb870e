"""EEG-ImageNet (``eeg_*_std.pth``) reader and leak-checked split builders (METHODS.md, "Data formats").

The file is a ``torch.save`` dict:

* ``dataset``: list of ``{"eeg": Tensor[128, L], "image": int, "label": int, "subject": int}``
* ``labels``: the 40 WordNet ids (``label`` indexes it); ``images``: image names ``<wnid>_<n>`` (``image`` indexes it)
* optional ``means``, ``stddevs`` (ignored: we fit normalisation on the training split only).

Trials with ``450 ≤ L ≤ 600`` are kept; samples ``[tmin_samples, tmin_samples + n_times)`` are cut (the released
loader drops 20, the later paper 40: default 40, a parameter). Arrays come out NTC, ``X`` (n, 440, 128) float32.

Blocks: the recordings used a block design, all images of a class shown in one block per subject, so the block id is
``(subject, label)`` unless a trial carries a ``"block"`` entry (an extension of the format, not in the public files).
The session order (time-in-session) is the file order within each subject unless a trial carries ``"order"``.

Every split builder asserts that no trial, image or block lands in two parts (:class:`SplitLeakError` names the
offending ids); the exception is leave-one-subject-out, where all subjects saw the same images by protocol (images
are checked only with ``check_images=True``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MIN_LEN, MAX_LEN = 450, 600
N_TIMES = 440
DEFAULT_TMIN_SAMPLES = 40


class SplitLeakError(ValueError):
    """A split puts the same trial, image, block or subject into two parts (the message names them)."""


class EEGImageNetError(ValueError):
    """The file is not in the EEG-ImageNet format (the message says what is wrong)."""


@dataclass
class EEGImageNet:
    """Trials kept from one EEG-ImageNet file.

    ``X`` (n, n_times, n_chans) float32 NTC; ``y`` class index into ``classes``; ``images`` index into
    ``image_names``; ``subjects``; ``blocks`` (str ids, see module doc); ``order`` position in the subject's session;
    ``index`` position of each kept trial in the file's ``dataset`` list (what split files index).
    """

    X: np.ndarray
    y: np.ndarray
    images: np.ndarray
    subjects: np.ndarray
    blocks: np.ndarray
    order: np.ndarray
    index: np.ndarray
    classes: list[str]
    image_names: list[str]
    block_source: str
    n_dropped: int
    tmin_samples: int
    source: str

    def __len__(self) -> int:
        return len(self.y)

    @property
    def image_ids(self) -> np.ndarray:
        """Image names per trial (``<wnid>_<n>``)."""
        names = np.asarray(self.image_names, dtype=object)
        return names[self.images] if len(names) else self.images.astype(str)

    @property
    def design(self) -> str:
        """``"block design"`` when labels are constant within blocks, else ``"mixed blocks"``."""
        return "block design" if label_purity(self.y, self.blocks) >= 0.9 else "mixed blocks"

    def subset(self, idx: np.ndarray) -> EEGImageNet:
        idx = np.asarray(idx)
        return EEGImageNet(
            X=self.X[idx], y=self.y[idx], images=self.images[idx], subjects=self.subjects[idx],
            blocks=self.blocks[idx], order=self.order[idx], index=self.index[idx], classes=self.classes,
            image_names=self.image_names, block_source=self.block_source, n_dropped=self.n_dropped,
            tmin_samples=self.tmin_samples, source=self.source,
        )  # fmt: skip


def label_purity(y: Sequence[Any] | np.ndarray, blocks: Sequence[Any] | np.ndarray) -> float:
    """Share of trials whose label is their block's most common label (1.0: labels constant within blocks)."""
    y, blocks = np.asarray(y), np.asarray(blocks)
    if len(y) == 0:
        return 0.0
    total = 0
    for b in np.unique(blocks):
        _, counts = np.unique(y[blocks == b], return_counts=True)
        total += int(counts.max())
    return total / len(y)


def _torch_load(path: str | Path) -> Any:
    """A ``.pth`` file through torch's restricted unpickler (tensors, numbers, strings, lists, dicts only).

    The released files need nothing more; a file that asks for any other global is refused with
    :class:`EEGImageNetError` before anything in it runs.
    """
    import pickle  # only for its exception type: torch.load(weights_only=True) does the unpickling

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        reason = next((line for line in lines if "unsupported" in line.lower()), lines[0] if lines else "")
        raise EEGImageNetError(
            f"refused to load {str(path)!r}: it holds more than tensors, numbers, strings, lists and dicts "
            f"({reason.strip()}); an EEG-ImageNet file needs nothing else, so it may be trying to run code"
        ) from None


def load_eeg_imagenet(
    path: str | Path,
    *,
    tmin_samples: int = DEFAULT_TMIN_SAMPLES,
    n_times: int = N_TIMES,
    min_len: int = MIN_LEN,
    max_len: int = MAX_LEN,
    subjects: Sequence[int] | None = None,
) -> EEGImageNet:
    """Read an EEG-ImageNet ``.pth`` file (with ``torch.load(weights_only=True)``: a file cannot run code).

    Keeps trials with ``min_len ≤ L ≤ max_len`` (and of ``subjects`` when given) that are long enough for the crop
    (with the default tmin of 40 samples, ``L ≥ 480``; shorter ones count as dropped), cuts
    ``[tmin_samples, tmin_samples + n_times)`` and returns NTC float32 arrays.
    """
    if tmin_samples < 0 or tmin_samples + n_times > max_len:
        raise ValueError(f"crop [{tmin_samples}, {tmin_samples + n_times}) does not fit trials of {max_len} samples")
    raw = _torch_load(path)
    if not isinstance(raw, Mapping) or "dataset" not in raw:
        raise EEGImageNetError(f"{path}: expected a dict with a 'dataset' list, got {type(raw).__name__}")
    classes = [str(c) for c in raw.get("labels", [])]
    image_names = [str(n) for n in raw.get("images", [])]
    keep_subjects = None if subjects is None else {int(s) for s in subjects}
    xs, ys, ims, subs, blocks, orders, index = [], [], [], [], [], [], []
    n_dropped = 0
    position: dict[int, int] = {}
    has_block = has_order = None
    for i, trial in enumerate(raw["dataset"]):
        try:
            eeg, label, image, subject = trial["eeg"], int(trial["label"]), int(trial["image"]), int(trial["subject"])
        except (KeyError, TypeError) as e:
            raise EEGImageNetError(f"{path}: dataset[{i}] lacks eeg/label/image/subject ({e})") from e
        pos = position.get(subject, 0)
        position[subject] = pos + 1
        eeg = np.asarray(eeg.numpy() if hasattr(eeg, "numpy") else eeg)
        if eeg.ndim != 2:
            raise EEGImageNetError(f"{path}: dataset[{i}]['eeg'] has shape {eeg.shape}, expected (channels, L)")
        if keep_subjects is not None and subject not in keep_subjects:
            continue
        if not max(min_len, tmin_samples + n_times) <= eeg.shape[1] <= max_len:
            n_dropped += 1
            continue
        if classes and not 0 <= label < len(classes):
            raise EEGImageNetError(f"{path}: dataset[{i}] label {label} outside the {len(classes)} labels")
        this_block, this_order = "block" in trial, "order" in trial
        if has_block is None:
            has_block, has_order = this_block, this_order
        if (has_block, has_order) != (this_block, this_order):
            raise EEGImageNetError(f"{path}: some trials have 'block'/'order' entries and others not (dataset[{i}])")
        xs.append(eeg[:, tmin_samples : tmin_samples + n_times].T.astype(np.float32))
        ys.append(label)
        ims.append(image)
        subs.append(subject)
        blocks.append(str(trial["block"]) if this_block else f"s{subject}/c{label}")
        orders.append(int(trial["order"]) if this_order else pos)
        index.append(i)
    if not xs:
        raise EEGImageNetError(f"{path}: no trial with {min_len} ≤ L ≤ {max_len} (dropped {n_dropped})")
    return EEGImageNet(
        X=np.stack(xs), y=np.asarray(ys, dtype=np.int64), images=np.asarray(ims, dtype=np.int64),
        subjects=np.asarray(subs, dtype=np.int64), blocks=np.asarray(blocks), order=np.asarray(orders),
        index=np.asarray(index, dtype=np.int64), classes=classes, image_names=image_names,
        block_source="file" if has_block else "subject×label (block design: one block per class and subject)",
        n_dropped=n_dropped, tmin_samples=tmin_samples, source=str(path),
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------------- splits


def assert_disjoint(parts: Mapping[str, np.ndarray], **units: Sequence[Any] | np.ndarray) -> None:
    """Raise :class:`SplitLeakError` if a trial, or any unit id (``images=…``, ``blocks=…``), is in two parts.

    ``parts`` maps part names to trial positions; each unit is an id per trial position.
    """
    arrays: dict[str, np.ndarray | None] = {"trial": None, **{k: np.asarray(v) for k, v in units.items()}}
    for unit, ids in arrays.items():
        seen: dict[Any, str] = {}
        for name, idx in parts.items():
            idx = np.asarray(idx, dtype=np.int64)
            values = (idx if ids is None else ids[idx]).tolist()
            leaks = sorted({v for v in values if seen.get(v, name) != name}, key=str)
            if leaks:
                shown = ", ".join(map(str, leaks[:10])) + (f" … ({len(leaks)} in all)" if len(leaks) > 10 else "")
                raise SplitLeakError(f"split leaks {unit}s between {seen[leaks[0]]!r} and {name!r}: {shown}")
            for v in values:
                seen.setdefault(v, name)


def load_splits(path: str | Path, data: EEGImageNet) -> list[dict[str, np.ndarray]]:
    """Read ``block_splits_by_image_all.pth`` (``{"splits": [{"train": [...], "val": [...], "test": [...]}]}``).

    The indices address the file's ``dataset`` list; they are mapped to positions in ``data`` (trials that
    ``data`` dropped, e.g. for length, are left out as the released loader does). Each split is asserted free of
    shared trials and images (it is a split by image); a leaking file is refused with :class:`SplitLeakError`.
    Read with ``torch.load(weights_only=True)``, like the data file.
    """
    raw = _torch_load(path)
    if not isinstance(raw, Mapping) or "splits" not in raw:
        raise EEGImageNetError(f"{path}: expected a dict with a 'splits' list")
    where = {int(orig): k for k, orig in enumerate(data.index)}
    out = []
    for s, split in enumerate(raw["splits"]):
        parts = {}
        for name, idx in split.items():
            idx = [int(i) for i in (idx.tolist() if hasattr(idx, "tolist") else idx)]
            parts[str(name)] = np.asarray([where[i] for i in idx if i in where], dtype=np.int64)
        # the trial check uses file indices too, so duplicates of dropped trials are caught as well
        file_parts = {k: np.asarray([int(i) for i in v], dtype=np.int64) for k, v in split.items()}
        try:
            assert_disjoint(file_parts)
            assert_disjoint(parts, image=data.image_ids)
        except SplitLeakError as e:
            raise SplitLeakError(f"{path}: split {s}: {e}") from None
        out.append(parts)
    return out


def split_by_image(
    images: Sequence[Any] | np.ndarray, labels: Sequence[Any] | np.ndarray, *, test_fraction: float = 0.3,
    val_fraction: float = 0.0, seed: int = 0,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Parts ``train`` / (``val``) / ``test``: whole images to one part, stratified by class; asserted disjoint."""
    images, labels = np.asarray(images), np.asarray(labels)
    rng = np.random.default_rng(seed)
    part_of: dict[Any, str] = {}
    for cls in np.unique(labels):
        members = np.unique(images[labels == cls])
        members = members[rng.permutation(len(members))]
        n_test = max(1, round(test_fraction * len(members))) if len(members) > 1 else 0
        n_val = round(val_fraction * len(members)) if val_fraction > 0 else 0
        for k, im in enumerate(members):
            part_of[im] = "test" if k < n_test else "val" if k < n_test + n_val else "train"
    which = np.array([part_of[im] for im in images])
    names = ["train", "val", "test"] if val_fraction > 0 else ["train", "test"]
    parts = {n: np.flatnonzero(which == n) for n in names}
    assert_disjoint(parts, image=images)
    return parts


def _merge_linked(blocks: np.ndarray, images: np.ndarray | None) -> np.ndarray:
    """Group id per trial: blocks that share an image are merged (so that no image crosses a block split)."""
    parent: dict[Any, Any] = {}

    def find(a: Any) -> Any:
        while parent.setdefault(a, a) != a:
            a = parent[a]
        return a

    if images is not None:
        first_block: dict[Any, Any] = {}
        for b, im in zip(blocks, images, strict=True):
            other = first_block.setdefault(im, b)
            parent[find(("b", b))] = find(("b", other))
    return np.array([str(find(("b", b))[1]) for b in blocks])


def split_by_block(
    blocks: Sequence[Any] | np.ndarray,
    images: Sequence[Any] | np.ndarray | None = None,
    *,
    n_folds: int = 5,
    seed: int = 0,
) -> list[dict[str, np.ndarray]]:
    """Block-wise cross-validation folds (``train``/``test``); blocks sharing an image are kept together.

    Asserted: no trial, block or image in both parts. On EEG-ImageNet (one block per class and subject, the same
    images for every subject) this holds out whole classes, which is exactly why its labels cannot be separated
    from its blocks.
    """
    blocks = np.asarray(blocks).astype(str)
    ims = None if images is None else np.asarray(images)
    groups = _merge_linked(blocks, ims)
    uniq = np.unique(groups)
    if len(uniq) < n_folds:
        raise ValueError(f"{len(uniq)} independent block groups, fewer than n_folds={n_folds}")
    rng = np.random.default_rng(seed)
    fold_of = {g: k % n_folds for k, g in enumerate(uniq[rng.permutation(len(uniq))])}
    fold = np.array([fold_of[g] for g in groups])
    out = []
    for k in range(n_folds):
        parts = {"train": np.flatnonzero(fold != k), "test": np.flatnonzero(fold == k)}
        units: dict[str, Any] = {"block": blocks}
        if ims is not None:
            units["image"] = ims
        assert_disjoint(parts, **units)
        out.append(parts)
    return out


def leave_one_subject_out(
    subjects: Sequence[Any] | np.ndarray,
    blocks: Sequence[Any] | np.ndarray | None = None,
    images: Sequence[Any] | np.ndarray | None = None,
    *,
    check_images: bool = False,
) -> list[tuple[Any, dict[str, np.ndarray]]]:
    """``(subject, {"train", "test"})`` per subject; asserted: no trial, subject or block in both parts.

    Images are shared across subjects by protocol; ``check_images=True`` also requires them disjoint.
    """
    subjects = np.asarray(subjects)
    out = []
    for s in np.unique(subjects):
        parts = {"train": np.flatnonzero(subjects != s), "test": np.flatnonzero(subjects == s)}
        units: dict[str, Any] = {"subject": subjects}
        if blocks is not None:
            units["block"] = np.asarray(blocks)
        if check_images and images is not None:
            units["image"] = np.asarray(images)
        assert_disjoint(parts, **units)
        out.append((s.item() if hasattr(s, "item") else s, parts))
    return out


# ------------------------------------------------------------------------------------------------------ synthetic


def synthetic_eeg_imagenet(
    *,
    design: str = "block",
    n_classes: int = 4,
    n_subjects: int = 2,
    images_per_class: int = 12,
    n_chans: int = 128,
    length: int = 500,
    stimulus: float = 0.0,
    drift: float = 0.5,
    block_size: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """A small dict in the EEG-ImageNet file format (``torch.save`` it), for tests and demonstrations.

    ``design="block"``: per subject, the class blocks follow one another (one trial per image) and no block entry
    is written (the reader assumes subject × label). ``design="interleaved"``: trials in random order, with a
    ``"block"`` entry per trial naming runs of ``block_size`` consecutive trials. Every trial gets unit white noise
    plus a slow drift (a random walk over the session, step ``drift``, one pattern over channels per trial) and,
    when ``stimulus`` > 0, a class-specific evoked response (spatial pattern × 100-sample bump) of that amplitude.
    """
    import torch

    if design not in ("block", "interleaved"):
        raise ValueError(f"design must be 'block' or 'interleaved', got {design!r}")
    rng = np.random.default_rng(seed)
    wnids = [f"n{10000000 + 1000 * c:08d}" for c in range(n_classes)]
    image_names = [f"{w}_{k + 1}" for w in wnids for k in range(images_per_class)]
    patterns = rng.standard_normal((n_classes, n_chans)).astype(np.float32)
    t = np.arange(length)
    bump = np.exp(-0.5 * ((t - 190) / 30.0) ** 2).astype(np.float32)
    dataset = []
    for subject in range(1, n_subjects + 1):
        trials = [(c, c * images_per_class + k) for c in range(n_classes) for k in range(images_per_class)]
        if design == "block":
            classes = rng.permutation(n_classes)
            trials = [(c, c * images_per_class + k) for c in classes for k in rng.permutation(images_per_class)]
        else:
            trials = [trials[i] for i in rng.permutation(len(trials))]
        walk = np.cumsum(rng.standard_normal((len(trials), n_chans)) * drift, axis=0).astype(np.float32)
        for pos, (c, image) in enumerate(trials):
            eeg = rng.standard_normal((n_chans, length)).astype(np.float32) + walk[pos][:, None]
            if stimulus:
                eeg += stimulus * patterns[c][:, None] * bump[None, :]
            trial = {"eeg": torch.from_numpy(eeg), "image": int(image), "label": int(c), "subject": subject}
            if design == "interleaved":
                trial["block"] = f"s{subject}/run{pos // block_size}"
            dataset.append(trial)
    return {"dataset": dataset, "labels": wnids, "images": image_names}
