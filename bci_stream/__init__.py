"""bci-stream: serve distilled EEG students live (LSL in, ONNX Runtime, ZeroMQ out).

Public names are re-exported here; the modules keep the layers apart:
pure maths (:mod:`~bci_stream.signal`, :mod:`~bci_stream.epochs`, :mod:`~bci_stream.pipeline`),
contracts (:mod:`~bci_stream.card`, :mod:`~bci_stream.messages`, :mod:`~bci_stream.config`),
I/O (:mod:`~bci_stream.lsl`, :mod:`~bci_stream.publish`, :mod:`~bci_stream.client`,
:mod:`~bci_stream.replay`, :mod:`~bci_stream.recordings`), and the lifecycle
(:mod:`~bci_stream.daemon`, :mod:`~bci_stream.cli`).
"""

from __future__ import annotations

from .card import CARD_KEY, InputSpec, ModelCard, Normalization, Preprocessing, read_card, write_card
from .config import DaemonConfig, load_config
from .daemon import Daemon, DaemonThread
from .epochs import Drop, DropReason, Epoch, Epocher, Marker, RingBuffer
from .errors import (
    BciStreamError,
    ConfigError,
    InferenceError,
    ModelCardError,
    RecordingError,
    StreamLostError,
    StreamNotFoundError,
)
from .pipeline import EpochPipeline, EpochSet, epochs_from_recording
from .recordings import Recording, read_recording

__version__ = "0.1.0"

__all__ = [
    "CARD_KEY",
    "BciStreamError",
    "ConfigError",
    "Daemon",
    "DaemonConfig",
    "DaemonThread",
    "Drop",
    "DropReason",
    "Epoch",
    "EpochPipeline",
    "EpochSet",
    "Epocher",
    "InferenceError",
    "InputSpec",
    "Marker",
    "ModelCard",
    "ModelCardError",
    "Normalization",
    "Preprocessing",
    "Recording",
    "RecordingError",
    "RingBuffer",
    "StreamLostError",
    "StreamNotFoundError",
    "__version__",
    "epochs_from_recording",
    "load_config",
    "read_card",
    "read_recording",
    "write_card",
]
