"""The ZeroMQ PUB side: numbering, stamping and sending messages, plus an optional JSONL log.

A PUB socket never blocks the sender: a subscriber that reads too slowly loses messages once its
queue reaches the high-water mark, and sees the loss as a gap in ``seq``.

On an endpoint the network can reach, the socket is a CURVE server and a ZAP authenticator admits
only the client keys in ``curve_authorized_clients`` (:mod:`bci_stream.curve`); without keys such an
endpoint is refused unless ``insecure`` is set, which is then reported in :attr:`Publisher.warnings`.
A session log that cannot be written at start is refused; one that fails later (disk full) is
reported once and switched off while serving goes on.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from .curve import client_keys_in, is_loopback, load_secret_key
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
        Append every message as one JSON line (topic included) to this file
        (read it back with :func:`bci_stream.client.read_session_log`).
    curve_secret_key : Path, optional
        The daemon's ``server.key_secret``; with ``curve_authorized_clients`` it turns CURVE on.
    curve_authorized_clients : Path, optional
        Folder of client public keys (``*.key``); only these clients receive anything.
    insecure : bool
        Allow a non-loopback endpoint without CURVE (warned about in :attr:`warnings`).

    Raises
    ------
    ConfigError
        If the log cannot be opened, CURVE is half configured or its keys unreadable, a non-loopback
        endpoint has no CURVE and ``insecure`` is not set, or the endpoint cannot be bound.
    """

    def __init__(
        self,
        endpoint: str,
        session: str,
        *,
        high_water_mark: int = 10_000,
        log_path: Path | None = None,
        curve_secret_key: Path | None = None,
        curve_authorized_clients: Path | None = None,
        insecure: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.session = session
        self.warnings: list[str] = []
        """Problems an operator must see; the daemon repeats them in every ``status``."""
        curve = _curve_settings(endpoint, curve_secret_key, curve_authorized_clients, insecure)
        self.curve = curve is not None
        self.insecure = curve is None and not is_loopback(endpoint)
        if self.insecure:
            self.warnings.append(
                f"publishing on {endpoint} without authentication (--insecure): anyone who can reach this "
                "port receives every message; configure [publish] curve_secret_key and curve_authorized_clients"
            )
            log.warning("%s", self.warnings[-1])
        self._log_path = log_path
        self._log: IO[str] | None = _open_log(log_path) if log_path is not None else None
        self._context = zmq.Context()
        self._auth: ThreadAuthenticator | None = None
        self._socket = self._context.socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, high_water_mark)
        self._socket.setsockopt(zmq.LINGER, 500)  # flush the last messages on close, but never hang
        try:
            if curve is not None:
                self._serve_curve(*curve)
            self._socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self._close_zmq(linger=0)
            raise ConfigError(
                f"cannot publish on {endpoint!r}: {exc}. Is another daemon running there? "
                "Use --endpoint to choose another address."
            ) from exc
        except BaseException:
            self._close_zmq(linger=0)
            raise
        self._seq: dict[str, int] = {}
        #: Called with every message after it was sent (e.g. :class:`~bci_stream.outlets.ResultOutlets`);
        #: a sink that raises is logged, never fatal. Sinks with a ``close()`` are closed with the publisher.
        self.sinks: list[Callable[[Message], None]] = []
        log.info("publishing on %s (session %s%s)", endpoint, session, ", CURVE" if self.curve else "")

    def _serve_curve(self, secret_key: Path, clients: Path) -> None:
        """CURVE server keys on the socket and a ZAP thread admitting only the keys in ``clients``."""
        public, secret = load_secret_key(secret_key, "[publish] curve_secret_key")
        keys = client_keys_in(clients, "[publish] curve_authorized_clients")
        self._auth = ThreadAuthenticator(self._context, log=logging.getLogger(__name__ + ".zap"))
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(clients))
        self._socket.curve_secretkey = secret
        self._socket.curve_publickey = public
        self._socket.curve_server = True
        log.info("CURVE on: %d authorised client key(s) in %s", len(keys), clients)

    def _close_zmq(self, linger: int | None = None) -> None:
        self._socket.close(linger=linger)
        if self._auth is not None:
            self._auth.stop()
        self._context.term()

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
            self._write_log(message.model_dump_json() + "\n")
        return message

    def _write_log(self, line: str) -> None:
        """Append one line; on the first write error (disk full, device gone) report it and stop logging."""
        assert self._log is not None
        try:
            self._log.write(line)
            self._log.flush()  # one line per message: a crash loses at most the line being written
        except OSError as exc:
            problem = f"session log {self._log_path} disabled after a write error ({exc.strerror or exc})"
            log.error("%s; serving goes on", problem)
            self.warnings.append(problem)
            with contextlib.suppress(OSError):  # the unwritten buffer fails again on close; it is lost anyway
                self._log.close()
            self._log = None

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if callable(close):
                close()
        self._close_zmq()
        if self._log is not None:
            try:
                self._log.close()
            except OSError as exc:
                log.error("session log %s: last lines not written (%s)", self._log_path, exc.strerror or exc)


def _open_log(path: Path) -> IO[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a", encoding="utf-8")  # closed in Publisher.close()
    except OSError as exc:
        why = f"{exc.filename} is not a folder" if isinstance(exc, FileExistsError | NotADirectoryError) else None
        raise ConfigError(
            f"cannot write the session log {str(path)!r} ({why or exc.strerror or exc}); "
            "pass a writable file to --log or [publish] log"
        ) from exc


def _curve_settings(
    endpoint: str, secret_key: Path | None, clients: Path | None, insecure: bool
) -> tuple[Path, Path] | None:
    """The CURVE key settings to use, or None; refuses a network endpoint left open without ``insecure``."""
    if (secret_key is None) != (clients is None):
        given, missing = (
            ("curve_secret_key", "curve_authorized_clients")
            if clients is None
            else ("curve_authorized_clients", "curve_secret_key")
        )
        raise ConfigError(f"[publish] {given} is set but {missing} is not; CURVE needs both (see `bci-stream keys`)")
    if secret_key is not None and clients is not None:
        return secret_key, clients
    if not is_loopback(endpoint) and not insecure:
        raise ConfigError(
            f"refusing to publish on {endpoint!r} without authentication: anyone who can reach it would receive "
            "every message. Make keys with `bci-stream keys --out DIR` and set [publish] curve_secret_key = "
            "'DIR/server.key_secret' and curve_authorized_clients = 'DIR/authorized_clients' in the config, "
            "bind a loopback address (tcp://127.0.0.1:PORT), or pass --insecure to publish openly"
        )
    return None
