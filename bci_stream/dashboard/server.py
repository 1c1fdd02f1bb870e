"""The dashboard's web side: one page, a JSON snapshot and server-sent events, on 127.0.0.1 only.

Routes: ``/`` the page (``static/index.html``, plain JS and a small canvas chart, no build step),
``/state`` the current :meth:`~.state.DashboardState.snapshot` as JSON, ``/events`` the same snapshot
as a server-sent event whenever it changed (at most ``PUSH_INTERVAL`` s apart).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.routing import Route

from ..client import Subscriber, SubscriberTimeout
from ..errors import BciStreamError, ConfigError
from .state import DashboardState

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("static") / "index.html"
#: Seconds between pushes to a page (when something changed).
PUSH_INTERVAL = 0.25


def build_app(state: DashboardState) -> Starlette:
    """The ASGI app serving ``state``."""

    async def page(request: Request) -> FileResponse:
        return FileResponse(PAGE, media_type="text/html")

    async def snapshot(request: Request) -> JSONResponse:
        return JSONResponse(state.snapshot())

    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            sent = -1
            while not await request.is_disconnected():
                if state.version != sent:
                    sent = state.version
                    yield f"data: {json.dumps(state.snapshot())}\n\n"
                else:
                    yield ": keep-alive\n\n"
                await asyncio.sleep(PUSH_INTERVAL)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return Starlette(routes=[Route("/", page), Route("/state", snapshot), Route("/events", events)])


def _subscribe(endpoint: str, state: DashboardState, stop: threading.Event) -> None:
    """Fold every message from ``endpoint`` into ``state`` until ``stop``."""
    with Subscriber(endpoint, timeout=0.5) as sub:
        while not stop.is_set():
            try:
                state.update(sub.recv(timeout=0.5))
            except SubscriberTimeout:
                continue
            except BciStreamError as exc:  # a malformed frame: say so, keep listening
                log.warning("dashboard: ignoring a message from %s: %s", endpoint, exc)


def run_server(
    *, endpoint: str, port: int, model: Path | None, history: int, on_ready: Callable[[str], None] | None = None
) -> int:
    """Subscribe to ``endpoint`` in a thread and serve the page on 127.0.0.1:``port`` until stopped.

    ``on_ready`` is called with the page's URL once the port is bound (``port`` 0 picks a free one).
    """
    summary: list[str] = []
    if model is not None:
        from ..card import read_card
        from ..listen import card_summary

        summary = card_summary(read_card(model), path=model)
    state = DashboardState(history=history, card_summary=summary, endpoint=endpoint)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"dashboard: cannot listen on 127.0.0.1:{port}: {exc}; choose another --port") from exc
    stop = threading.Event()
    listener = threading.Thread(target=_subscribe, args=(endpoint, state, stop), name="dashboard-zmq", daemon=True)
    listener.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    log.info("dashboard on %s, subscribed to %s", url, endpoint)
    if on_ready is not None:
        on_ready(url)
    config = uvicorn.Config(build_app(state), log_level="warning", lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        stop.set()
        listener.join(2)
        sock.close()
    return 0
