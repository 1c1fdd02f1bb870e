"""``bci-stream dashboard``: a live web page of the daemon's ZeroMQ stream (a sidecar: it opens no EEG inlet).

Needs the optional extra ``dashboard`` (starlette + uvicorn): ``pip install 'bci-stream[dashboard]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError


def serve_dashboard(
    *,
    endpoint: str,
    port: int = 8080,
    model: Path | None = None,
    history: int = 20,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Serve the dashboard on ``http://127.0.0.1:PORT/`` until SIGINT/SIGTERM; see :mod:`.server`."""
    try:
        from .server import run_server
    except ImportError as exc:
        raise ConfigError(
            f"bci-stream dashboard needs the optional extra 'dashboard' ({exc.name} is missing): "
            "pip install 'bci-stream[dashboard]'"
        ) from exc
    return run_server(endpoint=endpoint, port=port, model=model, history=history, on_ready=on_ready)
