"""One small exception hierarchy for everything bci-stream raises on purpose.

Every message names the thing at fault (file, stream, key), the value found and what to do,
so a user can fix the problem without reading the source. Errors from liblsl are translated into
these where LSL is used (:mod:`bci_stream.lsl` for inlets, :mod:`bci_stream.replay` for outlets), and
ONNX Runtime's in :mod:`bci_stream.inference` only.
"""

from __future__ import annotations


class BciStreamError(Exception):
    """Base class of all bci-stream errors; the CLI turns it into a message and exit code 2."""


class ConfigError(BciStreamError):
    """A configuration file or override is invalid (unknown key, wrong type, bad value)."""


class ModelCardError(BciStreamError):
    """A model has no card, a malformed card, or a card the input stream cannot satisfy."""


class RecordingError(BciStreamError):
    """A recording cannot be read or used (missing file, unsupported format, too short)."""


class StreamNotFoundError(BciStreamError):
    """An LSL stream could not be resolved within the allowed time."""


class StreamLostError(BciStreamError):
    """An LSL stream stopped delivering data."""


class InferenceError(BciStreamError):
    """ONNX Runtime failed to load or run a model."""


class TrainingError(BciStreamError):
    """Training data or a training setting cannot give what was asked (``bci-train``; the message says why)."""
