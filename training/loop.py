"""The one training loop: every ``bci-train`` command that trains calls :func:`fit_model`.

What it does, once for all commands: Adam (or a given optimiser), epochs of batches, the loss of each batch, the
validation loss and accuracy after each epoch, early stopping on the validation loss (``patience``), keeping the
best weights (``keep_best``), a checkpoint after each epoch and resume from it, a stop after N epochs (a planned
interruption), ``DistributedDataParallel`` under ``torchrun``, a progress bar, one log line per epoch, and
callbacks that see every step and epoch.

What differs between commands comes in as hooks:

- ``loss(outputs, batch) -> loss`` (or ``(loss, parts)``: floats a callback can log) — KD, cross-entropy, L2, CCC;
- ``train``: the batch sampler, an object with ``batches(epoch)`` that yields :class:`Batch` es —
  :class:`IndexBatches` (rows of tensors: the classification commands) in one of two orders, or the valence
  crops of :mod:`training.valence.fit`;
- ``callbacks``: :class:`Callback` objects (metrics, logging, a test's recorder); :func:`observe` adds one to
  every :func:`fit_model` call in a ``with`` block (how a test sees that every command goes through here).

Checkpoints (``checkpoint=PATH``) hold tensors, numbers, strings, lists and dicts only — RNG states as tensors,
no pickled objects — so they load with ``torch.load(weights_only=True)``, which is how resume loads them.

Who calls it (``name``): ``fit`` (:mod:`training.runs`), ``distil`` (:func:`training.fit.train_student`: the
shipped models, sweeps, few labels, unseen classes), ``loso`` (:mod:`training.evaluate_run`), ``valence``
(:mod:`training.valence.fit`).
"""

from __future__ import annotations

import copy
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ the pieces


@dataclass
class Batch:
    """One batch (or the whole validation set): model input and what the loss needs.

    ``x`` is the model input (a tensor; for validation a float32 array is fine), ``y`` the targets (class
    indices, int64, for accuracy; or values), ``teacher`` the teacher's outputs, ``mask`` valid steps,
    ``index`` the dataset rows (for the caller's own look-ups).
    """

    x: Any
    y: Any = None
    teacher: Any = None
    mask: Any = None
    index: Any = None

    def __len__(self) -> int:
        return len(self.x)


class Batches(Protocol):
    """The batch sampler hook: the batches of one epoch, and (optionally) its state for a checkpoint."""

    def batches(self, epoch: int) -> Iterable[Batch]: ...


@dataclass
class LoopConfig:
    """Optimisation and selection settings of :func:`fit_model`.

    ``patience``: epochs without a lower validation loss before stopping (None: never stop early).
    ``keep_best``: end with the weights of the epoch with the lowest validation loss (else the last epoch's).
    ``log_every``: with ``log_steps``, a log line every N optimiser steps (valence: one long epoch of steps).
    """

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int | None = None
    keep_best: bool = False
    log_every: int = 0


@dataclass
class Step:
    """What a callback sees after each optimiser step."""

    epoch: int
    step: int  # counted over the whole run, from 1
    loss: float
    n: int
    parts: dict[str, float] = field(default_factory=dict)


@dataclass
class LoopState:
    """The loop's state: what callbacks read and what a checkpoint holds."""

    name: str
    config: LoopConfig
    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    best_state: dict[str, Any] | None = None
    best_epoch: int = 0
    best_val: float = float("inf")
    bad_epochs: int = 0
    stopped_early: bool = False
    world_size: int = 1
    last_val_outputs: Any = None  # validation outputs after the last epoch trained in this call


class Callback:
    """Hooks of :func:`fit_model`; override what you need. ``state.name`` says which command trains."""

    def on_fit_start(self, state: LoopState, model: Any) -> None:
        """Before the first epoch (after a resume: before the first epoch still to train)."""

    def on_step(self, state: LoopState, step: Step) -> None:
        """After each optimiser step."""

    def on_epoch_end(self, state: LoopState, row: dict[str, float]) -> None:
        """After each epoch, with its history row (``loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``).

        The metrics hook: keys a callback adds to ``row`` go into the history (and the checkpoint).
        """

    def on_fit_end(self, state: LoopState, model: Any) -> None:
        """After the last epoch of this call."""


_OBSERVERS: list[Callback] = []


@contextmanager
def observe(callback: Callback) -> Iterator[Callback]:
    """Add ``callback`` to every :func:`fit_model` call inside the ``with`` block (tests, profiling)."""
    _OBSERVERS.append(callback)
    try:
        yield callback
    finally:
        _OBSERVERS.remove(callback)


# ---------------------------------------------------------------------------------------------- the samplers


class IndexBatches:
    """Batches of rows ``index`` of tensors ``X``, ``y``, ``teacher`` (the classification commands).

    ``order``:

    - ``"distributed"`` — :class:`torch.utils.data.DistributedSampler`, reseeded each epoch (``seed + epoch``),
      sharded over the ranks under DDP; resumes without any state (``bci-train fit``, leave-one-subject-out);
    - ``"generator"`` — one ``torch.Generator(seed)``, a permutation per epoch (``train_student``: the order the
      shipped models were built with; its state goes into the checkpoint).
    """

    def __init__(
        self, X: Any, y: Any, index: Any, *, batch_size: int, seed: int = 0, teacher: Any = None,
        order: Literal["distributed", "generator"] = "distributed", rank: int = 0, world: int = 1,
    ) -> None:  # fmt: skip
        import torch

        self.X, self.y, self.teacher = X, y, teacher
        self.index = torch.as_tensor(np.asarray(index, dtype=np.int64))
        self.batch_size, self.seed, self.order, self.rank, self.world = batch_size, seed, order, rank, world
        self.generator = torch.Generator().manual_seed(seed)
        if order == "distributed":
            from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

            train_set = TensorDataset(self.index)
            self.sampler: Any = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=seed)
            self.loader = DataLoader(train_set, batch_size=batch_size, sampler=self.sampler)
        elif order != "generator":
            raise ValueError(f"unknown batch order {order!r}")

    def rows(self, idx: Any) -> Batch:
        return Batch(self.X[idx], self.y[idx], None if self.teacher is None else self.teacher[idx], index=idx)

    def batches(self, epoch: int) -> Iterator[Batch]:
        import torch

        if self.order == "distributed":
            self.sampler.set_epoch(epoch)
            for (idx,) in self.loader:
                yield self.rows(idx)
            return
        order = self.index[torch.randperm(len(self.index), generator=self.generator)]
        for i in range(0, len(order), self.batch_size):
            yield self.rows(order[i : i + self.batch_size])

    def __len__(self) -> int:
        n = len(self.index) // self.world if self.order == "distributed" else len(self.index)
        return -(-n // self.batch_size)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


# ------------------------------------------------------------------------------------------------ distributed


@dataclass
class Dist:
    """This process's place under ``torchrun``: ``rank`` of ``world`` (1: a single process)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


@contextmanager
def distributed() -> Iterator[Dist]:
    """Process group (gloo) when launched by torchrun with WORLD_SIZE > 1; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield Dist()
        return
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        yield Dist(dist.get_rank(), dist.get_world_size())
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------- RNG, checkpoints


def rng_state() -> dict[str, Any]:
    """torch, NumPy and Python RNG states as tensors and numbers (loadable with ``weights_only=True``)."""
    import torch

    legacy = np.random.get_state(legacy=True)  # the default; spelled out because the stubs type the default as dict
    assert isinstance(legacy, tuple)  # the global RandomState's MT19937: (name, keys, pos, has_gauss, gauss)
    name, keys, pos, has_gauss, gauss = legacy
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss_next},
    }  # fmt: skip


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    import torch

    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a checkpoint."""
    import torch

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint of :func:`fit_model`, loaded with ``weights_only=True`` (no code runs on load).

    A checkpoint that needs unpickling (written before the one loop: NumPy and Python RNG states as objects) is
    refused with :class:`~bci_stream.errors.ConfigError`: never unpickled.
    """
    import pickle

    import torch

    from bci_stream.errors import ConfigError

    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ConfigError(
            f"{path}: holds pickled objects, which are never loaded (a checkpoint from before the one training loop); "
            "start the run again in a new folder"
        ) from exc


_STATE_KEYS = ("epoch", "step", "history", "epoch_seconds", "best_state", "best_epoch", "best_val", "bad_epochs",
               "stopped_early", "world_size")  # fmt: skip


def _checkpoint(state: LoopState, model: Any, opt: Any, train: Any, extra: dict[str, Any]) -> dict[str, Any]:
    out = {k: getattr(state, k) for k in _STATE_KEYS}
    out.update(model=model.state_dict(), optimizer=opt.state_dict(), rng=rng_state(), extra=extra)
    out["timing"] = out["epoch_seconds"]  # the name of run folders before the one loop
    if hasattr(train, "state_dict"):
        out["sampler"] = train.state_dict()
    return out


def _restore(ckpt: dict[str, Any], state: LoopState, model: Any, opt: Any, train: Any) -> None:
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    for k in _STATE_KEYS:
        if k in ckpt:
            setattr(state, k, ckpt[k])
    if "sampler" in ckpt and hasattr(train, "load_state_dict"):
        train.load_state_dict(ckpt["sampler"])


# ------------------------------------------------------------------------------------------------- the loop


@dataclass
class LoopResult:
    """What :func:`fit_model` leaves: the model (eval mode; best or last weights), the state, the last weights."""

    model: Any
    state: LoopState
    final_state: dict[str, Any]  # weights after the last epoch trained
    finished: bool  # False when stop_after ended the call before the run's epochs were done

    @property
    def history(self) -> list[dict[str, float]]:
        return self.state.history


LossFn = Callable[[Any, Batch], Any]


def predict_outputs(model: Any, x: Any, batch_size: int = 64) -> Any:
    """Outputs of ``model`` in eval mode on ``x``, in chunks of ``batch_size``, as a tensor."""
    import torch

    from .fit import predict_logits

    return torch.from_numpy(predict_logits(model, np.asarray(x, dtype=np.float32), batch_size, threads=None))


def fit_model(
    model: Any,
    train: Batches,
    val: Batch | None = None,
    *,
    loss: LossFn,
    config: LoopConfig,
    callbacks: Sequence[Callback] = (),
    name: str = "fit",
    optimizer: Any = None,
    dist: Dist | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    checkpoint_extra: dict[str, Any] | None = None,
    stop_after: int | None = None,
    progress: bool = False,
    predict: Callable[[Any, Any], Any] = predict_outputs,
) -> LoopResult:
    """Train ``model`` on the batches of ``train`` for ``config.epochs`` epochs; validate on ``val`` after each.

    Parameters
    ----------
    model
        A ``torch.nn.Module``, initialised by the caller (seed it first: ``torch.manual_seed``).
    train
        The batch sampler (:class:`Batches`), e.g. :class:`IndexBatches`.
    val
        The whole validation set as one :class:`Batch` (its loss by ``loss``, its accuracy when ``y`` are class
        indices), or None: no validation, no early stopping, the last weights.
    loss
        ``loss(outputs, batch)``: a scalar tensor, or ``(tensor, parts)`` with ``parts`` a dict of floats.
    config
        :class:`LoopConfig`: epochs, lr, patience, keep_best.
    callbacks, name
        :class:`Callback` s (plus those of :func:`observe`); ``name`` tells them which command trains.
    optimizer
        Default ``Adam(lr, weight_decay)``.
    dist
        :class:`Dist` under torchrun (DDP, gradients averaged, metrics summed over ranks); None: one process.
    checkpoint, resume, checkpoint_extra
        Write a checkpoint here after each epoch (rank 0); ``resume`` first restores it (weights, optimiser, RNG,
        sampler, history); ``checkpoint_extra`` is stored with it (numbers, strings, tensors only).
    stop_after
        End this call after that many epochs (the checkpoint says where to resume).
    progress
        A tqdm bar per epoch on stderr (rank 0).
    predict
        ``predict(model, val.x)``: validation outputs (default: eval mode, no grad, chunks of 64).
    """
    import torch

    dist = dist or Dist()
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = LoopState(name=name, config=config, world_size=dist.world)
    if resume:
        assert checkpoint is not None, "resume needs the checkpoint path"
        _restore(load_checkpoint(checkpoint), state, model, opt, train)
        if dist.main:
            log.info("resuming after epoch %d", state.epoch)
    net = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    hooks = [*callbacks, *_OBSERVERS]
    for cb in hooks:
        cb.on_fit_start(state, model)
    start = state.epoch
    for epoch in range(start + 1, config.epochs + 1):
        if state.stopped_early or (stop_after is not None and epoch > start + stop_after):
            break
        row = _epoch(net, model, train, val, loss, opt, state, epoch, dist, hooks, progress and dist.main, predict)
        for cb in hooks:
            cb.on_epoch_end(state, row)
        if checkpoint is not None and dist.main:
            atomic_save(_checkpoint(state, model, opt, train, checkpoint_extra or {}), checkpoint)
    final = copy.deepcopy(model.state_dict())
    finished = state.stopped_early or state.epoch >= config.epochs
    if config.keep_best and val is not None and state.best_state is not None:
        model.load_state_dict(state.best_state)
    model.eval()
    for cb in hooks:
        cb.on_fit_end(state, model)
    return LoopResult(model, state, final, finished)


def _epoch(
    net: Any, model: Any, train: Batches, val: Batch | None, loss: LossFn, opt: Any, state: LoopState, epoch: int,
    dist: Dist, hooks: Sequence[Callback], progress: bool, predict: Callable[[Any, Any], Any],
) -> dict[str, float]:  # fmt: skip
    """Train one epoch, validate, update best / early stopping; the epoch's history row."""
    import torch
    from tqdm import tqdm

    t0 = time.perf_counter()
    net.train()
    sums = torch.zeros(3, dtype=torch.float64)  # loss × n, correct, n
    cfg = state.config
    bar = tqdm(train.batches(epoch), desc=f"epoch {epoch}/{cfg.epochs}", file=sys.stderr, leave=False,
               disable=not progress, total=len(train) if isinstance(train, Sized) else None)  # fmt: skip
    for batch in bar:
        outputs = net(batch.x)
        value, parts = _split(loss(outputs, batch))
        opt.zero_grad()
        value.backward()
        opt.step()
        n = len(batch)
        sums += torch.tensor([value.item() * n, _correct(outputs, batch.y), n], dtype=torch.float64)
        state.step += 1
        step = Step(epoch, state.step, value.item(), n, parts)
        for cb in hooks:
            cb.on_step(state, step)
        if cfg.log_every and state.step % cfg.log_every == 0 and dist.main:
            log.info("%s step %d  %s", state.name, state.step, "  ".join(f"{k} {v:.4f}" for k, v in parts.items()))
        bar.set_postfix(loss=f"{step.loss:.3f}")
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.all_reduce(sums)
    row: dict[str, float] = {
        "epoch": epoch,
        "loss": float(sums[0] / sums[2]),
        "train_accuracy": float(sums[1] / sums[2]),
    }
    if val is not None:
        out = predict(model, val.x)
        with torch.no_grad():
            val_loss = float(_split(loss(out, val))[0])
        row["val_loss"] = val_loss
        row["val_accuracy"] = float((out.argmax(1) == val.y).float().mean())
        state.last_val_outputs = out
        if val_loss < state.best_val:  # early stopping watches the validation loss only
            state.best_val, state.best_epoch, state.bad_epochs = val_loss, epoch, 0
            if cfg.keep_best:
                state.best_state = copy.deepcopy(model.state_dict())
        else:
            state.bad_epochs += 1
        state.stopped_early = cfg.patience is not None and state.bad_epochs >= cfg.patience
    state.history.append(row)
    state.epoch_seconds.append(time.perf_counter() - t0)
    state.epoch = epoch
    if dist.main:
        log.info(
            "%s epoch %d/%d  loss %.4f  train acc %.3f%s  (%.2f s)%s", state.name, epoch, cfg.epochs, row["loss"],
            row["train_accuracy"],
            f"  val loss {row['val_loss']:.4f}  val acc {row['val_accuracy']:.3f}" if val is not None else "",
            state.epoch_seconds[-1], "  early stop" if state.stopped_early else "",
        )  # fmt: skip
    return row


def _split(value: Any) -> tuple[Any, dict[str, float]]:
    if isinstance(value, tuple):
        return value[0], dict(value[1])
    return value, {}


def _correct(outputs: Any, y: Any) -> int:
    """Correct argmax predictions when the outputs are logits and ``y`` class indices; else 0."""
    import torch

    if not isinstance(outputs, torch.Tensor) or outputs.ndim != 2 or y is None or y.dtype != torch.int64:
        return 0
    return int((outputs.argmax(1) == y).sum())


__all__ = [
    "Batch", "Batches", "Callback", "Dist", "IndexBatches", "LoopConfig", "LoopResult", "LoopState", "Step",
    "atomic_save", "distributed", "fit_model", "load_checkpoint", "observe", "rng_state", "set_rng_state",
]  # fmt: skip
