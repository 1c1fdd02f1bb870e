"""The peer baseline of ``bci-stream bench --baseline mne-lsl``: a hand-built mne-lsl pipeline.

What a researcher writes in an afternoon with mne-lsl (the issue that asked for the benchmark measured
one like it): ``StreamLSL`` acquires and filters the EEG in its background thread (the card's band and
notch, mne-lsl's causal IIR), a loop polls the marker inlet, and when a marker's window is in the buffer
it slices ``get_data()`` by timestamp, normalises as the card says, runs ONNX Runtime with its default
session options and publishes on ZeroMQ (topic + JSON, the fields the benchmark reads). No accounting,
no fault handling, no unit conversion (its outputs are not compared with the daemon's): the point is the
latency and CPU of the plain approach on the same replay.

Run by :func:`bci_stream.bench.live_latency` as its own process (``python -m bci_stream.bench_mnelsl``);
needs ``mne-lsl`` (``pip install mne-lsl``), which ships its own liblsl. Never imported by the service.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from collections import deque
from pathlib import Path

import numpy as np
import zmq

from .card import read_card
from .cli_common import HelpFormatter
from .signal import normalize

_POLL_S = 0.001  # the loop's polling period: mne-lsl's own default acquisition delay


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bci_stream.bench_mnelsl", description=__doc__.splitlines()[0],
                                formatter_class=HelpFormatter)  # fmt: skip
    p.add_argument("--model", type=Path, required=True, help="ONNX model with a bci-stream card")
    p.add_argument("--eeg-source-id", required=True, help="source_id of the EEG stream to read")
    p.add_argument("--markers-source-id", required=True, help="source_id of the marker stream to read")
    p.add_argument("--endpoint", required=True, help="ZeroMQ PUB endpoint for the predictions")
    args = p.parse_args(argv)

    import onnxruntime as ort
    from mne_lsl.lsl import StreamInlet, local_clock, resolve_streams
    from mne_lsl.stream import StreamLSL

    card = read_card(args.model)
    spec, prep = card.input, card.preprocessing
    session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])  # ORT's defaults
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(args.endpoint)

    def status() -> None:  # the benchmark starts the replay once it hears us
        pub.send_multipart([b"status", json.dumps({"topic": "status", "sent_at": time.time()}).encode()])

    deadline = time.monotonic() + 60
    while not resolve_streams(timeout=0.5, source_id=args.eeg_source_id):
        status()
        if time.monotonic() > deadline:
            raise SystemExit(f"no EEG stream with source_id {args.eeg_source_id!r}")
    stream = StreamLSL(bufsize=2.0, source_id=args.eeg_source_id).connect(timeout=10)
    low, high = prep.bandpass if prep.bandpass is not None else (None, None)
    if low is not None or high is not None:
        stream.filter(low, high, picks="all")
    if prep.notch:
        stream.notch_filter(prep.notch, picks="all")
    found = resolve_streams(timeout=30, source_id=args.markers_source_id)
    if not found:
        raise SystemExit(f"no marker stream with source_id {args.markers_source_id!r}")
    markers = StreamInlet(found[0])
    markers.open_stream(timeout=30)

    stop = False

    def _on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    pending: deque[tuple[str, float]] = deque()
    seq = 0
    next_status = 0.0
    while not stop:
        values, stamps = markers.pull_chunk(timeout=0.0)
        for value, stamp in zip(values, stamps, strict=False):
            pending.append((str(value[0] if isinstance(value, list | tuple) else value), float(stamp)))
        if time.monotonic() > next_status:
            status()
            next_status = time.monotonic() + 1.0
        if pending and stream.n_new_samples >= 0:
            data, ts = stream.get_data()
            while pending and len(ts) and pending[0][1] + spec.tmin + (spec.n_times - 1) / spec.sfreq <= ts[-1]:
                value, t0 = pending.popleft()
                start = int(np.searchsorted(ts, t0 + spec.tmin - 0.5 / spec.sfreq))
                window = data[:, start : start + spec.n_times].T
                if window.shape[0] < spec.n_times:  # older than the buffer
                    continue
                x = normalize(window[None], prep.normalization).astype(np.float32)
                logits = session.run([card.output.name], {card.input.name: x})[0][0]
                msg = {"topic": "prediction", "seq": seq, "marker": {"value": value, "time": t0}}
                msg |= {"label": card.output.classes[int(np.argmax(logits))], "sent_at": time.time()}
                msg["lsl_time"] = local_clock()
                pub.send_multipart([b"prediction", json.dumps(msg).encode()])
                seq += 1
        time.sleep(_POLL_S)  # polling rate
    pub.close()
    ctx.term()
    stream.disconnect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
