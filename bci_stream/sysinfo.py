"""What this machine runs (``bci-stream sys-info``) and how loud liblsl is.

liblsl logs through loguru straight to stderr (``INFO| Loaded default config``, ``ERR| Stream transmission
broke off`` ...), outside Python's logging. Its level is read once, from its configuration file, when the
library first needs it; :func:`configure_liblsl_log` hands liblsl that configuration (with
``lsl_set_config_content``, liblsl ≥ 1.16) before any stream is created: the user's own ``lsl_api.cfg``
(found where liblsl looks for it) with a ``[log] level`` added when the file sets none.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import io
import logging
import os
import platform
import sys
from pathlib import Path

log = logging.getLogger(__name__)

#: liblsl (loguru) levels: -3 fatal only, -2 errors, -1 warnings, 0 info, 1..9 more detail.
LIBLSL_QUIET = -3


def liblsl_level_for(verbose: int) -> int:
    """liblsl's log level for the CLI's ``-v`` count: quiet by default, info with ``-v``, detail with ``-vv``."""
    return LIBLSL_QUIET if verbose <= 0 else 0 if verbose == 1 else 3


def user_lsl_config() -> Path | None:
    """The ``lsl_api.cfg`` liblsl would read (``$LSLAPICFG``, ./, ~/lsl_api/, /etc/lsl_api/), or None."""
    candidates = []
    if os.environ.get("LSLAPICFG"):
        candidates.append(Path(os.environ["LSLAPICFG"]))
    candidates += [Path("lsl_api.cfg"), Path.home() / "lsl_api" / "lsl_api.cfg", Path("/etc/lsl_api/lsl_api.cfg")]
    return next((p for p in candidates if p.is_file()), None)


def _sets_log_level(text: str) -> bool:
    section = ""
    for line in text.splitlines():
        stripped = line.split(";", 1)[0].split("#", 1)[0].strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip().lower()
        elif section == "log" and stripped.split("=", 1)[0].strip().lower() == "level":
            return True
    return False


def configure_liblsl_log(level: int) -> bool:
    """Set liblsl's log level (before any outlet, inlet or resolve); keeps the user's ``lsl_api.cfg``.

    A level set in the user's file wins. Returns False (and changes nothing) when the loaded liblsl has
    no ``lsl_set_config_content``.
    """
    try:
        from pylsl.lib import lib
    except ImportError:  # older pylsl layouts
        return False
    setter = getattr(lib, "lsl_set_config_content", None)
    if setter is None:
        return False
    found = user_lsl_config()
    text = found.read_text(errors="replace") if found is not None else ""
    if not _sets_log_level(text):
        text += f"\n[log]\nlevel = {level}\n"
    setter.argtypes = [ctypes.c_char_p]
    setter.restype = None
    setter(text.encode())
    return True


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _onnxruntime_lines() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return [f"ONNX Runtime: not importable ({exc})"]
    available = list(ort.get_available_providers())
    lines = [
        f"ONNX Runtime: {ort.__version__} (device {ort.get_device()})",
        f"  providers available: {', '.join(available)}",
    ]
    ort.set_default_logger_severity(4)  # probing: a missing CUDA library is an answer here, not an error
    usable = []
    for provider in available:
        with contextlib.redirect_stdout(io.StringIO()):  # ORT prints its fallback notice with print()
            if _provider_usable(ort, provider):
                usable.append(provider)
    lines.append(f"  providers usable: {', '.join(usable) or 'none'}")
    if "CUDAExecutionProvider" in available and "CUDAExecutionProvider" not in usable:
        from .inference import cuda_fix, cuda_unusable_reason

        lines.append(f"  CUDA not usable: {cuda_unusable_reason()}. {cuda_fix()}")
    return lines


def _provider_usable(ort: object, provider: str) -> bool:
    """Whether a session on ``provider`` really runs: a one-node model, the provider not silently replaced."""
    import numpy as np
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    try:
        options = ort.SessionOptions()  # type: ignore[attr-defined]
        options.log_severity_level = 4  # fatal only: a missing CUDA library is an answer here, not an error
        session = ort.InferenceSession(model.SerializeToString(), options, providers=[provider])  # type: ignore[attr-defined]
        session.run(None, {"x": np.zeros(1, dtype=np.float32)})
        return provider in session.get_providers()
    except Exception:  # any failure to create or run means "not usable"
        return False


def sys_info_lines() -> list[str]:
    """The lines ``bci-stream sys-info`` prints: Python, liblsl, pylsl, ONNX Runtime, pyzmq, MNE, numpy ..."""
    import numpy as np
    import pylsl
    import zmq

    lines = [
        f"bci-stream: {_version('bci-stream')}",
        f"Python: {sys.version.split()[0]} ({platform.python_implementation()}, {sys.executable})",
        f"platform: {platform.platform()}",
        f"liblsl: {pylsl.library_version()} ({pylsl.library_info()})",
        f"pylsl: {_version('pylsl')}",
    ]
    cfg = user_lsl_config()
    lines.append(f"  lsl_api.cfg: {cfg if cfg is not None else 'none (liblsl defaults)'}")
    lines += _onnxruntime_lines()
    lines += [
        f"pyzmq: {zmq.__version__} (libzmq {zmq.zmq_version()})",
        f"MNE: {_version('mne')}",
        f"numpy: {np.__version__}",
        f"scipy: {_version('scipy')}",
        f"pyxdf: {_version('pyxdf')}",
        f"pydantic: {_version('pydantic')}",
    ]
    return lines
