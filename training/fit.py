"""Train a student on recordings, optionally distilling a teacher, and describe it in a model card.

The data path is the daemon's: epochs are cut and causally filtered by :func:`bci_stream.pipeline.epochs_from_recording`
and normalised by :func:`bci_stream.signal.normalize` with statistics fitted on the training split only. The split is
by image (every trial of an image lands on one side; without image ids, by trial) unless ``split`` names the unit
(:mod:`training.splits`: image, recording, block, trial), stratified by class, and asserted disjoint. No model
selection happens on the validation split: the model after the last epoch is the model. Training goes through the one
loop (:func:`training.loop.fit_model`, ``name="distil"``) in its ``"generator"`` batch order.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bci_stream.card import InputSpec, ModelCard, Normalization, OutputSpec, Preprocessing
from bci_stream.epochs import Marker
from bci_stream.pipeline import epochs_from_recording
from bci_stream.recordings import Recording, read_recording
from bci_stream.signal import fit_channel_normalization, normalize

from .errors import SettingError, TrainingDataError
from .teachers import PrecomputedTeacher, TeacherError

if TYPE_CHECKING:
    from .splits import SplitPlan

log = logging.getLogger(__name__)

DEFAULT_EVENTS = r"^stim/"
DEFAULT_LABEL_REGEX = r"stim/(?P<label>[^/]+)/"
DEFAULT_IMAGE_REGEX = r"stim/[^/]+/(?P<image>[^/]+)"


# ------------------------------------------------------------------------------------------------------- data


@dataclass
class LabelledEpochs:
    """Epochs cut by the daemon's pipeline: ``X`` (n, n_times, n_chans) float64, filtered, not normalised."""

    X: np.ndarray
    labels: list[str]
    groups: list[str]  # image ids (or trial ids): the unit of the split
    markers: list[Marker]
    split_unit: str  # "image" or "trial"
    n_dropped: int
    sources: list[str]
    recording: np.ndarray | None = None  # index into ``sources`` of each epoch's recording


def _group(pattern: re.Pattern[str], value: str, name: str) -> str | None:
    m = pattern.search(value)
    if m is None:
        return None
    if name in pattern.groupindex:
        return m.group(name)
    return m.group(1) if pattern.groups else m.group(0)


def cut_epochs(
    recordings: Sequence[Recording],
    input_spec: InputSpec,
    prep: Preprocessing,
    *,
    events: str | None,
    label_regex: str,
    image_regex: str | None = DEFAULT_IMAGE_REGEX,
) -> LabelledEpochs:
    """Cut, filter and label the epochs of every recording.

    ``label_regex`` must match every marker that ``events`` selects (named group ``label``, else group 1).
    ``image_regex`` (group ``image``) gives the unit of the train/validation split; when it matches no marker at
    all (or is None) each trial is its own unit. Matching only some markers is an error.
    """
    label_re = re.compile(label_regex)
    image_re = re.compile(image_regex) if image_regex else None
    xs, labels, images, markers, trial_ids, rec_of = [], [], [], [], [], []
    n_dropped = 0
    for r_index, rec in enumerate(recordings):
        es = epochs_from_recording(rec, input_spec, prep, events=events)
        n_dropped += len(es.drops)
        for i, marker in enumerate(es.markers):
            label = _group(label_re, marker.value, "label")
            if label is None:
                raise TrainingDataError(
                    f"{rec.source}: marker {marker.value!r} matches events {events!r} but not the label regex "
                    f"{label_regex!r}"
                )
            labels.append(label)
            images.append(_group(image_re, marker.value, "image") if image_re else None)
            trial_ids.append(f"trial{r_index}:{i}")
            rec_of.append(r_index)
            markers.append(marker)
        xs.append(es.X)
    if not labels:
        raise TrainingDataError("no epochs could be cut from the recordings")
    have_image = [im is not None for im in images]
    if all(have_image):
        groups, unit = [str(im) for im in images], "image"
    elif not any(have_image):
        if image_re is not None:
            # which split is then used (by recording, by block, or by trial when asked) is training.splits' choice
            log.info("image regex %r matches no marker: no image ids to split by", image_regex)
        groups, unit = trial_ids, "trial"
    else:
        bad = next(m.value for m, ok in zip(markers, have_image, strict=True) if not ok)
        raise TrainingDataError(f"image regex {image_regex!r} matches some markers but not {bad!r}")
    return LabelledEpochs(
        X=np.concatenate(xs),
        labels=labels,
        groups=groups,
        markers=markers,
        split_unit=unit,
        n_dropped=n_dropped,
        sources=[r.source for r in recordings],
        recording=np.asarray(rec_of, dtype=np.int64),
    )


def split_by_group(
    groups: Sequence[str], labels: Sequence[str], *, val_fraction: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation): whole groups (images) go to one side, stratified by class.

    Each class with at least two groups puts ``round(val_fraction × n_groups)`` (at least one) of them into
    validation. Raises if a group carries two labels; asserts that no group is on both sides.
    """
    if not 0 < val_fraction < 1:
        raise SettingError(f"val_fraction must be in (0, 1), got {val_fraction}")
    label_of: dict[str, str] = {}
    for g, y in zip(groups, labels, strict=True):
        if label_of.setdefault(g, y) != y:
            raise TrainingDataError(f"image {g!r} appears with two labels ({label_of[g]!r}, {y!r})")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    val_groups: set[str] = set()
    for cls in sorted(set(labels)):
        members = sorted(g for g, y in label_of.items() if y == cls)
        if len(members) < 2:
            continue
        n_val = min(max(1, round(val_fraction * len(members))), len(members) - 1)
        val_groups.update(members[i] for i in rng.permutation(len(members))[:n_val])
    is_val = np.array([g in val_groups for g in groups])
    train_idx, val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    overlap = {groups[int(i)] for i in train_idx} & {groups[int(i)] for i in val_idx}
    assert not overlap, f"split leaks groups into both sides: {sorted(overlap)[:5]}"
    return train_idx, val_idx


def split_whole_groups(
    groups: Sequence[str], *, val_fraction: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) for groups that hold several classes (recordings): ``round(val_fraction ×
    n_groups)`` whole groups (at least one, at most all but one) go to validation, not stratified by class.
    Asserts that no group is on both sides."""
    if not 0 < val_fraction < 1:
        raise SettingError(f"val_fraction must be in (0, 1), got {val_fraction}")
    names = sorted(set(groups))
    if len(names) < 2:
        raise TrainingDataError(f"cannot split {len(names)} group(s) into two parts: at least 2 are needed")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    n_val = min(max(1, round(val_fraction * len(names))), len(names) - 1)
    val_groups = {names[i] for i in rng.permutation(len(names))[:n_val]}
    is_val = np.array([g in val_groups for g in groups])
    train_idx, val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    assert not {groups[int(i)] for i in train_idx} & val_groups, "split leaks groups into both sides"
    return train_idx, val_idx


# ---------------------------------------------------------------------------------------------------- results


@dataclass
class TrainResult:
    """The trained student (eval mode), its card, and what was measured."""

    model: Any  # torch.nn.Module
    card: ModelCard
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)  # labels in output order
    train_index: np.ndarray | None = None
    val_index: np.ndarray | None = None


#: The sources that shape a trained model: data generation, the daemon's epoch path, training and export.
MODEL_SOURCES = (
    "bci_stream/card.py",
    "bci_stream/epochs.py",
    "bci_stream/pipeline.py",
    "bci_stream/signal.py",
    "training/export.py",
    "training/fit.py",
    "training/loop.py",
    "training/losses.py",
    "training/models.py",
    "training/students.py",
    "training/synthetic.py",
    "training/teachers.py",
)


def code_version() -> str:
    """Package versions that shape a trained model (:func:`training.provenance.code_version`): not a hash of source
    files, so ``make models`` rebuilds the same bytes from the same sources (issue 11)."""
    from .provenance import code_version as versions

    return versions()


def _binomial_p(k: int, n: int, p: float) -> float:
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p)) if n else 1.0


def predict_logits(model: Any, X: np.ndarray, batch_size: int = 64, threads: int | None = 1) -> np.ndarray:
    """Logits (n, n_outputs) of ``model`` in eval mode on normalised epochs ``X`` (n, n_times, n_chans)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad(), _torch_threads(threads):
        for i in range(0, len(X), batch_size):
            out.append(model(torch.as_tensor(np.asarray(X[i : i + batch_size], dtype=np.float32))).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def _as_recordings(recordings: Recording | str | Path | Sequence[Recording | str | Path]) -> list[Recording]:
    items = [recordings] if isinstance(recordings, (Recording, str, Path)) else list(recordings)
    if not items:
        raise TrainingDataError("no recordings given")
    return [r if isinstance(r, Recording) else read_recording(r) for r in items]


# ---------------------------------------------------------------------------------------------------- training


def epoch_spec(
    recordings: Sequence[Recording],
    *,
    channels: Sequence[str] | None,
    sfreq: float | None,
    n_times: int,
    tmin: float,
    bandpass: tuple[float | None, float | None] | None,
    notch: float | None,
    filter_order: int = 4,
) -> tuple[InputSpec, Preprocessing]:
    """The model input and causal preprocessing of a training run (the card's, before normalisation).

    ``channels`` defaults to every EEG channel of the first recording, ``sfreq`` to its rate.
    """
    first = recordings[0]
    if channels is None:
        channels = [c for c, t in zip(first.ch_names, first.ch_types, strict=True) if t == "eeg"]
        if not channels:
            raise TrainingDataError(f"{first.source}: no channel of type 'eeg'; name the channels to use")
    spec = InputSpec(sfreq=float(sfreq or first.sfreq), n_times=n_times, tmin=tmin, channels=list(channels), units="V")
    return spec, Preprocessing(bandpass=bandpass, notch=notch, filter=f"causal-butter-{filter_order}")


def class_index(labels: Sequence[str], teacher: PrecomputedTeacher | None) -> tuple[list[str], np.ndarray]:
    """Output classes (the teacher's order when there is one, else sorted) and the integer target per epoch."""
    present = set(labels)
    if teacher is not None:
        unknown = sorted(present - set(teacher.classes))
        if unknown:
            raise TeacherError(f"{teacher.source}: teacher has no output for labels {unknown[:10]}")
        classes = [c for c in teacher.classes if c in present]
    else:
        classes = sorted(present, key=lambda s: (len(s), s) if s.isdigit() else (0, s))
    if len(classes) < 2:
        raise TrainingDataError(f"need at least 2 classes, found {classes}")
    index = {c: i for i, c in enumerate(classes)}
    return classes, np.array([index[label] for label in labels], dtype=np.int64)


def train_student(
    recordings: Recording | str | Path | Sequence[Recording | str | Path],
    *,
    events: str | None = DEFAULT_EVENTS,
    label_regex: str = DEFAULT_LABEL_REGEX,
    image_regex: str | None = DEFAULT_IMAGE_REGEX,
    channels: Sequence[str] | None = None,
    sfreq: float | None = None,
    n_times: int = 440,
    tmin: float = 0.04,
    bandpass: tuple[float | None, float | None] | None = (5.0, 95.0),
    notch: float | None = 50.0,
    filter_order: int = 4,
    teacher: PrecomputedTeacher | str | Path | None = None,
    loss: str | None = None,
    temperature: float = 5.0,
    ce_weight: float = 0.5,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 1e-3,
    student: str = "cogninet-blstm",
    hidden: int = 128,
    n_layers: int = 2,
    dropout: float = 0.5,
    n_features: int = 128,
    pooling: str = "mean",
    val_fraction: float = 0.3,
    split: str | SplitPlan | None = None,
    strict: bool = False,
    seed: int = 0,
    class_names: Mapping[str, str] | None = None,
    name: str = "cogninet-blstm2",
    version: str = "1.0.0",
    data_description: str | None = None,
    threads: int | None = 1,
) -> TrainResult:
    """Cut epochs the daemon's way, split by image, train (KD with a teacher, else cross-entropy), build the card.

    Parameters
    ----------
    recordings
        One or more :class:`Recording` objects or paths (read with :func:`bci_stream.recordings.read_recording`).
    events, label_regex, image_regex
        Which markers get epochs, where the class label is in a marker (group ``label``), and the image id
        (group ``image``; the split unit; no match at all → split by trial).
    channels, sfreq, n_times, tmin
        The model input; ``channels`` defaults to every EEG channel of the first recording, ``sfreq`` to its rate.
    bandpass, notch, filter_order
        The card's causal preprocessing (run over the continuous recording as the daemon does).
    teacher
        A :class:`PrecomputedTeacher` or its ``.npz`` path; None trains with plain cross-entropy. Its logits are
        looked up per image (group); when it knows more classes than the data has, only those columns are used.
    loss
        ``kd-supervised`` (default with a teacher), ``kd-unsupervised``, ``l2``, or ``ce`` (default without).
    temperature, ce_weight, epochs, batch_size, lr
        Optimisation (Adam) and the KD mix: (T²/2)·KL + ce_weight·CE.
    student, hidden, n_layers, dropout, n_features, pooling
        The student (:data:`training.students.STUDENTS`) and its options.
    val_fraction, seed
        Share of each class's images held out for validation; one seed fixes split, initialisation and order.
    split
        None (default, unchanged): by image, or by trial when no marker carries an image id — leaky on real EEG.
        ``by-image``, ``by-recording``, ``by-block`` or ``by-trial`` (warned, recorded as leaky), as
        :func:`training.splits.plan` (``bci-train fit``'s ``[data] split``); a :class:`training.splits.SplitPlan`
        made by the caller (``bci-train distil --split``, which leak-checks it first) is used as is. Either is recorded in the card's
        ``provenance.split`` and ``split_info`` (with the epochs per class in train and validation); impossible
        splits are refused naming ``split``, and so is any split (the default too) that leaves a class out of
        train or validation (:func:`training.splits.check_class_coverage`).
    strict
        Refuse a leaky split, as ``[data] strict = true`` and ``--strict`` do (the same :class:`ConfigError`,
        :func:`training.splits.leaky_refusal`, naming ``strict=True``): ``split='by-trial'``, a given leaky plan,
        or the default when no marker carries an image id (which splits by trial). False (default): such a split
        is trained on with a warning, as before.
    class_names
        Display names for labels in the card (default: the teacher's names, else the labels).
    threads
        torch intra-op threads while training (restored afterwards); None keeps torch's setting. The default, 1,
        makes results independent of the machine's core count and avoids OpenMP oversubscription: an LSTM runs
        thousands of tiny parallel regions per batch, and with 2 threads on a CPU that other processes also use,
        epochs were measured 100× slower.
    """
    params = {k: v for k, v in locals().items() if k != "threads"}  # the arguments, passed on unchanged
    with _torch_threads(threads):
        return _train(**params)


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _train(
    recordings: Recording | str | Path | Sequence[Recording | str | Path],
    *,
    events: str | None,
    label_regex: str,
    image_regex: str | None,
    channels: Sequence[str] | None,
    sfreq: float | None,
    n_times: int,
    tmin: float,
    bandpass: tuple[float | None, float | None] | None,
    notch: float | None,
    filter_order: int,
    teacher: PrecomputedTeacher | str | Path | None,
    loss: str | None,
    temperature: float,
    ce_weight: float,
    epochs: int,
    batch_size: int,
    lr: float,
    student: str,
    hidden: int,
    n_layers: int,
    dropout: float,
    n_features: int,
    pooling: str,
    val_fraction: float,
    split: str | SplitPlan | None,
    strict: bool,
    seed: int,
    class_names: Mapping[str, str] | None,
    name: str,
    version: str,
    data_description: str | None,
) -> TrainResult:
    t_start = time.perf_counter()
    if epochs < 1:
        raise SettingError(f"epochs must be >= 1, got {epochs}")
    recs = _as_recordings(recordings)
    input_spec, prep0 = epoch_spec(
        recs, channels=channels, sfreq=sfreq, n_times=n_times, tmin=tmin, bandpass=bandpass, notch=notch,
        filter_order=filter_order,
    )  # fmt: skip
    data = cut_epochs(recs, input_spec, prep0, events=events, label_regex=label_regex, image_regex=image_regex)
    if isinstance(teacher, (str, Path)):
        teacher = PrecomputedTeacher.load(teacher)
    loss = _loss_name(loss, teacher)
    classes, y = class_index(data.labels, teacher)
    plan = _split_plan(split, data, image_regex, strict)
    if plan is None:  # the original split (synthetic / by-image path: bit-identical models)
        from .splits import API_OPTION, split_parts

        default = f"train_student: {API_OPTION.set_to(None)} (the default: by {data.split_unit})"
        train_idx, val_idx, _ = split_parts(data.groups, data.labels, data.split_unit, val_fraction=val_fraction,
                                            seed=seed, key=default, option=API_OPTION)  # fmt: skip
        if data.split_unit == "trial":
            log.warning("split by trial (no marker carries an image id): leaky on real EEG, the validation accuracy "
                        "is optimistic; pass split='by-block' or split='by-recording'")  # fmt: skip
    else:
        train_idx, val_idx, _ = plan.parts(data.labels, val_fraction=val_fraction, seed=seed)
    norm = fit_channel_normalization(data.X[train_idx])
    X = normalize(data.X, norm).astype(np.float32)
    t_logits = teacher.lookup(data.groups, classes) if teacher is not None else None
    n_out = len(classes)
    log.info(
        "data: %d epochs (%d dropped) from %d recording(s), %d classes, split by %s: %d train / %d validation",
        len(y), data.n_dropped, len(recs), n_out, plan.unit if plan else data.split_unit, len(train_idx), len(val_idx),
    )  # fmt: skip

    options = {
        "hidden": hidden, "n_layers": n_layers, "dropout": dropout, "n_features": n_features, "pooling": pooling
    }  # fmt: skip
    model, history, val_out = _fit_student(
        X, y, t_logits, train_idx, val_idx, student=student, options=options, n_out=n_out, input_spec=input_spec,
        loss=loss, temperature=temperature, ce_weight=ce_weight, epochs=epochs, batch_size=batch_size, lr=lr,
        seed=seed,
    )  # fmt: skip

    val_pred = val_out.numpy().argmax(1)  # the model after the last epoch, in eval mode
    n_val_correct = int((val_pred == y[val_idx]).sum())
    counts = np.bincount(y[val_idx], minlength=n_out)
    chance = float(counts.max() / counts.sum())
    metrics: dict[str, Any] = {
        "val_accuracy": n_val_correct / len(val_idx),
        "train_accuracy": float((predict_logits(model, X[train_idx]).argmax(1) == y[train_idx]).mean()),
        "chance_level": chance,
        "chance_uniform": 1.0 / n_out,
        "p_value_binomial": _binomial_p(n_val_correct, len(val_idx), chance),
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "n_classes": n_out,
        "n_dropped": data.n_dropped,
        "epochs": epochs,
        "train_seconds": round(time.perf_counter() - t_start, 1),
    }
    if t_logits is not None:
        metrics["teacher_val_accuracy"] = float((t_logits[val_idx].argmax(1) == y[val_idx]).mean())
    split_info = plan.info({"train": train_idx, "validation": val_idx}, data.labels) if plan is not None else None
    if split_info is not None:
        metrics["split"] = split_info["split"]
        metrics["split_info"] = split_info

    names = [(class_names or {}).get(c) or (teacher.name_of(c) if teacher is not None else c) for c in classes]
    card = ModelCard(
        name=name,
        version=version,
        task="classification",
        input=input_spec,
        preprocessing=Preprocessing(bandpass=bandpass, notch=notch, filter=prep0.filter, normalization=norm),
        output=OutputSpec(name="logits", classes=names),
        provenance={
            "student": {"name": student, **options},
            "teacher": teacher.description if teacher is not None else None,
            "loss": loss,
            "temperature": temperature if loss in ("kd-supervised", "kd-unsupervised") else None,
            "ce_weight": ce_weight if loss == "kd-supervised" else None,
            "optimizer": {"name": "adam", "lr": lr, "batch_size": batch_size, "epochs": epochs},
            "data": data_description or "; ".join(data.sources),
            "events": events,
            "labels": {"regex": label_regex, "classes": classes},
            "split": plan.name if plan is not None else f"by-{data.split_unit}",
            **({"split_info": split_info} if split_info is not None else {}),
            "val_fraction": val_fraction,
            # no timings in the card: the same seed must give the same file (make models rebuilds bit for bit)
            "metrics": {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in metrics.items()
                        if k not in ("train_seconds", "split", "split_info")},
            "code_version": code_version(),
            "seed": seed,
        },
    )  # fmt: skip
    log.info(
        "done: val acc %.3f (chance %.3f, p %.2g), train acc %.3f, %.1f s",
        metrics["val_accuracy"], chance, metrics["p_value_binomial"], metrics["train_accuracy"],
        metrics["train_seconds"],
    )  # fmt: skip
    return TrainResult(model, card, metrics, history, classes, train_idx, val_idx)


def _split_plan(
    split: str | SplitPlan | None, data: LabelledEpochs, image_regex: str | None, strict: bool = False
) -> SplitPlan | None:
    """``train_student``'s ``split`` as a plan over ``data`` (None: the original by-image / by-trial split).

    With ``strict``, a leaky split is refused by :func:`training.splits.leaky_refusal` (the config's and the
    command line's refusal, naming ``strict=True``): ``split='by-trial'`` (by :func:`training.splits.plan`), a given
    plan that carries a leak note, and the default on epochs without image ids (by trial).
    """
    from .splits import API_OPTION, SplitPlan, leaky_refusal, plan

    source = "train_student"
    if split is None:
        if strict and data.split_unit == "trial":
            raise leaky_refusal(f"{source}: {API_OPTION.set_to(None)} (the default: by trial, no marker carries an "
                                f"image id)", API_OPTION)  # fmt: skip
        return None
    if isinstance(split, SplitPlan):
        if len(split.groups) != len(data.labels):
            raise SettingError(f"split: the given plan has {len(split.groups)} units but {len(data.labels)} epochs were "
                               "cut; make the plan from the same recordings and epoch settings")  # fmt: skip
        if strict and split.leak is not None:
            raise leaky_refusal(f"{source}: {API_OPTION.set_to(split.name)} (a given plan)", API_OPTION)
        return split
    return plan(data, split, image_regex=image_regex, option=API_OPTION, source=source, strict=strict)


def _loss_name(loss: str | None, teacher: PrecomputedTeacher | None) -> str:
    """The loss asked for, checked (default: supervised KD with a teacher, cross-entropy without)."""
    from . import losses

    loss = loss or ("kd-supervised" if teacher is not None else "ce")
    if loss not in losses.LOSSES:
        raise SettingError(f"unknown loss {loss!r}; known: {', '.join(losses.LOSSES)}")
    if loss != "ce" and teacher is None:
        raise SettingError(f"loss {loss!r} needs a teacher")
    return loss


def _fit_student(
    X: np.ndarray, y: np.ndarray, t_logits: np.ndarray | None, train_idx: np.ndarray, val_idx: np.ndarray, *,
    student: str, options: dict[str, Any], n_out: int, input_spec: InputSpec, loss: str, temperature: float,
    ce_weight: float, epochs: int, batch_size: int, lr: float, seed: int,
) -> tuple[Any, list[dict[str, float]], Any]:  # fmt: skip
    """A fresh student trained through the one loop; (model, history with seconds, last validation outputs)."""
    import torch

    from . import losses
    from .loop import Batch, IndexBatches, LoopConfig, fit_model
    from .students import build_student

    torch.manual_seed(seed)
    model = build_student(student, len(input_spec.channels), n_out, input_spec.n_times, input_spec.sfreq, **options)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    Tt = torch.from_numpy(t_logits) if t_logits is not None else None

    def batch_loss(out: torch.Tensor, batch: Batch) -> torch.Tensor:
        if loss == "ce":
            return torch.nn.functional.cross_entropy(out, batch.y)
        assert batch.teacher is not None
        if loss == "kd-supervised":
            return losses.kd_supervised(out, batch.teacher, batch.y, temperature, ce_weight)
        if loss == "kd-unsupervised":
            return losses.kd_unsupervised(out, batch.teacher, temperature)
        return losses.l2_logits(out, batch.teacher)

    # the shipped models were built in this ("generator") order: one permutation per epoch from one generator
    train = IndexBatches(Xt, yt, train_idx, batch_size=batch_size, seed=seed, teacher=Tt, order="generator")
    val = Batch(X[val_idx], yt[val_idx], None if Tt is None else Tt[val_idx], index=val_idx)
    fitted = fit_model(model, train, val, loss=batch_loss, config=LoopConfig(epochs=epochs, lr=lr), name="distil")
    history = [{**row, "seconds": s} for row, s in zip(fitted.history, fitted.state.epoch_seconds, strict=True)]
    return fitted.model, history, fitted.state.last_val_outputs


def normalized_epochs(
    recording: Recording, card: ModelCard, *, events: str | None = DEFAULT_EVENTS
) -> tuple[np.ndarray, list[Marker]]:
    """Epochs of ``recording`` exactly as the daemon feeds ``card``'s model: cut, filtered, normalised, float32."""
    es = epochs_from_recording(recording, card.input, card.preprocessing, events=events)
    return normalize(es.X, card.preprocessing.normalization).astype(np.float32), es.markers


__all__ = [
    "DEFAULT_EVENTS",
    "DEFAULT_IMAGE_REGEX",
    "DEFAULT_LABEL_REGEX",
    "LabelledEpochs",
    "Normalization",
    "SettingError",
    "TrainResult",
    "TrainingDataError",
    "cut_epochs",
    "normalized_epochs",
    "predict_logits",
    "split_by_group",
    "split_whole_groups",
    "train_student",
]
