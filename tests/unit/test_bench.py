"""The benchmark's stimulus schedule: onsets random within a chunk by default, or aligned with chunk ends."""

from pathlib import Path

import numpy as np
import pytest

from bci_stream.bench import bench_recording, daemon_command
from bci_stream.card import read_card
from bci_stream.cli import build_parser, cmd_run
from bci_stream.errors import BciStreamError
from bci_stream.replay import DEFAULT_CHUNK_SECONDS

MODEL = Path(__file__).resolve().parents[2] / "exported" / "cogninet-synth.onnx"


def _last_sample_phase(rate: float, aligned: bool) -> tuple[np.ndarray, int]:
    """Where in its chunk each window's last sample falls (0 .. chunk-1), and the chunk length."""
    card = read_card(MODEL)
    rec = bench_recording(card, seconds=4.0, rate=rate, aligned=aligned)
    spec = card.input
    chunk = round(DEFAULT_CHUNK_SECONDS * spec.sfreq)
    last = np.array([round((m.time + spec.tmin) * spec.sfreq) + spec.n_times - 1 for m in rec.markers])
    assert len(rec.markers) == int(4.0 * rate)
    assert all(a.time <= b.time for a, b in zip(rec.markers, rec.markers[1:], strict=False))  # in order
    return last % chunk, chunk


def test_aligned_onsets_end_every_window_with_a_chunk():
    phase, chunk = _last_sample_phase(50.0, aligned=True)
    assert set(phase.tolist()) == {chunk - 1}


def test_default_onsets_fall_anywhere_in_a_chunk_so_latency_includes_the_chunk_wait():
    phase, chunk = _last_sample_phase(50.0, aligned=False)
    assert len(set(phase.tolist())) > chunk // 2  # spread over the chunk, not pinned to its end
    assert phase.min() >= 0 and phase.max() <= chunk - 1


def test_the_live_run_serves_the_daemon_with_the_given_config(tmp_path):
    """`bench --config` measures other [model] tuning: the config reaches the `bci-stream run` it starts."""
    config = tmp_path / "tuned.toml"
    config.write_text("[model]\nintra_op_threads = 2\n")
    cmd = daemon_command(MODEL, "bench-x", "tcp://127.0.0.1:5999", config=config)
    assert cmd[1:3] == ["-m", "bci_stream.cli"]
    args = build_parser().parse_args(cmd[3:])
    assert args.func is cmd_run
    assert (args.config, args.model, args.eeg_source_id) == (config, MODEL, "bench-x")
    assert build_parser().parse_args(daemon_command(MODEL, "bench-x", "tcp://127.0.0.1:5999")[3:]).config is None
    with pytest.raises(BciStreamError, match="--config"):
        daemon_command(MODEL, "bench-x", "tcp://127.0.0.1:5999", baseline="mne-lsl", config=config)
