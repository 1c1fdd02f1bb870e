"""Pure timestamp maths: our dejitter, discontinuities in raw stamps, blackouts and the future bound."""

from __future__ import annotations

import numpy as np
import pytest

from bci_stream.card import InputSpec, Preprocessing
from bci_stream.epochs import Drop, DropReason, Epoch, Epocher, Marker, RingBuffer
from bci_stream.pipeline import EpochPipeline, settling_time
from bci_stream.signal import design_filter
from bci_stream.timing import StampCorrector

FS = 1000.0


def _feed(corrector: StampCorrector, stamps: np.ndarray, chunk: int = 20):
    out, breaks = [], []
    for i in range(0, len(stamps), chunk):
        o, b = corrector.process(stamps[i : i + chunk])
        out.append(o)
        breaks += [(i + x.index, x) for x in b]
    return np.concatenate(out), breaks


def test_regular_stamps_come_out_unchanged_however_chunked():
    t = 1234.5 + np.arange(5000) / FS
    for chunk in (1, 7, 20, 5000):
        out, breaks = _feed(StampCorrector(FS), t, chunk)
        assert breaks == [] and np.abs(out - t).max() < 1e-9


def test_a_hole_is_found_where_it_is_and_the_new_segment_is_exact():
    t = 100 + np.arange(4000) / FS
    t[3000:] += 0.2  # 200 samples never sent
    out, breaks = _feed(StampCorrector(FS), t)
    assert [i for i, _ in breaks] == [3000]
    brk = breaks[0][1]
    assert brk.jump == pytest.approx(0.2) and brk.blackout == pytest.approx((t[2999], t[3000]))
    assert "forward by 0.200 s" in brk.describe(FS)
    assert np.abs(out - t).max() < 1e-9  # no bending on either side


@pytest.mark.parametrize("jump", [-10.0, -0.05, 0.02, 10.0])
def test_jumps_either_way_beyond_the_tolerance_are_breaks(jump):
    t = 100 + np.arange(2000) / FS
    t[1234:] += jump
    _, breaks = _feed(StampCorrector(FS, tolerance=0.01), t)
    assert [i for i, _ in breaks] == [1234] and breaks[0][1].jump == pytest.approx(jump)


def test_chunk_jitter_is_averaged_out_and_not_taken_for_breaks():
    rng = np.random.default_rng(0)
    true = 50 + np.arange(20000) / FS
    raw = true.copy()
    for i in range(0, len(raw), 20):  # push-time stamps: the chunk's last sample is stamped late by 0–4 ms
        raw[i : i + 20] = true[i + 19] + rng.uniform(0, 0.004) - np.arange(19, -1, -1) / FS
    out, breaks = _feed(StampCorrector(FS, tolerance=0.01), raw)
    assert breaks == []
    err = out[5000:] - true[5000:]
    assert np.abs(err - err.mean()).max() < 0.5 / FS  # jitter gone: within half a sample of a straight line
    assert np.abs(raw[5000:] - true[5000:] - (raw - true)[5000:].mean()).max() > 1.5 / FS  # it was there


def test_a_rate_off_nominal_is_measured():
    t = 10 + np.arange(30000) / 1003.0
    c = StampCorrector(1000.0)
    _feed(c, t)
    assert c.measured_rate == pytest.approx(1003.0, rel=1e-6)


def _buffer(times):
    buf = RingBuffer(1, len(times) + 10)
    buf.append(np.zeros((len(times), 1)), np.asarray(times), arrival=1.0)
    return buf


def test_a_marker_too_far_ahead_is_answered_future_and_does_not_block_the_next():
    ep = Epocher(0.0, 10, FS, FS, future_limit=5.0)
    buf = _buffer(100 + np.arange(1000) / FS)
    ep.add([Marker("ahead", 3700.0), Marker("ok", 100.5)])
    out = ep.poll(buf)
    assert isinstance(out[0], Drop) and out[0].reason is DropReason.FUTURE
    assert isinstance(out[1], Epoch) and out[1].marker.value == "ok"


def test_a_marker_within_the_bound_waits_for_its_samples():
    ep = Epocher(0.0, 10, FS, FS, future_limit=5.0)
    buf = _buffer(100 + np.arange(1000) / FS)
    ep.add([Marker("soon", 103.0), Marker("ok", 100.5)])
    assert ep.poll(buf) == [] and ep.pending == 2  # order is kept: the later marker waits behind it


def test_windows_over_a_blackout_are_refused_with_its_detail():
    ep = Epocher(0.0, 10, FS, FS)
    buf = _buffer(100 + np.arange(1000) / FS)
    ep.black_out(100.3, 100.4, "the clock jumped")
    ep.add([Marker("before", 100.2), Marker("over", 100.295), Marker("after", 100.5)])
    out = ep.poll(buf)
    assert [type(r).__name__ for r in out] == ["Epoch", "Drop", "Epoch"]
    assert out[1].reason is DropReason.DISCONTINUITY and out[1].detail == "the clock jumped"


def test_settling_time_of_a_band_pass_and_of_no_filter():
    prep = Preprocessing(bandpass=(5.0, 95.0))
    sos = design_filter(FS, prep, FS)
    settle = settling_time(sos, FS)
    assert 0.05 < settle < 2.0
    assert settling_time(None, FS) == 0.0
    assert settling_time(design_filter(FS, Preprocessing(bandpass=(1.0, 95.0)), FS), FS) > settle  # lower edge: longer


def test_pipeline_split_at_a_break_serves_before_refuses_over_and_serves_after_settling():
    spec = InputSpec(sfreq=FS, n_times=50, channels=["a"])
    pipe = EpochPipeline(spec, Preprocessing(bandpass=(5.0, 95.0)), ["a"], FS, "V", future_limit=5.0)
    c = StampCorrector(FS)
    t = 100 + np.arange(6000) / FS
    t[3000:] += 0.5
    x = np.random.default_rng(1).standard_normal((6000, 1))
    settle = pipe.settling_time
    pipe.push_markers(
        [Marker("before", 101.0), Marker("over", 102.98), Marker("settling", 103.5 + settle / 2), Marker("after", 105)]
    )
    results = []
    for i in range(0, 6000, 20):
        stamps, breaks = c.process(t[i : i + 20])
        pipe.push_samples(x[i : i + 20], stamps, 0.0, breaks)
        results += pipe.poll()
    assert [(r.marker.value, type(r).__name__) for r in results] == [
        ("before", "Epoch"),
        ("over", "Drop"),
        ("settling", "Drop"),
        ("after", "Epoch"),
    ]
    assert all(r.reason is DropReason.DISCONTINUITY for r in results if isinstance(r, Drop))
