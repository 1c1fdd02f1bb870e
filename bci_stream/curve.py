"""ZeroMQ CURVE keys: making them, reading them, and deciding when an endpoint needs them.

Keys are ZeroMQ's own certificate files (:func:`zmq.auth.create_certificates`): ``NAME.key`` holds a
public key, ``NAME.key_secret`` the public and the secret key, both as Z85 text. ``bci-stream keys
--out DIR`` lays them out as::

    DIR/server.key_secret              the daemon's key pair   -> [publish] curve_secret_key
    DIR/server.key                     the daemon's public key -> every client (--curve-server-key)
    DIR/authorized_clients/NAME.key    client public keys      -> [publish] curve_authorized_clients
    DIR/clients/NAME.key_secret        one client's key pair   -> that client only (--curve-client-key)

Every file is readable by its owner only (0600, folders 0700). A daemon on a non-loopback endpoint
refuses to start without CURVE unless told ``--insecure`` (DESIGN.md, "Wire protocol").
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from .errors import ConfigError

log = logging.getLogger(__name__)

_HOST = re.compile(r"^tcp://(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:]+)):[^:]+$")


def is_loopback(endpoint: str) -> bool:
    """True when only this machine can reach ``endpoint`` (loopback TCP, ``ipc://``, ``inproc://``).

    ``tcp://*:P``, ``tcp://0.0.0.0:P``, an interface name other than ``lo`` or any other address is
    reachable from the network.
    """
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    m = _HOST.match(endpoint)
    if m is None:
        return False
    host = m.group("v6") or m.group("host")
    if host in ("localhost", "lo"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # an interface name or a DNS name: assume it faces the network
        return False


@dataclass(frozen=True)
class KeyFiles:
    """What :func:`make_keys` wrote (paths)."""

    server_secret: Path
    server_public: Path
    authorized_clients: Path
    client_secrets: tuple[Path, ...]


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def make_keys(out: Path, clients: Sequence[str] = ("client",)) -> KeyFiles:
    """Make a server key pair (if ``out`` has none yet) and one key pair per name in ``clients``.

    Raises
    ------
    ConfigError
        If a client of that name already has keys in ``out`` (nothing is overwritten), or a name is not
        a plain file name.
    """
    out = Path(out)
    for name in clients:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in ("server", ".", ".."):
            raise ConfigError(f"client name {name!r}: use letters, digits, '.', '_' or '-' (and not 'server')")
    authorized, secrets = out / "authorized_clients", out / "clients"
    for name in clients:
        for existing in (authorized / f"{name}.key", secrets / f"{name}.key_secret"):
            if existing.exists():
                raise ConfigError(f"{existing} already exists; choose another client name or another --out folder")
    old_umask = os.umask(0o077)  # no moment at which a secret key file is readable by others
    try:
        _private_dir(out)
        server_secret = out / "server.key_secret"
        if not server_secret.exists():
            zmq.auth.create_certificates(out, "server")
        else:
            log.info("keeping the existing server key pair %s", server_secret)
        _private_dir(authorized)
        _private_dir(secrets)
        written = []
        for name in clients:
            public, secret = zmq.auth.create_certificates(secrets, name)
            os.replace(public, authorized / f"{name}.key")
            written.append(Path(secret))
    finally:
        os.umask(old_umask)
    for path in [out / "server.key", server_secret, *authorized.glob("*.key"), *written]:
        path.chmod(0o600)
    return KeyFiles(server_secret, out / "server.key", authorized, tuple(written))


def _warn_if_shared(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret key %s is readable by others (mode %o); chmod 600 it", path, stat.S_IMODE(mode))


def load_secret_key(path: Path, what: str) -> tuple[bytes, bytes]:
    """The (public, secret) Z85 keys of a ``*.key_secret`` file.

    Raises
    ------
    ConfigError
        Naming ``what`` (the setting) and the file when it is missing or holds no secret key.
    """
    path = Path(path)
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} = {str(path)!r}: cannot read a ZeroMQ key file ({exc}); make one with "
                          "`bci-stream keys --out DIR`") from exc  # fmt: skip
    if secret is None:
        raise ConfigError(
            f"{what} = {str(path)!r} holds only a public key; give the '.key_secret' file made by `bci-stream keys`"
        )
    _warn_if_shared(path)
    return public, secret


def load_public_key(path: Path, what: str) -> bytes:
    """The public Z85 key of a ``*.key`` (or ``*.key_secret``) file; :class:`ConfigError` naming ``what``."""
    try:
        public, _ = zmq.auth.load_certificate(Path(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} = {str(path)!r}: cannot read a ZeroMQ public key file ({exc})") from exc
    return public


def client_keys_in(folder: Path, what: str) -> list[Path]:
    """The public key files in ``folder``; :class:`ConfigError` when there is no folder or no key in it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{what} = {str(folder)!r} is not a folder of client public keys (*.key)")
    keys = sorted(folder.glob("*.key"))
    if not keys:
        raise ConfigError(
            f"{what} = {str(folder)!r} holds no client public key (*.key): nobody could receive; "
            "add clients with `bci-stream keys --out DIR --clients NAME`"
        )
    for key in keys:
        load_public_key(key, what)  # a broken file is refused at start, not silently skipped
    return keys


def secure_client(socket: zmq.Socket, client_secret: Path | None, server_public: Path | None) -> None:
    """Make ``socket`` a CURVE client (before ``connect``) when both key files are given.

    Raises
    ------
    ConfigError
        If only one of the two is given, or a file cannot be read.
    """
    if client_secret is None and server_public is None:
        return
    if client_secret is None or server_public is None:
        raise ConfigError(
            "CURVE needs both --curve-client-key (your NAME.key_secret) and --curve-server-key (the daemon's server.key)"
        )
    public, secret = load_secret_key(client_secret, "--curve-client-key")
    socket.curve_publickey = public
    socket.curve_secretkey = secret
    socket.curve_serverkey = load_public_key(server_public, "--curve-server-key")
