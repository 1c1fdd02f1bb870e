"""Pure epoching: a timestamped ring buffer and a marker-locked epocher.

An epoch for a marker at time ``t0`` covers ``[t0 + tmin, t0 + tmin + n_times / sfreq)``. Its first
sample is the stream sample nearest to ``t0 + tmin`` (the convention of MNE's events), so one
clock jitter of less than half a sample never moves an epoch. When the stream rate differs from
the model rate, the epoch is linearly interpolated onto the model's time grid from the
(already low-passed) stream.

The epocher answers every marker exactly once, in marker order, with an :class:`Epoch` or a
:class:`Drop` carrying one of :class:`DropReason`. Times are in seconds on one clock (the LSL clock
online, seconds from the first sample offline).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np


@dataclass(frozen=True)
class Marker:
    """A stimulus marker: its string value and its time in seconds."""

    value: str
    time: float


class DropReason(StrEnum):
    """Why a marker got no prediction. Values travel on the wire in ``drop`` messages."""

    GAP = "gap"  # samples missing inside the epoch window
    NON_FINITE = "non-finite"  # NaN or infinity inside the window
    LATE = "late"  # the window starts before the oldest sample still held
    STREAM_LOST = "stream-lost"  # the EEG stream stopped before the window was complete
    SHUTDOWN = "shutdown"  # the daemon stopped before the window was complete
    END_OF_DATA = "end-of-data"  # offline: the recording ends before the window does
    INFERENCE_ERROR = "inference-error"  # ONNX Runtime failed on this epoch
    DISCONTINUITY = "discontinuity"  # the EEG timestamps jumped inside the window (or the filter was settling)
    FUTURE = "future"  # the window lies further ahead of the newest sample than the stream can deliver soon
    OVERLOAD = "overload"  # inference fell behind: the epoch waited longer than allowed


@dataclass
class Epoch:
    """One ready epoch: ``data`` is (n_times, n_channels) at the model rate, filtered, not normalised.

    ``start`` is the time of its first sample, ``end`` = start + n_times / sfreq; ``arrival`` the
    receive time (local clock) of the last stream sample it needed, or None offline.
    """

    marker: Marker
    data: np.ndarray
    start: float
    end: float
    arrival: float | None


@dataclass(frozen=True)
class Drop:
    """A marker that gets no prediction, and why."""

    marker: Marker
    reason: DropReason
    detail: str = ""


class RingBuffer:
    """The last ``capacity`` samples of a multichannel stream with their timestamps.

    Stored linearly in an array of ``capacity + slack`` samples and compacted when full, so every
    window is a plain slice (no wrap-around copies) and copies are amortised over ``slack`` samples.

    Parameters
    ----------
    n_channels : int
        Channels per sample.
    capacity : int
        Samples kept (for example 30 s × sfreq).
    slack : int, optional
        Extra room before compacting (default: ``capacity``). Offline, with the whole recording
        appended in one piece, 0 halves the memory.
    """

    def __init__(self, n_channels: int, capacity: int, slack: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 sample, got {capacity}")
        self.capacity = capacity
        # Room beyond `capacity` before a compaction; a whole recording appended at once needs none.
        self._size = capacity + (capacity if slack is None else max(0, slack))
        self._data = np.zeros((self._size, n_channels))
        self._times = np.zeros(self._size)
        self._finite = np.ones(self._size, dtype=bool)
        self._arrival = np.zeros(self._size)
        self._start = 0  # valid samples live in [_start, _start + _n)
        self._n = 0
        self.total = 0  # samples ever appended

    def __len__(self) -> int:
        return self._n

    @property
    def data(self) -> np.ndarray:
        return self._data[self._start : self._start + self._n]

    @property
    def times(self) -> np.ndarray:
        return self._times[self._start : self._start + self._n]

    @property
    def finite(self) -> np.ndarray:
        return self._finite[self._start : self._start + self._n]

    @property
    def arrival(self) -> np.ndarray:
        return self._arrival[self._start : self._start + self._n]

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (self._data, self._times, self._finite, self._arrival)

    def append(
        self, data: np.ndarray, times: np.ndarray, finite: np.ndarray | None = None, arrival: float = 0.0
    ) -> None:
        """Add samples (n, n_channels) with their timestamps (n,) and finite flags (n,)."""
        n_in = len(times)
        if n_in == 0:
            return
        if finite is None:
            finite = np.isfinite(data).all(axis=1)
        self.total += n_in
        if n_in >= self.capacity:  # only the newest `capacity` samples can be kept
            data, times, finite = data[-self.capacity :], times[-self.capacity :], finite[-self.capacity :]
            self._start, self._n, n_in = 0, 0, self.capacity
        end = self._start + self._n
        if end + n_in > self._size:  # compact: move the samples still needed to the front
            keep = min(self._n, self.capacity - n_in)
            for arr in self._arrays():
                arr[:keep] = arr[end - keep : end]
            self._start, self._n, end = 0, keep, keep
        self._data[end : end + n_in] = data
        self._times[end : end + n_in] = times
        self._finite[end : end + n_in] = finite
        self._arrival[end : end + n_in] = arrival
        self._n += n_in
        if self._n > self.capacity:  # forget the oldest by moving the start (no copy)
            self._start += self._n - self.capacity
            self._n = self.capacity

    def clear(self) -> None:
        self._start = self._n = 0


class Epocher:
    """Turns markers into epochs (or drops) as the buffer fills, in marker order.

    Parameters
    ----------
    tmin : float
        Epoch start relative to the marker, in seconds.
    n_times : int
        Samples per epoch at ``sfreq_out``.
    sfreq_in : float
        Rate of the buffered stream in Hz.
    sfreq_out : float
        Rate the model expects in Hz (equal to ``sfreq_in`` for sample-exact epochs).
    future_limit : float or None
        A marker whose window ends more than this many seconds after the newest sample is answered at
        once with ``future`` instead of holding every later marker (None: wait for ever, offline).
    """

    def __init__(
        self, tmin: float, n_times: int, sfreq_in: float, sfreq_out: float, *, future_limit: float | None = None
    ) -> None:
        self.tmin = tmin
        self.n_times = n_times
        self.sfreq_in = sfreq_in
        self.sfreq_out = sfreq_out
        self.future_limit = future_limit
        self.same_rate = abs(sfreq_in - sfreq_out) <= 1e-9 * sfreq_out
        self._pending: deque[Marker] = deque()
        # Spans of stream time that no epoch may use, with the reason shown in the drop (newest last).
        self._blackouts: deque[tuple[float, float, str]] = deque(maxlen=64)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, markers: Iterable[Marker]) -> None:
        self._pending.extend(markers)

    def black_out(self, start: float, end: float, detail: str) -> None:
        """Refuse every epoch whose window overlaps ``[start, end]`` (s) with ``discontinuity``."""
        self._blackouts.append((start, end, detail))

    def clear_blackouts(self) -> None:
        """Forget every refused span (the stream's timeline restarted)."""
        self._blackouts.clear()

    def window(self, marker: Marker) -> tuple[float, float]:
        """Nominal window ``[start, end)`` of a marker's epoch, in seconds."""
        start = marker.time + self.tmin
        return start, start + self.n_times / self.sfreq_out

    def poll(self, buffer: RingBuffer) -> list[Epoch | Drop]:
        """Cut every pending epoch the buffer can answer now; stop at the first that must wait."""
        out: list[Epoch | Drop] = []
        while self._pending:
            result = self._cut(self._pending[0], buffer)
            if result is None:
                break
            out.append(result)
            self._pending.popleft()
        return out

    def drain(self, reason: DropReason, detail: str = "") -> list[Drop]:
        """Drop every pending marker with ``reason`` (shutdown, stream lost, end of data)."""
        drops = [Drop(m, reason, detail) for m in self._pending]
        self._pending.clear()
        return drops

    def _refuse(self, marker: Marker, buf: RingBuffer) -> Drop | None:
        """A drop for a marker that can never get an epoch, decided before looking for its samples."""
        start, end = self.window(marker)
        for lo, hi, detail in reversed(self._blackouts):
            if start <= hi and end >= lo:
                return Drop(marker, DropReason.DISCONTINUITY, detail)
        if self.future_limit is not None and len(buf) and end > buf.times[-1] + self.future_limit:
            return Drop(
                marker,
                DropReason.FUTURE,
                f"window ends at {end:.3f} s, {end - buf.times[-1]:.3f} s after the newest sample "
                f"(limit {self.future_limit:g} s): is the marker stamped on another clock?",
            )
        return None

    def _cut(self, marker: Marker, buf: RingBuffer) -> Epoch | Drop | None:
        if len(buf) == 0:
            return None
        refused = self._refuse(marker, buf)
        if refused is not None:
            return refused
        period = 1.0 / self.sfreq_in
        start, _end = self.window(marker)
        times = buf.times
        if self.same_rate:
            if times[0] > start + 0.5 * period:
                return Drop(
                    marker, DropReason.LATE, f"window starts at {start:.4f} s, oldest sample held is {times[0]:.4f} s"
                )
            i0 = int(np.searchsorted(times, start - 0.5 * period, side="left"))
            i1 = i0 + self.n_times
            if i1 > len(buf):
                last_needed = start + (self.n_times - 1) * period
                if times[-1] > last_needed + 1.5 * period:  # time went past it, samples did not
                    return Drop(marker, DropReason.GAP, "fewer samples than the window's duration")
                return None
            seg = times[i0:i1]
            if abs(seg[0] - start) > 0.5 * period + 1e-9 or np.max(np.diff(seg), initial=0) > 1.5 * period:
                return Drop(marker, DropReason.GAP, f"samples missing between {seg[0]:.4f} and {seg[-1]:.4f} s")
            if not buf.finite[i0:i1].all():
                return Drop(marker, DropReason.NON_FINITE, f"{int((~buf.finite[i0:i1]).sum())} non-finite samples")
            return Epoch(
                marker,
                buf.data[i0:i1].copy(),
                float(seg[0]),
                float(seg[0]) + self.n_times * period,
                float(buf.arrival[i1 - 1]),
            )
        grid = start + np.arange(self.n_times) / self.sfreq_out
        if times[0] > grid[0] + 1e-9:  # interpolation needs a sample at or before the window start
            return Drop(
                marker, DropReason.LATE, f"window starts at {start:.4f} s, oldest sample held is {times[0]:.4f} s"
            )
        if times[-1] < grid[-1]:
            return None
        lo = max(int(np.searchsorted(times, grid[0], side="right")) - 1, 0)
        hi = int(np.searchsorted(times, grid[-1], side="left"))
        seg = times[lo : hi + 1]
        if seg[0] > grid[0] + 1e-9 or np.max(np.diff(seg), initial=0) > 1.5 * period:
            return Drop(marker, DropReason.GAP, f"samples missing between {seg[0]:.4f} and {seg[-1]:.4f} s")
        if not buf.finite[lo : hi + 1].all():
            return Drop(marker, DropReason.NON_FINITE, f"{int((~buf.finite[lo : hi + 1]).sum())} non-finite samples")
        position = np.interp(grid, seg, np.arange(len(seg), dtype=np.float64))
        left = (
            np.minimum(np.floor(position).astype(np.intp), len(seg) - 2)
            if len(seg) > 1
            else np.zeros(len(grid), np.intp)
        )
        frac = (position - left)[:, None]
        block = buf.data[lo : hi + 1]
        right = np.minimum(left + 1, len(seg) - 1)
        data = block[left] * (1 - frac) + block[right] * frac
        return Epoch(
            marker, data, float(grid[0]), float(grid[0]) + self.n_times / self.sfreq_out, float(buf.arrival[hi])
        )
