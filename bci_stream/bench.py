"""``bci-stream bench``: inference time and the daemon's added latency, measured on this machine.

Two measurements, both on the real parts:

1. ONNX Runtime inference of the model per batch size (median and p99 per batch, and per epoch).
2. The live path: a synthetic stream shaped like the model's card (its channels, its rate) played
   over LSL in real time at 2 and at 50 markers/s (overlapping epochs) into a real ``bci-stream run``
   process, and a plain ZeroMQ subscriber: latency past the window end as a client sees it
   (p50/p99/max), missing or duplicated answers, the daemon's CPU use and memory (RSS at start and
   end; ``--minutes`` makes it a soak run).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from .card import ModelCard
from .demo import free_tcp_endpoint
from .epochs import Marker
from .errors import BciStreamError
from .inference import OnnxModel
from .lsl import local_clock as lsl_clock
from .recordings import Recording
from .replay import DEFAULT_CHUNK_SECONDS, Player

log = logging.getLogger(__name__)


def inference_times(model: OnnxModel, batch_sizes: list[int], repeats: int) -> list[dict[str, float]]:
    """Median/p99 ms per batch and per epoch for each batch size (after warm-up)."""
    rows = []
    n_times, n_ch = model.card.input.n_times, len(model.card.input.channels)
    rng = np.random.default_rng(0)
    for bs in batch_sizes:
        x = rng.standard_normal((bs, n_times, n_ch)).astype(np.float32)
        for _ in range(3):
            model.run(x)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model.run(x)
            times.append((time.perf_counter() - t) * 1e3)
        med, p99 = np.percentile(times, [50, 99])
        rows.append({"batch": bs, "median_ms": float(med), "p99_ms": float(p99), "per_epoch_ms": float(med / bs)})
    return rows


def _proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_recording(card: ModelCard, seconds: float, rate: float, *, aligned: bool = False) -> Recording:
    """A card-shaped noise recording with ``rate`` markers per second (overlapping epochs above ~2/s).

    Real stimulus onsets fall anywhere within an amplifier chunk, so by default each onset gets a random
    offset within one chunk period (:data:`~bci_stream.replay.DEFAULT_CHUNK_SECONDS`): the latency then
    includes the wait for the chunk that completes the window, as a user sees it. ``aligned`` puts every
    window's last sample at the end of a chunk instead: that measures the processing floor alone.
    """
    spec = card.input
    rng = np.random.default_rng(1)
    n = int((seconds + 3.0) * spec.sfreq)
    data = (rng.standard_normal((n, len(spec.channels))) * 10e-6).astype(np.float32)
    onsets = np.arange(1.0, seconds + 1.0, 1.0 / rate)  # at 50/s the 0.44 s epochs overlap 22-fold
    if not aligned:
        chunk = max(1, round(DEFAULT_CHUNK_SECONDS * spec.sfreq))
        onsets = onsets + rng.integers(0, chunk, len(onsets)) / spec.sfreq
    classes = [c.split(" ", 1)[0] for c in card.output.classes]
    markers = [Marker(f"stim/{classes[i % len(classes)]}/bench_{i}", float(t)) for i, t in enumerate(onsets)]
    return Recording(data, spec.sfreq, list(spec.channels), ["eeg"] * len(spec.channels), "V", markers, "<bench>")


def _percentiles(values: list[float]) -> dict[str, float | None]:
    v = np.asarray(values, dtype=float)
    if not len(v):
        return {"p50": None, "p99": None, "max": None}
    p50, p99 = np.percentile(v, [50, 99])
    return {"p50": float(p50), "p99": float(p99), "max": float(v.max())}


_PARTS = ("preprocess_ms", "queue_ms", "inference_ms", "publish_ms", "added_latency_ms")
_RSS_EVERY = 10.0  # s between RSS samples of the daemon (a soak run's memory trace)


def daemon_command(
    model_path: Path, name: str, endpoint: str, *, baseline: str | None = None, config: Path | None = None
) -> list[str]:
    """The process a live run measures: ``bci-stream run`` (with ``config``, if given) or a baseline."""
    if baseline is None:
        cmd = [sys.executable, "-m", "bci_stream.cli", "-q", "run", "--model", str(model_path), "--wait", "30"]
        cmd += ["--config", str(config)] if config is not None else []
    elif baseline == "mne-lsl":
        if config is not None:
            raise BciStreamError(f"bench: --config {config} tunes bci-stream run; the mne-lsl baseline takes none")
        cmd = [sys.executable, "-m", "bci_stream.bench_mnelsl", "--model", str(model_path)]
    else:
        raise BciStreamError(f"bench: unknown baseline {baseline!r}; known: mne-lsl")
    return [*cmd, "--eeg-source-id", name, "--markers-source-id", f"{name}-markers", "--endpoint", endpoint]


def live_latency(
    model_path: Path,
    seconds: float = 20.0,
    rate: float = 2.0,
    *,
    aligned: bool = False,
    baseline: str | None = None,
    config: Path | None = None,
) -> dict[str, Any]:
    """Replay a card-shaped stream in real time through a real ``bci-stream run`` process; measure it.

    Latency is what a client sees: subscriber receive time − (marker time + tmin + n_times / sfreq),
    on the LSL clock (one machine). The daemon's own account of each prediction (``timing``: preprocess,
    queue, inference, publish, added latency from the arrival of the last sample) is summarised beside it.
    CPU and memory are the daemon process's own, from /proc; RSS is sampled every 10 s (a soak run's trace).
    ``baseline="mne-lsl"`` measures the hand-built mne-lsl pipeline of :mod:`bci_stream.bench_mnelsl` instead,
    on the same replay. ``config``: the daemon's TOML config (to measure other ``[model]`` tuning).
    """
    model = OnnxModel(model_path, "auto")
    spec = model.card.input
    rec = bench_recording(model.card, seconds, rate, aligned=aligned)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    endpoint = free_tcp_endpoint()
    cmd = daemon_command(model_path, name, endpoint, baseline=baseline, config=config)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    for topic in (b"prediction", b"drop", b"status"):
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.connect(endpoint)
    err = tempfile.TemporaryFile()  # noqa: SIM115 - a pipe could fill over a soak run and block the daemon; closed below
    daemon = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    seen: Counter[str] = Counter()
    latencies: list[float] = []
    parts: dict[str, list[float]] = {k: [] for k in _PARTS}
    drops: Counter[str] = Counter()
    rss_trace: list[tuple[float, float]] = []
    try:
        deadline = time.monotonic() + 60
        while not sock.poll(200):  # the first status: the daemon is up
            if daemon.poll() is not None or time.monotonic() > deadline:
                err.seek(0)
                raise BciStreamError(f"bench: the daemon did not start: {err.read().decode()[-2000:]}")
        player = Player(rec, name=name, source_id=name, speed=1.0, wait_consumers=20)
        player.start()
        play = threading.Thread(target=player.run, name="replay", daemon=True)
        play.start()
        cpu0, wall0 = _proc_cpu_seconds(daemon.pid), time.monotonic()
        rss_trace.append((0.0, _proc_rss_mb(daemon.pid)))
        end_of_play = time.monotonic() + seconds + 25
        offset = spec.tmin + spec.duration
        while sum(seen.values()) < len(rec.markers) and time.monotonic() < end_of_play:
            if time.monotonic() - wall0 >= _RSS_EVERY * len(rss_trace):
                rss_trace.append((time.monotonic() - wall0, _proc_rss_mb(daemon.pid)))
            if not sock.poll(500):
                continue
            topic, payload = sock.recv_multipart()
            now = lsl_clock()
            if topic == b"status":
                continue
            msg = json.loads(payload)
            seen[msg["marker"]["value"]] += 1
            if topic == b"prediction":
                latencies.append((now - (msg["marker"]["time"] + offset)) * 1e3)
                for key in _PARTS if "timing" in msg else ():  # a baseline gives no account of its own
                    parts[key].append(msg["timing"][key])
            else:
                drops[msg["reason"]] += 1
        cpu = (_proc_cpu_seconds(daemon.pid) - cpu0) / (time.monotonic() - wall0)
        rss_trace.append((time.monotonic() - wall0, _proc_rss_mb(daemon.pid)))
        play.join(10)
        player.close()
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGINT)
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
        sock.close()
        ctx.term()
        err.close()
    values = {m.value for m in rec.markers}
    return {
        "pipeline": "bci-stream run" if baseline is None else f"{baseline} (hand-built, bci_stream.bench_mnelsl)",
        "rate_per_s": rate,
        "seconds": seconds,
        "onsets": "aligned with chunk ends" if aligned else "random within a chunk",
        "markers": len(rec.markers),
        "predictions": len(latencies),
        "drops": dict(drops),
        "missing": len(values - set(seen)),
        "duplicated": sum(n - 1 for n in seen.values() if n > 1),
        "provider": model.provider if baseline is None else "CPUExecutionProvider (ONNX Runtime defaults)",
        "latency_ms": _percentiles(latencies),
        "daemon_timing_ms": {key.removesuffix("_ms"): _percentiles(v) for key, v in parts.items()},
        "cpu_cores": cpu,
        "rss_mb": {"start": rss_trace[0][1], "end": rss_trace[-1][1], "max": max(r for _, r in rss_trace)},
        "rss_trace": [{"t_s": round(t, 1), "rss_mb": round(r, 1)} for t, r in rss_trace],
    }


def _print_live(live: dict[str, Any]) -> None:
    lat = live["latency_ms"]
    shown = " ".join(f"{k} {v:.1f}" for k, v in lat.items() if v is not None)
    rss = live["rss_mb"]
    print(
        f"{live['pipeline']}: live {live['rate_per_s']:g} markers/s for {live['seconds']:g} s ({live['onsets']}): "
        f"{live['predictions']}/{live['markers']} predicted, drops {live['drops'] or 0}, missing {live['missing']}, "
        f"duplicated {live['duplicated']}; latency past the window end (ms) {shown}; daemon CPU "
        f"{live['cpu_cores']:.2f} cores; RSS {rss['start']:.0f} -> {rss['end']:.0f} MB (max {rss['max']:.0f})"
    )
    daemon = " ".join(
        f"{k} {v['p50']:.1f}/{v['p99']:.1f}" for k, v in live["daemon_timing_ms"].items() if v["p50"] is not None
    )
    if daemon:
        print(f"  the daemon's account, from the arrival of the last sample, p50/p99 ms: {daemon}")


def _machine() -> dict[str, Any]:
    """What the numbers were measured on (a benchmark says so: STYLE.md)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": list(os.getloadavg())}


def run_bench(
    model: Path,
    repeats: int = 100,
    batch_sizes: list[int] | None = None,
    out: Path | None = None,
    *,
    seconds: float = 20.0,
    rates: list[float] | None = None,
    aligned: bool = False,
    baseline: str | None = None,
    config: Path | None = None,
) -> int:
    """Print (and optionally save as JSON) both measurements for ``model``."""
    if baseline == "mne-lsl" and importlib.util.find_spec("mne_lsl") is None:
        raise BciStreamError("bench --baseline mne-lsl needs mne-lsl: pip install -e '.[bench]' (make bench does)")
    onnx_model = OnnxModel(model, "auto")
    machine = _machine()
    print(
        f"bench: {model} ({onnx_model.card.name}) on {onnx_model.provider}; {machine['cpu']}, {machine['cores']} cores, "
        f"load average {machine['load_average'][0]:.2f}"
    )
    rows = inference_times(onnx_model, batch_sizes or [1, 8, 32], repeats)
    print(f"{'batch':>6} {'median ms':>10} {'p99 ms':>8} {'ms/epoch':>9}")
    for r in rows:
        print(f"{r['batch']:>6} {r['median_ms']:>10.2f} {r['p99_ms']:>8.2f} {r['per_epoch_ms']:>9.2f}")
    lives = []
    for rate in rates or [2.0, 50.0]:
        print(f"live path: {seconds:g} s real-time replay, 128-channel-shaped stream, {rate:g} markers/s ...")
        lives.append(live_latency(model, seconds=seconds, rate=rate, aligned=aligned, config=config))
        _print_live(lives[-1])
        if baseline is not None:
            lives.append(live_latency(model, seconds=seconds, rate=rate, aligned=aligned, baseline=baseline))
            _print_live(lives[-1])
    live = lives
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        machine["load_average_end"] = list(os.getloadavg())
        result = {"model": str(model), "config": str(config) if config else None, "machine": machine}
        out.write_text(json.dumps(result | {"inference": rows, "live": live}, indent=2))
        print(f"wrote {out}")
    return 0
