"""The one path from raw samples to model-ready epochs, shared by the daemon and by training.

:class:`EpochPipeline` is fed chunk by chunk (online, from LSL) or in one piece (offline, from a
recording); both give the same epochs because the same filter state, buffer and epocher run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .card import InputSpec, Preprocessing
from .epochs import Drop, DropReason, Epoch, Epocher, Marker, RingBuffer
from .errors import RecordingError
from .recordings import Recording
from .signal import Preprocessor


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
    ) -> None:
        self.input_spec = input_spec
        self.preprocessor = Preprocessor(
            stream_channels, stream_sfreq, stream_units, input_spec, prep, source=source, target=target
        )
        capacity = int(np.ceil(max(buffer_seconds, 2 * (input_spec.duration + abs(input_spec.tmin))) * stream_sfreq))
        self.buffer = RingBuffer(len(input_spec.channels), capacity, buffer_slack)
        self.epocher = Epocher(input_spec.tmin, input_spec.n_times, stream_sfreq, input_spec.sfreq)
        self.events = re.compile(events) if events else None
        self.ignored_markers = 0

    def matches(self, value: str) -> bool:
        return self.events is None or self.events.search(value) is not None

    def push_samples(self, raw: np.ndarray, times: np.ndarray, arrival: float = 0.0) -> None:
        """Add a chunk of raw stream samples (n, n_stream_channels) with timestamps (n,)."""
        filtered, finite = self.preprocessor.process(raw)
        self.buffer.append(filtered, np.asarray(times, dtype=np.float64), finite, arrival)

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
        return self.epocher.poll(self.buffer)

    def drain(self, reason: DropReason, detail: str = "") -> list[Drop]:
        return self.epocher.drain(reason, detail)

    def restart_signal(self) -> None:
        """After a stream gap: forget the filter state and the buffered signal (markers stay)."""
        self.preprocessor.reset()
        self.buffer.clear()


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
    would deliver it), then each matching marker gets its epoch.

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
    pipeline.push_samples(recording.data, recording.times)
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
