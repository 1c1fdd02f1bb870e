"""CURVE on network endpoints: listed keys receive, everybody else receives nothing; open endpoints are refused."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bci_stream.cli import main
from bci_stream.client import Subscriber, SubscriberTimeout
from bci_stream.curve import KeyFiles, is_loopback, make_keys
from bci_stream.daemon import DaemonThread
from bci_stream.demo import free_tcp_endpoint
from bci_stream.errors import ConfigError, StreamNotFoundError
from bci_stream.messages import Prediction, Status
from bci_stream.publish import Publisher
from tests.e2e.test_daemon import small_recording
from tests.security.helpers import any_interface_port, status_fields
from tests.support import daemon_config, playing, running_daemon, unique


def received_while_publishing(pub: Publisher, subs: dict[str, Subscriber], seconds: float) -> dict[str, int]:
    """Publish status messages for ``seconds`` while every subscriber polls; messages each one got."""
    got = dict.fromkeys(subs, 0)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pub.publish(Status, **status_fields())  # type: ignore[arg-type]
        for name, sub in subs.items():
            try:
                while True:
                    sub.recv(timeout=0.01)
                    got[name] += 1
            except SubscriberTimeout:
                pass
    return got


def test_keys_are_zeromq_certificates_readable_by_the_owner_only(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "k", ["a", "b"])
    for folder in (tmp_path / "k", keys.authorized_clients, keys.client_secrets[0].parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = [keys.server_secret, keys.server_public, *keys.client_secrets, *keys.authorized_clients.glob("*.key")]
    assert len(files) == 6
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert "secret-key" in keys.server_secret.read_text() and "secret-key" not in keys.server_public.read_text()
    with pytest.raises(ConfigError, match=r"a\.key already exists"):
        make_keys(tmp_path / "k", ["a"])
    more = make_keys(tmp_path / "k", ["c"])  # adding a client keeps the server pair
    assert more.server_secret.read_text() == keys.server_secret.read_text()


def test_only_listed_client_keys_receive(keys: KeyFiles, mallory: Path) -> None:
    port = any_interface_port()
    pub = Publisher(
        f"tcp://0.0.0.0:{port}",
        "s",
        curve_secret_key=keys.server_secret,
        curve_authorized_clients=keys.authorized_clients,
    )
    local = f"tcp://127.0.0.1:{port}"
    subs = {
        "alice": Subscriber(local, curve_client_key=keys.client_secrets[0], curve_server_key=keys.server_public),
        "no keys": Subscriber(local),
        "mallory": Subscriber(local, curve_client_key=mallory, curve_server_key=keys.server_public),
    }
    try:
        assert pub.curve and not pub.insecure and not pub.warnings
        got = received_while_publishing(pub, subs, 1.5)
    finally:
        for sub in subs.values():
            sub.close()
        pub.close()
    assert got["alice"] > 10, got
    assert got["no keys"] == 0 and got["mallory"] == 0, got


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:{port}", "tcp://*:{port}", "tcp://192.0.2.1:{port}"])
def test_network_endpoint_without_keys_is_refused(endpoint: str) -> None:
    endpoint = endpoint.format(port=any_interface_port())
    with pytest.raises(ConfigError) as err:
        Publisher(endpoint, "s")
    message = str(err.value)
    assert repr(endpoint) in message
    assert "bci-stream keys --out DIR" in message and "curve_secret_key" in message and "--insecure" in message


def test_half_configured_curve_names_the_missing_key(keys: KeyFiles) -> None:
    with pytest.raises(ConfigError, match=r"curve_secret_key is set but curve_authorized_clients is not"):
        Publisher("tcp://127.0.0.1:0", "s", curve_secret_key=keys.server_secret)
    with pytest.raises(ConfigError, match=r"curve_secret_key = .*server\.key'.* only a public key"):
        Publisher(
            "tcp://127.0.0.1:0",
            "s",
            curve_secret_key=keys.server_public,
            curve_authorized_clients=keys.authorized_clients,
        )
    with pytest.raises(ConfigError, match=r"both --curve-client-key"):
        Subscriber("tcp://127.0.0.1:1", curve_client_key=keys.client_secrets[0])


def test_insecure_publishes_openly_and_says_so() -> None:
    port = any_interface_port()
    pub = Publisher(f"tcp://0.0.0.0:{port}", "s", insecure=True)
    sub = Subscriber(f"tcp://127.0.0.1:{port}")
    try:
        assert pub.insecure and "without authentication" in pub.warnings[0]
        assert received_while_publishing(pub, {"anyone": sub}, 0.5)["anyone"] > 0
    finally:
        sub.close()
        pub.close()


def test_loopback_detection() -> None:
    for local in ("tcp://127.0.0.1:5556", "tcp://localhost:1", "tcp://[::1]:5", "ipc:///tmp/x", "inproc://x"):
        assert is_loopback(local), local
    for network in ("tcp://*:5556", "tcp://0.0.0.0:1", "tcp://10.0.0.2:1", "tcp://eth0:1", "tcp://[::]:5"):
        assert not is_loopback(network), network


def test_daemon_on_all_interfaces_with_curve_serves_only_the_keyed_subscriber(
    model: Path, keys: KeyFiles, mallory: Path
) -> None:
    name = unique("eeg")
    port = any_interface_port()
    publish = {
        "endpoint": f"tcp://0.0.0.0:{port}",
        "curve_secret_key": str(keys.server_secret),
        "curve_authorized_clients": str(keys.authorized_clients),
    }
    config = daemon_config(model, name, f"{name}-markers", publish=publish)
    local = f"tcp://127.0.0.1:{port}"
    with (
        Subscriber(
            local, timeout=2.0, curve_client_key=keys.client_secrets[0], curve_server_key=keys.server_public
        ) as alice,
        Subscriber(local, timeout=0.2) as anonymous,
        Subscriber(local, timeout=0.2, curve_client_key=mallory, curve_server_key=keys.server_public) as intruder,
        running_daemon(config),
    ):
        status = alice.wait_for("status", timeout=15)
        assert isinstance(status, Status) and not status.insecure and status.warnings == []
        with playing(small_recording(seconds=4, nan_at=None), name=name, source_id=name, speed=4.0, wait_consumers=10):
            prediction = alice.wait_for("prediction", timeout=20)
        assert isinstance(prediction, Prediction)
        for other in (anonymous, intruder):
            with pytest.raises(SubscriberTimeout):
                other.recv(timeout=0.3)


def test_run_refuses_an_open_network_endpoint(model: Path) -> None:
    endpoint = f"tcp://0.0.0.0:{any_interface_port()}"
    cmd = [sys.executable, "-m", "bci_stream.cli", "run", "--model", str(model), "--endpoint", endpoint, "--wait", "0"]
    refused = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2, refused.stderr
    assert endpoint in refused.stderr and "bci-stream keys" in refused.stderr and "--insecure" in refused.stderr


def test_insecure_daemon_warns_at_start_and_in_every_status(model: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = any_interface_port()
    publish = {"endpoint": f"tcp://0.0.0.0:{port}", "insecure": True}
    config = daemon_config(model, unique("absent"), unique("absent"), publish=publish, runtime={"wait": 20})
    runner = DaemonThread(config)
    with caplog.at_level(logging.WARNING), Subscriber(f"tcp://127.0.0.1:{port}", topics=["status"], timeout=15) as sub:
        runner.start()
        try:
            statuses = [sub.wait_for("status", timeout=15) for _ in range(3)]
        finally:
            with contextlib.suppress(StreamNotFoundError):  # no streams: stopped while still waiting for them
                runner.stop()
    for status in statuses:
        assert isinstance(status, Status) and status.insecure
        assert any(f"publishing on tcp://0.0.0.0:{port} without authentication" in w for w in status.warnings)
    assert "without authentication (--insecure)" in caplog.text


@pytest.fixture
def restore_signal_handlers() -> Iterator[None]:
    """``bci-stream listen`` installs SIGINT/SIGTERM handlers; give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("restore_signal_handlers")
def test_listen_takes_the_client_keys(keys: KeyFiles, capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = free_tcp_endpoint()
    pub = Publisher(
        endpoint, "s", curve_secret_key=keys.server_secret, curve_authorized_clients=keys.authorized_clients
    )
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.05):
            pub.publish(Status, **status_fields())  # type: ignore[arg-type]

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        keyed = ["--curve-client-key", str(keys.client_secrets[0]), "--curve-server-key", str(keys.server_public)]
        assert main(["listen", "--endpoint", endpoint, "--json", "--count", "2", "--timeout", "15", *keyed]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert main(["listen", "--endpoint", endpoint, "--timeout", "1"]) == 2  # no keys: silence
        assert "no message for 1 s" in capsys.readouterr().err
    finally:
        stop.set()
        feeder.join(5)
        pub.close()
    assert len(lines) == 2 and json.loads(lines[0])["topic"] == "status" and json.loads(lines[0])["schema"] == 1
