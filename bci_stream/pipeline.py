"""The one path from raw samples to model-ready epochs, shared by the daemon and by training.

:class:`EpochPipeline` is fed chunk by chunk (online, from LSL) or in one piece (offline, from a
recording); both give the same epochs because the same filter state, buffer and epocher run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import signal as sps

from .card import InputSpec, Preprocessing
from .epochs import Drop, DropReason, Epoch, Epocher, Marker, RingBuffer
from .errors import RecordingError
from .recordings import Recording
from .signal import Preprocessor
from .timing import Discontinuity


def settling_time(sos: np.ndarray | None, sfreq: float, *, tolerance: float = 1e-3, longest: float = 10.0) -> float:
    """Seconds after a restart until the causal filter's impulse response has decayed below ``tolerance``.

    ``tolerance`` is relative to the response's peak; the answer is capped at ``longest`` seconds.
    """
    if sos is None:
        return 0.0
    n = int(longest * sfreq)
    impulse = np.zeros(n)
    impulse[0] = 1.0
    h = np.abs(sps.sosfilt(sos, impulse))
    above = np.flatnonzero(h > tolerance * h.max())
    return float(above[-1] + 1) / sfreq if len(above) else 0.0


class EpochPipeline:
    """Raw chunks and markers in; filtered, marker-locked epochs at the model's rate out.

    Parameters
    ----------
    input_spec, prep : InputSpec, Preprocessing
        From the model card (normalisation is applied later, by the caller).
    stream_channels, stream_sfreq, stream_units
        Description of the incoming signal.
    events : str or None
        Regular expression (``re.search``) a marker must match to get an epoch; None takes all.
    buffer_seconds : float
        How much filtered signal to keep for markers that arrive late.
    buffer_slack : int, optional
        Passed to :class:`~bci_stream.epochs.RingBuffer` (offline: 0).
    source, target : str
        Names of the stream and of the model for error messages.
    future_limit : float or None
        Online: seconds past the newest sample after which a marker's window is answered ``future``.
    """

    def __init__(
        self,
        input_spec: InputSpec,
        prep: Preprocessing,
        stream_channels: Sequence[str],
        stream_sfreq: float,
        stream_units: str,
        *,
        events: str | None = None,
        buffer_seconds: float = 30.0,
        buffer_slack: int | None = None,
        source: str = "the stream",
        target: str = "the model",
        future_limit: float | None = None,
    ) -> None:
        self.input_spec = input_spec
        self.preprocessor = Preprocessor(
            stream_channels, stream_sfreq, stream_units, input_spec, prep, source=source, target=target
        )
        capacity = int(np.ceil(max(buffer_seconds, 2 * (input_spec.duration + abs(input_spec.tmin))) * stream_sfreq))
        self.buffer = RingBuffer(len(input_spec.channels), capacity, buffer_slack)
        self.epocher = Epocher(
            input_spec.tmin, input_spec.n_times, stream_sfreq, input_spec.sfreq, future_limit=future_limit
        )
        self.events = re.compile(events) if events else None
        self.ignored_markers = 0
        #: Seconds the causal filter needs after a restart before its output can be trusted.
        self.settling_time = settling_time(self.preprocessor.filter.sos, stream_sfreq)
        self.sfreq = stream_sfreq
        self._ready: list[Epoch | Drop] = []  # answered while a chunk was split at a discontinuity

    def matches(self, value: str) -> bool:
        return self.events is None or self.events.search(value) is not None

    def push_samples(
        self,
        raw: np.ndarray,
        times: np.ndarray,
        arrival: float = 0.0,
        breaks: Sequence[Discontinuity] = (),
    ) -> None:
        """Add a chunk of raw stream samples (n, n_stream_channels) with timestamps (n,).

        ``breaks`` (online, from :class:`~bci_stream.timing.StampCorrector`) split the chunk: epochs the
        signal before a break can complete are cut first, then the filter restarts, and every marker
        whose window touches the break or the filter's settling time after it is answered
        ``discontinuity``.
        """
        times = np.asarray(times, dtype=np.float64)
        start = 0
        for brk in breaks:
            self._append(raw[start : brk.index], times[start : brk.index], arrival)
            self._ready.extend(self.epocher.poll(self.buffer))
            self.restart_signal(
                after=float(times[brk.index]),
                span=brk.blackout,
                detail=brk.describe(self.sfreq),
            )
            start = brk.index
        self._append(raw[start:], times[start:], arrival)

    def _append(self, raw: np.ndarray, times: np.ndarray, arrival: float) -> None:
        if len(times):
            filtered, finite = self.preprocessor.process(raw)
            self.buffer.append(filtered, times, finite, arrival)

    def push_markers(self, markers: Iterable[Marker]) -> list[Marker]:
        """Queue the markers that match ``events``; returns the ones accepted."""
        accepted = []
        for marker in markers:
            if self.matches(marker.value):
                accepted.append(marker)
            else:
                self.ignored_markers += 1
        self.epocher.add(accepted)
        return accepted

    def poll(self) -> list[Epoch | Drop]:
        """Every marker answerable now, in marker order."""
        ready, self._ready = self._ready, []
        return ready + self.epocher.poll(self.buffer)

    def drain(self, reason: DropReason, detail: str = "") -> list[Drop | Epoch]:
        """Answer everything pending: what is already cut first, then ``reason`` for the rest."""
        ready, self._ready = self._ready, []
        return ready + list(self.epocher.drain(reason, detail))

    def restart_signal(
        self, *, after: float | None = None, span: tuple[float, float] | None = None, detail: str = ""
    ) -> None:
        """The signal breaks here: restart the filter, and refuse windows over the break and the settling.

        Parameters
        ----------
        after : float, optional
            Time of the first sample of the new signal, s. Signal held from before that time is kept
            when the new signal continues forward in time (a hole), forgotten when it goes backward.
        span : (float, float), optional
            Stream times that no epoch may use (the break itself), s; the settling time is added after
            ``after``.
        detail : str
            What happened, for the ``discontinuity`` drops.
        """
        self.preprocessor.reset()
        if after is None or (len(self.buffer) and self.buffer.times[-1] >= after):
            # Time went backward (or the stream was lost): a new timeline starts, nothing held is valid.
            self.buffer.clear()
            self.epocher.clear_blackouts()
            span = None
        if after is not None:
            lo, hi = span if span is not None else (after, after)
            settle = self.settling_time
            self.epocher.black_out(
                lo, max(hi, after + settle), f"{detail}; filter settling {settle:.3f} s" if settle else detail
            )


@dataclass
class EpochSet:
    """Epochs cut offline: ``X`` is (n_epochs, n_times, n_channels), float64, not normalised."""

    X: np.ndarray
    markers: list[Marker]
    starts: np.ndarray
    drops: list[Drop] = field(default_factory=list)


def epochs_from_recording(
    recording: Recording,
    input_spec: InputSpec,
    prep: Preprocessing,
    *,
    events: str | None = None,
) -> EpochSet:
    """Cut epochs from a whole recording exactly as the daemon would cut them live.

    The causal filter runs over the continuous recording from its first sample (as a replay
    would deliver it), then each matching marker gets its epoch. At a hole (:attr:`Recording.gaps`) the
    filter restarts and the epochs touching the hole or the filter's settling time are dropped
    ``discontinuity``, as the daemon drops them live.

    Raises
    ------
    RecordingError
        If the recording is shorter than one epoch, or no marker matches ``events``.
    """
    need = input_spec.tmin + input_spec.duration
    if recording.duration < need:
        raise RecordingError(
            f"{recording.source}: recording lasts {recording.duration:.3f} s, shorter than one epoch "
            f"(tmin {input_spec.tmin:g} s + {input_spec.n_times} samples at {input_spec.sfreq:g} Hz = {need:.3f} s)"
        )
    pipeline = EpochPipeline(
        input_spec,
        prep,
        recording.ch_names,
        recording.sfreq,
        recording.units,
        events=events,
        buffer_seconds=recording.duration + 1.0,
        buffer_slack=0,  # appended in one piece: no room for compaction needed
        source=recording.source,
    )
    times = recording.times
    for start, stop, brk in recording.pieces():
        if brk is not None:  # after a hole, as live: the filter restarts, epochs touching the hole are refused
            pipeline.restart_signal(after=brk.first_after, span=brk.blackout, detail=brk.describe(recording.sfreq))
        pipeline.push_samples(recording.data[start:stop], times[start:stop])
    accepted = pipeline.push_markers(sorted(recording.markers, key=lambda m: m.time))
    if not accepted:
        values = sorted({m.value for m in recording.markers})
        shown = ", ".join(values[:10]) + (" ..." if len(values) > 10 else "")
        raise RecordingError(
            f"{recording.source}: no marker matches events {events!r} (markers found: {shown or 'none'})"
        )
    results = pipeline.poll() + pipeline.drain(DropReason.END_OF_DATA, "recording ends before the window")
    epochs = [r for r in results if isinstance(r, Epoch)]
    drops = [r for r in results if isinstance(r, Drop)]
    X = np.stack([e.data for e in epochs]) if epochs else np.zeros((0, input_spec.n_times, len(input_spec.channels)))
    return EpochSet(X=X, markers=[e.marker for e in epochs], starts=np.array([e.start for e in epochs]), drops=drops)
