"""Shared test helpers: tiny carded ONNX models, an in-thread daemon, an in-thread replay.

Everything is real: ONNX Runtime runs the models, LSL streams go over loopback, ZeroMQ over TCP
on a free port. Waits are on conditions with deadlines, never bare sleeps.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bci_stream.card import InputSpec, ModelCard, Normalization, OutputSpec, Preprocessing, write_card
from bci_stream.client import Subscriber
from bci_stream.config import DaemonConfig, load_config
from bci_stream.daemon import DaemonThread
from bci_stream.demo import free_tcp_endpoint
from bci_stream.features import DEFAULT_BANDS
from bci_stream.messages import AnyMessage
from bci_stream.recordings import Recording
from bci_stream.replay import Player


def unique(prefix: str = "test") -> str:
    """A stream name / source_id no other test (or process) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_linear_model(
    path: Path,
    *,
    channels: list[str],
    sfreq: float,
    n_times: int,
    classes: list[str],
    tmin: float = 0.0,
    bandpass: tuple[float | None, float | None] | None = None,
    notch: float | None = None,
    weights: np.ndarray | None = None,
    normalization: Normalization | None = None,
    name: str = "linear-test",
) -> Path:
    """A real ONNX model (mean over time → linear → logits) with a model card, built without torch."""
    n_ch, n_cls = len(channels), len(classes)
    rng = np.random.default_rng(0)
    w = weights if weights is not None else rng.standard_normal((n_ch, n_cls)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["eeg", "axes"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "W"], ["logits"]),
        ],
        name,
        [helper.make_tensor_value_info("eeg", TensorProto.FLOAT, ["batch", n_times, n_ch])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_cls])],
        initializer=[
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
            numpy_helper.from_array(np.asarray(w, dtype=np.float32), "W"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    card = ModelCard.model_validate(
        {
            "schema": 1,
            "name": name,
            "version": "0.0.1",
            "input": InputSpec(sfreq=sfreq, n_times=n_times, tmin=tmin, channels=channels).model_dump(),
            "preprocessing": Preprocessing(
                bandpass=bandpass, notch=notch, normalization=normalization or Normalization()
            ).model_dump(),
            "output": OutputSpec(classes=classes).model_dump(),
        }
    )
    write_card(path, card)
    return path


def daemon_config(
    model_path: Path, eeg_source_id: str, marker_source_id: str, **sections: dict[str, Any]
) -> DaemonConfig:
    """A config for one test: streams by source_id, a free port, fast status."""
    overrides: dict[str, Any] = {
        "model": {"path": str(model_path)},
        "eeg": {"source_id": eeg_source_id},
        "markers": {"source_id": marker_source_id},
        "publish": {"endpoint": free_tcp_endpoint(), "status_interval": 0.2},
        "runtime": {"wait": 15.0},
    }
    for key, values in sections.items():
        overrides.setdefault(key, {}).update(values)
    return load_config(None, overrides)


@contextmanager
def running_daemon(config: DaemonConfig) -> Iterator[DaemonThread]:
    """A daemon serving in a thread for the ``with`` body; its own error, if any, is raised on exit."""
    runner = DaemonThread(config).start()
    try:
        yield runner
    finally:
        runner.stop()


@contextmanager
def playing(recording: Recording, *, name: str, source_id: str, speed: float = 1.0, **kwargs: Any) -> Iterator[Player]:
    """A :class:`Player` running in a thread; stopped and closed on exit."""
    stop = threading.Event()
    player = Player(recording, name=name, source_id=source_id, speed=speed, **kwargs)
    player.start()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            player.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="replay", daemon=True)
    thread.start()
    player.thread = thread  # type: ignore[attr-defined]
    try:
        yield player
    finally:
        stop.set()
        thread.join(10)
        player.close()
    if errors:
        raise errors[0]


def collect(
    sub: Subscriber,
    until: Callable[[list[AnyMessage]], bool],
    *,
    timeout: float,
    topics: tuple[str, ...] = ("prediction", "drop"),
) -> list[AnyMessage]:
    """Receive messages of ``topics`` until ``until(messages)`` holds; fail after ``timeout`` s."""
    got: list[AnyMessage] = []
    deadline = time.monotonic() + timeout
    while not until(got):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"condition not met within {timeout} s; got {len(got)} messages"
        try:
            msg = sub.recv(timeout=min(remaining, 1.0))
        except TimeoutError:
            continue
        if msg.topic in topics:
            got.append(msg)
    return got


def make_valence_model(
    path: Path,
    *,
    channels: list[str],
    context: int = 4,
    bands: tuple[tuple[float, float], ...] = DEFAULT_BANDS,
    name: str = "valence-test",
) -> Path:
    """A real band-power valence model (features → linear → valence per step) with a card, without torch."""
    from bci_stream.card import FeatureSpec

    n_features = len(channels) * len(bands)
    w = np.random.default_rng(1).standard_normal((n_features, 1)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "W"], ["per_step"]),
            helper.make_node("Squeeze", ["per_step", "last"], ["valence"]),
        ],
        name,
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", "steps", n_features])],
        [helper.make_tensor_value_info("valence", TensorProto.FLOAT, ["batch", "steps"])],
        initializer=[
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "last"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    spec = FeatureSpec(bands=list(bands), window=2.0, hop=0.25, segment=1.0, reference="average")
    card = ModelCard.model_validate(
        {
            "schema": 1,
            "name": name,
            "version": "0.0.1",
            "task": "valence",
            "input": {
                "name": "features",
                "sfreq": 4.0,
                "n_times": context,
                "channels": channels,
                "features": spec.model_dump(),
            },
            "preprocessing": {"bandpass": [0.3, 45.0]},
            "output": {"name": "valence"},
        }
    )
    write_card(path, card)
    return path
