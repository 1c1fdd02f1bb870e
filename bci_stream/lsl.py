"""LSL inlets for the daemon: resolve by name/type/source_id, numpy pulls, clock correction.

This is the only module of the online path that talks to liblsl; its errors are translated
into :mod:`bci_stream.errors` here. Inlets use small buffers (seconds, not liblsl's 360 s
default) so data is never stale, ``clocksync | dejitter`` for the EEG and ``clocksync`` for
markers (dejittering an irregular stream is meaningless), and ``recover=True`` so that a stream
which comes back under the same source_id is picked up again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pylsl

from .config import StreamSelector
from .epochs import Marker
from .errors import StreamLostError, StreamNotFoundError

log = logging.getLogger(__name__)

_NUMPY_DTYPES = {
    pylsl.cf_float32: np.float32,
    pylsl.cf_double64: np.float64,
    pylsl.cf_int32: np.int32,
    pylsl.cf_int16: np.int16,
    pylsl.cf_int8: np.int8,
    pylsl.cf_int64: np.int64,
}


@dataclass(frozen=True)
class StreamDescription:
    """What a stream says about itself (from its full LSL info)."""

    name: str
    type: str
    source_id: str
    hostname: str
    channel_count: int
    nominal_rate: float
    channel_format: int
    channels: tuple[str, ...]
    units: tuple[str, ...]

    def summary(self) -> str:
        rate = f"{self.nominal_rate:g} Hz" if self.nominal_rate > 0 else "irregular"
        return f"{self.name!r} (type {self.type!r}, {self.channel_count} ch, {rate}, source_id {self.source_id!r})"


def describe(info: pylsl.StreamInfo) -> StreamDescription:
    """Read name, rate, channel labels and units from a (full) stream info."""
    labels: list[str] = []
    units: list[str] = []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty() and len(labels) < info.channel_count():
        labels.append(ch.child_value("label"))
        units.append(ch.child_value("unit"))
        ch = ch.next_sibling()
    if len(labels) != info.channel_count() or not all(labels):
        labels = [f"ch{i + 1}" for i in range(info.channel_count())]
        units = [""] * info.channel_count()
    return StreamDescription(
        name=info.name(),
        type=info.type(),
        source_id=info.source_id(),
        hostname=info.hostname(),
        channel_count=info.channel_count(),
        nominal_rate=info.nominal_srate(),
        channel_format=info.channel_format(),
        channels=tuple(labels),
        units=tuple(units),
    )


def _matches(info: pylsl.StreamInfo, selector: StreamSelector) -> bool:
    return (
        (not selector.name or info.name() == selector.name)
        and (not selector.type or info.type() == selector.type)
        and (not selector.source_id or info.source_id() == selector.source_id)
    )


def list_streams(wait: float = 1.0) -> list[StreamDescription]:
    """Every stream visible on the network within ``wait`` seconds."""
    return [describe(i) for i in pylsl.resolve_streams(wait_time=wait)]


def resolve(
    selector: StreamSelector,
    *,
    role: str,
    wait: float,
    config_section: str,
    stop: threading.Event | None = None,
    on_tick: Callable[[], None] | None = None,
) -> pylsl.StreamInfo:
    """Wait up to ``wait`` seconds for a stream matching ``selector``.

    ``on_tick`` is called about every 50 ms while waiting (the daemon keeps publishing status),
    and a set ``stop`` event ends the wait early.

    Raises
    ------
    StreamNotFoundError
        Listing every stream that was found, and what to change.
    """
    resolver = pylsl.ContinuousResolver(forget_after=max(5.0, wait))
    deadline = time.monotonic() + wait
    seen: dict[str, pylsl.StreamInfo] = {}
    try:
        while True:
            for info in resolver.results():
                seen[info.uid()] = info
                if _matches(info, selector):
                    log.info("found %s stream %s", role, describe(info).summary())
                    return info
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                break
            if on_tick is not None:
                on_tick()
            time.sleep(0.05)
    finally:
        del resolver
    if stop is not None and stop.is_set():
        raise StreamNotFoundError(f"stopped while waiting for the {role} stream ({selector.describe()})")
    found = "; ".join(describe(i).summary() for i in seen.values()) or "none"
    raise StreamNotFoundError(
        f"no {role} stream with {selector.describe()} appeared within {wait:.1f} s. Streams found: {found}. "
        f"Start the amplifier or `bci-stream replay FILE`, or fix [{config_section}] in the config "
        f"(or pass --{config_section}-name)."
    )


def _open_inlet(
    info: pylsl.StreamInfo, role: str, flags: int, buffer_seconds: int, open_timeout: float
) -> tuple[pylsl.StreamInlet, pylsl.StreamInfo]:
    """Open an inlet and its data connection; returns the inlet and the stream's full info.

    The first clock-offset estimate blocks for a while, so it is taken here, before data flows: taken
    inside the first pull it would let the inlet buffer overflow (samples lost, then dejitter bends the
    timestamps of what follows).
    """
    try:
        inlet = pylsl.StreamInlet(info, max_buflen=max(1, int(buffer_seconds)), recover=True, processing_flags=flags)
        full = inlet.info(timeout=open_timeout)
        inlet.time_correction(timeout=open_timeout)
        inlet.open_stream(timeout=open_timeout)
    except (pylsl.util.TimeoutError, pylsl.util.LostError) as exc:
        raise StreamLostError(
            f"{role} stream {info.name()!r} did not answer within {open_timeout:g} s ({exc})"
        ) from exc
    return inlet, full


class EegInlet:
    """A numeric stream's inlet that pulls numpy chunks with clock-corrected, dejittered timestamps."""

    def __init__(self, info: pylsl.StreamInfo, *, buffer_seconds: int = 10, open_timeout: float = 5.0) -> None:
        self._inlet, full = _open_inlet(
            info, "EEG", pylsl.proc_clocksync | pylsl.proc_dejitter, buffer_seconds, open_timeout
        )
        self.description = describe(full)
        dtype = _NUMPY_DTYPES.get(full.channel_format())
        if dtype is None:
            raise StreamNotFoundError(
                f"EEG stream {info.name()!r} has non-numeric channel format {full.channel_format()}; "
                "point [eeg] at a numeric stream"
            )
        rate = max(full.nominal_srate(), 1.0)
        self._max_samples = int(max(64, rate))  # up to 1 s per pull
        self._dest = np.zeros((self._max_samples, full.channel_count()), dtype=dtype)

    def pull(self, timeout: float) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(samples, timestamps)``; waits up to ``timeout`` s for the first sample only."""
        try:
            _samples, stamps = self._inlet.pull_chunk(
                timeout=timeout, max_samples=self._max_samples, dest_obj=self._dest, min_samples=1, as_numpy=True
            )
        except pylsl.util.LostError as exc:  # only raised with recover=False; kept for safety
            raise StreamLostError(f"EEG stream {self.description.name!r} was lost ({exc})") from exc
        n = len(stamps)
        return self._dest[:n], np.asarray(stamps, dtype=np.float64)

    def close(self) -> None:
        self._inlet.close_stream()


class MarkerInlet:
    """A string marker stream's inlet; yields :class:`Marker` with clock-corrected times."""

    def __init__(self, info: pylsl.StreamInfo, *, buffer_seconds: int = 30, open_timeout: float = 5.0) -> None:
        self._inlet, full = _open_inlet(info, "marker", pylsl.proc_clocksync, buffer_seconds, open_timeout)
        self.description = describe(full)

    def pull(self) -> list[Marker]:
        try:
            values, stamps = self._inlet.pull_chunk(timeout=0.0, max_samples=1024)
        except pylsl.util.LostError as exc:
            raise StreamLostError(f"marker stream {self.description.name!r} was lost ({exc})") from exc
        return [
            Marker(str(v[0]) if isinstance(v, list | tuple) else str(v), float(t))
            for v, t in zip(values, stamps, strict=True)
        ]

    def close(self) -> None:
        self._inlet.close_stream()


def local_clock() -> float:
    """The LSL clock, in seconds."""
    return float(pylsl.local_clock())
