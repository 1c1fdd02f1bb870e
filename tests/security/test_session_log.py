"""The JSONL session log: readable after ``kill -9``, refused at start when unwritable, switched off (not fatal)
when the disk fills up mid-session."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bci_stream.client import Subscriber, read_session_log
from bci_stream.demo import free_tcp_endpoint
from bci_stream.errors import ConfigError
from bci_stream.messages import Prediction, ProtocolError, Status
from bci_stream.publish import Publisher
from tests.e2e.test_daemon import small_recording
from tests.security.helpers import status_fields
from tests.support import daemon_config, playing, running_daemon, unique

pytestmark = pytest.mark.e2e


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.05)  # polling rate of a deadline wait


def test_reader_skips_a_truncated_last_line_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "session.jsonl"
    with Publisher(free_tcp_endpoint(), "s", log_path=path) as pub:
        for _ in range(3):
            pub.publish(Status, **status_fields())  # type: ignore[arg-type]
    whole = path.read_bytes()
    assert read_session_log(path)[-1].seq == 2
    path.write_bytes(whole[:-25])  # power lost while the last line was being written
    with caplog.at_level(logging.WARNING, logger="bci_stream.client"):
        messages = read_session_log(path)
    assert [m.seq for m in messages] == [0, 1]
    assert "line 3 is incomplete" in caplog.text and str(path) in caplog.text

    lines = whole.split(b"\n")
    path.write_bytes(b"\n".join([lines[0], lines[1][:40], lines[2]]) + b"\n")  # damage in the middle is not a crash
    with pytest.raises(ProtocolError, match=rf"{path}: line 2: "):
        read_session_log(path)


def test_kill_9_mid_session_leaves_a_log_whose_complete_lines_all_parse(tmp_path: Path, model: Path) -> None:
    log_path = tmp_path / "session.jsonl"
    name = unique("eeg")
    cmd = [sys.executable, "-m", "bci_stream.cli", "run", "--model", str(model), "--endpoint", free_tcp_endpoint()]
    cmd += ["--eeg-source-id", name, "--markers-source-id", f"{name}-markers", "--log", str(log_path), "--wait", "20"]

    def predictions_logged() -> int:
        return log_path.read_bytes().count(b'"topic":"prediction"') if log_path.exists() else 0

    with (
        playing(small_recording(seconds=20, nan_at=None), name=name, source_id=name, speed=2.0, wait_consumers=20),
        subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc,
    ):
        try:
            wait_until(lambda: predictions_logged() >= 5, 30, "5 predictions logged")
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    raw = log_path.read_bytes()
    messages = read_session_log(log_path)
    assert len(messages) == raw.count(b"\n")  # every complete line parsed
    predictions = [m for m in messages if isinstance(m, Prediction)]
    assert len(predictions) >= 5 and [p.seq for p in predictions] == list(range(len(predictions)))
    # and if the power had gone mid-line, the reader would still give every complete line
    log_path.write_bytes(raw[: raw.rindex(b"\n") - 10])
    assert len(read_session_log(log_path)) == len(messages) - 1


def test_unwritable_log_is_refused_at_start_naming_the_path(tmp_path: Path, model: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    bad = blocker / "session.jsonl"
    with pytest.raises(ConfigError, match=rf"cannot write the session log '{bad}'.*--log"):
        Publisher(free_tcp_endpoint(), "s", log_path=bad)
    endpoint = free_tcp_endpoint()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bci_stream.cli",
            "run",
            "--model",
            str(model),
            "--log",
            str(bad),
            "--endpoint",
            endpoint,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2 and str(bad) in run.stderr and "--log" in run.stderr


def test_disk_full_mid_session_disables_the_log_once_and_serving_goes_on(
    model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """/dev/full opens fine and fails every write with ENOSPC: a disk that filled up after start."""
    name = unique("eeg")
    config = daemon_config(model, name, f"{name}-markers", publish={"log": "/dev/full"})
    with (
        caplog.at_level(logging.ERROR, logger="bci_stream.publish"),
        Subscriber(config.publish.endpoint, timeout=2.0) as sub,
        running_daemon(config),
    ):
        status = sub.wait_for("status", timeout=15)
        while not status.warnings:  # type: ignore[union-attr]
            status = sub.wait_for("status", timeout=5)
        assert isinstance(status, Status)
        assert status.warnings == ["session log /dev/full disabled after a write error (No space left on device)"]
        with playing(small_recording(seconds=4, nan_at=None), name=name, source_id=name, speed=4.0, wait_consumers=10):
            assert isinstance(sub.wait_for("prediction", timeout=20), Prediction)
    errors = [r for r in caplog.records if "session log" in r.getMessage()]
    assert len(errors) == 1 and "serving goes on" in errors[0].getMessage()
