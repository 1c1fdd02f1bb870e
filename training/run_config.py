"""The run config of ``bci-train fit --config RUN.toml`` (:class:`RunConfig`); read by :func:`load_config`.

Tables ``[data]`` (recordings or ``synth``), ``[teacher]``, ``[student]``, ``[train]``, ``[run]``; unknown keys are
refused with the file and the key named (:mod:`training.config`). ``configs/train-synth.toml`` is a commented example.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from bci_stream.errors import ConfigError

from .config import StrictFrozen, load
from .fit import DEFAULT_EVENTS, DEFAULT_IMAGE_REGEX, DEFAULT_LABEL_REGEX
from .realdata import LabelRule, RealDataError, window_samples

EXAMPLE = "configs/train-synth.toml"


class SynthConfig(StrictFrozen):
    """Synthetic sessions (:func:`training.synthetic.synthesize`), one per seed."""

    seconds: float = Field(60.0, gt=0)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    subject: int = 1
    subjects: list[int] | None = Field(None, min_length=1)  # several subjects: one session per (subject, seed)
    classes: int = Field(8, ge=2, le=40)
    images_per_class: int = Field(8, ge=2)
    evoked_uv: float = Field(20.0, gt=0)


class DataConfig(StrictFrozen):
    """``[data]``: where the epochs come from, which markers get one, where their class is, the window and band.

    The label rule is exactly one of ``label_regex`` (default), ``label_field`` (an EEGLAB event field) and
    ``[data.label_map]`` (marker value → class); ``event_fields`` alone labels by its first field, as ``distil
    --event-fields`` does. ``tmax`` (s) sets ``n_times`` from the model rate; a default band the rate cannot carry
    is capped below Nyquist (a ``bandpass`` you give is checked instead), as in ``distil``.
    """

    recordings: list[Path] | None = None  # relative paths: to the working directory
    synth: SynthConfig | None = None
    events: str | None = DEFAULT_EVENTS
    label_regex: str = DEFAULT_LABEL_REGEX
    label_field: str | None = None  # EEGLAB event field holding the class (markers read as type/field=value)
    label_map: dict[str, str] | None = None  # marker value → class name, matched whole ([data.label_map])
    event_fields: list[str] | None = Field(None, min_length=1)  # EEGLAB event fields appended to the markers
    image_regex: str | None = DEFAULT_IMAGE_REGEX  # image ids ("" → none)
    # the unit no two parts share: by-image, by-recording, by-block (runs of same-class trials), by-trial (leaky);
    # default: by-image with image ids, else by-recording (>= 3 recordings) or by-block (training.runs.plan_split)
    split: Literal["by-image", "by-recording", "by-block", "by-trial"] | None = None
    # refuse leaks (as distil --strict): recordings/epochs copied across the split, and split = 'by-trial' on
    # recordings; without it both are warned and recorded
    strict: bool = False
    channels: list[str] | None = None
    sfreq: float | None = Field(None, gt=0)
    n_times: int = Field(440, gt=0)
    tmin: float = 0.04
    tmax: float | None = None  # s after the marker; n_times = round((tmax - tmin) × rate)
    bandpass: tuple[float | None, float | None] | None = (5.0, 95.0)
    notch: float | None = 50.0  # 0 → none
    filter_order: int = Field(4, ge=1)
    subjects: list[str] | None = None  # subject id of each recording (for leave-one-subject-out)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.recordings is None) == (self.synth is None):
            raise ValueError("give exactly one of 'recordings' and 'synth'")
        if self.subjects is not None and (self.recordings is None or len(self.subjects) != len(self.recordings)):
            raise ValueError("'subjects' needs 'recordings' and one subject id per recording")
        for pattern in (self.events, self.label_regex, self.image_regex):
            if pattern:
                re.compile(pattern)
        rules = [k for k in ("label_regex", "label_field", "label_map") if k in self.model_fields_set]
        if len(rules) > 1:
            raise ValueError(f"give exactly one label rule, not {' and '.join(rules)}: label_regex (a regex with a "
                             "'label' group), label_field (an EEGLAB event field) or [data.label_map]")  # fmt: skip
        if self.label_map is not None and (not self.label_map or any(not v for v in self.label_map.values())):
            raise ValueError('[data.label_map] needs at least one MARKER = "class" entry, each with a class name')
        if self.split == "by-image" and not self.image_regex:
            raise ValueError("split = 'by-image' needs image ids but image_regex is empty: give image_regex a pattern "
                             "with an 'image' group, or choose split = 'by-recording' or 'by-block'")  # fmt: skip
        if (self.label_field or self.event_fields) and self.recordings is None:
            raise ValueError("'label_field' and 'event_fields' read EEGLAB event fields: they need 'recordings'")
        if self.tmax is not None:
            if not self.tmax > self.tmin:
                raise ValueError(f"tmax = {self.tmax:g} s must be after tmin = {self.tmin:g} s")
            if self.sfreq is not None:  # else the recording's rate decides, when it is read
                self.window(self.sfreq)
        return self

    def rule(self) -> LabelRule:
        """The label rule: the label map, the label field, the first event field, else the label regex."""
        if self.label_map is not None:
            return LabelRule(mapping=dict(self.label_map))
        if self.label_field:
            return LabelRule(field=self.label_field)
        if self.event_fields and "label_regex" not in self.model_fields_set:
            return LabelRule(field=self.event_fields[0])  # as distil --event-fields
        return LabelRule(regex=self.label_regex)

    def fields_to_read(self) -> list[str] | None:
        """EEGLAB event fields to read into the markers (``event_fields`` and the ``label_field``)."""
        fields = list(self.event_fields or [])
        if self.label_field and self.label_field not in fields:
            fields.append(self.label_field)
        return fields or None

    def window(self, rate: float) -> int:
        """Samples per epoch at the model ``rate`` (Hz): from ``tmax`` when given, else ``n_times``.

        Raises ValueError when ``tmax`` and an explicit ``n_times`` disagree (naming both keys).
        """
        if self.tmax is None:
            return self.n_times
        try:
            n = window_samples(self.tmin, self.tmax, rate)
        except RealDataError as exc:
            raise ValueError(f"tmin / tmax: {exc}") from None
        if "n_times" in self.model_fields_set and n != self.n_times:
            raise ValueError(
                f"tmax = {self.tmax:g} s (with tmin = {self.tmin:g} s) gives {n} samples at {rate:g} Hz but n_times = "
                f"{self.n_times}; give only one of tmax and n_times"
            )
        return n


class TeacherConfig(StrictFrozen):
    source: str = "none"  # "none", "synthetic" (synth data only) or a teacher .npz path


class StudentConfig(StrictFrozen):
    name: str = "cogninet-blstm"
    options: dict[str, Any] = Field(default_factory=dict)  # constructor options (hidden, n_layers, dropout ...)

    @model_validator(mode="after")
    def _known(self) -> StudentConfig:
        from .students import STUDENTS
        from .zoo.embedding import EMBEDDERS

        if self.name not in STUDENTS and self.name not in EMBEDDERS:
            raise ValueError(
                f"unknown student {self.name!r}; known: {', '.join(sorted(STUDENTS))} (classifiers), "
                f"{', '.join(sorted(EMBEDDERS))} (embedding students, with an [embedding] table)"
            )
        return self


class EmbeddingConfig(StrictFrozen):
    """An embedding run (issue 13): the student learns the image embedding of the image each epoch showed; its
    classes are split into training / validation (epoch selection) / test (zero-shot, ``bci-train evaluate``)."""

    images: str = "synthetic"  # "synthetic" (synth data), a precomputed .npz (images, embeddings) or an .onnx encoder
    image_files: Path | None = None  # the images an .onnx encoder embeds (.npz id → HxWx3 uint8, or a PNG folder)
    image_cache: Path | None = None  # where encoder embeddings are cached; default ~/.cache/bci-stream/image-embeddings
    objective: Literal["infonce", "hinge"] = "infonce"
    margin: float = Field(0.2, gt=0)  # hinge only
    val_classes: int = Field(2, ge=2)  # whole classes that choose the epoch
    test_classes: int = Field(2, ge=2)  # whole classes never seen in training or selection


class TrainConfig(StrictFrozen):
    loss: Literal["ce", "kd-supervised", "kd-unsupervised", "l2"] | None = None  # default: kd-supervised w/ teacher
    temperature: float = Field(5.0, gt=0)
    ce_weight: float = Field(0.5, ge=0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    seed: int = 0
    patience: int | None = Field(None, ge=1)  # epochs without a lower validation loss before stopping
    val_fraction: float = Field(0.3, gt=0, lt=1)
    test_fraction: float = Field(0.0, ge=0, lt=1)  # held-out test images, chosen first; 0 → no test split
    threads: int | None = Field(1, ge=1)  # torch intra-op threads (per process)


class RunSection(StrictFrozen):
    name: str | None = None  # default: the config file's stem
    out: Path | None = None  # default: runs/<name>-<timestamp>
    version: str = "1.0.0"


class RunConfig(StrictFrozen):
    data: DataConfig
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    run: RunSection = Field(default_factory=RunSection)
    embedding: EmbeddingConfig | None = None

    @model_validator(mode="after")
    def _student_fits(self) -> RunConfig:
        from .zoo.embedding import EMBEDDERS

        if (self.embedding is not None) != (self.student.name in EMBEDDERS):
            raise ValueError(
                f"student {self.student.name!r} with{'' if self.embedding else 'out'} an [embedding] table: an "
                f"embedding run needs an embedding student ({', '.join(sorted(EMBEDDERS))}) and a classifier none"
            )
        if self.embedding is not None:
            if "split" in self.data.model_fields_set:
                raise ValueError("an embedding run splits by class ([embedding] val_classes, test_classes): leave "
                                 "[data] split unset")  # fmt: skip
            if self.teacher.source != "none" or self.train.test_fraction > 0:
                raise ValueError("an embedding run holds out whole classes ([embedding] test_classes): leave "
                                 "[teacher] source and [train] test_fraction unset")  # fmt: skip
            if self.embedding.images == "synthetic" and self.data.synth is None:
                raise ValueError("[embedding] images = 'synthetic' needs [data] synth")
        return self

    @model_validator(mode="after")
    def _teacher_fits(self) -> RunConfig:
        if self.teacher.source == "synthetic" and self.data.synth is None:
            raise ValueError("teacher 'synthetic' needs [data] synth")
        if self.train.loss not in (None, "ce") and self.teacher.source == "none":
            raise ValueError(f"loss {self.train.loss!r} needs a teacher")
        return self


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a run config; :class:`ConfigError` names the file and the offending key."""
    return load(RunConfig, path, example=EXAMPLE, what="run config")


def check_resume_config(run_dir: Path, config: RunConfig) -> None:
    """Refuse to resume ``run_dir`` with settings other than those it was trained with (epochs may grow)."""
    saved = run_dir / "config.toml"
    if not saved.is_file():
        return
    old = load_config(saved).model_dump(exclude={"run", "embedding"})  # embedding runs have no resume
    new = config.model_dump(exclude={"run", "embedding"})
    old["train"].pop("epochs"), new["train"].pop("epochs")  # more epochs may be asked for on resume
    diff = [f"{sec}.{k}" for sec in new for k in new[sec] if old[sec].get(k) != new[sec][k]]
    if diff:
        raise ConfigError(f"{saved}: the run was trained with other settings ({', '.join(diff)}); cannot resume")


__all__ = ["EXAMPLE", "DataConfig", "EmbeddingConfig", "RunConfig", "RunSection", "StudentConfig", "SynthConfig",
           "TeacherConfig", "TrainConfig", "check_resume_config", "load_config"]  # fmt: skip
