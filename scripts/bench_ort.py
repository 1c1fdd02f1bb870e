"""ONNX Runtime alone at a fixed rate: per-epoch latency p50/p99 and CPU time per inference, per session setting.

    PYTHONPATH=. python scripts/bench_ort.py exported/cogninet-synth.onnx --rate 50 --seconds 10 --rounds 2

Each setting gets its own session on the CPU, a warm-up, then single epochs (random, shaped like the card's
input) run at ``--rate`` per second on a fixed schedule for ``--seconds``; the settings take turns for
``--rounds`` rounds so that a change in machine load hits them alike. CPU time is this process's (all ONNX
Runtime threads, spinning included) over the whole paced run, so threads busy-waiting between epochs count.
Numbers only mean something on a quiet machine: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bci_stream.inference import OnnxModel, SessionSettings

SETTINGS = {
    # what OnnxModel did before tuning: SessionOptions() defaults (a thread per core, spinning on, ENABLE_ALL)
    "ort-default": SessionSettings(intra_op_threads=0, inter_op_threads=0, allow_spinning=True),
    "tuned (1 thread, no spin)": SessionSettings(),
    "tuned + io_binding": SessionSettings(io_binding=True),
    "2 threads, no spin": SessionSettings(intra_op_threads=2),
}


def paced_run(model: OnnxModel, rate: float, seconds: float, seed: int) -> dict[str, float]:
    """Run single epochs at ``rate`` Hz for ``seconds``; latency per call and CPU per inference."""
    spec = model.card.input
    x = np.random.default_rng(seed).standard_normal((1, spec.n_times, model.n_inputs_per_step)).astype(np.float32)
    n = int(rate * seconds)
    latencies = np.zeros(n)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for k in range(n):
        due = wall0 + k / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        t = time.perf_counter()
        model.run(x)
        latencies[k] = (time.perf_counter() - t) * 1e3
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    p50, p99 = np.percentile(latencies, [50, 99])
    return {
        "n": n,
        "p50_ms": float(p50),
        "p99_ms": float(p99),
        "max_ms": float(latencies.max()),
        "cpu_ms_per_inference": cpu / n * 1e3,
        "cpu_percent": 100 * cpu / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="?", default=Path("exported/cogninet-synth.onnx"))
    parser.add_argument("--rate", type=float, default=50.0, help="inferences per second (default 50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per setting and round (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all settings, interleaved (default 2)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}, "
          f"onnxruntime {ort.__version__}; load average {os.getloadavg()}")  # fmt: skip
    models = {name: OnnxModel(args.model, "cpu", s) for name, s in SETTINGS.items()}
    for model in models.values():
        model.warm_up()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    for r in range(args.rounds):
        for name, model in models.items():
            runs[name].append(paced_run(model, args.rate, args.seconds, seed=r))
    print(f"load average after: {os.getloadavg()}")
    print(f"{'setting':28s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'CPU ms/inf':>11s} {'CPU %':>7s}")
    summary = {}
    for name, rows in runs.items():
        merged = {k: float(np.median([row[k] for row in rows])) for k in rows[0]}
        summary[name] = {"median_over_rounds": merged, "rounds": rows}
        print(
            f"{name:28s} {merged['p50_ms']:8.2f} {merged['p99_ms']:8.2f} {merged['max_ms']:8.2f} "
            f"{merged['cpu_ms_per_inference']:11.2f} {merged['cpu_percent']:7.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": summary}))


if __name__ == "__main__":
    main()
