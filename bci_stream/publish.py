"""The ZeroMQ PUB side: numbering, stamping and sending messages, plus an optional JSONL log.

A PUB socket never blocks the sender: a subscriber that reads too slowly loses messages once its
queue reaches the high-water mark, and sees the loss as a gap in ``seq``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import zmq

from .errors import ConfigError
from .messages import Message, encode

log = logging.getLogger(__name__)


class Publisher:
    """Bind a PUB socket at ``endpoint`` and publish typed messages.

    Parameters
    ----------
    endpoint : str
        Where to bind, e.g. ``tcp://127.0.0.1:5556``.
    session : str
        Run id stamped into every message.
    high_water_mark : int
        Messages queued per subscriber before ZeroMQ drops for that subscriber.
    log_path : Path, optional
        Append every message as one JSON line (topic included) to this file.
    """

    def __init__(
        self, endpoint: str, session: str, *, high_water_mark: int = 10_000, log_path: Path | None = None
    ) -> None:
        self.endpoint = endpoint
        self.session = session
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, high_water_mark)
        self._socket.setsockopt(zmq.LINGER, 500)  # flush the last messages on close, but never hang
        try:
            self._socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self._socket.close(linger=0)
            self._context.term()
            raise ConfigError(
                f"cannot publish on {endpoint!r}: {exc}. Is another daemon running there? "
                "Use --endpoint to choose another address."
            ) from exc
        self._seq: dict[str, int] = {}
        #: Called with every message after it was sent (e.g. :class:`~bci_stream.outlets.ResultOutlets`);
        #: a sink that raises is logged, never fatal. Sinks with a ``close()`` are closed with the publisher.
        self.sinks: list[Callable[[Message], None]] = []
        self._log: IO[str] | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        log.info("publishing on %s (session %s)", endpoint, session)

    def publish(self, cls: type[Message], **fields: Any) -> Message:
        """Build a ``cls`` message with the next ``seq`` of its topic and send it without blocking."""
        topic = cls.model_fields["topic"].default
        seq = self._seq.get(topic, 0)
        message = cls(seq=seq, session=self.session, sent_at=time.time(), **fields)
        self._seq[topic] = seq + 1
        try:
            self._socket.send_multipart(encode(message), flags=zmq.NOBLOCK)
        except zmq.Again:  # cannot happen on PUB (it drops instead), kept so a send can never block
            log.warning("ZeroMQ refused a %s message", topic)
        for sink in self.sinks:
            try:
                sink(message)
            except Exception:  # a failing sink (e.g. an LSL outlet) must never stop the ZeroMQ stream
                log.warning("result sink %r failed on a %s message", sink, topic, exc_info=True)
        if self._log is not None:
            self._log.write(message.model_dump_json() + "\n")
            self._log.flush()
        return message

    def close(self) -> None:
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if callable(close):
                close()
        self._socket.close()
        self._context.term()
        if self._log is not None:
            self._log.close()
