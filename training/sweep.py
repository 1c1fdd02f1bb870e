"""CogniNet's ablations (METHODS.md §1) on synthetic data, as Markdown tables: ``bci-train sweep --config CONFIG.toml``.

Tables (each cell: validation accuracy on the by-image split of :func:`training.fit.train_student`, the mean over
the training seeds, with the chance level = the share of the largest class in the validation split):

- **temperature**: supervised KD at T ∈ ``temperatures`` (paper: {1, 2, 5, 10}, 5 best);
- **depth**: supervised KD with ``n_layers`` ∈ ``depths`` (paper: {1, 2, 3, 4}, 2 best);
- **loss**: KL (``kd-supervised``) vs the L2 regression on the teacher's logits (``l2``), plus any other losses;
- **teacher × student**: no teacher (``ce``), the synthetic teacher and a degraded one (label-smoothed one-hot of
  the true class: it knows the class, not the image) for each student in ``students``.

Plus the **few-labels check** (:func:`few_labels_check`): with few labelled epochs per class, a student distilled
from the teacher on every training epoch (the teacher needs no labels) against the same student trained with
cross-entropy on the labelled epochs only, and against supervised KD on the labelled epochs only, scored on
another session's epochs of images that no training epoch showed.

The config (TOML; every key optional, defaults in :data:`DEFAULTS`)::

    out = "runs/sweep.md"
    tables = ["temperature", "depth", "loss", "teacher-student", "few-labels"]
    temperatures = [1, 2, 5, 10]
    depths = [1, 2, 3, 4]
    losses = ["kd-supervised", "l2"]
    teachers = ["none", "synthetic", "smoothed"]
    students = ["cogninet-blstm", "eegimagenet-lstm", "conv1d"]
    seeds = [0, 1]                  # training seeds, averaged
    [data]                          # training.synthetic.synthesize, one session per seed
    seconds = 60.0
    sessions = [11]
    n_classes = 4
    images_per_class = 8
    evoked_uv = 20.0
    n_channels = 16                 # posterior channels (0 = all 128)
    [train]                         # passed to train_student
    epochs = 10
    sfreq = 128.0
    n_times = 64
    [few_labels]
    labelled_per_class = 4          # the few labels
    train_images = 5                # images 1..5 of each class train, the others test
    epochs = 20
    seeds = [1, 2, 3]
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from bci_stream.recordings import Recording

from .config import Strict, read_toml, validate
from .errors import SettingError, TrainingDataError
from .teachers import PrecomputedTeacher

log = logging.getLogger(__name__)

TABLES = ("temperature", "depth", "loss", "teacher-student", "few-labels")

DEFAULTS: dict[str, Any] = {
    "out": "runs/sweep.md",
    "tables": list(TABLES),
    "temperatures": [1, 2, 5, 10],
    "depths": [1, 2, 3, 4],
    "losses": ["kd-supervised", "l2"],
    "teachers": ["none", "synthetic", "smoothed"],
    "students": ["cogninet-blstm", "eegimagenet-lstm", "conv1d"],
    "student": "cogninet-blstm",
    "temperature": 5.0,
    "seeds": [0, 1],
    "data": {
        "seconds": 60.0,
        "sessions": [11],
        "n_classes": 4,
        "images_per_class": 8,
        "evoked_uv": 20.0,
        "subject": 1,
        "n_channels": 16,
    },
    "train": {
        "epochs": 10,
        "sfreq": 128.0,
        "n_times": 64,
        "bandpass": [5.0, 45.0],
        "hidden": 16,
        "n_features": 16,
        "dropout": 0.1,
        "lr": 5e-3,
        "batch_size": 16,
        "n_layers": 2,
    },
    "few_labels": {
        "seconds": 60.0,
        "test_seconds": 60.0,
        "labelled_per_class": 4,
        "train_images": 5,
        "epochs": 20,
        "seeds": [1, 2, 3],
    },
}


# ------------------------------------------------------------------------------------------------------ config


class SweepData(Strict):
    """``[data]``: synthetic sessions (:func:`training.synthetic.synthesize`), one per entry of ``sessions``."""

    seconds: float = Field(gt=0)
    sessions: list[int] = Field(min_length=1)
    n_classes: int = Field(ge=2, le=40)
    images_per_class: int = Field(ge=2)
    evoked_uv: float = Field(gt=0)
    subject: int = 1
    n_channels: int = Field(ge=0)  # posterior channels; 0 = all 128


class SweepTrain(Strict):
    """``[train]``: options of :func:`training.fit.train_student` (the seed comes from ``seeds``)."""

    epochs: int = Field(ge=1)
    sfreq: float | None = Field(None, gt=0)
    n_times: int = Field(gt=0)
    bandpass: tuple[float | None, float | None] | None = None
    hidden: int = Field(ge=1)
    n_features: int = Field(ge=1)
    dropout: float = Field(ge=0, lt=1)
    lr: float = Field(gt=0)
    batch_size: int = Field(ge=1)
    n_layers: int = Field(ge=1)
    events: str | None = None
    label_regex: str | None = None
    image_regex: str | None = None
    channels: list[str] | None = None
    tmin: float | None = None
    notch: float | None = None
    filter_order: int | None = Field(None, ge=1)
    loss: Literal["ce", "kd-supervised", "kd-unsupervised", "l2"] | None = None
    temperature: float | None = Field(None, gt=0)
    ce_weight: float | None = Field(None, ge=0)
    student: str | None = None
    pooling: Literal["mean", "last"] | None = None
    val_fraction: float | None = Field(None, gt=0, lt=1)
    threads: int | None = Field(None, ge=1)


class SweepFewLabels(Strict):
    """``[few_labels]``: the few-labels check (:func:`few_labels_check`)."""

    seconds: float = Field(gt=0)
    test_seconds: float = Field(gt=0)
    labelled_per_class: int = Field(ge=1)
    train_images: int = Field(ge=2)
    epochs: int = Field(ge=1)
    seeds: list[int] = Field(min_length=1)


class SweepConfig(Strict):
    """A sweep config: :data:`DEFAULTS` overlaid with the file (nested tables merge); unknown keys refused."""

    out: str
    tables: list[str]
    temperatures: list[float]
    depths: list[int]
    losses: list[Literal["ce", "kd-supervised", "kd-unsupervised", "l2"]]
    teachers: list[Literal["none", "synthetic", "smoothed"]]
    students: list[str]
    student: str
    temperature: float = Field(gt=0)
    seeds: list[int] = Field(min_length=1)
    data: SweepData
    train: SweepTrain
    few_labels: SweepFewLabels

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, tables: list[str]) -> list[str]:
        unknown = [t for t in tables if t not in TABLES]
        if unknown:
            raise ValueError(f"unknown tables {unknown}; known: {', '.join(TABLES)}")
        return tables


def load_config(source: str | Path | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config: :data:`DEFAULTS` overlaid with a TOML file (path) or a mapping (nested tables merge), validated
    by :class:`SweepConfig` (:class:`~training.errors.SettingError` names the file, key, value and rule)."""
    if source is None:
        given: Mapping[str, Any] = {}
        where = "<defaults>"
    elif isinstance(source, Mapping):
        given, where = source, "<mapping>"
    else:
        given, where = read_toml(source, what="sweep config"), str(source)
    cfg = copy.deepcopy(DEFAULTS)
    for key, value in given.items():
        if isinstance(cfg.get(key), dict) and isinstance(value, Mapping):
            cfg[key].update(value)
        else:
            cfg[key] = value
    model = validate(SweepConfig, cfg, source=where, example="training/sweep.py", what="sweep config")
    return model.model_dump(exclude_unset=True)


# -------------------------------------------------------------------------------------------------------- data


@functools.cache
def posterior_channels(n: int) -> tuple[str, ...]:
    """``n`` posterior channels of the synthetic montage, spread over the occipital/parietal area (0: all)."""
    from .synthetic import _montage, occipital_channels

    names, pos = _montage()
    if n <= 0:
        return tuple(names)
    occ = occipital_channels(pos)
    pick = occ[np.round(np.linspace(0, len(occ) - 1, min(n, len(occ)))).astype(int)]
    return tuple(names[i] for i in pick)


def _synth(data: Mapping[str, Any], seed: int, seconds: float | None = None):
    from .synthetic import synthesize

    return synthesize(
        float(seconds if seconds is not None else data["seconds"]),
        seed=int(seed),
        n_classes=int(data["n_classes"]),
        subject=int(data.get("subject", 1)),
        images_per_class=int(data["images_per_class"]),
        evoked_uv=float(data["evoked_uv"]),
    )


def smoothed_teacher(teacher: PrecomputedTeacher, epsilon: float = 0.1) -> PrecomputedTeacher:
    """A degraded teacher: log of the label-smoothed one-hot of each image's class (image ids ``<class>_<k>``).

    It knows each image's class but nothing about the image or class similarity.
    """
    index = {c: j for j, c in enumerate(teacher.classes)}
    n = len(teacher.classes)
    probs = np.full((len(teacher.images), n), epsilon / n)
    for i, image in enumerate(teacher.images):
        label = image.rsplit("_", 1)[0]
        if label not in index:
            raise TrainingDataError(f"image id {image!r} does not start with a class of the teacher")
        probs[i, index[label]] += 1 - epsilon
    return PrecomputedTeacher(
        images=list(teacher.images),
        classes=list(teacher.classes),
        logits=np.log(probs).astype(np.float32),
        class_names=teacher.class_names,
        description=f"label-smoothed one-hot (epsilon {epsilon:g}) of the true class",
        source="smoothed",
    )


def _teacher(kind: str, base: PrecomputedTeacher) -> PrecomputedTeacher | None:
    if kind == "none":
        return None
    if kind == "synthetic":
        return base
    if kind == "smoothed":
        return smoothed_teacher(base)
    raise SettingError(f"unknown teacher {kind!r}; known: none, synthetic, smoothed")


def _train_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    kw = dict(cfg["train"])
    if "bandpass" in kw and kw["bandpass"] is not None:
        kw["bandpass"] = tuple(kw["bandpass"])
    kw.setdefault("channels", list(posterior_channels(int(cfg["data"].get("n_channels", 16)))))
    return kw


# ------------------------------------------------------------------------------------------------------ cells


@dataclass
class Cell:
    """One configuration: validation accuracies over seeds and the matching chance levels."""

    accuracies: list[float] = field(default_factory=list)
    chances: list[float] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def chance(self) -> float:
        return float(np.mean(self.chances))

    def __str__(self) -> str:
        spread = f" ± {np.std(self.accuracies):.2f}" if len(self.accuracies) > 1 else ""
        return f"{self.accuracy:.2f}{spread} (chance {self.chance:.2f})"


def run_cell(
    recordings: Sequence[Recording], teacher: PrecomputedTeacher | None, seeds: Sequence[int], **kwargs: Any
) -> Cell:
    """Train once per seed with :func:`train_student` and collect validation accuracy and chance."""
    from .fit import train_student

    cell = Cell()
    for seed in seeds:
        m = train_student(list(recordings), teacher=teacher, seed=int(seed), **kwargs).metrics
        cell.accuracies.append(float(m["val_accuracy"]))
        cell.chances.append(float(m["chance_level"]))
    return cell


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- few labels


@dataclass
class FewLabelsResult:
    """Mean test accuracies (and per seed) of the three students of :func:`few_labels_check`."""

    kd: float  # KD (unsupervised) from the teacher on every training epoch, labelled or not
    no_teacher: float  # cross-entropy on the labelled epochs only
    kd_labelled: float  # supervised KD on the labelled epochs only (same data as no_teacher)
    chance: float
    per_seed: list[dict[str, float]]
    n_labelled_per_class: int
    n_train_epochs: int  # mean over seeds, all training epochs (labelled + unlabelled)
    n_test_epochs: int  # mean over seeds

    def table(self) -> str:
        rows = [
            ["cross-entropy, labelled epochs only (no teacher)", f"{self.no_teacher:.2f}"],
            ["supervised KD, labelled epochs only", f"{self.kd_labelled:.2f}"],
            ["unsupervised KD, every training epoch (teacher, no labels)", f"{self.kd:.2f}"],
        ]
        head = (
            f"{self.n_labelled_per_class} labelled epochs per class of about {self.n_train_epochs} training epochs; "
            f"test: {self.n_test_epochs} epochs of unseen images from another session; chance {self.chance:.2f}; "
            f"mean over {len(self.per_seed)} seeds"
        )
        return head + "\n\n" + markdown_table(["student", "test accuracy"], rows)


def _image_number(marker_value: str) -> int | None:
    m = re.search(r"_(\d+)$", marker_value)
    return int(m.group(1)) if m else None


def _with_markers(rec: Recording, keep) -> Recording:
    return dataclasses.replace(rec, markers=[m for m in rec.markers if keep(m)])


def _test_accuracy(result: Any, recording: Recording) -> tuple[float, float, int]:
    from .fit import normalized_epochs, predict_logits

    X, markers = normalized_epochs(recording, result.card)
    index = {c: i for i, c in enumerate(result.classes)}
    y = np.array([index[m.value.split("/")[1]] for m in markers])
    pred = predict_logits(result.model, X).argmax(1)
    return float((pred == y).mean()), float(np.bincount(y).max() / len(y)), len(y)


def few_labels_check(cfg: Mapping[str, Any] | str | Path | None = None) -> FewLabelsResult:
    """Few labels: KD from the teacher vs the same student without a teacher, scored on unseen images.

    Per seed: a training session shows images 1..``train_images`` of each class; the first ``labelled_per_class``
    epochs of each class are the labelled ones. A test session (another seed) shows the other images. Three
    students, same architecture and options: cross-entropy on the labelled epochs; supervised KD on the labelled
    epochs; unsupervised KD on every training epoch (the teacher scores images without anyone labelling them,
    which is what a teacher buys when labels are few). train_student's own validation split (by image) is not used.
    """
    from .fit import train_student

    cfg = load_config(cfg)
    fl, data = cfg["few_labels"], cfg["data"]
    kw = _train_kwargs(cfg)
    kw.setdefault("temperature", float(cfg["temperature"]))
    kw["val_fraction"] = kw.get("val_fraction", 0.2)
    kw["epochs"] = int(fl.get("epochs", kw.get("epochs", 10)))
    n_lab, n_train_img = int(fl["labelled_per_class"]), int(fl["train_images"])
    if not 2 <= n_train_img < int(data["images_per_class"]):
        raise SettingError(
            f"few_labels.train_images must be in [2, images_per_class = {data['images_per_class']}), got {n_train_img}"
        )
    per_seed: list[dict[str, float]] = []
    counts = []
    for seed in fl["seeds"]:
        train_s = _synth(data, seed, fl["seconds"])
        test_s = _synth(data, 1000 + int(seed), fl["test_seconds"])

        def seen(m, limit=n_train_img) -> bool:
            k = _image_number(m.value)
            return k is not None and k <= limit

        train_all = _with_markers(train_s.recording, seen)
        taken: dict[str, int] = {}

        def labelled(m, taken=taken) -> bool:
            label = m.value.split("/")[1]
            taken[label] = taken.get(label, 0) + 1
            return taken[label] <= n_lab

        train_lab = _with_markers(train_all, labelled)
        test_rec = _with_markers(test_s.recording, lambda m: not seen(m))
        teacher = train_s.teacher
        ce = train_student(train_lab, teacher=None, loss="ce", seed=int(seed), **kw)
        kdl = train_student(train_lab, teacher=teacher, loss="kd-supervised", seed=int(seed), **kw)
        kd = train_student(train_all, teacher=teacher, loss="kd-unsupervised", seed=int(seed), **kw)
        acc_ce, chance, n_test = _test_accuracy(ce, test_rec)
        acc_kdl = _test_accuracy(kdl, test_rec)[0]
        acc_kd = _test_accuracy(kd, test_rec)[0]
        per_seed.append(
            {"seed": int(seed), "kd": acc_kd, "no_teacher": acc_ce, "kd_labelled": acc_kdl, "chance": chance}
        )
        counts.append((len(train_all.markers), n_test))
        log.info("few labels, seed %s: KD %.3f, no teacher %.3f, KD labelled %.3f", seed, acc_kd, acc_ce, acc_kdl)
    return FewLabelsResult(
        kd=float(np.mean([r["kd"] for r in per_seed])),
        no_teacher=float(np.mean([r["no_teacher"] for r in per_seed])),
        kd_labelled=float(np.mean([r["kd_labelled"] for r in per_seed])),
        chance=float(np.mean([r["chance"] for r in per_seed])),
        per_seed=per_seed,
        n_labelled_per_class=n_lab,
        n_train_epochs=round(float(np.mean([c[0] for c in counts]))),
        n_test_epochs=round(float(np.mean([c[1] for c in counts]))),
    )


# ------------------------------------------------------------------------------------------------------- sweep


@dataclass
class SweepResult:
    cells: dict[str, dict[tuple[str, str], Cell]]  # table → (row, column) → cell
    few_labels: FewLabelsResult | None
    markdown: str


def run_sweep(config: str | Path | Mapping[str, Any] | None = None) -> SweepResult:
    """Run the tables named in the config and return them (cells and Markdown)."""
    cfg = load_config(config)
    data = cfg["data"]
    sessions = [_synth(data, s) for s in data["sessions"]]
    recs = [s.recording for s in sessions]
    base = sessions[0].teacher
    kw = _train_kwargs(cfg)
    seeds = [int(s) for s in cfg["seeds"]]
    student, temperature = cfg["student"], float(cfg["temperature"])
    kw.setdefault("student", student)
    kw.setdefault("temperature", temperature)
    cells: dict[str, dict[tuple[str, str], Cell]] = {}
    parts = [
        "# CogniNet ablations on synthetic data",
        "",
        f"Data: {len(recs)} synthetic session(s) of {data['seconds']} s, {data['n_classes']} classes × "
        f"{data['images_per_class']} images, evoked {data['evoked_uv']} µV, {len(kw['channels'])} channels, "
        f"{kw.get('n_times')} samples at {kw.get('sfreq')} Hz. Student {student} (hidden {kw.get('hidden')}, "
        f"{kw.get('epochs')} epochs). Cells: validation accuracy (split by image), mean ± sd over seeds {seeds}, "
        "with chance (largest class share of the validation split).",
    ]
    tables = cfg["tables"]

    def section(title: str, header: list[str], rows: list[list[object]]) -> None:
        parts.extend(["", f"## {title}", "", markdown_table(header, rows)])

    if "temperature" in tables:
        t = cells["temperature"] = {}
        for temp in cfg["temperatures"]:
            t[(f"T={temp:g}", "kd-supervised")] = run_cell(
                recs, base, seeds, **{**kw, "loss": "kd-supervised", "temperature": float(temp)}
            )
        section("Temperature (supervised KD)", ["T", "accuracy"], [[r, str(c)] for (r, _), c in t.items()])
    if "depth" in tables:
        t = cells["depth"] = {}
        for depth in cfg["depths"]:
            t[(f"{depth}", "kd-supervised")] = run_cell(
                recs, base, seeds, **{**kw, "loss": "kd-supervised", "n_layers": int(depth)}
            )
        section(
            "Depth (recurrent layers, supervised KD)", ["layers", "accuracy"], [[r, str(c)] for (r, _), c in t.items()]
        )
    if "loss" in tables:
        t = cells["loss"] = {}
        for loss in cfg["losses"]:
            t[(loss, "")] = run_cell(recs, None if loss == "ce" else base, seeds, **{**kw, "loss": loss})
        section("KL vs L2", ["loss", "accuracy"], [[r, str(c)] for (r, _), c in t.items()])
    if "teacher-student" in tables:
        t = cells["teacher-student"] = {}
        for kind in cfg["teachers"]:
            teacher = _teacher(kind, base)
            for name in cfg["students"]:
                loss = "ce" if teacher is None else "kd-supervised"
                t[(kind, name)] = run_cell(recs, teacher, seeds, **{**kw, "loss": loss, "student": name})
        rows = [[kind, *(str(t[(kind, n)]) for n in cfg["students"])] for kind in cfg["teachers"]]
        section("Teacher × student (none = cross-entropy)", ["teacher", *cfg["students"]], rows)
    few = None
    if "few-labels" in tables:
        few = few_labels_check(cfg)
        parts.extend(["", "## Few labels", "", few.table()])
    return SweepResult(cells, few, "\n".join(parts) + "\n")


def write_sweep(config: str | Path | Mapping[str, Any] | None = None, out: str | Path | None = None) -> SweepResult:
    """:func:`run_sweep` and write its Markdown to ``out`` (default: the config's ``out``)."""
    result = run_sweep(config)
    path = Path(out if out is not None else load_config(config)["out"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result.markdown)
    return result
