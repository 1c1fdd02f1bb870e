"""Subscribe to a running daemon from your own code.

>>> from bci_stream.client import Subscriber
>>> with Subscriber("tcp://127.0.0.1:5556", topics=["prediction", "drop"]) as sub:
...     for msg in sub.messages(timeout=10):
...         print(msg.topic, msg.marker.value)

Messages arrive typed (:mod:`bci_stream.messages`); fields a newer daemon added are ignored, a newer
wire schema is refused. A receive that waits longer than ``timeout`` raises :class:`SubscriberTimeout`
instead of hanging. Sequence gaps (messages lost because this client read too slowly, or joined late)
are counted per topic in :attr:`Subscriber.gaps` and logged. A daemon with CURVE (``bci-stream keys``)
needs ``curve_client_key`` (this client's ``NAME.key_secret``) and ``curve_server_key``
(``server.key``); without them, or with a key the daemon does not list, nothing arrives.

:func:`read_session_log` reads the daemon's ``--log`` file back, also after a crash.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

import zmq

from .curve import secure_client
from .errors import BciStreamError
from .messages import TOPICS, AnyMessage, ProtocolError, SchemaVersionError, decode, decode_payload

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"


class SubscriberTimeout(BciStreamError, TimeoutError):
    """No message arrived within the timeout."""


class Subscriber:
    """A ZeroMQ SUB socket that yields typed bci-stream messages.

    Parameters
    ----------
    endpoint : str
        The daemon's publish endpoint.
    topics : iterable of str
        Topics to receive (default: all of ``prediction``, ``drop``, ``valence``, ``status``).
    timeout : float
        Default seconds to wait in :meth:`recv` before raising :class:`SubscriberTimeout`.
    curve_client_key, curve_server_key : Path, optional
        This client's ``NAME.key_secret`` and the daemon's ``server.key`` (both or neither).
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        topics: Iterable[str] = TOPICS,
        *,
        timeout: float = 5.0,
        curve_client_key: Path | None = None,
        curve_server_key: Path | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.topics = list(topics)
        unknown = [t for t in self.topics if t not in TOPICS]
        if unknown:
            raise ValueError(f"topics {unknown} are not known; choose from {list(TOPICS)}")
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, 100_000)
        try:
            secure_client(self._socket, curve_client_key, curve_server_key)
        except BaseException:
            self.close()
            raise
        for topic in self.topics:
            self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._socket.connect(endpoint)
        self._last_seq: dict[tuple[str, str], int] = {}
        self.gaps: dict[str, int] = {}

    def recv(self, timeout: float | None = None) -> AnyMessage:
        """The next message; raises :class:`SubscriberTimeout` after ``timeout`` seconds."""
        wait = self.timeout if timeout is None else timeout
        if not self._socket.poll(int(wait * 1000)):
            raise SubscriberTimeout(f"no message from {self.endpoint} within {wait:g} s; is the daemon running there?")
        frames = self._socket.recv_multipart()
        message = decode(frames)
        self._track(message)
        return message

    def _track(self, message: AnyMessage) -> None:
        key = (message.session, message.topic)
        last = self._last_seq.get(key)
        if last is not None and message.seq != last + 1:
            missing = message.seq - last - 1
            self.gaps[message.topic] = self.gaps.get(message.topic, 0) + max(missing, 0)
            log.warning("%d %s message(s) lost before seq %d", missing, message.topic, message.seq)
        self._last_seq[key] = message.seq

    def messages(self, timeout: float | None = None, *, until: float | None = None) -> Iterator[AnyMessage]:
        """Yield messages; stop quietly at ``until`` (a :func:`time.monotonic` deadline), else raise on timeout."""
        while True:
            if until is not None:
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    yield self.recv(min(remaining, self.timeout if timeout is None else timeout))
                except SubscriberTimeout:
                    if time.monotonic() >= until:
                        return
                    raise
            else:
                yield self.recv(timeout)

    def wait_for(self, topic: str, timeout: float | None = None) -> AnyMessage:
        """Receive until a message of ``topic`` arrives (a handshake: the daemon is up and we are subscribed)."""
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SubscriberTimeout(f"no {topic!r} message from {self.endpoint} within {wait:g} s")
            message = self.recv(remaining)
            if message.topic == topic:
                return message

    def close(self) -> None:
        self._socket.close(linger=0)
        self._context.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_session_log(path: str | Path) -> list[AnyMessage]:
    """Every message in a daemon's JSON-lines session log (``--log``), in order.

    A last line cut short (the daemon was killed or the power failed while writing it) is skipped with
    a warning; a damaged line anywhere else is an error, since it means the file was changed.

    Raises
    ------
    ProtocolError
        Naming the file and line of a damaged line that is not the last one.
    """
    path = Path(path)
    with path.open("rb") as fh:
        lines = fh.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline after the last complete line
    out: list[AnyMessage] = []
    for number, line in enumerate(lines, start=1):
        try:
            out.append(_log_line(line))
        except SchemaVersionError:
            raise
        except ProtocolError as exc:
            if number == len(lines):
                log.warning("%s: line %d is incomplete (the daemon stopped mid-write); skipped", path, number)
                break
            raise ProtocolError(f"{path}: line {number}: {exc}") from exc
    return out


def _log_line(line: bytes) -> AnyMessage:
    try:
        topic = json.loads(line).get("topic")
    except (ValueError, AttributeError, RecursionError) as exc:
        raise ProtocolError(f"not a JSON object ({str(exc)[:120]})") from exc
    if not isinstance(topic, str):
        raise ProtocolError("no 'topic' field")
    return decode_payload(topic, line)
