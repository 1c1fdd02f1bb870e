"""GPU check for the lead: the CUDA provider loads the shipped model, agrees with the CPU, and how fast it is.

    scripts/gpu_check.sh                       # exported/cogninet-synth.onnx, batches 1 4 16
    scripts/gpu_check.sh MODEL --batches 1 2 8 --repeats 300
    scripts/gpu_check.sh --device cpu          # dry run of the script itself on a machine without a GPU

Checks, each printed PASS/FAIL (exit 1 on any FAIL):
1. onnxruntime offers CUDAExecutionProvider and a session on the model really gets it (no silent CPU fallback),
   with the provider options of bci_stream.inference.SessionSettings (cudnn_conv_algo_search HEURISTIC ...);
2. the optimised model is cached for the CUDA provider and reused by a second session;
3. outputs on CUDA equal the CPU's within --atol (1e-4) for every batch size (random normalised-like input);
then, per batch size, the time of one inference call (host array in, host array out: what the daemon pays) as
p50 / p99 / max ms over --repeats calls after a warm-up, with and without IO binding. The target of issue 8 is
p99 added latency <= 2 ms for the shipped model at batch 1.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bci_stream.inference import CUDA, OnnxModel, SessionSettings


def check(ok: bool, what: str) -> bool:
    print(f"{'PASS' if ok else 'FAIL'}  {what}", flush=True)
    return ok


def timings(model: OnnxModel, x: np.ndarray, repeats: int) -> tuple[float, float, float]:
    for _ in range(10):
        model.run(x)
    ms = np.zeros(repeats)
    for i in range(repeats):
        t = time.perf_counter()
        model.run(x)
        ms[i] = (time.perf_counter() - t) * 1e3
    p50, p99 = np.percentile(ms, [50, 99])
    return float(p50), float(p99), float(ms.max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="?", default=Path("exported/cogninet-synth.onnx"))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: dry run without a GPU")
    args = parser.parse_args()

    print(f"machine: {platform.node()} {platform.machine()}, python {platform.python_version()}, "
          f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}")  # fmt: skip
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        gpu = "nvidia-smi not available"
    print(f"gpu: {gpu or 'none'}")
    ok = True
    with tempfile.TemporaryDirectory() as cache_dir:
        settings = SessionSettings(cache_dir=Path(cache_dir))
        cpu = OnnxModel(args.model, "cpu", SessionSettings())
        if args.device == "cuda":
            ok &= check(CUDA in ort.get_available_providers(), "onnxruntime offers CUDAExecutionProvider")
            if not ok:
                return 1
            try:
                dev = OnnxModel(args.model, "cuda", settings)
            except Exception as exc:  # the point is to report it, whatever it is
                check(False, f"CUDA session on {args.model}: {exc}")
                return 1
            ok &= check(dev.provider == CUDA, f"session runs on {dev.provider}")
            options = dev.session.get_provider_options().get(CUDA, {})
            print(f"      CUDA options: { {k: options.get(k) for k in settings.cuda_options()} }")
        else:
            dev = OnnxModel(args.model, "cpu", settings)
        again = OnnxModel(args.model, args.device, settings)  # type: ignore[arg-type]
        ok &= check(dev.cache_path is not None and again.cache_path == dev.cache_path,
                    f"optimised model cached and reused ({dev.cache_path.name if dev.cache_path else None})")  # fmt: skip
        spec = dev.card.input
        rng = np.random.default_rng(0)
        for b in args.batches:
            x = rng.standard_normal((b, spec.n_times, dev.n_inputs_per_step)).astype(np.float32)
            diff = float(np.max(np.abs(dev.run(x) - cpu.run(x))))
            ok &= check(diff <= args.atol, f"batch {b}: max |{args.device} - cpu| = {diff:.2e} (<= {args.atol:g})")
        bound = OnnxModel(args.model, args.device, SessionSettings(cache_dir=Path(cache_dir), io_binding=True))  # type: ignore[arg-type]
        print(f"\n{'batch':>5s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}   {'IO binding p50/p99/max ms':>26s}   "
              f"{'cpu p50/p99 ms':>15s}")  # fmt: skip
        for b in args.batches:
            x = rng.standard_normal((b, spec.n_times, dev.n_inputs_per_step)).astype(np.float32)
            p = timings(dev, x, args.repeats)
            q = timings(bound, x, args.repeats)
            c = timings(cpu, x, max(20, args.repeats // 10))
            print(f"{b:5d} {p[0]:8.2f} {p[1]:8.2f} {p[2]:8.2f}   {q[0]:8.2f} {q[1]:8.2f} {q[2]:8.2f}   "
                  f"{c[0]:7.2f} {c[1]:7.2f}")  # fmt: skip
    print("\nall checks passed" if ok else "\nSOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
