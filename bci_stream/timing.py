"""Pure timestamp handling for a regular stream: our own dejitter, and discontinuities found in raw stamps.

liblsl's ``proc_dejitter`` smooths timestamps with a regression that is never restarted: after a hole
or a clock jump it bends every later timestamp for tens of seconds, and the epocher only ever sees
the bent times. So the EEG inlet asks liblsl for clock-corrected *raw* stamps and this module does
the rest:

- a straight line ``t = a + b·k`` (``k`` = sample counter) is fitted to the raw stamps of the current
  *segment*, with exponential forgetting (half-life ``halftime`` seconds), and the corrected stamp of
  each sample is its point on the line (jitter averages out, the measured rate follows the device);
- a raw stamp farther than ``tolerance`` seconds from the line's prediction starts a new segment: a
  :class:`Discontinuity` says what jumped, where and by how much, and the caller resets its filters
  and drops the epochs that touch it.

Nothing here knows about threads or sockets. Stamps that are exactly regular (a replayed file) come
out unchanged, however they are chunked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Discontinuity:
    """A break in a regular stream's timestamps.

    Attributes
    ----------
    index : int
        Position, in the chunk passed to :meth:`StampCorrector.process`, of the first sample of the
        new segment.
    last_before : float
        Corrected time of the last sample before the break, s (None-like ``nan`` if there was none).
    first_after : float
        Raw time of the first sample after the break, s.
    expected : float
        Where the line of the old segment put that first sample, s.
    """

    index: int
    last_before: float
    first_after: float
    expected: float

    @property
    def jump(self) -> float:
        """Seconds the stamps moved against the old line (> 0 forward, < 0 backward)."""
        return self.first_after - self.expected

    @property
    def blackout(self) -> tuple[float, float]:
        """The span of stamps that cannot be trusted: between the old and the new time base, s."""
        return min(self.last_before, self.first_after), max(self.last_before, self.first_after)

    def describe(self, sfreq: float) -> str:
        direction = "forward" if self.jump > 0 else "backward"
        samples = abs(self.jump) * sfreq
        return (
            f"EEG timestamps jumped {direction} by {abs(self.jump):.3f} s (≈{samples:.0f} samples at {sfreq:g} Hz) "
            f"after the sample at {self.last_before:.4f} s"
        )


class _LineFit:
    """Exponentially weighted least-squares line through (k, t), kept as centred moments (stable)."""

    def __init__(self, period: float, decay: float, prior: float) -> None:
        self.period = period  # nominal seconds per sample: the slope before data says otherwise
        self.decay = decay  # weight factor per sample
        self.prior = prior  # strength of the pull of the slope towards the nominal period
        self.origin = 0.0  # times are kept relative to the first stamp of the segment
        self.weight = 0.0
        self.mean_k = 0.0
        self.mean_t = 0.0
        self.c_kk = 0.0
        self.c_kt = 0.0

    @property
    def empty(self) -> bool:
        return self.weight == 0.0

    @property
    def slope(self) -> float:
        return (self.c_kt + self.prior * self.period) / (self.c_kk + self.prior)

    def predict(self, k: np.ndarray) -> np.ndarray:
        return self.origin + self.mean_t + self.slope * (k - self.mean_k)

    def add(self, k: np.ndarray, t: np.ndarray) -> None:
        if self.empty:
            self.origin = float(t[0])
        t = t - self.origin
        n = len(k)
        w = self.decay ** np.arange(n - 1, -1, -1, dtype=np.float64)
        wc = float(w.sum())
        mk, mt = float(w @ k) / wc, float(w @ t) / wc
        dk, dt = k - mk, t - mt
        ckk, ckt = float(w @ (dk * dk)), float(w @ (dk * dt))
        old = self.weight * self.decay**n
        total = old + wc
        delta_k, delta_t = self.mean_k - mk, self.mean_t - mt
        cross = old * wc / total if total > 0 else 0.0
        self.c_kk = self.c_kk * self.decay**n + ckk + cross * delta_k * delta_k
        self.c_kt = self.c_kt * self.decay**n + ckt + cross * delta_k * delta_t
        self.mean_k = (old * self.mean_k + wc * mk) / total
        self.mean_t = (old * self.mean_t + wc * mt) / total
        self.weight = total


class StampCorrector:
    """Raw LSL stamps of a regular stream in, corrected stamps and discontinuities out.

    Parameters
    ----------
    nominal_rate : float
        The stream's declared rate, Hz.
    tolerance : float
        Seconds a raw stamp may lie off the fitted line before it counts as a discontinuity. Jitter of
        chunked or wireless streams must fit inside it; holes and jumps larger than it are found.
    halftime : float
        Half-life of the regression's memory, s: longer averages more jitter away, shorter follows a
        drifting clock faster.
    """

    def __init__(self, nominal_rate: float, *, tolerance: float = 0.010, halftime: float = 10.0) -> None:
        if nominal_rate <= 0:
            raise ValueError(f"nominal_rate={nominal_rate!r}: a regular stream needs a rate > 0 Hz")
        if tolerance <= 0:
            raise ValueError(f"tolerance={tolerance!r}: it must be > 0 s")
        self.nominal_rate = float(nominal_rate)
        self.tolerance = float(tolerance)
        self._decay = 0.5 ** (1.0 / (halftime * nominal_rate))
        n_prior = 0.5 * nominal_rate  # the slope trusts the nominal rate as much as half a second of data
        self._prior = n_prior**3 / 12.0
        self._fit = self._new_fit()
        self._k = 0  # sample counter within the segment
        self._last = float("nan")  # corrected time of the newest sample
        self.segments = 0  # segments started (the first one included)

    def _new_fit(self) -> _LineFit:
        return _LineFit(1.0 / self.nominal_rate, self._decay, self._prior)

    @property
    def measured_rate(self) -> float | None:
        """The rate the current segment's stamps show, Hz (None before two samples)."""
        if self._k < 2:
            return None
        return 1.0 / self._fit.slope

    @property
    def segment_seconds(self) -> float:
        """How long the current segment has run, in nominal seconds."""
        return self._k / self.nominal_rate

    def restart(self) -> None:
        """Start a new segment at the next sample (after the stream was lost, say)."""
        self._fit = self._new_fit()
        self._k = 0

    def process(self, stamps: np.ndarray) -> tuple[np.ndarray, list[Discontinuity]]:
        """Correct a chunk of raw stamps (s); returns the corrected stamps and the breaks found in it."""
        raw = np.asarray(stamps, dtype=np.float64)
        out = np.empty_like(raw)
        breaks: list[Discontinuity] = []
        start = 0
        while start < len(raw):
            anchoring = self._fit.empty  # a new segment's first stamp anchors its line
            if anchoring:
                self.segments += 1
            end = start + 1 if anchoring else self._first_break(raw, start)
            if end > start:
                k = np.arange(self._k, self._k + end - start, dtype=np.float64)
                self._fit.add(k, raw[start:end])
                out[start:end] = self._fit.predict(k)
                self._k += end - start
                self._last = float(out[end - 1])
            if end < len(raw) and not anchoring:
                expected = float(self._fit.predict(np.array([float(self._k)]))[0])
                breaks.append(Discontinuity(end, self._last, float(raw[end]), expected))
                self.restart()
            start = end
        return out, breaks

    def _first_break(self, raw: np.ndarray, start: int) -> int:
        """Index of the first stamp from ``start`` on that lies off the line (len(raw) if none)."""
        k = np.arange(self._k, self._k + len(raw) - start, dtype=np.float64)
        off = np.abs(raw[start:] - self._fit.predict(k)) > self.tolerance
        hits = np.flatnonzero(off)
        return start + int(hits[0]) if len(hits) else len(raw)
