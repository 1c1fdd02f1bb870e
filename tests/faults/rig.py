"""The fault rig: a real ``bci-stream run`` process, LSL outlets the test controls, a plain ZeroMQ SUB.

- :class:`Amp` is a fake amplifier: a thread pushing a known signal in real time on the LSL clock. Its
  faults (holes, silences, timestamp jumps, NaNs, rate errors) are switched on by the test. Sample ``k``
  happens at *true* time ``t0 + k / sfreq``; its stamp is that plus whatever fault is on.
- The signal is a *probe*: channel ``c1`` carries ``(k mod 200) / 20``, so a probe model
  (:func:`make_probe_model`, logits = the first sample of the window) tells which sample an epoch
  started at: ``k mod 200 = 20 · log(p[c1] / p[c0])``. A window cut one sample off is caught.
- :class:`DaemonProcess` runs the real CLI with a TOML config; :class:`Sub` is a bare ``zmq.SUB``.

Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pylsl
import zmq
from onnx import TensorProto, helper, numpy_helper

from bci_stream.card import InputSpec, ModelCard, OutputSpec, Preprocessing, write_card
from bci_stream.demo import free_tcp_endpoint

ROOT = Path(__file__).resolve().parents[2]
PERIOD = 200  # the probe ramp repeats every PERIOD samples
CHANNELS = ["c0", "c1", "c2", "c3"]
TMIN = 0.02
N_TIMES = 100


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_probe_model(
    path: Path,
    *,
    sfreq: float = 1000.0,
    bandpass: tuple[float | None, float | None] | None = None,
    events: str | None = None,
) -> Path:
    """An ONNX model whose logits are the window's first sample (one logit per channel), with a card."""
    graph = helper.make_graph(
        [helper.make_node("Gather", ["eeg", "first"], ["logits"], axis=1)],
        "probe",
        [helper.make_tensor_value_info("eeg", TensorProto.FLOAT, ["batch", N_TIMES, len(CHANNELS)])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(CHANNELS)])],
        initializer=[numpy_helper.from_array(np.array(0, dtype=np.int64), "first")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    card = ModelCard.model_validate(
        {
            "name": "probe",
            "input": InputSpec(
                sfreq=sfreq, n_times=N_TIMES, tmin=TMIN, channels=CHANNELS, units="V", events=events
            ).model_dump(),
            "preprocessing": Preprocessing(bandpass=bandpass).model_dump(),
            "output": OutputSpec(classes=CHANNELS).model_dump(),
        }
    )
    write_card(path, card)
    return path


def probe_value(k: np.ndarray) -> np.ndarray:
    return (np.asarray(k) % PERIOD) / 20.0


def start_sample(probabilities: dict[str, float]) -> int:
    """Which sample (mod PERIOD) the probe model saw first."""
    return round(20.0 * math.log(probabilities["c1"] / probabilities["c0"])) % PERIOD


# ---------------------------------------------------------------------------------------------- amplifier
@dataclass
class AmpFaults:
    """What the amplifier does wrong, switched by the test while it plays (all times in seconds)."""

    skip: int = 0  # the next `skip` samples are never sent (a hole; stamps keep true time)
    stamp_offset: float = 0.0  # added to every stamp from now on (a clock jump)
    silent_until: float = 0.0  # true time until which nothing is sent
    keep_while_silent: bool = False  # send the held-back samples afterwards (a stalled link) or lose them
    nan_next: int = 0  # the next `nan_next` samples are `bad_value` on c2
    bad_value: float = float("nan")
    rate_error: float = 0.0  # stamps run at nominal * (1 + rate_error)
    stop: bool = False  # the amplifier is switched off for good


class Amp:
    """A fake amplifier on LSL: 4 channels (c0 … c3) of the probe signal, pushed in real time."""

    def __init__(
        self,
        *,
        name: str,
        source_id: str | None,
        sfreq: float = 1000.0,
        fmt: int = pylsl.cf_float32,
        chunk: int | None = None,
        labels: bool = True,
        noise: float = 0.0,
    ) -> None:
        self.sfreq = sfreq
        self.chunk = chunk or max(1, round(0.02 * sfreq))
        self.faults = AmpFaults()
        self.lock = threading.Lock()
        info = pylsl.StreamInfo(name, "EEG", len(CHANNELS), sfreq, fmt, source_id or "")
        if labels:
            chans = info.desc().append_child("channels")
            for c in CHANNELS:
                ch = chans.append_child("channel")
                ch.append_child_value("label", c)
                ch.append_child_value("unit", "mV" if fmt == pylsl.cf_int16 else "V")  # int16 counts are mV
                ch.append_child_value("type", "EEG")
        self.fmt = fmt
        self.outlet = pylsl.StreamOutlet(info, self.chunk)
        self.noise = noise
        self.rng = np.random.default_rng(0)
        self.t0 = 0.0
        self.k = 0  # next sample to produce
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def true_time(self, k: float) -> float:
        return self.t0 + k / self.sfreq

    def sample_at(self, t: float) -> int:
        """The sample nearest to true time ``t``."""
        return round((t - self.t0) * self.sfreq)

    def start(self) -> Amp:
        self.t0 = pylsl.local_clock() + 0.05
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        del self.outlet

    def _signal(self, k: np.ndarray) -> np.ndarray:
        x = np.zeros((len(k), len(CHANNELS)))
        x[:, 1] = probe_value(k)
        x[:, 2] = np.sin(2 * np.pi * 7 * k / self.sfreq)
        if self.noise:
            x[:, 3] = self.rng.standard_normal(len(k)) * self.noise
        if self.fmt == pylsl.cf_int16:
            x = np.round(x * 1000) / 1000  # exact in the int16 units below
        return x

    def _run(self) -> None:
        held: list[tuple[np.ndarray, np.ndarray]] = []
        while not self._stop.is_set():
            due = self.true_time(self.k + self.chunk)
            wait = due - pylsl.local_clock()
            if wait > 0:
                self._stop.wait(min(wait, 0.05))  # pacing
                continue
            k = np.arange(self.k, self.k + self.chunk)
            self.k += self.chunk
            with self.lock:
                f = self.faults
                if f.stop:
                    continue
                x = self._signal(k)
                keep = np.ones(len(k), bool)
                if f.skip:
                    n = min(f.skip, len(k))
                    keep[:n] = False
                    f.skip -= n
                if f.nan_next:
                    n = min(f.nan_next, len(k))
                    x[:n, 2] = f.bad_value
                    f.nan_next -= n
                stamps = self.t0 + k * (1.0 + f.rate_error) / self.sfreq + f.stamp_offset
                silent = self.true_time(k[-1]) < f.silent_until
                keep_silent = f.keep_while_silent
            x, stamps = x[keep], stamps[keep]
            if silent:
                if keep_silent:
                    held.append((x, stamps))
                continue
            for hx, hs in held:
                self._push(hx, hs)
            held.clear()
            if len(stamps):
                self._push(x, stamps)

    def _push(self, x: np.ndarray, stamps: np.ndarray) -> None:
        if self.fmt == pylsl.cf_int16:
            data = np.round(x * 1000).astype(np.int16)
        elif self.fmt == pylsl.cf_double64:
            data = x.astype(np.float64)
        else:
            data = x.astype(np.float32)
        self.outlet.push_chunk(np.ascontiguousarray(data), stamps.tolist())

    def fault(self, **changes: Any) -> None:
        with self.lock:
            for key, value in changes.items():
                setattr(self.faults, key, value)


class Markers:
    """A string marker outlet the test pushes to, stamped with the times it chooses."""

    def __init__(self, *, name: str, source_id: str | None) -> None:
        info = pylsl.StreamInfo(name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, source_id or "")
        self.outlet = pylsl.StreamOutlet(info)
        self.sent: list[tuple[str, float]] = []

    def push(self, value: str | bytes, t: float) -> None:
        self.outlet.push_sample([value], t)
        self.sent.append((value if isinstance(value, str) else value.decode("utf-8", "replace"), t))

    def wait_for_consumer(self, timeout: float = 15.0) -> None:
        assert self.outlet.wait_for_consumers(timeout), "the daemon never connected to the marker stream"

    def close(self) -> None:
        del self.outlet


# ---------------------------------------------------------------------------------------------- daemon + SUB
class Sub:
    """A plain ZeroMQ SUB socket, decoding JSON payloads into dicts."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)
        self.answers: list[dict[str, Any]] = []  # prediction and drop payloads, in arrival order
        self.statuses: list[dict[str, Any]] = []

    def pump(self, timeout: float = 0.1) -> None:
        if not self.sock.poll(int(timeout * 1000)):
            return
        while True:
            try:
                topic, payload = self.sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            msg = json.loads(payload)
            if topic in (b"prediction", b"drop"):
                self.answers.append(msg)
            elif topic == b"status":
                self.statuses.append(msg)

    def wait(self, until: Callable[[Sub], bool], timeout: float, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not until(self):
            assert time.monotonic() < deadline, f"{what} not met within {timeout} s ({len(self.answers)} answers)"
            self.pump()

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


@dataclass
class DaemonProcess:
    """The real ``bci-stream run`` in its own process, its stderr kept for the test to read."""

    proc: subprocess.Popen[bytes]
    endpoint: str
    stderr_path: Path
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def signal(self, signum: int = signal.SIGINT) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)


def _toml(config: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


@contextmanager
def daemon(
    tmp: Path, model: Path, /, *, eeg: dict[str, Any], markers: dict[str, Any], **sections: dict[str, Any]
) -> Iterator[tuple[DaemonProcess, Sub]]:
    """Run ``bci-stream run`` with a config naming the streams; yields it and a SUB that saw its first status.

    On exit the daemon gets SIGINT (if still running); the test fails on a traceback or a bad exit code.
    ``tmp`` and ``model`` are positional-only, so a ``model={...}`` section (e.g. ``classes``) can be given too.
    """
    endpoint = free_tcp_endpoint()
    config: dict[str, dict[str, Any]] = {
        "model": {"path": str(model)},
        "eeg": {"type": "EEG", **eeg},
        "markers": {"type": "Markers", **markers},
        "publish": {"endpoint": endpoint, "status_interval": 0.2},
        "runtime": {"wait": 20.0, "stream_timeout": 1.0},
    }
    for key, values in sections.items():
        config.setdefault(key, {}).update(values)
    cfg_path = tmp / f"daemon-{uuid.uuid4().hex[:6]}.toml"
    cfg_path.write_text(_toml(config))
    stderr_path = cfg_path.with_suffix(".stderr")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bci_stream.cli", "run", "--config", str(cfg_path)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
    running = DaemonProcess(proc, endpoint, stderr_path, config)
    sub = Sub(endpoint)
    try:
        sub.wait(lambda s: bool(s.statuses), 30, "first status")
        yield running, sub
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        sub.close()
    assert "Traceback" not in running.stderr, running.stderr[-3000:]


# ---------------------------------------------------------------------------------------------- checks
def check_accounting(sub: Sub, sent: list[tuple[str, float]], events: str = "stim/") -> list[dict[str, Any]]:
    """One answer per matching marker, in marker order, seq contiguous per topic; returns the answers."""
    expected = [(v, t) for v, t in sent if v.startswith(events)]
    got = [(a["marker"]["value"], a["marker"]["time"]) for a in sub.answers]
    assert len(got) == len(expected), f"{len(got)} answers for {len(expected)} markers"
    for (gv, gt), (ev, et) in zip(got, expected, strict=True):
        assert gv == ev and abs(gt - et) < 1e-6, f"answer {gv!r}@{gt} out of order (expected {ev!r}@{et})"
    for topic in ("prediction", "drop"):
        seqs = [a["seq"] for a in sub.answers if a["topic"] == topic]
        assert seqs == list(range(len(seqs))), f"{topic} seq not contiguous: {seqs[:10]}"
    return sub.answers


def check_windows(answers: list[dict[str, Any]], amp: Amp, *, sfreq_model: float = 1000.0) -> int:
    """Each prediction's window starts within half a sample of its marker's true time + tmin; returns count."""
    n = 0
    for a in answers:
        if a["topic"] != "prediction":
            continue
        true_start = a["marker"]["time"] + TMIN
        k = amp.sample_at(true_start)
        assert start_sample(a["probabilities"]) == k % PERIOD, (
            f"marker {a['marker']['value']!r}: the window started at sample {start_sample(a['probabilities'])} "
            f"(mod {PERIOD}), its marker says {k % PERIOD}"
        )
        assert abs(a["window"]["start"] - true_start) <= 0.5 / sfreq_model + 1e-6
        n += 1
    return n


def reasons(answers: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in answers:
        key = a["reason"] if a["topic"] == "drop" else "prediction"
        out[key] = out.get(key, 0) + 1
    return out


def wait_streaming(sub: Sub, timeout: float = 20.0) -> None:
    """Until a status says the daemon has EEG samples and a marker stream."""

    def ok(s: Sub) -> bool:
        st = s.statuses[-1] if s.statuses else None
        return bool(st and st["eeg"] and st["eeg"]["seconds_since_data"] is not None and st["markers"])

    sub.wait(ok, timeout, "EEG flowing into the daemon")


def run_scenario(
    amp: Amp,
    markers: Markers,
    sub: Sub,
    *,
    seconds: float,
    every: float = 0.25,
    start: float = 0.5,
    events: list[tuple[float, Callable[[], None]]] = (),  # type: ignore[assignment]
    value: Callable[[int], str] = lambda i: f"stim/c1/{i}",
) -> None:
    """Push a marker every ``every`` s of true time (stamped with it) and run ``events`` at their times.

    Times are seconds from the moment the daemon reports EEG data flowing (``start`` after it).
    """
    wait_streaming(sub)
    origin = pylsl.local_clock() - amp.t0
    todo = sorted(((origin + at, action) for at, action in events), key=lambda e: e[0])
    i = 0
    t_end = amp.t0 + origin + seconds
    next_marker = amp.t0 + origin + start
    while True:
        now = pylsl.local_clock()
        if now >= t_end:
            break
        while todo and now >= amp.t0 + todo[0][0]:
            todo.pop(0)[1]()
        while now >= next_marker:
            # a sub-sample offset: the epoch must start at the nearest sample
            t = next_marker + 0.3 / amp.sfreq
            markers.push(value(i), t)
            i += 1
            next_marker += every
        sub.pump(0.002)


class Rig:
    """One daemon process, one amplifier and one marker stream, shared by the tests of a module.

    Each test works on its own markers: :meth:`mark` before it, :meth:`answers_since` after.
    """

    def __init__(self, tmp: Path, model: Path, *, select_by: str = "source_id", **sections: dict[str, Any]) -> None:
        self.name = unique("rig")
        self.tmp, self.model, self.select_by, self.sections = tmp, model, select_by, sections
        self.amp = Amp(name=self.name, source_id=self.name)
        self.markers = Markers(name=f"{self.name}-markers", source_id=f"{self.name}-markers")
        self._cm = daemon(
            tmp,
            model,
            eeg={select_by: self.name},
            markers={select_by: f"{self.name}-markers"},
            **sections,
        )

    def __enter__(self) -> Rig:
        self.daemon, self.sub = self._cm.__enter__()
        self.amp.start()
        self.markers.wait_for_consumer()
        wait_streaming(self.sub)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._cm.__exit__(*exc)
        finally:
            self.amp.close()
            self.markers.close()

    def mark(self) -> tuple[int, int]:
        return len(self.sub.answers), len(self.markers.sent)

    def settle(
        self, mark: tuple[int, int], timeout: float = 10.0
    ) -> tuple[list[dict[str, Any]], list[tuple[str, float]]]:
        """Wait until every marker sent since ``mark`` is answered; the answers and the markers since then."""
        a0, m0 = mark
        n = sum(1 for v, _ in self.markers.sent[m0:] if v.startswith("stim/"))
        self.sub.wait(lambda s: len(s.answers) - a0 >= n, timeout, f"{n} answers")
        self.sub.pump(0.2)
        return self.sub.answers[a0:], self.markers.sent[m0:]


def check_slice(answers: list[dict[str, Any]], sent: list[tuple[str, float]]) -> None:
    """The accounting rule over one test's slice: one answer per matching marker, in order, seq without holes."""
    expected = [(v, t) for v, t in sent if v.startswith("stim/")]
    got = [(a["marker"]["value"], a["marker"]["time"]) for a in answers]
    assert len(got) == len(expected), f"{len(got)} answers for {len(expected)} markers"
    for (gv, gt), (ev, et) in zip(got, expected, strict=True):
        assert gv == ev and abs(gt - et) < 1e-6, f"answer {gv!r}@{gt} out of order (expected {ev!r}@{et})"
    for topic in ("prediction", "drop"):
        seqs = [a["seq"] for a in answers if a["topic"] == topic]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True, f"{topic} seq: {seqs[:10]}"
