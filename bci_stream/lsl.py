"""LSL inlets for the daemon: resolve by name/type/source_id, numpy pulls, clock correction, liveness.

This is the only module of the online path that talks to liblsl; its errors are translated
into :mod:`bci_stream.errors` here. Inlets use small buffers (seconds, not liblsl's 360 s
default) so data is never stale, and ``clocksync`` only: the EEG stamps are dejittered by
:mod:`bci_stream.timing`, which restarts its regression at a discontinuity (liblsl's
``proc_dejitter`` never does). ``recover=True`` lets liblsl pick a stream up again when it comes
back under the same source_id; :class:`StreamWatch` finds it when it comes back under another.
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
    labelled: bool = True  # False: the stream declares no channel labels (``channels`` are ch1, ch2 ...)
    uid: str = ""
    created_at: float = 0.0

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
    labelled = len(labels) == info.channel_count() and all(labels)
    if not labelled:
        labels = [f"ch{i + 1}" for i in range(info.channel_count())]
        units = (units + [""] * info.channel_count())[: info.channel_count()]
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
        labelled=labelled,
        uid=info.uid(),
        created_at=info.created_at(),
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
    and a set ``stop`` event ends the wait early. When several streams match, the newest is taken
    and a warning names them all.

    Raises
    ------
    StreamNotFoundError
        Listing every stream that was found, and what to change.
    """
    resolver = pylsl.ContinuousResolver(forget_after=max(5.0, wait))
    deadline = time.monotonic() + wait
    seen: dict[str, pylsl.StreamInfo] = {}
    first_match: float | None = None
    try:
        while True:
            for info in resolver.results():
                seen[info.uid()] = info
            matching = [i for i in seen.values() if _matches(i, selector)]
            if matching and first_match is None:
                first_match = time.monotonic()
            # Once one matches, listen a little longer so that a second stream of the same name is seen too.
            if first_match is not None and time.monotonic() - first_match >= _DUPLICATE_GRACE:
                return choose_newest(matching, selector, role, config_section)
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                break
            if on_tick is not None:
                on_tick()
            time.sleep(0.05)
    finally:
        del resolver
    if stop is not None and stop.is_set():
        raise StreamNotFoundError(f"stopped while waiting for the {role} stream ({selector.describe()})")
    if first_match is not None:
        return choose_newest([i for i in seen.values() if _matches(i, selector)], selector, role, config_section)
    found = "; ".join(describe(i).summary() for i in seen.values()) or "none"
    raise StreamNotFoundError(
        f"no {role} stream with {selector.describe()} appeared within {wait:.1f} s. Streams found: {found}. "
        f"Start the amplifier or `bci-stream replay FILE`, or fix [{config_section}] in the config "
        f"(or pass --{config_section}-name)."
    )


#: Seconds to keep listening after the first matching stream, to notice a second one with the same name.
_DUPLICATE_GRACE = 0.3


def choose_newest(
    matching: list[pylsl.StreamInfo], selector: StreamSelector, role: str, config_section: str
) -> pylsl.StreamInfo:
    """The most recently created of ``matching``; warns, naming them all, when there is more than one."""
    newest = max(matching, key=lambda i: i.created_at())
    if len(matching) > 1:
        names = "; ".join(describe(i).summary() for i in matching)
        log.warning(
            "%d %s streams match %s: %s. Taking the newest, %s; set [%s] source_id to choose another",
            len(matching),
            role,
            selector.describe(),
            names,
            describe(newest).summary(),
            config_section,
        )
    else:
        log.info("found %s stream %s", role, describe(newest).summary())
    return newest


class StreamWatch:
    """Which streams matching a selector are visible on the network now (liblsl resolves in the background).

    Used to notice that a stream has gone (its uid no longer answers) and to find it again when it
    comes back, possibly under a new ``source_id``. Never blocks.
    """

    def __init__(self, selector: StreamSelector, *, forget_after: float) -> None:
        self.selector = selector
        self._resolver = pylsl.ContinuousResolver(forget_after=forget_after)

    def matching(self) -> list[pylsl.StreamInfo]:
        return [i for i in self._resolver.results() if _matches(i, self.selector)]

    def close(self) -> None:
        del self._resolver


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
    """A numeric stream's inlet that pulls numpy chunks with clock-corrected raw timestamps."""

    def __init__(self, info: pylsl.StreamInfo, *, buffer_seconds: int = 10, open_timeout: float = 5.0) -> None:
        # clocksync only: dejittering is ours (bci_stream.timing), so that it restarts at a discontinuity.
        self._inlet, full = _open_inlet(info, "EEG", pylsl.proc_clocksync, buffer_seconds, open_timeout)
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
        except pylsl.util.LostError as exc:  # a stream without source_id cannot be recovered by liblsl
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
        self._numeric = full.channel_format() != pylsl.cf_string
        self._warned_encoding = False

    def pull(self) -> list[Marker]:
        """Every marker waiting in the inlet. Any bytes are accepted: invalid UTF-8 is decoded with
        replacement characters (logged once), numeric marker streams give their first channel as text."""
        try:
            values, stamps = self._inlet.pull_chunk(timeout=0.0, max_samples=1024, as_numpy=True)
        except pylsl.util.LostError as exc:
            raise StreamLostError(f"marker stream {self.description.name!r} was lost ({exc})") from exc
        return [Marker(self._text(row[0]), float(t)) for row, t in zip(values, stamps, strict=True)]

    def _text(self, value: object) -> str:
        if not isinstance(value, bytes):
            return f"{value:g}" if isinstance(value, float | np.floating) else str(value)
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            if not self._warned_encoding:
                self._warned_encoding = True
                log.warning(
                    "marker stream %r sent a marker that is not UTF-8 (%r); decoding with replacement "
                    "characters (this is logged once). Send UTF-8 from the stimulus program.",
                    self.description.name,
                    value[:40],
                )
            return value.decode("utf-8", errors="replace")

    def close(self) -> None:
        self._inlet.close_stream()


def local_clock() -> float:
    """The LSL clock, in seconds."""
    return float(pylsl.local_clock())
