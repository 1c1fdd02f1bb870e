"""ONNX Runtime sessions for carded models: provider choice, session tuning, card checks, warm-up, batching.

The only module that talks to onnxruntime; its errors are translated into
:class:`~bci_stream.errors.InferenceError` and :class:`~bci_stream.errors.ModelCardError` here.

Tuning for this job (one small model, one epoch every ~20 ms at RSVP rates, :class:`SessionSettings`): one
intra-op thread and no spinning on the CPU by default — ONNX Runtime's defaults (a thread per core, spinning
between runs) took 2.3× the CPU per inference at 50 inferences/s on 2 cores, with a worse p99 too
(scripts/bench_ort.py measures it); graph optimisation ``ORT_ENABLE_ALL`` with the optimised graph cached on disk, keyed by model sha256,
ONNX Runtime version, provider, optimisation level and machine, so later starts skip the optimisation; CUDA with
its own options (``cudnn_conv_algo_search``, arena growth, device) when present.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import platform
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from .card import ModelCard, read_card
from .errors import InferenceError, ModelCardError

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/bci-stream/onnxruntime`` (``~/.cache/...`` without it): optimised models live here."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bci-stream" / "onnxruntime"


@dataclass(frozen=True)
class SessionSettings:
    """How ONNX Runtime runs a model (``[model]`` in the daemon config; defaults tuned for one small model).

    Attributes
    ----------
    intra_op_threads : int
        Threads inside one operator (0 = ONNX Runtime's default, one per core). 1 by default: a single epoch of
        the shipped models is too small to split, and every extra thread costs CPU at 50 inferences/s.
    inter_op_threads : int
        Threads across independent operators (the graph runs sequentially, so this only matters for 0 = default).
    allow_spinning : bool
        Let idle pool threads busy-wait for the next run (ORT's default). False: no core burnt between epochs.
    graph_optimization : {"disable", "basic", "extended", "all"}
        Graph optimisation level; "all" (``ORT_ENABLE_ALL``) by default.
    cache_dir : Path or None
        Where the optimised model is saved and reused (None: not cached). Entries are keyed by the model's
        sha256, the ONNX Runtime version, the provider, the optimisation level and the machine (arch and host).
    io_binding : bool
        Run through an ``IOBinding`` (inputs bound in place, outputs allocated by ONNX Runtime). Off by default:
        on the CPU it did not help the shipped model (scripts/bench_ort.py); on CUDA, scripts/gpu_check.sh
        measures both ways.
    cuda_device_id, cudnn_conv_algo_search, cuda_arena_extend_strategy, cuda_mem_limit_mb
        CUDA provider options: the device; ``HEURISTIC`` conv algorithm search (``EXHAUSTIVE``, ORT's default,
        benchmarks every new input shape on first use, which a varying batch size would pay live);
        ``kSameAsRequested`` arena growth (no power-of-two over-allocation); a memory limit in MiB (0 = none).
    """

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    allow_spinning: bool = False
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    cache_dir: Path | None = None
    io_binding: bool = False
    cuda_device_id: int = 0
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = "HEURISTIC"
    cuda_arena_extend_strategy: Literal["kNextPowerOfTwo", "kSameAsRequested"] = "kSameAsRequested"
    cuda_mem_limit_mb: int = 0

    @classmethod
    def from_config(cls, section: Any) -> SessionSettings:
        """Settings from a config section (``[model]``) with fields of the same names, plus ``cache_optimized``
        (False: no cache) and ``cache_dir`` (None: :func:`default_cache_dir`)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"cache_dir"}
        values = {name: getattr(section, name) for name in names if getattr(section, name, None) is not None}
        if getattr(section, "cache_optimized", False):
            configured = getattr(section, "cache_dir", None)
            values["cache_dir"] = Path(configured).expanduser() if configured else default_cache_dir()
        return cls(**values)

    def session_options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # a failed CUDA attempt on a CPU machine is expected, not an error
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = _OPT_LEVELS[self.graph_optimization]
        spin = "1" if self.allow_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        return options

    def cuda_options(self) -> dict[str, str]:
        options = {
            "device_id": str(self.cuda_device_id),
            "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
            "arena_extend_strategy": self.cuda_arena_extend_strategy,
            "do_copy_in_default_stream": "1",
        }
        if self.cuda_mem_limit_mb > 0:
            options["gpu_mem_limit"] = str(self.cuda_mem_limit_mb * 1024 * 1024)
        return options


def _providers_for(choice: str, settings: SessionSettings) -> list[Any]:
    available = ort.get_available_providers()
    if choice == "cpu":
        return [CPU]
    if choice == "cuda" and CUDA not in available:
        raise InferenceError(
            f"provider 'cuda' asked for, but this onnxruntime offers only {available}; "
            "install onnxruntime-gpu with CUDA, or use provider = 'auto'"
        )
    return [(CUDA, settings.cuda_options()), CPU] if CUDA in available else [CPU]


def cuda_unusable_reason() -> str:
    """Why ONNX Runtime's CUDA provider cannot be used here, as far as can be told without ONNX Runtime's log.

    Loads the provider library the way ONNX Runtime does: a missing CUDA / cuDNN library (``libcublasLt.so.13``,
    ``libcudnn.so.9``) is named by the loader; when the libraries load, the NVIDIA driver (``libcuda``) is checked.
    """
    import ctypes

    capi = Path(ort.__file__).parent / "capi"
    libraries = sorted(capi.glob("*onnxruntime_providers_cuda.*"))
    if not libraries:
        return f"this onnxruntime ({ort.__version__}) has no CUDA provider library in {capi}"
    try:
        ctypes.CDLL(str(libraries[0]))
    except OSError as exc:
        return f"its CUDA provider library cannot load ({exc})"
    for driver in ("libcuda.so.1", "nvcuda.dll"):
        try:
            ctypes.CDLL(driver)
            break
        except OSError:
            continue
    else:
        return "the CUDA libraries load but no NVIDIA driver does (libcuda.so.1 missing)"
    return "the CUDA libraries and the driver load, but no usable GPU answered (check nvidia-smi and cuda_device_id)"


def cuda_fix() -> str:
    """What to do about an unusable CUDA provider: the CUDA this onnxruntime-gpu was built for, or another provider."""
    try:
        from onnxruntime.capi import build_and_package_info as info

        cuda = str(getattr(info, "cuda_version", "") or "")
    except ImportError:
        cuda = ""
    wanted = f"CUDA {cuda.split('.')[0]}.x" if cuda else "the CUDA version"
    return (
        f"Install {wanted} and cuDNN 9 (what onnxruntime-gpu {ort.__version__} is built for; see "
        "https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html#requirements) with their "
        "libraries on the loader path, or set [model] provider = 'auto' (CPU when CUDA is unusable) or 'cpu' "
        "(--provider)"
    )


#: Optimised models kept in the cache folder; the least recently written go first.
CACHE_ENTRIES = 64


def _prune(cache: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest cache entries (a reader that loses the race rebuilds its entry)."""
    entries = sorted(cache.glob("*-ort*.onnx"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in entries[keep:]:
        old.unlink(missing_ok=True)


def cache_key(sha256: str, provider: str, settings: SessionSettings) -> str:
    """File name of a cached optimised model: what the optimised graph depends on.

    ``ORT_ENABLE_ALL`` may bake in layouts for this CPU (ONNX Runtime warns that such a model belongs to the
    environment it was optimised in), so the key names the machine (architecture and host) as well.
    """
    tag = provider.removesuffix("ExecutionProvider").lower()
    host = hashlib.sha256(f"{platform.machine()}|{platform.node()}".encode()).hexdigest()[:8]
    return f"{sha256[:32]}-ort{ort.__version__}-{tag}-{settings.graph_optimization}-{host}.onnx"


class OnnxModel:
    """A model file with its card, loaded into an ONNX Runtime session.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file; it must carry a model card.
    provider : {"auto", "cuda", "cpu"}
        ``auto`` uses CUDA when onnxruntime can actually create a CUDA session, else the CPU.
    """

    def __init__(
        self,
        path: str | Path,
        provider: Literal["auto", "cuda", "cpu"] = "auto",
        settings: SessionSettings | None = None,
    ) -> None:
        self.path = Path(path)
        self.card: ModelCard = read_card(self.path)
        self.sha256 = file_sha256(self.path)
        self.settings = settings if settings is not None else SessionSettings()
        providers = _providers_for(provider, self.settings)
        self.cache_path: Path | None = None  # the optimised model this session was loaded from, if cached
        self.session = self._open(providers)
        self.provider = self.session.get_providers()[0]
        if provider == "cuda" and self.provider != CUDA:
            raise InferenceError(
                f"{self.path}: CUDA provider requested but ONNX Runtime fell back to {self.provider}: "
                f"{cuda_unusable_reason()}. {cuda_fix()}"
            )
        log.info("model %s %s on %s", self.card.name, self.card.version, self.provider)
        self._check_card()
        self.warm_ms: dict[int, float] = {}

    def _session(self, model_path: Path, options: ort.SessionOptions, providers: list[Any]) -> ort.InferenceSession:
        if any((p[0] if isinstance(p, tuple) else p) == CUDA for p in providers):
            # onnxruntime-gpu on a machine without CUDA logs loud errors before falling back to the CPU;
            # the fallback is expected, and we report the provider actually used below.
            ort.set_default_logger_severity(4)
        try:
            return ort.InferenceSession(str(model_path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own unexported exception types
            raise InferenceError(f"{self.path}: ONNX Runtime cannot load the model ({exc})") from exc
        finally:
            ort.set_default_logger_severity(2)

    def _open(self, providers: list[Any]) -> ort.InferenceSession:
        """A session on the cached optimised model when there is one, else on the file (saving the optimised graph
        for next time). Which provider a session gets is only known once it exists (onnxruntime-gpu falls back to
        the CPU without a GPU), so an entry is used only when its session gets the provider it was saved for."""
        settings = self.settings
        cache = settings.cache_dir
        if cache is None or settings.graph_optimization == "disable":
            return self._session(self.path, settings.session_options(), providers)
        for name in [p[0] if isinstance(p, tuple) else p for p in providers]:
            cached = cache / cache_key(self.sha256, name, settings)
            if not cached.is_file():
                continue
            options = settings.session_options()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # done when it was saved
            try:
                session = self._session(cached, options, providers)
            except InferenceError as exc:  # a damaged entry: rebuilt below from the model file
                log.warning("ignoring the unreadable optimised-model cache entry %s (%s)", cached, exc)
                continue
            if session.get_providers()[0] == name:
                self.cache_path = cached
                log.info("optimised model reused from %s", cached)
                return session
        return self._optimise_and_save(cache, providers)

    def _optimise_and_save(self, cache: Path, providers: list[Any]) -> ort.InferenceSession:
        options = self.settings.session_options()
        tmp = cache / f".{self.sha256[:16]}.{os.getpid()}.{time.monotonic_ns()}.tmp.onnx"
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("optimised-model cache %s is not writable (%s); not caching", cache, exc)
            return self._session(self.path, options, providers)
        options.optimized_model_filepath = str(tmp)
        try:
            try:
                session = self._session(self.path, options, providers)
            except InferenceError:  # saving failed, or the model is bad: the plain session says which
                session = self._session(self.path, self.settings.session_options(), providers)
            target = cache / cache_key(self.sha256, session.get_providers()[0], self.settings)
            if tmp.is_file():
                os.replace(tmp, target)  # atomic: a concurrent reader never sees half a file
                self.cache_path = target
                log.info("optimised model saved to %s", target)
                _prune(cache, keep=CACHE_ENTRIES)
        except OSError as exc:
            log.warning("could not save the optimised model to %s (%s)", cache, exc)
        finally:
            tmp.unlink(missing_ok=True)
        return session

    @property
    def classes(self) -> list[str]:
        return self.card.output.classes

    @property
    def n_inputs_per_step(self) -> int:
        """Values per time step: channels for epoch models, channels × bands for band-power valence models."""
        spec = self.card.input
        if spec.features is not None:
            return len(spec.channels) * len(spec.features.bands)
        return len(spec.channels)

    def _check_card(self) -> None:
        card = self.card
        inputs = {i.name: i for i in self.session.get_inputs()}
        if card.input.name not in inputs:
            raise ModelCardError(
                f"{self.path}: card input {card.input.name!r} is not a model input (model has {sorted(inputs)})"
            )
        shape = inputs[card.input.name].shape
        per_step = self.n_inputs_per_step
        expected = (
            [None, card.input.n_times, per_step] if card.input.layout == "NTC" else [None, per_step, card.input.n_times]
        )
        if card.task == "valence":
            expected[1 if card.input.layout == "NTC" else 2] = None  # any context length
        if len(shape) != 3 or any(
            isinstance(s, int) and e is not None and s != e for s, e in zip(shape, expected, strict=False)
        ):
            raise ModelCardError(
                f"{self.path}: model input {card.input.name!r} has shape {shape}, but the card says "
                f"{card.input.layout} with n_times={card.input.n_times} and {per_step} values per step"
            )
        outputs = {o.name: o for o in self.session.get_outputs()}
        if card.output.name not in outputs:
            raise ModelCardError(
                f"{self.path}: card output {card.output.name!r} is not a model output (model has {sorted(outputs)})"
            )
        out_shape = outputs[card.output.name].shape
        if (
            card.task == "classification"
            and isinstance(out_shape[-1], int)
            and out_shape[-1] != len(card.output.classes)
        ):
            raise ModelCardError(
                f"{self.path}: model outputs {out_shape[-1]} values but the card lists "
                f"{len(card.output.classes)} classes"
            )

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run a batch shaped (N, n_times, values per step) (always NTC here); returns the output array."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if self.card.input.layout == "NCT":
            x = np.ascontiguousarray(x.transpose(0, 2, 1))
        try:
            if self.settings.io_binding:
                binding = self.session.io_binding()
                binding.bind_cpu_input(self.card.input.name, x)
                binding.bind_output(self.card.output.name)
                self.session.run_with_iobinding(binding)
                out = binding.copy_outputs_to_cpu()[0]
            else:
                (out,) = self.session.run([self.card.output.name], {self.card.input.name: x})
        except Exception as exc:
            raise InferenceError(f"{self.path}: inference failed on a batch of shape {batch.shape} ({exc})") from exc
        return np.asarray(out)

    def warm_up(self, repeats: int = 3, batch_sizes: Iterable[int] = (1,)) -> float:
        """Run zeros through the model at every batch size that will be used (first runs allocate per shape).

        Parameters
        ----------
        repeats : int
            Runs per batch size.
        batch_sizes : iterable of int
            The batch sizes to prepare, e.g. ``range(1, max_batch + 1)`` when batches are sized to what is ready.

        Returns
        -------
        float
            The last run's time at the first batch size, in ms; every size's last time is in :attr:`warm_ms`.
        """
        sizes = list(dict.fromkeys(int(b) for b in batch_sizes))
        if not sizes or min(sizes) < 1:
            raise ValueError(f"batch_sizes must be >= 1, got {sizes}")
        for size in sizes:
            x = np.zeros((size, self.card.input.n_times, self.n_inputs_per_step), dtype=np.float32)
            for _ in range(repeats):
                t = time.perf_counter()
                self.run(x)
                self.warm_ms[size] = (time.perf_counter() - t) * 1e3
        return self.warm_ms[sizes[0]]
