"""Config-driven training runs: ``bci-train fit --config CONFIG.toml`` and ``bci-train export RUN``.

A run reads a TOML config (:class:`RunConfig`, unknown keys rejected), cuts epochs with the helpers of
:mod:`training.fit` (the daemon's epoch path), splits by the ``[data] split`` unit (:func:`plan_split`: image,
recording, block or, warned as leaky, trial; asserted disjoint), normalises with statistics of the
training split only, and trains through the one loop (:func:`training.loop.fit_model`) with **early stopping on the validation loss** (``patience``). Each epoch is
checkpointed to ``RUN/checkpoint.pt`` (model, optimiser, epoch, RNG states, history, best weights), so
``bci-train fit --config CONFIG --resume RUN`` continues and ends with the same weights as an uninterrupted run.

The run folder::

    RUN/config.toml         copy of the config
    RUN/split.json          the split (unit, why, leak note, epochs per class per part) and per part its units and
                            epoch indices (test may be empty)
    RUN/checkpoint.pt       last epoch (for --resume)
    RUN/model.pt            best weights (lowest validation loss), a state_dict
    RUN/card.json           the model card (input, preprocessing with the train-split normalisation, classes)
    RUN/metrics.json        history, best epoch, validation accuracy with chance and permutation p, throughput
    RUN/report.md           the same in words, with learning_curves.png and confusion.png

Honesty note: the validation split chooses the epoch (early stopping), so its accuracy is optimistic by that
selection; it is not a test result (METHODS.md, "Honest evaluation", rule 3). ``[train] test_fraction`` (> 0)
holds out whole units (images, recordings, blocks) as a **test split**, drawn before any training and never used
for early stopping or selection; ``RUN/split.json`` records the units (and epoch indices) of train / validation /
test, and ``bci-train evaluate RUN`` (:func:`training.evaluate_run.evaluate_run`) evaluates that test split.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the run uses ``torch.distributed`` (gloo), ``DistributedDataParallel`` and a
``DistributedSampler``; every rank computes the same validation loss, rank 0 writes the run folder.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bci_stream.card import InputSpec, ModelCard, Preprocessing
from bci_stream.errors import ConfigError  # the one ConfigError; importable from here for one release
from bci_stream.signal import fit_channel_normalization, normalize

from .fit import LabelledEpochs, class_index, epoch_spec
from .loop import Batch, Dist, IndexBatches, LoopConfig, distributed, fit_model
from .run_config import (
    DataConfig,
    RunConfig,
    RunSection,
    StudentConfig,
    SynthConfig,
    TeacherConfig,
    TrainConfig,
    check_resume_config,
    load_config,
)
from .run_report import confusion, run_card, write_outputs
from .splits import CONFIG_OPTION, SPLITS, SplitPlan, class_counts, plan, split_parts

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


# --------------------------------------------------------------------------------------------------------- run


@dataclass
class RunResult:
    """What :func:`fit_run` produced (``path`` is None on ranks > 0)."""

    path: Path | None
    metrics: dict[str, Any]
    card: ModelCard
    model: Any  # the best model (eval mode)
    final_state: dict[str, Any]  # the state_dict after the last epoch trained


@dataclass
class RunData:
    """A run's epochs, split and normalised (train split only), with targets and teacher logits."""

    X: np.ndarray  # (n, n_times, n_chans) float32, normalised
    y: np.ndarray  # class index per epoch
    t_logits: np.ndarray | None
    classes: list[str]
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    epochs: LabelledEpochs
    input_spec: InputSpec
    prep: Preprocessing
    norm: Any
    teacher: Any
    loss_name: str
    split: SplitPlan


#: ``[data] split`` values of a fit run: the unit that no two parts (train / validation / test) share.
RUN_SPLITS = SPLITS
#: What a by-trial split of real recordings is recorded as (log, split.json, metrics, card).
TRIAL_LEAK = CONFIG_OPTION.leak


def plan_split(data: LabelledEpochs, d: DataConfig, tr: TrainConfig, source: str = "run config") -> SplitPlan:
    """The split unit of every epoch for ``[data] split``, or the default (:func:`training.splits.plan`, shared
    with ``bci-train distil --split``): by image when the markers carry image ids, else by recording with at least
    3 recordings, else by block — never silently by trial.

    Raises :class:`ConfigError` (naming ``[data] split``, the value, the number of groups and what to choose
    instead) when the split cannot give every part (train, validation and, with ``test_fraction``, test) its own
    groups; a by-trial split is logged as a warning and carries :data:`TRIAL_LEAK`.
    """
    return plan(data, d.split, image_regex=d.image_regex, test=tr.test_fraction > 0, option=CONFIG_OPTION,
                source=source, strict=d.strict and d.recordings is not None)  # fmt: skip


def split_epochs(
    data: LabelledEpochs, config: RunConfig, source: str = "run config"
) -> tuple[SplitPlan, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`plan_split` then :meth:`SplitPlan.parts <training.splits.SplitPlan.parts>` on its units (as
    :func:`split_run`, refusals naming the config and ``[data] split``): a run's split (fit_run and evaluate_run
    alike)."""
    plan = plan_split(data, config.data, config.train, source)
    tr = config.train
    return plan, plan.parts(data.labels, val_fraction=tr.val_fraction, seed=tr.seed, test_fraction=tr.test_fraction)


def check_recorded_split(
    run_dir: Path, plan: SplitPlan, parts: tuple[np.ndarray, np.ndarray, np.ndarray], what: str
) -> None:
    """Refuse to ``what`` (resume, evaluate) a run whose ``RUN/split.json`` records another split than the one its
    config gives now (runs before ``[data] split`` split real recordings without image ids by trial)."""
    saved = run_dir / "split.json"
    if not saved.is_file():  # runs before split.json
        return
    recorded = json.loads(saved.read_text())
    unit = recorded.get("unit")
    if unit != plan.unit:
        hint = ("add [data] split = 'by-trial' to its config.toml to evaluate it as it was trained (leaky)"
                if what == "evaluate" else "start a new run (--out) with the new split")  # fmt: skip
        raise ConfigError(
            f"{saved}: the run was split by {unit} but its config now gives [data] split = {plan.name!r} "
            f"({plan.chosen}); cannot {what} it on another split: {hint}"
        )
    for name, idx in zip(("train", "validation", "test"), parts, strict=True):
        if recorded[name]["index"] != [int(i) for i in idx]:
            raise ConfigError(f"{saved}: the rebuilt {name} split does not match the recorded one (data or config "
                              f"changed?); cannot {what} the run")  # fmt: skip


def default_run_dir(config: RunConfig, config_path: Path | None) -> Path:
    if config.run.out is not None:
        return config.run.out
    name = config.run.name or (config_path.stem if config_path else "run")
    return Path("runs") / f"{name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def data_spec(config: RunConfig, recordings: list[Any], source: str = "run config") -> tuple[InputSpec, Preprocessing]:
    """The model input (window from ``tmax`` or ``n_times``, events and label rule) and causal preprocessing
    (band capped below Nyquist, as ``distil``) of a run on ``recordings``; ``source`` names the config file."""
    from .realdata import RealDataError, capped_band

    d = config.data
    rate = d.sfreq or recordings[0].sfreq  # the model rate: the pipeline resamples to it
    try:
        n_times = d.window(rate)
        band = capped_band(d.bandpass, rate, explicit="bandpass" in d.model_fields_set,
                           source=recordings[0].source, option="[data] bandpass")  # fmt: skip
    except (ValueError, RealDataError) as exc:
        raise ConfigError(f"{source}: data: {exc}") from None
    input_spec, prep = epoch_spec(
        recordings, channels=d.channels or None, sfreq=d.sfreq, n_times=n_times, tmin=d.tmin,
        bandpass=band, notch=d.notch or None, filter_order=d.filter_order,
    )  # fmt: skip
    missing = [c for c in input_spec.channels if any(c not in rec.ch_names for rec in recordings)]
    if missing:
        raise ConfigError(f"{source}: data.channels: {missing} not in every recording (the first has "
                          f"{recordings[0].ch_names}); name channels the recordings have")  # fmt: skip
    rule = d.rule()
    events = re.compile(d.events) if d.events else None
    for rec in recordings:  # before any training: a selected marker the rule cannot label, named with the keys
        bad = next((m.value for m in rec.markers if (events is None or events.search(m.value))
                    and rule.label_of(m.value) is None), None)  # fmt: skip
        if bad is not None:
            raise ConfigError(
                f"{source}: data: marker {bad!r} of {rec.source} matches events {d.events!r} but the label rule "
                f"{rule.describe()} gives it no class; narrow 'events' or fix the rule (label_regex, label_field "
                "with event_fields, or [data.label_map])"
            )
    # the card records the markers and the label rule, so the daemon serves (and scores) it without extra flags
    return input_spec.model_copy(update=rule.card_input(d.events, d.fields_to_read())), prep


def prepare_data(config: RunConfig, source: str = "run config") -> RunData:
    """The daemon's epoch path (:func:`training.fit.cut_epochs`), split by image, train-only normalisation.

    ``source`` (the config file) prefixes errors about the config's values.
    """
    from .fit import cut_epochs

    d, tr = config.data, config.train
    recordings, teacher = _load_data(config)
    input_spec, prep = data_spec(config, recordings, source)
    data = cut_epochs(recordings, input_spec, prep, events=d.events, label_regex=d.rule().cut_regex,
                      image_regex=d.image_regex or None)  # fmt: skip
    classes, y = class_index(data.labels, teacher)
    # train / validation / test by the [data] split unit, before any training; the test split is never looked at here
    plan, (train_idx, val_idx, test_idx) = split_epochs(data, config, source)
    # identical recordings or epochs on both sides of a split are a leak (real data sets contain copied files)
    from .leaks import check_epoch_split

    held_out = np.concatenate([val_idx, test_idx]).astype(np.int64)
    for warning in check_epoch_split(recordings, data, train_idx, held_out, strict=d.strict,
                                     strict_option=CONFIG_OPTION.strict):  # fmt: skip
        log.warning("%s", warning)
    norm = fit_channel_normalization(data.X[train_idx])  # training split only
    return RunData(
        X=normalize(data.X, norm).astype(np.float32), y=y,
        t_logits=teacher.lookup(data.groups, classes) if teacher is not None else None, classes=classes,
        train_idx=train_idx, val_idx=val_idx, test_idx=test_idx, epochs=data, input_spec=input_spec, prep=prep,
        norm=norm, teacher=teacher, loss_name=tr.loss or ("kd-supervised" if teacher is not None else "ce"),
        split=plan,
    )  # fmt: skip


def batch_loss(loss_name: str, tr: TrainConfig) -> Any:
    """The loop's loss hook for a run: ``(outputs, batch) -> loss`` by ``loss_name`` (see :mod:`training.losses`)."""
    import torch

    from . import losses

    def loss(outp: torch.Tensor, batch: Batch) -> torch.Tensor:
        if loss_name == "ce":
            return torch.nn.functional.cross_entropy(outp, batch.y)
        assert batch.teacher is not None
        if loss_name == "kd-supervised":
            return losses.kd_supervised(outp, batch.teacher, batch.y, tr.temperature, tr.ce_weight)
        if loss_name == "kd-unsupervised":
            return losses.kd_unsupervised(outp, batch.teacher, tr.temperature)
        return losses.l2_logits(outp, batch.teacher)

    return loss


def _tensors(rd: RunData) -> tuple[Any, Any, Any]:
    import torch

    Tt = torch.from_numpy(rd.t_logits) if rd.t_logits is not None else None
    return torch.from_numpy(rd.X), torch.from_numpy(rd.y), Tt


def _build_student(config: RunConfig, n_chans: int, n_out: int, n_times: int, sfreq: float) -> Any:
    """A fresh student of the config, seeded with ``[train] seed``."""
    import torch

    from .students import build_student

    torch.manual_seed(config.train.seed)
    return build_student(config.student.name, n_chans, n_out, n_times, sfreq, **config.student.options)


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
    if config.embedding is not None:
        return _fit_embedding(config, config_path, out, resume, stop_after)
    with distributed() as dist_info:
        return _fit(config, config_path, out, resume, stop_after, progress, dist_info)


def _fit_embedding(config: RunConfig, config_path: Path, out: str | Path | None, resume: str | Path | None,
                   stop_after: int | None) -> RunResult:  # fmt: skip
    """An ``[embedding]`` run (:mod:`training.embedding_run`): one process, start to end."""
    import os

    from .embedding_run import fit_embedding_run

    if resume is not None or stop_after is not None or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(f"{config_path}: an [embedding] run has no --resume, no planned stop and no torchrun")
    run_dir = Path(out) if out is not None else default_run_dir(config, config_path)
    if (run_dir / "card.json").exists() or (run_dir / CHECKPOINT).exists():
        raise ConfigError(f"{run_dir} already holds a run; give another --out")
    path, metrics, card = fit_embedding_run(config, config_path, run_dir)
    return RunResult(path, metrics, card, None, {})


def _run_dir(config: RunConfig, config_path: Path, out: str | Path | None, resume: str | Path | None,
             dd: Dist) -> Path:  # fmt: skip
    """The run folder, checked: resume needs a checkpoint and the same settings; a new run an empty folder."""
    run_dir = Path(resume) if resume is not None else Path(out) if out is not None else None
    if run_dir is None:
        run_dir = default_run_dir(config, config_path)
        if dd.world > 1:  # every rank must agree on the timestamped name
            import torch.distributed as dist

            names = [str(run_dir)]
            dist.broadcast_object_list(names, src=0)
            run_dir = Path(names[0])
    ckpt_path = run_dir / CHECKPOINT
    if resume is not None:
        if not ckpt_path.is_file():
            raise ConfigError(f"{run_dir}: no {CHECKPOINT} to resume from")
        check_resume_config(run_dir, config)
    elif ckpt_path.exists():
        raise ConfigError(f"{run_dir} already holds a run; use --resume {run_dir} or another --out")
    return run_dir


def _fit(
    config: RunConfig, config_path: Path, out: str | Path | None, resume: str | Path | None, stop_after: int | None,
    progress: bool, dd: Dist,
) -> RunResult:  # fmt: skip
    import torch

    tr = config.train
    if tr.threads is not None:
        torch.set_num_threads(tr.threads)
    run_dir = _run_dir(config, config_path, out, resume, dd)
    t_start = time.perf_counter()
    rd = prepare_data(config, str(config_path))
    n_out = len(rd.classes)
    if dd.main:
        log.info(
            "data: %d epochs (%d dropped), %d classes, split by %s: %d train / %d validation; world size %d",
            len(rd.y), rd.epochs.n_dropped, n_out, rd.split.unit, len(rd.train_idx), len(rd.val_idx), dd.world,
        )  # fmt: skip
    model = _build_student(config, len(rd.input_spec.channels), n_out, rd.input_spec.n_times, rd.input_spec.sfreq)
    if resume is not None:  # the checkpoint was trained on the recorded split: never continue on another
        check_recorded_split(run_dir, rd.split, (rd.train_idx, rd.val_idx, rd.test_idx), "resume")
    if dd.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume is None:
            shutil.copyfile(config_path, run_dir / "config.toml")
        parts = {"train": rd.train_idx, "validation": rd.val_idx, "test": rd.test_idx}
        record = split_record(rd.split.groups, rd.split.unit, parts)
        record.update({"split": rd.split.name, "chosen": rd.split.chosen, "leaky": rd.split.leak,
                       "classes": class_counts(rd.epochs.labels, parts)})  # fmt: skip
        (run_dir / "split.json").write_text(json.dumps(record, indent=2))
    Xt, yt, Tt = _tensors(rd)
    train = IndexBatches(Xt, yt, rd.train_idx, batch_size=tr.batch_size, seed=tr.seed, teacher=Tt,
                         order="distributed", rank=dd.rank, world=dd.world)  # fmt: skip
    val = Batch(rd.X[rd.val_idx], yt[rd.val_idx], None if Tt is None else Tt[rd.val_idx], index=rd.val_idx)
    result = fit_model(
        model, train, val, loss=batch_loss(rd.loss_name, tr), name="fit", dist=dd, progress=progress,
        config=LoopConfig(epochs=tr.epochs, lr=tr.lr, patience=tr.patience, keep_best=True),
        checkpoint=run_dir / CHECKPOINT, resume=resume is not None, stop_after=stop_after,
    )  # fmt: skip
    st = result.state
    student_info = {"name": config.student.name, **config.student.options}
    split_info = rd.split.info({"train": rd.train_idx, "validation": rd.val_idx, "test": rd.test_idx}, rd.epochs.labels)
    card = run_card(config, config_path, rd.input_spec, rd.prep, rd.norm, rd.classes, rd.teacher, rd.loss_name,
                    student_info, rd.epochs, {"best_epoch": st.best_epoch}, split_info)  # fmt: skip
    metrics: dict[str, Any] = {"finished": result.finished, "history": st.history, "best_epoch": st.best_epoch}
    if not result.finished or not dd.main:
        return RunResult(run_dir if dd.main else None, metrics, card, result.model, result.final_state)
    metrics.update(_final_metrics(result.model, rd, tr, st, dd, time.perf_counter() - t_start))
    card = run_card(config, config_path, rd.input_spec, rd.prep, rd.norm, rd.classes, rd.teacher, rd.loss_name,
                    student_info, rd.epochs,
                    {k: metrics[k] for k in ("best_epoch", "val_accuracy", "chance_level", "p_value_permutation",
                                              "n_train", "n_val")}, split_info)  # fmt: skip
    assert st.best_state is not None
    write_outputs(run_dir, config, card, metrics, st.best_state)
    log.info(
        "done: %s  best epoch %d  val acc %.3f (chance %.3f, permutation p %.3g)  %.2f epochs/s  %.0f samples/s",
        run_dir, st.best_epoch, metrics["val_accuracy"], metrics["chance_level"], metrics["p_value_permutation"],
        metrics["timing"]["epochs_per_s"], metrics["timing"]["samples_per_s"],
    )  # fmt: skip
    return RunResult(run_dir, metrics, card, result.model, result.final_state)


def _final_metrics(model: Any, rd: RunData, tr: TrainConfig, st: Any, dd: Dist, seconds: float) -> dict[str, Any]:
    """The best model on the validation split, with chance and p-values, and the run's throughput."""
    from .evaluate import evaluate_predictions
    from .fit import _binomial_p, predict_logits

    y, val_idx, timing = rd.y, rd.val_idx, st.epoch_seconds
    val_logits = predict_logits(model, rd.X[val_idx], threads=None)
    ev = evaluate_predictions(y[val_idx], val_logits, rd.classes, n_permutations=1000, seed=tr.seed)
    n_correct = int((val_logits.argmax(1) == y[val_idx]).sum())
    p_perm, perm_unit = ev["p_value_permutation"], "trial"
    if rd.split.name == "by-block":  # trials of a block are not exchangeable: permute whole blocks' labels
        from .crossval import permutation_p

        pred = np.zeros(len(y), dtype=np.int64)
        pred[val_idx] = val_logits.argmax(1)
        units = np.unique(np.asarray(rd.split.groups), return_inverse=True)[1]
        p_perm = permutation_p(y, pred, [(rd.train_idx, val_idx)], 1000, tr.seed, units=units)
        perm_unit = "block"
    n_samples = len(rd.train_idx) * len(timing)
    return {
        "stopped_early": st.stopped_early,
        "epochs_trained": len(st.history),
        "val_loss": st.best_val,
        "val_accuracy": ev["accuracy"],
        "chance_level": ev["chance_majority"],
        "chance_uniform": ev["chance_uniform"],
        "p_value_permutation": p_perm,
        "permutation_unit": perm_unit,  # labels permuted per trial, or per block (a by-block split)
        "p_value_permutation_trials": ev["p_value_permutation"],
        "p_value_binomial": _binomial_p(n_correct, len(val_idx), ev["chance_majority"]),
        "val_note": "the validation split chose the epoch (early stopping): optimistic, not a test result",
        "evaluation": ev,
        "confusion": confusion(y[val_idx], val_logits.argmax(1), len(rd.classes)).tolist(),
        "classes": rd.classes,
        "n_train": len(rd.train_idx),
        "n_val": len(val_idx),
        "n_test": len(rd.test_idx),
        "split": rd.split.name,
        "split_info": rd.split.info(
            {"train": rd.train_idx, "validation": rd.val_idx, "test": rd.test_idx}, rd.epochs.labels
        ),
        "n_dropped": rd.epochs.n_dropped,
        "loss": rd.loss_name,
        "world_size": dd.world,
        "timing": {
            "epoch_seconds": timing,
            "epochs_per_s": len(timing) / sum(timing),
            "samples_per_s": n_samples / sum(timing),
            "total_seconds": seconds,
        },
    }


def train_fixed_epochs(
    config: RunConfig, X: np.ndarray, y: np.ndarray, t_logits: np.ndarray | None, train_idx: np.ndarray,
    n_out: int, epochs: int, loss_name: str, sfreq: float,
) -> Any:  # fmt: skip
    """Train a fresh student of ``config`` on ``X[train_idx]`` for exactly ``epochs`` epochs (no validation, no
    early stopping, no checkpoint), single process, in the run's batch order; returns it in eval mode. Used by
    leave-one-subject-out."""
    import torch

    tr = config.train
    model = _build_student(config, X.shape[2], n_out, X.shape[1], sfreq)
    Tt = torch.from_numpy(t_logits) if t_logits is not None else None
    train = IndexBatches(torch.from_numpy(X), torch.from_numpy(y), train_idx, batch_size=tr.batch_size,
                         seed=tr.seed, teacher=Tt, order="distributed")  # fmt: skip
    return fit_model(model, train, None, loss=batch_loss(loss_name, tr), name="loso",
                     config=LoopConfig(epochs=epochs, lr=tr.lr)).model  # fmt: skip


# ------------------------------------------------------------------------------------------------------- data


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
        recordings = [read_recording(p, event_fields=d.fields_to_read()) for p in d.recordings]
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
    """Indices (train, validation, test) of a run by group (:func:`training.splits.split_parts` with ``[train]``
    val_fraction, test_fraction and seed), chosen before any training; asserted disjoint."""
    return split_parts(groups, labels, unit, val_fraction=tr.val_fraction, seed=tr.seed,
                       test_fraction=tr.test_fraction)  # fmt: skip


def split_record(groups: list[str], unit: str, parts: dict[str, np.ndarray]) -> dict[str, Any]:
    """The content of ``RUN/split.json``: per part the epoch indices and the sorted group (image / recording /
    block / trial) ids."""
    out: dict[str, Any] = {"unit": unit}
    for name, idx in parts.items():
        out[name] = {"index": [int(i) for i in idx], unit + "s": sorted({groups[int(i)] for i in idx})}
    return out


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
    if card.task == "embedding":
        from .embedding_run import load_embedding_model

        return load_embedding_model(run, card), card
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
    "CHECKPOINT", "RUN_SPLITS", "TRIAL_LEAK", "ConfigError", "DataConfig", "RunConfig", "RunData", "RunResult",
    "RunSection", "SplitPlan", "StudentConfig", "SynthConfig", "TeacherConfig", "TrainConfig", "batch_loss",
    "check_recorded_split", "export_run", "fit_run", "load_config", "load_run_model", "plan_split", "prepare_data", "recording_subjects",
    "split_epochs", "split_run", "train_fixed_epochs",
]  # fmt: skip
