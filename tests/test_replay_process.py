"""``bci-stream replay`` as a real process: waiting for consumers by default, lost markers, Ctrl-C once and twice.

Every stream has a unique source_id; waits are on conditions (log lines, LSL resolves, exit) with deadlines.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mne
import numpy as np
import pylsl
import pytest

from bci_stream import replay
from bci_stream.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
SFREQ = 200.0


def _sid() -> str:
    return f"test-replay-proc-{uuid.uuid4().hex}"


def _fif(path: Path, seconds: float, onsets: list[float], labels: list[str]) -> Path:
    n = round(seconds * SFREQ)
    data = np.random.default_rng(7).standard_normal((2, n)) * 10e-6
    raw = mne.io.RawArray(data, mne.create_info(["C3", "C4"], SFREQ, ["eeg", "eeg"]), verbose="error")
    raw.set_annotations(mne.Annotations(onsets, [0.0] * len(onsets), labels))
    raw.save(path, verbose="error")
    return path


class _Replay:
    """A ``bci-stream replay`` process whose stderr goes to a file the test reads."""

    def __init__(self, tmp: Path, file: Path, *args: str) -> None:
        self.source_id = _sid()
        self.name = self.source_id
        self.stderr_path = tmp / f"replay-{uuid.uuid4().hex[:6]}.stderr"
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        cmd = [sys.executable, "-m", "bci_stream.cli", "replay", str(file), "--name", self.name]
        cmd += ["--source-id", self.source_id, *args]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env=env)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """Wait until stderr matches ``pattern``; fail if the process exits first or after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.stderr)
            if found:
                return found
            assert self.proc.poll() is None, (
                f"replay exited ({self.proc.returncode}) before {pattern!r}:\n{self.stderr}"
            )
            assert time.monotonic() < deadline, (
                f"no {pattern!r} in the replay's stderr within {timeout} s:\n{self.stderr}"
            )
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(0.02)  # returns early if the process exits

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def _replay(tmp: Path, file: Path, *args: str) -> Iterator[_Replay]:
    running = _Replay(tmp, file, *args)
    try:
        yield running
    finally:
        running.close()


def _inlet(source_id: str, timeout: float = 10.0) -> pylsl.StreamInlet:
    found = pylsl.resolve_byprop("source_id", source_id, 1, timeout)
    assert found, f"no LSL stream with source_id {source_id!r} within {timeout} s"
    inlet = pylsl.StreamInlet(found[0], max_buflen=30)
    inlet.open_stream(timeout)
    return inlet


def _pull_until_exit(inlet: pylsl.StreamInlet, proc: subprocess.Popen[bytes], timeout: float) -> list[str]:
    """Every marker the inlet gets until the replay exits (then what is left in the inlet)."""
    deadline = time.monotonic() + timeout
    got: list[str] = []
    while proc.poll() is None:
        assert time.monotonic() < deadline, f"replay still running after {timeout} s; markers so far {got}"
        values, _ = inlet.pull_chunk(timeout=0.1)
        got += [v[0] for v in values]
    values, _ = inlet.pull_chunk(timeout=0.0)
    return got + [v[0] for v in values]


# ---------------------------------------------------------------------------------------------------------------------


def test_default_wait_is_the_same_for_the_cli_replay_main_and_documented() -> None:
    assert replay.DEFAULT_WAIT_CONSUMERS == 30.0
    assert build_parser().parse_args(["replay", "x.fif"]).wait_consumers == replay.DEFAULT_WAIT_CONSUMERS
    assert inspect.signature(replay.replay_main).parameters["wait_consumers"].default == replay.DEFAULT_WAIT_CONSUMERS
    # the classes keep not waiting: a program that opens its own inlets first passes its own value
    assert inspect.signature(replay.Player).parameters["wait_consumers"].default == 0.0
    assert inspect.signature(replay.XdfPlayer).parameters["wait_consumers"].default == 0.0


def test_by_default_replay_waits_for_both_inlets_so_every_marker_arrives(tmp_path: Path) -> None:
    labels = ["first", "second", "middle", "last"]
    onsets = [0.0, 0.01, 0.5, 1.9]
    fif = _fif(tmp_path / "wait_raw.fif", 2.0, onsets, labels)
    with _replay(tmp_path, fif, "--speed", "10") as rp:  # no --wait-consumers: the default
        rp.wait_for_log(r"waiting up to 30 s for consumers of")
        eeg = _inlet(rp.source_id)
        # an EEG consumer alone does not start the replay: the marker outlet has none yet
        x, _ = eeg.pull_chunk(timeout=0.5)
        assert not x, f"replay started with only the EEG inlet connected:\n{rp.stderr}"
        markers = _inlet(f"{rp.source_id}-markers")
        got = _pull_until_exit(markers, rp.proc, 60.0)
        markers.close_stream()
        eeg.close_stream()
        assert rp.proc.wait(10) == 0, rp.stderr
    assert got == labels, rp.stderr
    assert "no consumer" not in rp.stderr, rp.stderr
    assert "Traceback" not in rp.stderr, rp.stderr


def test_wait_consumers_0_warns_how_many_markers_no_consumer_got(tmp_path: Path) -> None:
    labels = ["early/0", "early/1", "late/0", "late/1"]
    onsets = [0.0, 0.002, 2.5, 2.9]  # the early two go out in the first chunk; the inlet has 2.5 s to connect
    fif = _fif(tmp_path / "lost_raw.fif", 3.0, onsets, labels)
    with _replay(tmp_path, fif, "--wait-consumers", "0") as rp:
        # the first marker goes out with the first chunk, before any inlet: warned at once, naming the stream
        rp.wait_for_log(rf"marker 'early/0' pushed to '{rp.name}-markers' with no consumer connected")
        markers = _inlet(f"{rp.source_id}-markers")  # connects after the early markers
        got = _pull_until_exit(markers, rp.proc, 60.0)
        markers.close_stream()
        assert rp.proc.returncode == 0, rp.stderr
    found = re.search(rf"(\d+) of 4 markers were pushed to '{rp.name}-markers' while it had no consumer", rp.stderr)
    assert found, rp.stderr
    lost = int(found.group(1))
    assert 2 <= lost < 4, f"{lost} lost; the inlet should have connected between the early and late markers"
    assert got == labels[lost:], (got, rp.stderr)  # what was counted lost is exactly what the inlet missed
    assert rp.stderr.count("with no consumer connected") == 1, rp.stderr  # warned once, not per marker


@pytest.mark.parametrize(("signals", "status"), [(1, 0), (2, 130)])
def test_ctrl_c_once_stops_cleanly_twice_exits_130_without_traceback(tmp_path: Path, signals: int, status: int) -> None:
    fif = _fif(tmp_path / "long_raw.fif", 120.0, [1.0], ["x"])
    with _replay(tmp_path, fif, "--wait-consumers", "0") as rp:
        rp.wait_for_log(r"playing .* from LSL time")
        rp.proc.send_signal(signal.SIGINT)
        if signals == 2:
            # the second Ctrl-C while the outlets close (inside pylsl's StreamOutlet.__del__)
            rp.wait_for_log(r"stopped: \d+ samples")
            rp.proc.send_signal(signal.SIGINT)
        assert rp.proc.wait(20) == status, rp.stderr
    assert "Traceback" not in rp.stderr and "Exception ignored" not in rp.stderr, rp.stderr
    if signals == 2:
        assert "second SIGINT: exiting at once (exit status 130)" in rp.stderr, rp.stderr
    else:
        assert re.search(r"replay of .* stopped", rp.stderr), rp.stderr
