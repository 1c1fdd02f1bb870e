"""``bci-stream bench``: inference time and the daemon's added latency, measured on this machine.

Two measurements, both on the real parts:

1. ONNX Runtime inference of the model per batch size (median and p99 per batch, and per epoch).
2. The live path: a synthetic stream shaped like the model's card (its channels, its rate) played
   over LSL in real time with a marker every 0.25 s, the daemon in a thread, a ZeroMQ subscriber;
   reports the added latency (publish − arrival of the epoch's last sample) p50/p99, and the time
   from the window's end on the LSL clock to publish (which includes LSL transport and chunking).
"""

from __future__ import annotations

import json
import logging
import platform
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .client import Subscriber, SubscriberTimeout
from .config import load_config
from .daemon import DaemonThread
from .demo import free_tcp_endpoint
from .epochs import Marker
from .inference import OnnxModel
from .messages import Prediction
from .recordings import Recording
from .replay import Player

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


def live_latency(model_path: Path, seconds: float = 20.0, marker_interval: float = 0.25) -> dict[str, Any]:
    """Play a synthetic stream matching the card in real time through the daemon; latency percentiles."""
    model = OnnxModel(model_path, "auto")
    spec = model.card.input
    rng = np.random.default_rng(1)
    n = int(seconds * spec.sfreq)
    data = rng.standard_normal((n, len(spec.channels))) * 10e-6
    onsets = np.arange(1.0, seconds - spec.duration - abs(spec.tmin) - 0.5, marker_interval)
    cls = model.classes[0].split(" ", 1)[0]
    markers = [Marker(f"stim/{cls}/bench_{i}", float(t)) for i, t in enumerate(onsets)]
    rec = Recording(data, spec.sfreq, list(spec.channels), ["eeg"] * len(spec.channels), "V", markers, "<bench>")
    name = f"bench-{uuid.uuid4().hex[:8]}"
    config = load_config(
        None,
        {
            "model": {"path": str(model_path)},
            "eeg": {"source_id": name},
            "markers": {"source_id": f"{name}-markers"},
            "publish": {"endpoint": free_tcp_endpoint()},
            "runtime": {"wait": 15.0},
        },
    )
    runner = DaemonThread(config)
    got: list[Prediction] = []
    with Subscriber(config.publish.endpoint, ["prediction", "drop", "status"], timeout=2.0) as sub:
        runner.start()
        try:
            sub.wait_for("status", timeout=30)
            player = Player(rec, name=name, source_id=name, speed=1.0, wait_consumers=10)
            player.start()
            play = threading.Thread(target=player.run, name="replay", daemon=True)
            play.start()
            deadline = time.monotonic() + seconds + 15
            answered = 0
            while answered < len(markers) and time.monotonic() < deadline:
                try:
                    msg = sub.recv(timeout=1.0)
                except SubscriberTimeout:
                    continue
                if msg.topic in ("prediction", "drop"):
                    answered += 1
                    if isinstance(msg, Prediction):
                        got.append(msg)
            play.join(5)
            player.close()
        finally:
            runner.stop()  # re-raises the daemon's error: a benchmark of a dead daemon must not pass quietly
    added = np.array([p.timing.added_latency_ms for p in got])
    since_end = np.array([p.timing.since_window_end_ms for p in got])
    inf = np.array([p.timing.inference_ms for p in got])

    def pct(a: np.ndarray) -> dict[str, float | None]:
        if not len(a):
            return {"p50": None, "p99": None}
        p50, p99 = np.percentile(a, [50, 99])
        return {"p50": float(p50), "p99": float(p99)}

    return {
        "markers": len(markers),
        "predictions": len(got),
        "provider": model.provider,
        "added_latency_ms": pct(added),
        "since_window_end_ms": pct(since_end),
        "inference_ms": pct(inf),
    }


def run_bench(model: Path, repeats: int = 100, batch_sizes: list[int] | None = None, out: Path | None = None) -> int:
    """Print (and optionally save as JSON) both measurements for ``model``."""
    onnx_model = OnnxModel(model, "auto")
    print(
        f"bench: {model} ({onnx_model.card.name}) on {onnx_model.provider}, {platform.processor() or platform.machine()}"
    )
    rows = inference_times(onnx_model, batch_sizes or [1, 8, 32], repeats)
    print(f"{'batch':>6} {'median ms':>10} {'p99 ms':>8} {'ms/epoch':>9}")
    for r in rows:
        print(f"{r['batch']:>6} {r['median_ms']:>10.2f} {r['p99_ms']:>8.2f} {r['per_epoch_ms']:>9.2f}")
    print("live path (20 s real-time replay, a marker every 0.25 s) ...")
    live = live_latency(model)
    a, e = live["added_latency_ms"], live["since_window_end_ms"]
    print(
        f"live: {live['predictions']}/{live['markers']} predictions; added latency p50 {a['p50']:.2f} ms "
        f"p99 {a['p99']:.2f} ms; window end -> publish p50 {e['p50']:.2f} ms p99 {e['p99']:.2f} ms"
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"model": str(model), "inference": rows, "live": live}, indent=2))
        print(f"wrote {out}")
    return 0
