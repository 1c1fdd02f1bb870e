"""Unit tests of bci_stream.epochs: the ring buffer and the marker-locked epocher."""

from __future__ import annotations

import numpy as np
import pytest

from bci_stream.epochs import Drop, DropReason, Epoch, Epocher, Marker, RingBuffer

FS = 1000.0


def ramp_buffer(n: int, fs: float = FS, n_channels: int = 2, capacity: int | None = None, t_first: float = 0.0):
    """A buffer whose channel 0 holds the sample index, so an epoch tells which samples it took."""
    buf = RingBuffer(n_channels, capacity or max(n, 1))
    idx = np.arange(n, dtype=np.float64)
    data = np.column_stack([idx] + [idx * (c + 1) for c in range(1, n_channels)])
    buf.append(data, t_first + idx / fs)
    return buf


def only(results):
    assert len(results) == 1, results
    return results[0]


# --------------------------------------------------------------------------- RingBuffer


class NaiveBuffer:
    def __init__(self, capacity):
        self.capacity = capacity
        self.data, self.times, self.finite, self.arrival = [], [], [], []

    def append(self, data, times, finite, arrival):
        self.data += list(data)
        self.times += list(times)
        self.finite += list(finite)
        self.arrival += [arrival] * len(times)
        for name in ("data", "times", "finite", "arrival"):
            setattr(self, name, getattr(self, name)[-self.capacity :])


@pytest.mark.parametrize(("capacity", "seed"), [(1, 0), (7, 1), (50, 2), (64, 3), (200, 4)])
def test_ring_buffer_keeps_newest_capacity_samples(capacity, seed):
    rng = np.random.default_rng(seed)
    buf, ref = RingBuffer(3, capacity), NaiveBuffer(capacity)
    t = 0
    for step in range(300):
        k = int(
            rng.choice(
                [0, 1, capacity - 1, capacity, capacity + 1, 2 * capacity + 3, int(rng.integers(0, 2 * capacity + 2))]
            )
        )
        k = max(k, 0)
        data = rng.normal(size=(k, 3))
        times = (t + np.arange(k)) / FS
        finite = rng.random(k) > 0.1
        buf.append(data, times, finite, arrival=float(step))
        ref.append(data, times, finite, float(step))
        t += k
        assert len(buf) == len(ref.times) == min(t, capacity)
        np.testing.assert_array_equal(buf.data, np.array(ref.data).reshape(-1, 3))
        np.testing.assert_array_equal(buf.times, np.array(ref.times))
        np.testing.assert_array_equal(buf.finite, np.array(ref.finite, dtype=bool))
        np.testing.assert_array_equal(buf.arrival, np.array(ref.arrival))


def test_ring_buffer_finite_defaults_from_data():
    buf = RingBuffer(2, 10)
    data = np.array([[1.0, 2.0], [np.nan, 0.0], [0.0, np.inf], [3.0, 4.0]])
    buf.append(data, np.arange(4.0))
    assert buf.finite.tolist() == [True, False, False, True]


def test_ring_buffer_clear_and_bad_capacity():
    buf = ramp_buffer(5)
    buf.clear()
    assert len(buf) == 0 and buf.times.size == 0
    buf.append(np.ones((2, 2)), np.array([1.0, 2.0]))
    assert buf.times.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="capacity"):
        RingBuffer(2, 0)


def test_ring_buffer_total_counts_small_appends():
    buf = RingBuffer(1, 10)
    for k in (3, 4, 9, 1):
        buf.append(np.zeros((k, 1)), np.arange(k, dtype=float))
    assert buf.total == 17


def test_ring_buffer_total_counts_chunks_larger_than_capacity():
    buf = RingBuffer(1, 10)
    buf.append(np.zeros((25, 1)), np.arange(25, dtype=float))
    assert buf.total == 25  # "samples ever appended"


# --------------------------------------------------------------------------- Epocher, same rate


@pytest.mark.parametrize(
    ("offset", "shift"), [(0.0, 0), (0.3, 0), (-0.3, 0), (0.6, 1), (-0.6, -1), (0.49, 0), (-0.49, 0)]
)
@pytest.mark.parametrize("tmin", [0.0, 0.04, -0.1])
def test_epoch_starts_at_nearest_sample(offset, shift, tmin):
    buf = ramp_buffer(2000)
    n = 50
    ep = Epocher(tmin, n, FS, FS)
    m = 700
    marker = Marker("stim", (m + offset) / FS - tmin)
    ep.add([marker])
    epoch = only(ep.poll(buf))
    assert isinstance(epoch, Epoch)
    first = m + shift
    np.testing.assert_array_equal(epoch.data[:, 0], np.arange(first, first + n))
    np.testing.assert_array_equal(epoch.data[:, 1], 2.0 * np.arange(first, first + n))
    assert epoch.data.shape == (n, 2)
    assert epoch.marker is marker
    assert epoch.start == pytest.approx(first / FS)
    assert epoch.end == pytest.approx((first + n) / FS)


def test_epoch_data_is_a_copy():
    buf = ramp_buffer(200)
    ep = Epocher(0.0, 10, FS, FS)
    ep.add([Marker("a", 0.05)])
    epoch = only(ep.poll(buf))
    buf.append(np.full((150, 2), -1.0), 0.2 + np.arange(150) / FS)  # overwrites the storage
    assert epoch.data[0, 0] == 50.0


@pytest.mark.parametrize("seed", range(4))
def test_timestamp_jitter_below_half_sample_chooses_same_samples(seed):
    rng = np.random.default_rng(seed)
    n_samples, n = 3000, 40
    clean = ramp_buffer(n_samples)
    jittered = RingBuffer(2, n_samples)
    jittered.append(clean.data.copy(), clean.times + rng.uniform(-0.2, 0.2, n_samples) / FS)
    markers = [Marker(str(i), (m + rng.uniform(-0.25, 0.25)) / FS) for i, m in enumerate(range(100, 2900, 37))]
    a, b = Epocher(0.0, n, FS, FS), Epocher(0.0, n, FS, FS)
    a.add(markers)
    b.add(markers)
    ra, rb = a.poll(clean), b.poll(jittered)
    assert len(ra) == len(rb) == len(markers)
    for ea, eb, m in zip(ra, rb, markers, strict=True):
        assert isinstance(ea, Epoch) and isinstance(eb, Epoch)
        np.testing.assert_array_equal(ea.data, eb.data)
        assert ea.data[0, 0] == round(m.time * FS)


def test_waits_for_last_sample_then_answers_once():
    n, m = 30, 100
    ep = Epocher(0.0, n, FS, FS)
    ep.add([Marker("a", m / FS)])
    buf = RingBuffer(1, 1000)
    last_needed = m + n - 1
    got = []
    for i in range(300):
        buf.append(np.array([[float(i)]]), np.array([i / FS]), arrival=100.0 + i)
        out = ep.poll(buf)
        if i < last_needed:
            assert out == [], i
        got += [(i, r) for r in out]
    assert len(got) == 1
    i, epoch = got[0]
    assert i == last_needed
    assert isinstance(epoch, Epoch)
    np.testing.assert_array_equal(epoch.data[:, 0], np.arange(m, m + n))
    assert epoch.arrival == 100.0 + last_needed
    assert ep.pending == 0


def _reference_epochs(markers, n, tmin, fs, data):
    out = []
    for m in markers:
        first = round((m.time + tmin) * fs)
        out.append(data[first : first + n])
    return out


@pytest.mark.parametrize("seed", range(5))
def test_every_marker_answered_once_in_order_with_overlap(seed):
    rng = np.random.default_rng(seed)
    n_samples, n, tmin = 4000, 200, 0.05
    data = rng.normal(size=(n_samples, 2))
    times = np.arange(n_samples) / FS
    # overlapping epochs (spacing << n), two markers at the same time, and a marker whose window ends past the data
    marker_times = np.sort(np.concatenate([rng.uniform(0.0, 3.7, 25), [1.0, 1.0]]))
    markers = [Marker(f"m{i}", float(t)) for i, t in enumerate(marker_times)] + [Marker("tail", 3.9)]
    ep = Epocher(tmin, n, FS, FS)
    buf = RingBuffer(2, n_samples)
    # markers delivered at random points of the stream, in order; some long after their data
    deliver_at = np.sort(rng.integers(0, n_samples + 1, size=len(markers)))
    results, i, j = [], 0, 0
    while i < n_samples:
        k = int(rng.integers(1, 150))
        buf.append(data[i : i + k], times[i : i + k])
        i = min(i + k, n_samples)
        while j < len(markers) and deliver_at[j] <= i:
            ep.add([markers[j]])
            j += 1
        results += ep.poll(buf)
    ep.add(markers[j:])
    results += ep.poll(buf)
    assert ep.pending == 1  # only "tail" waits
    results += ep.drain(DropReason.END_OF_DATA, "end")
    assert [r.marker for r in results] == markers
    expected = _reference_epochs(markers[:-1], n, tmin, FS, data)
    for r, e in zip(results[:-1], expected, strict=True):
        assert isinstance(r, Epoch)
        np.testing.assert_array_equal(r.data, e)
    assert isinstance(results[-1], Drop) and results[-1].reason is DropReason.END_OF_DATA


def test_marker_after_its_data_is_answered_at_once():
    buf = ramp_buffer(1000)
    ep = Epocher(0.0, 100, FS, FS)
    assert ep.poll(buf) == []
    ep.add([Marker("late-arrival", 0.2)])
    epoch = only(ep.poll(buf))
    assert isinstance(epoch, Epoch) and epoch.data[0, 0] == 200.0


def test_poll_on_empty_buffer_waits():
    ep = Epocher(0.0, 10, FS, FS)
    ep.add([Marker("a", 0.0)])
    assert ep.poll(RingBuffer(1, 10)) == []
    assert ep.pending == 1


def test_window():
    ep = Epocher(0.04, 440, FS, FS)
    start, end = ep.window(Marker("a", 1.0))
    assert start == pytest.approx(1.04)
    assert end == pytest.approx(1.48)


# --------------------------------------------------------------------------- drops


def test_late_when_window_starts_before_oldest_sample():
    buf = ramp_buffer(500, capacity=100)  # holds samples 400..499
    assert buf.times[0] == pytest.approx(0.4)
    ep = Epocher(0.0, 20, FS, FS)
    markers = [Marker("a", 0.3), Marker("b", 0.3994), Marker("c", 0.4003), Marker("d", 0.41)]
    ep.add(markers)
    out = ep.poll(buf)
    assert [r.marker for r in out] == markers
    assert isinstance(out[0], Drop) and out[0].reason is DropReason.LATE
    assert isinstance(out[1], Drop) and out[1].reason is DropReason.LATE  # nearest sample 399 is gone
    assert isinstance(out[2], Epoch) and out[2].data[0, 0] == 400.0  # nearest sample 400 is held
    assert isinstance(out[3], Epoch) and out[3].data[0, 0] == 410.0


def test_gap_inside_window():
    buf = RingBuffer(1, 1000)
    idx = np.concatenate([np.arange(0, 300), np.arange(305, 600)])
    buf.append(idx[:, None].astype(float), idx / FS)
    ep = Epocher(0.0, 50, FS, FS)
    markers = [Marker("before", 0.2), Marker("across", 0.28), Marker("starts-in-gap", 0.302), Marker("after", 0.31)]
    ep.add(markers)
    out = ep.poll(buf)
    assert [r.marker for r in out] == markers
    assert isinstance(out[0], Epoch)
    assert isinstance(out[1], Drop) and out[1].reason is DropReason.GAP
    assert isinstance(out[2], Drop) and out[2].reason is DropReason.GAP
    assert isinstance(out[3], Epoch) and out[3].data[0, 0] == 310.0


def test_gap_detected_without_waiting_for_more_samples():
    # the stream jumps past the window: time went on, samples did not come
    buf = RingBuffer(1, 1000)
    idx = np.concatenate([np.arange(0, 110), np.arange(400, 420)])
    buf.append(idx[:, None].astype(float), idx / FS)
    ep = Epocher(0.0, 50, FS, FS)
    ep.add([Marker("a", 0.1)])
    drop = only(ep.poll(buf))
    assert isinstance(drop, Drop) and drop.reason is DropReason.GAP


def test_non_finite_in_window():
    buf = RingBuffer(1, 1000)
    finite = np.ones(600, dtype=bool)
    finite[250] = False
    buf.append(np.arange(600.0)[:, None], np.arange(600) / FS, finite)
    ep = Epocher(0.0, 50, FS, FS)
    markers = [Marker("a", 0.2), Marker("b", 0.201), Marker("c", 0.25), Marker("d", 0.251)]
    ep.add(markers)
    out = ep.poll(buf)
    assert isinstance(out[0], Epoch)  # samples 200..249
    assert isinstance(out[1], Drop) and out[1].reason is DropReason.NON_FINITE
    assert isinstance(out[2], Drop) and out[2].reason is DropReason.NON_FINITE
    assert isinstance(out[3], Epoch)  # samples 251..300


def test_drain_drops_everything_pending():
    ep = Epocher(0.0, 10, FS, FS)
    markers = [Marker(str(i), i * 0.1) for i in range(5)]
    ep.add(markers)
    drops = ep.drain(DropReason.SHUTDOWN, "bye")
    assert [d.marker for d in drops] == markers
    assert all(d.reason is DropReason.SHUTDOWN and d.detail == "bye" for d in drops)
    assert ep.pending == 0
    assert ep.poll(ramp_buffer(1000)) == []
    assert ep.drain(DropReason.SHUTDOWN) == []


def test_drop_reason_wire_values():
    assert DropReason.GAP.value == "gap"
    assert DropReason.NON_FINITE.value == "non-finite"
    assert DropReason.LATE.value == "late"
    assert DropReason("stream-lost") is DropReason.STREAM_LOST
    assert DropReason.SHUTDOWN == "shutdown"


# --------------------------------------------------------------------------- Epocher, different rates


def sine_buffer(fs_in, seconds, freq=3.0, phase=0.4, jitter=0.0, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * fs_in)
    t = np.arange(n) / fs_in + rng.uniform(-jitter, jitter, n) / fs_in
    buf = RingBuffer(2, n)
    buf.append(np.column_stack([np.sin(2 * np.pi * freq * t + phase), 5.0 * t - 1.0]), t)
    return buf


@pytest.mark.parametrize(
    ("fs_in", "fs_out", "tol"), [(2000.0, 1000.0, 2e-4), (1000.0, 250.0, 5e-4), (250.0, 1000.0, 2e-3)]
)
@pytest.mark.parametrize("jitter", [0.0, 0.2])
def test_resampled_epoch_matches_analytic_signal(fs_in, fs_out, tol, jitter):
    buf = sine_buffer(fs_in, 3.0, jitter=jitter)
    n, tmin = 300 if fs_out >= 1000 else 150, 0.04
    ep = Epocher(tmin, n, fs_in, fs_out)
    assert not ep.same_rate
    rng = np.random.default_rng(1)
    markers = [Marker(str(i), float(t)) for i, t in enumerate(np.sort(rng.uniform(0.1, 2.2, 12)))]
    ep.add(markers)
    out = ep.poll(buf)
    assert [r.marker for r in out] == markers
    for epoch in out:
        assert isinstance(epoch, Epoch)
        grid = epoch.marker.time + tmin + np.arange(n) / fs_out
        assert epoch.data.shape == (n, 2)
        assert epoch.start == pytest.approx(grid[0], abs=1e-12)
        assert epoch.end == pytest.approx(grid[0] + n / fs_out, abs=1e-12)
        np.testing.assert_allclose(epoch.data[:, 0], np.sin(2 * np.pi * 3.0 * grid + 0.4), atol=tol, rtol=0)
        # linear interpolation reproduces a linear signal exactly, even on jittered timestamps
        np.testing.assert_allclose(epoch.data[:, 1], 5.0 * grid - 1.0, atol=1e-9, rtol=0)


def test_resampled_epoch_waits_for_the_sample_at_or_after_the_last_grid_point():
    fs_in, fs_out, n = 2000.0, 1000.0, 10
    ep = Epocher(0.0, n, fs_in, fs_out)
    ep.add([Marker("a", 0.1003)])  # grid 0.1003 .. 0.1093
    buf = RingBuffer(1, 10_000)
    got = None
    for i in range(400):
        t = i / fs_in
        buf.append(np.array([[t]]), np.array([t]), arrival=float(i))
        out = ep.poll(buf)
        if out:
            assert got is None
            got = (i, only(out))
    i, epoch = got
    assert i == int(np.ceil(0.1093 * fs_in))  # the first sample at or after the last grid time
    assert epoch.arrival == float(i)
    np.testing.assert_allclose(epoch.data[:, 0], 0.1003 + np.arange(n) / fs_out, atol=1e-12)


def test_resampled_gap_and_non_finite():
    fs_in, fs_out = 2000.0, 1000.0
    idx = np.concatenate([np.arange(0, 1000), np.arange(1010, 2000)])
    t = idx / fs_in
    finite = np.ones(len(idx), dtype=bool)
    finite[np.searchsorted(idx, 1500)] = False
    buf = RingBuffer(1, 5000)
    buf.append(t[:, None], t, finite)
    ep = Epocher(0.0, 50, fs_in, fs_out)
    markers = [Marker("ok", 0.2), Marker("gap", 0.48), Marker("nan", 0.72), Marker("ok2", 0.8)]
    ep.add(markers)
    out = ep.poll(buf)
    assert [r.marker for r in out] == markers
    assert isinstance(out[0], Epoch)
    assert isinstance(out[1], Drop) and out[1].reason is DropReason.GAP
    assert isinstance(out[2], Drop) and out[2].reason is DropReason.NON_FINITE
    assert isinstance(out[3], Epoch)


def test_resampled_late_when_far_before_oldest_sample():
    buf = sine_buffer(2000.0, 1.0)
    buf.append(np.zeros((1000, 2)), 1.0 + np.arange(1000) / 2000.0)  # capacity 2000: oldest now 0.5 s
    ep = Epocher(0.0, 20, 2000.0, 1000.0)
    ep.add([Marker("a", 0.2)])
    drop = only(ep.poll(buf))
    assert isinstance(drop, Drop) and drop.reason is DropReason.LATE


def test_resampled_late_when_window_starts_just_before_oldest_sample():
    fs_in, fs_out = 2000.0, 1000.0
    t = 0.5 + np.arange(2000) / fs_in  # oldest held sample at 0.5 s
    buf = RingBuffer(1, 2000)
    buf.append(t[:, None], t)
    ep = Epocher(0.0, 20, fs_in, fs_out)
    ep.add([Marker("a", 0.5 - 0.3 / fs_in)])  # window starts 0.3 stream samples before the oldest sample
    drop = only(ep.poll(buf))
    assert isinstance(drop, Drop)
    assert drop.reason is DropReason.LATE
