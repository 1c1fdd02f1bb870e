"""Config-driven training runs: ``bci-train fit CONFIG.toml`` and ``bci-train export RUN``.

A run reads a TOML config (:class:`RunConfig`, unknown keys rejected), cuts epochs with the helpers of
:mod:`training.fit` (the daemon's epoch path), splits by image (asserted disjoint), normalises with statistics of the
training split only, and trains with **early stopping on the validation loss** (``patience``). Each epoch is
checkpointed to ``RUN/checkpoint.pt`` (model, optimiser, epoch, RNG states, history, best weights), so
``bci-train fit CONFIG --resume RUN`` continues and ends with the same weights as an uninterrupted run.

The run folder::

    RUN/config.toml         copy of the config
    RUN/split.json          images (or trials) and epoch indices of train / validation / test (test may be empty)
    RUN/checkpoint.pt       last epoch (for --resume)
    RUN/model.pt            best weights (lowest validation loss), a state_dict
    RUN/card.json           the model card (input, preprocessing with the train-split normalisation, classes)
    RUN/metrics.json        history, best epoch, validation accuracy with chance and permutation p, throughput
    RUN/report.md           the same in words, with learning_curves.png and confusion.png

Honesty note: the validation split chooses the epoch (early stopping), so its accuracy is optimistic by that
selection; it is not a test result (METHODS.md, "Honest evaluation", rule 3). ``[train] test_fraction`` (> 0)
holds out whole images as a **test split**, drawn before any training and never used for early stopping or selection;
``RUN/split.json`` records the images (and epoch indices) of train / validation / test, and ``bci-train evaluate RUN``
(:func:`training.evaluate_run.evaluate_run`) evaluates that test split.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the run uses ``torch.distributed`` (gloo), ``DistributedDataParallel`` and a
``DistributedSampler``; every rank computes the same validation loss, rank 0 writes the run folder.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import re
import shutil
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bci_stream.card import InputSpec, ModelCard, OutputSpec, Preprocessing
from bci_stream.errors import BciStreamError
from bci_stream.signal import fit_channel_normalization, normalize

from .evaluate import jsonable
from .fit import (
    DEFAULT_EVENTS,
    DEFAULT_IMAGE_REGEX,
    DEFAULT_LABEL_REGEX,
    TrainingDataError,
    class_index,
    code_version,
    epoch_spec,
)

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


class ConfigError(BciStreamError):
    """A run config is unreadable or invalid; the message names the file and the key."""


# ------------------------------------------------------------------------------------------------------ config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SynthConfig(_Strict):
    """Synthetic sessions (:func:`training.synthetic.synthesize`), one per seed."""

    seconds: float = Field(60.0, gt=0)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    subject: int = 1
    subjects: list[int] | None = Field(None, min_length=1)  # several subjects: one session per (subject, seed)
    classes: int = Field(8, ge=2, le=40)
    images_per_class: int = Field(8, ge=2)
    evoked_uv: float = Field(20.0, gt=0)


class DataConfig(_Strict):
    recordings: list[Path] | None = None  # relative paths: to the working directory
    synth: SynthConfig | None = None
    events: str | None = DEFAULT_EVENTS
    label_regex: str = DEFAULT_LABEL_REGEX
    image_regex: str | None = DEFAULT_IMAGE_REGEX  # "" → split by trial
    channels: list[str] | None = None
    sfreq: float | None = Field(None, gt=0)
    n_times: int = Field(440, gt=0)
    tmin: float = 0.04
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
        return self


class TeacherConfig(_Strict):
    source: str = "none"  # "none", "synthetic" (synth data only) or a teacher .npz path


class StudentConfig(_Strict):
    name: str = "cogninet-blstm"
    options: dict[str, Any] = Field(default_factory=dict)  # constructor options (hidden, n_layers, dropout ...)

    @model_validator(mode="after")
    def _known(self) -> StudentConfig:
        from .students import STUDENTS

        if self.name not in STUDENTS:
            raise ValueError(f"unknown student {self.name!r}; known: {', '.join(sorted(STUDENTS))}")
        return self


class TrainConfig(_Strict):
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


class RunSection(_Strict):
    name: str | None = None  # default: the config file's stem
    out: Path | None = None  # default: runs/<name>-<timestamp>
    version: str = "1.0.0"


class RunConfig(_Strict):
    data: DataConfig
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    run: RunSection = Field(default_factory=RunSection)

    @model_validator(mode="after")
    def _teacher_fits(self) -> RunConfig:
        if self.teacher.source == "synthetic" and self.data.synth is None:
            raise ValueError("teacher 'synthetic' needs [data] synth")
        if self.train.loss not in (None, "ce") and self.teacher.source == "none":
            raise ValueError(f"loss {self.train.loss!r} needs a teacher")
        return self


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith("function-after")) or "<root>"


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a run config; :class:`ConfigError` names the file and the offending key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_loc(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None


# ------------------------------------------------------------------------------------------------- distributed


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


@contextmanager
def _distributed() -> Iterator[_Dist]:
    """Process group (gloo) when launched by torchrun with WORLD_SIZE > 1; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield _Dist()
        return
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        yield _Dist(dist.get_rank(), dist.get_world_size())
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------------------------------------- run


@dataclass
class RunResult:
    """What :func:`fit_run` produced (``path`` is None on ranks > 0)."""

    path: Path | None
    metrics: dict[str, Any]
    card: ModelCard
    model: Any  # the best model (eval mode)
    final_state: dict[str, Any]  # the state_dict after the last epoch trained


def default_run_dir(config: RunConfig, config_path: Path | None) -> Path:
    if config.run.out is not None:
        return config.run.out
    name = config.run.name or (config_path.stem if config_path else "run")
    return Path("runs") / f"{name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def _load_data(config: RunConfig) -> tuple[list[Any], Any]:
    from bci_stream.recordings import read_recording

    from .teachers import PrecomputedTeacher

    d, source = config.data, config.teacher.source
    if d.synth is not None:
        from .synthetic import synthesize

        s = d.synth
        sessions = [
            synthesize(s.seconds, seed=seed, n_classes=s.classes, subject=subject,
                       images_per_class=s.images_per_class, evoked_uv=s.evoked_uv)
            for subject in synth_subjects(config) for seed in s.seeds
        ]  # fmt: skip
        recordings = [x.recording for x in sessions]
        teacher = sessions[0].teacher if source == "synthetic" else None
    else:
        assert d.recordings is not None
        missing = [str(p) for p in d.recordings if not p.is_file()]
        if missing:
            raise ConfigError(f"data.recordings: file not found: {', '.join(missing)}")
        recordings = [read_recording(p) for p in d.recordings]
        teacher = None
    if source not in ("none", "synthetic"):
        teacher = PrecomputedTeacher.load(source)
    return recordings, teacher


def synth_subjects(config: RunConfig) -> list[int]:
    """The synthetic subjects of a config (``subjects``, else ``[subject]``)."""
    s = config.data.synth
    assert s is not None
    return list(s.subjects) if s.subjects else [s.subject]


def recording_subjects(config: RunConfig) -> list[str] | None:
    """The subject of each recording of :func:`_load_data` (in its order), or None when unknown."""
    d = config.data
    if d.synth is not None:
        return [str(subject) for subject in synth_subjects(config) for _ in d.synth.seeds]
    return list(d.subjects) if d.subjects is not None else None


def split_run(
    groups: list[str], labels: list[str], tr: TrainConfig, unit: str = "image"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (train, validation, test), by group (image or trial), chosen before any training.

    With ``test_fraction`` > 0 the test groups are drawn first (:func:`training.fit.split_by_group`, seed + 1), then
    the rest is split into train / validation exactly as without a test split. Asserts that no group is in two parts.
    """
    from .fit import split_by_group

    if tr.test_fraction > 0:
        rest, test_idx = split_by_group(groups, labels, val_fraction=tr.test_fraction, seed=tr.seed + 1)
        sub_t, sub_v = split_by_group([groups[i] for i in rest], [labels[i] for i in rest],
                                      val_fraction=tr.val_fraction, seed=tr.seed)  # fmt: skip
        train_idx, val_idx = rest[sub_t], rest[sub_v]
        if len(test_idx) == 0:
            raise TrainingDataError("the test split is empty: every class needs at least two images (or trials)")
    else:
        train_idx, val_idx = split_by_group(groups, labels, val_fraction=tr.val_fraction, seed=tr.seed)
        test_idx = np.zeros(0, dtype=np.int64)
    if len(val_idx) == 0:
        raise TrainingDataError("the validation split is empty: every class needs at least two images (or trials)")
    parts = [{groups[i] for i in idx} for idx in (train_idx, val_idx, test_idx)]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        overlap = parts[a] & parts[b]
        assert not overlap, f"split leaks {unit}s into two parts: {sorted(overlap)[:5]}"
    return train_idx, val_idx, test_idx


def split_record(groups: list[str], unit: str, parts: dict[str, np.ndarray]) -> dict[str, Any]:
    """The content of ``RUN/split.json``: per part the epoch indices and the sorted group (image / trial) ids."""
    out: dict[str, Any] = {"unit": unit}
    for name, idx in parts.items():
        out[name] = {"index": [int(i) for i in idx], unit + "s": sorted({groups[int(i)] for i in idx})}
    return out


def _rng_state() -> dict[str, Any]:
    import torch

    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _atomic_save(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _check_resume_config(run_dir: Path, config: RunConfig) -> None:
    saved = run_dir / "config.toml"
    if not saved.is_file():
        return
    old = load_config(saved).model_dump(exclude={"run"})
    new = config.model_dump(exclude={"run"})
    old["train"].pop("epochs"), new["train"].pop("epochs")  # more epochs may be asked for on resume
    diff = [f"{sec}.{k}" for sec in new for k in new[sec] if old[sec].get(k) != new[sec][k]]
    if diff:
        raise ConfigError(f"{saved}: the run was trained with other settings ({', '.join(diff)}); cannot resume")


def fit_run(
    config_path: str | Path,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    stop_after: int | None = None,
    progress: bool = True,
) -> RunResult:
    """Train the run described by the TOML file ``config_path``; see the module docstring for the run folder.

    ``resume`` continues the run in that folder from its checkpoint (same config, epochs may grow).
    ``stop_after`` ends this invocation after that many epochs without finishing the run (a planned interruption:
    the checkpoint is written, model.pt and the report are not); resume it later.
    """
    config_path = Path(config_path)
    config = load_config(config_path)
    with _distributed() as dist_info:
        return _fit(config, config_path, out, resume, stop_after, progress, dist_info)


def _fit(
    config: RunConfig,
    config_path: Path,
    out: str | Path | None,
    resume: str | Path | None,
    stop_after: int | None,
    progress: bool,
    dd: _Dist,
) -> RunResult:
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
    from tqdm import tqdm

    from .fit import _binomial_p, cut_epochs, predict_logits
    from .students import build_student

    d, tr = config.data, config.train
    if tr.threads is not None:
        torch.set_num_threads(tr.threads)
    run_dir = Path(resume) if resume is not None else Path(out) if out is not None else None
    if run_dir is None:
        run_dir = default_run_dir(config, config_path)
        if dd.world > 1:  # every rank must agree on the timestamped name
            names = [str(run_dir)]
            dist.broadcast_object_list(names, src=0)
            run_dir = Path(names[0])
    ckpt_path = run_dir / CHECKPOINT
    checkpoint = None
    if resume is not None:
        if not ckpt_path.is_file():
            raise ConfigError(f"{run_dir}: no {CHECKPOINT} to resume from")
        _check_resume_config(run_dir, config)
        checkpoint = torch.load(ckpt_path, weights_only=False)
    elif ckpt_path.exists():
        raise ConfigError(f"{run_dir} already holds a run; use --resume {run_dir} or another --out")

    # ---- data: the daemon's epoch path (training.fit.cut_epochs), split by image, train-only normalisation
    t_start = time.perf_counter()
    recordings, teacher = _load_data(config)
    input_spec, prep = epoch_spec(
        recordings, channels=d.channels or None, sfreq=d.sfreq, n_times=d.n_times, tmin=d.tmin,
        bandpass=d.bandpass, notch=d.notch or None, filter_order=d.filter_order,
    )  # fmt: skip
    data = cut_epochs(
        recordings, input_spec, prep, events=d.events, label_regex=d.label_regex, image_regex=d.image_regex or None
    )
    loss_name = tr.loss or ("kd-supervised" if teacher is not None else "ce")
    classes, y = class_index(data.labels, teacher)
    # train / validation / test by image, before any training; the test split is never looked at here
    train_idx, val_idx, test_idx = split_run(data.groups, data.labels, tr, data.split_unit)
    norm = fit_channel_normalization(data.X[train_idx])  # training split only
    X = normalize(data.X, norm).astype(np.float32)
    t_logits = teacher.lookup(data.groups, classes) if teacher is not None else None
    n_out = len(classes)
    if dd.main:
        log.info(
            "data: %d epochs (%d dropped), %d classes, split by %s: %d train / %d validation; world size %d",
            len(y), data.n_dropped, n_out, data.split_unit, len(train_idx), len(val_idx), dd.world,
        )  # fmt: skip

    # ---- model, optimiser, loss
    torch.manual_seed(tr.seed)
    model = build_student(config.student.name, len(input_spec.channels), n_out, d.n_times, input_spec.sfreq,
                          **config.student.options)  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=tr.lr)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    Tt = torch.from_numpy(t_logits) if t_logits is not None else None

    batch_loss = _batch_loss(loss_name, tr, yt, Tt)

    history: list[dict[str, float]] = []
    timing: list[float] = []
    best_state, best_epoch, best_val, bad_epochs, start = None, 0, float("inf"), 0, 0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        opt.load_state_dict(checkpoint["optimizer"])
        _set_rng_state(checkpoint["rng"])
        history, timing = checkpoint["history"], checkpoint["timing"]
        best_state, best_epoch, best_val = checkpoint["best_state"], checkpoint["best_epoch"], checkpoint["best_val"]
        bad_epochs, start = checkpoint["bad_epochs"], checkpoint["epoch"]
        if dd.main:
            log.info("resuming %s after epoch %d", run_dir, start)
    if dd.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if checkpoint is None:
            shutil.copyfile(config_path, run_dir / "config.toml")
        parts = {"train": train_idx, "validation": val_idx, "test": test_idx}
        (run_dir / "split.json").write_text(json.dumps(split_record(data.groups, data.split_unit, parts), indent=2))

    net: Any = model
    if dd.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    train_set = TensorDataset(torch.from_numpy(train_idx))
    sampler: DistributedSampler[Any] = DistributedSampler(
        train_set, num_replicas=dd.world, rank=dd.rank, shuffle=True, seed=tr.seed
    )
    loader = DataLoader(train_set, batch_size=tr.batch_size, sampler=sampler)
    val_t = torch.from_numpy(val_idx)

    stopped_early = bool(checkpoint and checkpoint.get("stopped_early"))
    epoch = start
    for epoch in range(start + 1, tr.epochs + 1):
        if stopped_early or (stop_after is not None and epoch > start + stop_after):
            epoch -= 1
            break
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        net.train()
        sums = torch.zeros(3, dtype=torch.float64)  # loss × n, correct, n
        bar = tqdm(loader, desc=f"epoch {epoch}/{tr.epochs}", file=sys.stderr, leave=False,
                   disable=not (progress and dd.main))  # fmt: skip
        for (idx,) in bar:
            outp = net(Xt[idx])
            batch = batch_loss(outp, idx)
            opt.zero_grad()
            batch.backward()
            opt.step()
            sums += torch.tensor([batch.item() * len(idx), int((outp.argmax(1) == yt[idx]).sum()), len(idx)],
                                 dtype=torch.float64)  # fmt: skip
            bar.set_postfix(loss=f"{batch.item():.3f}")
        if dd.world > 1:
            dist.all_reduce(sums)
        val_out = torch.from_numpy(predict_logits(model, X[val_idx], threads=None))
        with torch.no_grad():
            val_loss = float(batch_loss(val_out, val_t))
        val_acc = float((val_out.argmax(1) == yt[val_idx]).float().mean())
        row = {
            "epoch": epoch,
            "loss": float(sums[0] / sums[2]),
            "train_accuracy": float(sums[1] / sums[2]),
            "val_loss": val_loss,
            "val_accuracy": val_acc,
        }
        history.append(row)
        timing.append(time.perf_counter() - t0)
        if val_loss < best_val:  # early stopping watches the validation loss only
            best_val, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        stopped_early = tr.patience is not None and bad_epochs >= tr.patience
        if dd.main:
            log.info(
                "epoch %d/%d  loss %.4f  train acc %.3f  val loss %.4f  val acc %.3f  (%.2f s)%s",
                epoch, tr.epochs, row["loss"], row["train_accuracy"], val_loss, val_acc, timing[-1],
                "  early stop" if stopped_early else "",
            )  # fmt: skip
            _atomic_save(
                {
                    "model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                    "rng": _rng_state(), "history": history, "timing": timing, "best_state": best_state,
                    "best_epoch": best_epoch, "best_val": best_val, "bad_epochs": bad_epochs,
                    "stopped_early": stopped_early, "world_size": dd.world,
                },
                ckpt_path,
            )  # fmt: skip
        if stopped_early:
            break
    final_state = copy.deepcopy(model.state_dict())
    finished = stopped_early or epoch >= tr.epochs

    # ---- the best model, its metrics and card
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    student_info = {"name": config.student.name, **config.student.options}
    card = _card(config, config_path, input_spec, prep, norm, classes, teacher, loss_name, student_info,
                 data, {"best_epoch": best_epoch})  # fmt: skip
    metrics: dict[str, Any] = {"finished": finished, "history": history, "best_epoch": best_epoch}
    if not finished or not dd.main:
        return RunResult(run_dir if dd.main else None, metrics, card, model, final_state)

    from .evaluate import evaluate_predictions

    val_logits = predict_logits(model, X[val_idx], threads=None)
    ev = evaluate_predictions(y[val_idx], val_logits, classes, n_permutations=1000, seed=tr.seed)
    n_correct = int((val_logits.argmax(1) == y[val_idx]).sum())
    n_samples = len(train_idx) * len(timing)
    metrics.update(
        {
            "stopped_early": stopped_early,
            "epochs_trained": len(history),
            "val_loss": best_val,
            "val_accuracy": ev["accuracy"],
            "chance_level": ev["chance_majority"],
            "chance_uniform": ev["chance_uniform"],
            "p_value_permutation": ev["p_value_permutation"],
            "p_value_binomial": _binomial_p(n_correct, len(val_idx), ev["chance_majority"]),
            "val_note": "the validation split chose the epoch (early stopping): optimistic, not a test result",
            "evaluation": ev,
            "confusion": _confusion(y[val_idx], val_logits.argmax(1), n_out).tolist(),
            "classes": classes,
            "n_train": len(train_idx),
            "n_val": len(val_idx),
            "n_test": len(test_idx),
            "split": f"by-{data.split_unit}",
            "n_dropped": data.n_dropped,
            "loss": loss_name,
            "world_size": dd.world,
            "timing": {
                "epoch_seconds": timing,
                "epochs_per_s": len(timing) / sum(timing),
                "samples_per_s": n_samples / sum(timing),
                "total_seconds": time.perf_counter() - t_start,
            },
        }
    )
    card = _card(config, config_path, input_spec, prep, norm, classes, teacher, loss_name, student_info, data,
                 {k: metrics[k] for k in ("best_epoch", "val_accuracy", "chance_level", "p_value_permutation",
                                           "n_train", "n_val")})  # fmt: skip
    _write_outputs(run_dir, config, card, metrics, best_state)
    log.info(
        "done: %s  best epoch %d  val acc %.3f (chance %.3f, permutation p %.3g)  %.2f epochs/s  %.0f samples/s",
        run_dir, best_epoch, metrics["val_accuracy"], metrics["chance_level"], metrics["p_value_permutation"],
        metrics["timing"]["epochs_per_s"], metrics["timing"]["samples_per_s"],
    )  # fmt: skip
    return RunResult(run_dir, metrics, card, model, final_state)


def _batch_loss(loss_name: str, tr: TrainConfig, yt: Any, Tt: Any) -> Any:
    """The run's loss of a batch: ``(outputs, epoch indices) -> loss`` (targets ``yt``, teacher logits ``Tt``)."""
    import torch

    from . import losses

    def batch_loss(outp: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if loss_name == "ce":
            return torch.nn.functional.cross_entropy(outp, yt[idx])
        assert Tt is not None
        if loss_name == "kd-supervised":
            return losses.kd_supervised(outp, Tt[idx], yt[idx], tr.temperature, tr.ce_weight)
        if loss_name == "kd-unsupervised":
            return losses.kd_unsupervised(outp, Tt[idx], tr.temperature)
        return losses.l2_logits(outp, Tt[idx])

    return batch_loss


def train_fixed_epochs(
    config: RunConfig, X: np.ndarray, y: np.ndarray, t_logits: np.ndarray | None, train_idx: np.ndarray,
    n_out: int, epochs: int, loss_name: str, sfreq: float,
) -> Any:  # fmt: skip
    """Train a fresh student of ``config`` on ``X[train_idx]`` for exactly ``epochs`` epochs (no validation, no
    early stopping, no checkpoint), single process; returns it in eval mode. Used by leave-one-subject-out."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from .students import build_student

    d, tr = config.data, config.train
    torch.manual_seed(tr.seed)
    model = build_student(config.student.name, X.shape[2], n_out, d.n_times, sfreq,
                          **config.student.options)  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=tr.lr)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    batch_loss = _batch_loss(loss_name, tr, yt, torch.from_numpy(t_logits) if t_logits is not None else None)
    loader = DataLoader(TensorDataset(torch.from_numpy(train_idx)), batch_size=tr.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(tr.seed))  # fmt: skip
    model.train()
    for _ in range(epochs):
        for (idx,) in loader:
            batch = batch_loss(model(Xt[idx]), idx)
            opt.zero_grad()
            batch.backward()
            opt.step()
    model.eval()
    return model


def _confusion(y: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (y, pred), 1)
    return m


def _card(
    config: RunConfig,
    config_path: Path,
    input_spec: InputSpec,
    prep: Preprocessing,
    norm: Any,
    classes: list[str],
    teacher: Any,
    loss_name: str,
    student_info: dict[str, Any],
    data: Any,
    metrics: dict[str, Any],
) -> ModelCard:
    tr = config.train
    names = [teacher.name_of(c) if teacher is not None else c for c in classes]
    return ModelCard(
        name=config.run.name or config_path.stem,
        version=config.run.version,
        task="classification",
        input=input_spec,
        preprocessing=Preprocessing(bandpass=prep.bandpass, notch=prep.notch, filter=prep.filter, normalization=norm),
        output=OutputSpec(name="logits", classes=names),
        provenance={
            "student": student_info,
            "teacher": teacher.description if teacher is not None else None,
            "loss": loss_name,
            "temperature": tr.temperature if loss_name in ("kd-supervised", "kd-unsupervised") else None,
            "ce_weight": tr.ce_weight if loss_name == "kd-supervised" else None,
            "optimizer": {
                "name": "adam",
                "lr": tr.lr,
                "batch_size": tr.batch_size,
                "epochs": tr.epochs,
                "patience": tr.patience,
            },
            "data": "; ".join(data.sources),
            "events": config.data.events,
            "labels": {"regex": config.data.label_regex, "classes": classes},
            "split": f"by-{data.split_unit}",
            "val_fraction": tr.val_fraction,
            "test_fraction": tr.test_fraction,
            "selection": "early stopping on validation loss",
            "metrics": {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in metrics.items()},
            "code_version": code_version(),
            "seed": tr.seed,
        },
    )


def _write_outputs(run_dir: Path, config: RunConfig, card: ModelCard, metrics: dict[str, Any], state: Any) -> None:
    _atomic_save(state, run_dir / "model.pt")
    (run_dir / "card.json").write_text(json.dumps(json.loads(card.to_json()), indent=2))
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=jsonable))
    _plots(run_dir, metrics)
    h = metrics["history"]
    lines = [
        f"# Run {run_dir.name}",
        "",
        f"Student `{config.student.name}`, loss `{metrics['loss']}`, split {metrics['split']} "
        f"({metrics['n_train']} train / {metrics['n_val']} validation / {metrics['n_test']} held-out test epochs, "
        f"the test split untouched here: `bci-train evaluate RUN`; normalisation from train only), "
        f"world size {metrics['world_size']}.",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| best epoch (lowest validation loss) | {metrics['best_epoch']} of {metrics['epochs_trained']}"
        f"{' (stopped early)' if metrics['stopped_early'] else ''} |",
        f"| validation accuracy | {100 * metrics['val_accuracy']:.1f}% |",
        f"| chance (majority / 1/n) | {100 * metrics['chance_level']:.1f}% / {100 * metrics['chance_uniform']:.1f}% |",
        f"| permutation p (1000) | {metrics['p_value_permutation']:.3g} |",
        f"| throughput | {metrics['timing']['epochs_per_s']:.2f} epochs/s, "
        f"{metrics['timing']['samples_per_s']:.0f} samples/s |",
        "",
        f"*{metrics['val_note']}.*",
        "",
        "| epoch | loss | train acc | val loss | val acc |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {r['epoch']} | {r['loss']:.4f} | {r['train_accuracy']:.3f} | {r['val_loss']:.4f} | "
          f"{r['val_accuracy']:.3f} |" for r in h),
        "",
        "![learning curves](learning_curves.png)",
        "",
        "![confusion](confusion.png)",
        "",
    ]  # fmt: skip
    (run_dir / "report.md").write_text("\n".join(lines))


def _plots(run_dir: Path, metrics: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = metrics["history"]
    ep = [r["epoch"] for r in h]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(ep, [r["loss"] for r in h], label="train")
    a.plot(ep, [r["val_loss"] for r in h], label="validation")
    a.axvline(metrics["best_epoch"], color="grey", ls=":", label="best")
    a.set(xlabel="epoch", ylabel="loss")
    a.legend()
    b.plot(ep, [r["train_accuracy"] for r in h], label="train")
    b.plot(ep, [r["val_accuracy"] for r in h], label="validation")
    b.axhline(metrics["chance_level"], color="grey", ls="--", label="chance")
    b.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    b.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "learning_curves.png", dpi=80)
    plt.close(fig)
    cm = np.asarray(metrics["confusion"])
    fig, ax = plt.subplots(figsize=(4 + 0.2 * len(cm), 3.5 + 0.2 * len(cm)))
    ax.imshow(cm, cmap="Blues")
    ax.set(xlabel="predicted", ylabel="true", title="validation confusion (best epoch)")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(run_dir / "confusion.png", dpi=80)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------------ export


def load_run_model(run: str | Path) -> tuple[Any, ModelCard]:
    """The student of a finished run (``card.json`` + ``model.pt``), in eval mode, with its card."""
    import torch

    from .students import build_student

    run = Path(run)
    missing = [n for n in ("card.json", "model.pt") if not (run / n).is_file()]
    if missing:
        raise ConfigError(f"{run}: not a finished run (missing {', '.join(missing)})")
    card = ModelCard.from_json((run / "card.json").read_text(), source=str(run / "card.json"))
    student = dict(card.provenance["student"])  # type: ignore[call-overload]
    name = student.pop("name")
    model = build_student(name, len(card.input.channels), len(card.output.classes), card.input.n_times,
                          card.input.sfreq, **student)  # fmt: skip
    model.load_state_dict(torch.load(run / "model.pt", weights_only=True))
    model.eval()
    return model, card


def export_run(run: str | Path, out: str | Path | None = None) -> Path:
    """ONNX of a run's best model with its card (parity with PyTorch checked by :func:`export_onnx`);
    default ``RUN/model.onnx``."""
    from .export import export_onnx

    model, card = load_run_model(run)
    return export_onnx(model, card, Path(out) if out is not None else Path(run) / "model.onnx")


__all__ = [
    "ConfigError", "RunConfig", "RunResult", "export_run", "fit_run", "load_config", "load_run_model",
    "recording_subjects", "split_run", "train_fixed_epochs",
]  # fmt: skip
