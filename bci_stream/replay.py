"""A recording played as a fake LSL amplifier: one EEG outlet and one marker outlet.

Timestamps are in *data time*: with ``t0`` the LSL clock when playing starts, sample ``i`` is stamped
``t0 + i / sfreq`` and a marker at onset ``o`` (seconds from the first sample) is stamped ``t0 + o``,
so epochs cut from the replay are sample-exact whatever the speed. Pacing follows the same schedule
divided by ``speed``: sample ``i`` is pushed once ``local_clock() >= t0 + (i / sfreq) / speed``. The
schedule is computed from ``t0`` every time, never by adding up sleeps, so long files do not drift.

With ``speed > 1`` the stream's timestamps run ahead of the receiver's clock (by design: they stay in
data time); consumers that compare sample times with ``local_clock()`` must allow for it.

:func:`replay_main` is what ``bci-stream replay FILE`` runs.
"""

from __future__ import annotations

import hashlib
import logging
import math
import numbers
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pylsl

from .epochs import Marker
from .errors import BciStreamError, ConfigError, RecordingError
from .recordings import (
    SUPPORTED_EXTENSIONS,
    Recording,
    XdfStream,
    crop_recording,
    read_recording,
    read_xdf_streams,
    select_xdf_streams,
)
from .signal import unit_scale

_log = logging.getLogger(__name__)

#: Default chunk length in seconds of data (at least one sample).
DEFAULT_CHUNK_SECONDS = 0.02

#: Units of the samples on the EEG outlet (the XDF/LSL convention for EEG).
STREAM_UNITS = "microvolts"

#: Default ``wait_consumers`` of ``bci-stream replay`` / :func:`replay_main`: seconds to wait for consumers of every
#: outlet before the first sample. LSL inlets receive only what is pushed after they connect, so a daemon started
#: first still misses the markers of the first second or so if the replay plays at once. The classes
#: (:class:`Player`, :class:`XdfPlayer`) default to 0: a program that opens its own inlets first does not wait.
DEFAULT_WAIT_CONSUMERS = 30.0

# After a normal end, replay_main keeps the outlets this long (while consumers are connected) so
# that the last chunks reach them before the outlets are destroyed.
_LINGER_SECONDS = 1.0


def default_source_id(source: str, name: str) -> str:
    """A stable LSL ``source_id`` for replaying ``source`` under stream ``name``.

    The same file played under the same name gets the same id, so LSL inlets recover across restarts
    of the player, while two files (or two names) never share one.
    """
    path = Path(source)
    where = str(path.resolve()) if path.exists() else source
    digest = hashlib.sha1(f"{where}\0{name}".encode()).hexdigest()[:16]
    return f"bci-stream-replay-{digest}"


def stream_name_for(path: str | Path) -> str:
    """Default stream name for a file: its name without the recording extension (``s01.fif.gz`` → ``s01``)."""
    name = Path(path).name
    lowered = name.lower()
    for ext in sorted(SUPPORTED_EXTENSIONS, key=len, reverse=True):
        if lowered.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return Path(path).stem or name


_WAIT_HINT = (
    "start the consumer first and let the replay wait for it (wait_consumers, bci-stream replay --wait-consumers S)"
)


def _wait_for_outlets(
    outlets: Sequence[tuple[pylsl.StreamOutlet, str]], wait: float, stop: threading.Event | None, advice: str = ""
) -> bool:
    """Wait up to ``wait`` s for every outlet to have a consumer; on time-out warn, naming those without one, and
    go on (True). False only if ``stop`` was set meanwhile."""
    deadline = pylsl.local_clock() + wait
    _log.info("waiting up to %g s for consumers of %s", wait, ", ".join(repr(name) for _, name in outlets))
    for outlet, _name in outlets:
        while not outlet.have_consumers():
            if stop is not None and stop.is_set():
                return False
            remaining = deadline - pylsl.local_clock()
            if remaining <= 0:
                missing = " or ".join(repr(name) for o, name in outlets if not o.have_consumers())
                _log.warning(
                    "no consumer connected to %s within %g s; playing anyway (consumers that connect later miss "
                    "the start)%s",
                    missing,
                    wait,
                    advice,
                )
                return True
            outlet.wait_for_consumers(min(remaining, 0.1))  # short slices so that `stop` is honoured
    _log.info("consumers connected to every outlet")
    return True


def _warn_unconsumed(stream: str, what: str) -> None:
    """The first marker pushed with nobody connected (warned once; :func:`_report_unconsumed` counts at the end)."""
    _log.warning(
        "%s pushed to %r with no consumer connected: lost for every inlet that connects later (the count comes at "
        "the end); %s",
        what,
        stream,
        _WAIT_HINT,
    )


def _report_unconsumed(stream: str, lost: int, pushed: int) -> None:
    if lost:
        _log.warning(
            "%d of %d markers were pushed to %r while it had no consumer: they are lost for every inlet that "
            "connected later; %s",
            lost,
            pushed,
            stream,
            _WAIT_HINT,
        )


def _counts(by_name: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in by_name.items())


class Player:
    """Play a :class:`~bci_stream.recordings.Recording` as two LSL outlets, paced in real time.

    Parameters
    ----------
    recording : Recording
        What to play. Its data must be in a voltage unit; it is sent in microvolts. Its holes
        (:attr:`~bci_stream.recordings.Recording.gaps`) are not played: the stamps jump over them.
    name : str
        Name of the EEG stream; the marker stream is ``NAME-markers``.
    source_id : str, optional
        LSL ``source_id`` of the EEG stream (markers get ``SOURCE_ID-markers``). Default: a stable id
        from the recording's path and ``name`` (:func:`default_source_id`).
    speed : float
        Playback speed (> 0); 20 plays twenty times faster than real time. Timestamps stay in data time.
    loop : bool
        Start again at the end, with timestamps continuing seamlessly; :meth:`run` then only returns
        when stopped.
    chunk : int, optional
        Samples per pushed chunk (>= 1). Default: about 20 ms of data.
    wait_consumers : float
        Seconds (>= 0) to wait, before playing starts, for both outlets to have a consumer; on time-out
        a warning naming the outlets without one is logged and playing starts anyway. 0 (the default
        here) does not wait; ``bci-stream replay`` and :func:`replay_main` wait
        :data:`DEFAULT_WAIT_CONSUMERS` s. Markers pushed while the marker outlet has no consumer are lost
        for every inlet that connects later: a warning says so once, and the count at the end
        (:attr:`markers_unconsumed`).

    Raises
    ------
    ValueError
        If an argument is out of range (the message names it, its value and the rule).
    RecordingError
        If the recording is empty, has no valid rate, or is not in a voltage unit.

    Examples
    --------
    >>> with Player(read_recording("s01.fif"), name="s01", speed=10) as player:  # doctest: +SKIP
    ...     player.run()
    """

    def __init__(
        self,
        recording: Recording,
        *,
        name: str,
        source_id: str | None = None,
        speed: float = 1.0,
        loop: bool = False,
        chunk: int | None = None,
        wait_consumers: float = 0.0,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name={name!r} is invalid: the stream name must be a non-empty string")
        if source_id is not None and (not isinstance(source_id, str) or not source_id.strip()):
            raise ValueError(f"source_id={source_id!r} is invalid: it must be a non-empty string, or left out")
        if isinstance(speed, bool) or not isinstance(speed, numbers.Real) or not math.isfinite(speed) or speed <= 0:
            raise ValueError(f"speed={speed!r} is invalid: it must be a finite number > 0 (1 is real time)")
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral) or chunk < 1):
            raise ValueError(f"chunk={chunk!r} is invalid: it must be an integer >= 1 (samples per push), or left out")
        if (
            isinstance(wait_consumers, bool)
            or not isinstance(wait_consumers, numbers.Real)
            or not math.isfinite(wait_consumers)
            or wait_consumers < 0
        ):
            raise ValueError(f"wait_consumers={wait_consumers!r} is invalid: it must be a number of seconds >= 0")
        self._check_recording(recording)
        try:
            scale = unit_scale(recording.units, STREAM_UNITS)
        except ValueError as exc:
            raise RecordingError(
                f"recording {recording.source!r} is in {recording.units!r}, not a voltage unit; cannot send it "
                f"in {STREAM_UNITS}: {exc}"
            ) from exc

        self.recording: Recording = recording
        self.name: str = name
        self.source_id: str = source_id or default_source_id(recording.source, name)
        self.speed: float = float(speed)
        self.loop: bool = bool(loop)
        self.sfreq: float = float(recording.sfreq)
        self.chunk: int = int(chunk) if chunk is not None else max(1, round(DEFAULT_CHUNK_SECONDS * self.sfreq))
        self.wait_consumers: float = float(wait_consumers)
        self._recorded: np.ndarray = recording.recorded()  # False inside the recording's holes (not played)
        self._data: np.ndarray = np.ascontiguousarray(
            np.asarray(recording.data, dtype=np.float64) * scale, dtype=np.float32
        )
        self._markers: list[Marker] = self._playable_markers(recording, self.loop)

        #: LSL time of sample 0 of the first pass (data time origin); None until :meth:`run` starts playing.
        self.t0: float | None = None
        #: Samples and markers pushed so far (over all passes).
        self.samples_pushed: int = 0
        self.markers_pushed: int = 0
        #: Markers pushed while the marker outlet had no consumer (lost for any inlet that connected later).
        self.markers_unconsumed: int = 0
        self._eeg_outlet: pylsl.StreamOutlet | None = None
        self._marker_outlet: pylsl.StreamOutlet | None = None

    # ----------------------------------------------------------------------------------------------------------------
    # set-up

    @staticmethod
    def _check_recording(recording: Recording) -> None:
        data = np.asarray(recording.data)
        if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
            raise RecordingError(
                f"recording {recording.source!r} has data of shape {data.shape}; need (n_samples >= 1, n_channels >= 1)"
            )
        if len(recording.ch_names) != data.shape[1] or len(recording.ch_types) != data.shape[1]:
            raise RecordingError(
                f"recording {recording.source!r} has {data.shape[1]} channels but {len(recording.ch_names)} names and "
                f"{len(recording.ch_types)} types; they must agree"
            )
        if not math.isfinite(recording.sfreq) or recording.sfreq <= 0:
            raise RecordingError(
                f"recording {recording.source!r} has sampling rate {recording.sfreq!r}; need a regular rate > 0 Hz"
            )

    @staticmethod
    def _playable_markers(recording: Recording, loop: bool) -> list[Marker]:
        """Markers in time order; with ``loop``, only those inside the data (others would collide across passes)."""
        markers = sorted(recording.markers, key=lambda m: m.time)
        if loop:
            inside = [m for m in markers if 0.0 <= m.time < recording.duration]
            if len(inside) < len(markers):
                _log.warning(
                    "%s: %d of %d markers lie outside the data (before 0 s or after %.3f s); they are not played "
                    "when looping",
                    recording.source,
                    len(markers) - len(inside),
                    len(markers),
                    recording.duration,
                )
            markers = inside
        return markers

    def start(self) -> None:
        """Create the two outlets (idempotent). Consumers can resolve and connect from now on.

        Raises
        ------
        BciStreamError
            If liblsl cannot create an outlet.
        """
        if self._eeg_outlet is not None:
            return
        rec = self.recording
        try:
            eeg_info = pylsl.StreamInfo(
                self.name, "EEG", len(rec.ch_names), self.sfreq, pylsl.cf_float32, self.source_id
            )
            desc = eeg_info.desc()
            channels = desc.append_child("channels")
            for label, kind in zip(rec.ch_names, rec.ch_types, strict=True):
                channel = channels.append_child("channel")
                channel.append_child_value("label", label)
                channel.append_child_value("type", kind.upper())
                channel.append_child_value("unit", STREAM_UNITS)
            self._describe_acquisition(desc)

            marker_info = pylsl.StreamInfo(
                f"{self.name}-markers", "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, f"{self.source_id}-markers"
            )
            self._describe_acquisition(marker_info.desc())

            self._eeg_outlet = pylsl.StreamOutlet(eeg_info)
            self._marker_outlet = pylsl.StreamOutlet(marker_info)
        except RuntimeError as exc:  # pylsl raises RuntimeError (and subclasses) when liblsl fails
            self.close()
            raise BciStreamError(
                f"cannot create the LSL outlets {self.name!r} and {self.name + '-markers'!r} "
                f"(source_id {self.source_id!r}): {exc}; check liblsl's network configuration (lsl_api.cfg)"
            ) from exc
        _log.info(
            "LSL outlets open: %r (EEG, %d channels at %g Hz, %s, source_id %s) and %r (Markers)",
            self.name,
            len(rec.ch_names),
            self.sfreq,
            STREAM_UNITS,
            self.source_id,
            f"{self.name}-markers",
        )

    def _describe_acquisition(self, desc: pylsl.XMLElement) -> None:
        acquisition = desc.append_child("acquisition")
        acquisition.append_child_value("manufacturer", "bci-stream")
        acquisition.append_child_value("model", "replay")
        acquisition.append_child_value("source_file", self.recording.source)
        acquisition.append_child_value("speed", repr(self.speed))

    # ----------------------------------------------------------------------------------------------------------------
    # playing

    def run(self, stop: threading.Event | None = None) -> bool:
        """Play the recording; block until it ends (never with ``loop``) or ``stop`` is set.

        Calls :meth:`start` if needed, waits for consumers if asked to, then takes ``t0``.

        Returns
        -------
        bool
            True if the recording played to its end, False if ``stop`` ended it early.

        Raises
        ------
        BciStreamError
            If liblsl fails to push.
        """
        self.start()
        assert self._eeg_outlet is not None and self._marker_outlet is not None
        if self.wait_consumers > 0 and not self._wait_for_consumers(stop):
            return False
        n = self.recording.n_samples
        t0 = pylsl.local_clock()
        self.t0 = t0
        _log.info(
            "playing %s from LSL time %.6f: %.3f s of data%s at speed %g, %d markers per pass, chunks of %d samples",
            self.recording.source,
            t0,
            self.recording.duration,
            " (looping)" if self.loop else "",
            self.speed,
            len(self._markers),
            self.chunk,
        )
        pass_index = 0
        while True:
            offset = pass_index * n  # global index of this pass's first sample
            marker_index = 0
            for begin in range(0, n, self.chunk):
                end = min(begin + self.chunk, n)
                due = t0 + ((offset + end - 1) / self.sfreq) / self.speed  # when the chunk's last sample is due
                if not self._sleep_until(due, stop):
                    return self._stopped()
                stamps = t0 + (offset + np.arange(begin, end)) / self.sfreq
                kept = self._recorded[begin:end]
                if kept.all():
                    self._push_eeg(self._data[begin:end], stamps)
                elif kept.any():  # a hole in the recording is played as one: its stamps jump over it
                    self._push_eeg(self._data[begin:end][kept], stamps[kept])
                # Markers whose onset falls in this chunk; the last chunk also takes any beyond the data.
                limit = end / self.sfreq if end < n else math.inf
                while marker_index < len(self._markers) and self._markers[marker_index].time < limit:
                    marker = self._markers[marker_index]
                    self._push_marker(marker.value, t0 + offset / self.sfreq + marker.time)
                    marker_index += 1
            pass_index += 1
            if not self.loop:
                break
        _log.info(
            "%s ended: %d samples and %d markers pushed",
            self.recording.source,
            self.samples_pushed,
            self.markers_pushed,
        )
        self._report_unconsumed()
        return True

    def _stopped(self) -> bool:
        _log.info(
            "%s stopped: %d samples and %d markers pushed",
            self.recording.source,
            self.samples_pushed,
            self.markers_pushed,
        )
        self._report_unconsumed()
        return False

    def _report_unconsumed(self) -> None:
        _report_unconsumed(f"{self.name}-markers", self.markers_unconsumed, self.markers_pushed)

    def _wait_for_consumers(self, stop: threading.Event | None) -> bool:
        """Wait up to ``wait_consumers`` s for both outlets to have a consumer; False if stopped meanwhile."""
        assert self._eeg_outlet is not None and self._marker_outlet is not None
        outlets = [(self._eeg_outlet, self.name), (self._marker_outlet, f"{self.name}-markers")]
        return _wait_for_outlets(outlets, self.wait_consumers, stop) or self._stopped()

    @staticmethod
    def _sleep_until(due: float, stop: threading.Event | None) -> bool:
        """Sleep until LSL time ``due``; False as soon as ``stop`` is set."""
        while True:
            if stop is not None and stop.is_set():
                return False
            remaining = due - pylsl.local_clock()
            if remaining <= 0:
                return True
            if stop is not None:
                stop.wait(remaining)
            else:
                time.sleep(remaining)

    def _push_eeg(self, samples: np.ndarray, stamps: np.ndarray) -> None:
        assert self._eeg_outlet is not None
        try:
            # A list of per-sample timestamps (a float would stamp only the last sample).
            self._eeg_outlet.push_chunk(samples, stamps.tolist())
        except RuntimeError as exc:
            raise BciStreamError(f"pushing {len(samples)} samples to LSL stream {self.name!r} failed: {exc}") from exc
        self.samples_pushed += len(samples)

    def _push_marker(self, value: str, stamp: float) -> None:
        assert self._marker_outlet is not None
        if not self._marker_outlet.have_consumers():
            # LSL keeps nothing for inlets that connect later: this marker reaches nobody.
            if not self.markers_unconsumed:
                _warn_unconsumed(f"{self.name}-markers", f"marker {value!r}")
            self.markers_unconsumed += 1
        try:
            self._marker_outlet.push_sample([value], stamp)
        except RuntimeError as exc:
            raise BciStreamError(
                f"pushing marker {value!r} to LSL stream {self.name + '-markers'!r} failed: {exc}"
            ) from exc
        self.markers_pushed += 1

    def have_consumers(self) -> bool:
        """Whether any outlet has a consumer connected now."""
        return any(o is not None and o.have_consumers() for o in (self._eeg_outlet, self._marker_outlet))

    # ----------------------------------------------------------------------------------------------------------------
    # tear-down

    def close(self) -> None:
        """Destroy the outlets (idempotent); connected inlets stop receiving."""
        if self._eeg_outlet is None and self._marker_outlet is None:
            return
        # pylsl destroys an outlet when its last reference goes.
        self._eeg_outlet = None
        self._marker_outlet = None
        _log.info("LSL outlets %r and %r closed", self.name, f"{self.name}-markers")

    def __enter__(self) -> Player:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_LSL_FORMAT_CODES = {
    "float32": pylsl.cf_float32,
    "double64": pylsl.cf_double64,
    "string": pylsl.cf_string,
    "int8": pylsl.cf_int8,
    "int16": pylsl.cf_int16,
    "int32": pylsl.cf_int32,
    "int64": pylsl.cf_int64,
}


def _append_desc(element: pylsl.XMLElement, tree: dict[str, Any]) -> None:
    """Copy a pyxdf-parsed ``<desc>`` subtree (tag → list of text or dicts) under an LSL XML element."""
    for tag, values in tree.items():
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, dict):
                _append_desc(element.append_child(tag), value)
            else:
                element.append_child_value(tag, "" if value is None else str(value))


class XdfPlayer:
    """Play the streams of an XDF session, each as its own LSL outlet, on the file's own timestamps.

    Every stream keeps its name, type, channel count, format, ``<desc>`` metadata and nominal rate.
    Sample times are the file's clock-corrected timestamps shifted as a whole: with ``origin`` the
    earliest stamp of the file plus ``start``, a sample stamped ``t`` is pushed as ``t0 + (t - origin)``
    once ``local_clock() >= t0 + (t - origin) / speed``. So holes, drift and the timing between streams
    are kept exactly; no stamp is rebuilt from the nominal rate.

    Parameters
    ----------
    streams : list of XdfStream
        What to play (:func:`~bci_stream.recordings.read_xdf_streams`, maybe selected).
    source : str
        The file, for metadata, ``source_id`` values and messages.
    speed : float
        Playback speed (> 0); timestamps stay in data time.
    start, duration : float
        Play the part ``[start, start + duration)`` s from the file's first stamp (duration None: to the end).
    wait_consumers : float
        Seconds (>= 0) to wait for every outlet to have a consumer before playing; on time-out a warning
        names the outlets without one and playing starts anyway. 0 (the default here) does not wait;
        ``bci-stream replay`` and :func:`replay_main` wait :data:`DEFAULT_WAIT_CONSUMERS` s. Samples of a
        string (marker) stream pushed while its outlet has no consumer are counted in :attr:`unconsumed`
        and warned about.
    source_id : str, optional
        Prefix of the outlets' ``source_id`` (``PREFIX-<stream name>``); default from the file and stream.
    """

    def __init__(
        self,
        streams: list[XdfStream],
        *,
        source: str,
        speed: float = 1.0,
        start: float = 0.0,
        duration: float | None = None,
        wait_consumers: float = 0.0,
        source_id: str | None = None,
    ) -> None:
        if isinstance(speed, bool) or not isinstance(speed, numbers.Real) or not math.isfinite(speed) or speed <= 0:
            raise ValueError(f"speed={speed!r} is invalid: it must be a finite number > 0 (1 is real time)")
        if not math.isfinite(start) or start < 0:
            raise ValueError(f"start={start!r} is invalid: it must be a number of seconds >= 0")
        if duration is not None and (not math.isfinite(duration) or duration <= 0):
            raise ValueError(f"duration={duration!r} is invalid: it must be a number of seconds > 0, or left out")
        if not math.isfinite(wait_consumers) or wait_consumers < 0:
            raise ValueError(f"wait_consumers={wait_consumers!r} is invalid: it must be a number of seconds >= 0")
        if not streams:
            raise RecordingError(f"{source} has no stream to play")
        self.streams: list[XdfStream] = streams
        self.source: str = source
        self.speed: float = float(speed)
        self.wait_consumers: float = float(wait_consumers)
        firsts = [float(s.time_stamps[0]) for s in streams if s.n_samples]
        self.origin: float = (min(firsts) if firsts else 0.0) + start
        self.end: float = math.inf if duration is None else self.origin + duration
        self.source_ids: list[str] = [
            f"{source_id}-{s.name}" if source_id else default_source_id(source, f"{s.name}\0{s.source_id}")
            for s in streams
        ]
        # Per stream: the indices of the samples inside [origin, end).
        self._spans: list[tuple[int, int]] = [
            (int(np.searchsorted(s.time_stamps, self.origin)), int(np.searchsorted(s.time_stamps, self.end)))
            for s in streams
        ]
        if firsts and all(b == e for b, e in self._spans):
            raise RecordingError(
                f"{source}: no sample lies in the part asked for (start {start:g} s, duration "
                f"{'to the end' if duration is None else f'{duration:g} s'}); the file spans "
                f"{max(float(s.time_stamps[-1]) for s in streams if s.n_samples) - min(firsts):.3f} s"
            )
        self._outlets: list[pylsl.StreamOutlet] = []
        #: LSL time that ``origin`` maps to; None until :meth:`run` starts playing.
        self.t0: float | None = None
        #: Samples pushed so far, per stream name.
        self.pushed: dict[str, int] = {s.name: 0 for s in streams}
        #: Samples of string (marker) streams pushed while their outlet had no consumer, per stream name.
        self.unconsumed: dict[str, int] = {s.name: 0 for s in streams if s.channel_format == "string"}

    def start(self) -> None:
        """Create one outlet per stream (idempotent)."""
        if self._outlets:
            return
        try:
            for stream, sid in zip(self.streams, self.source_ids, strict=True):
                info = pylsl.StreamInfo(
                    stream.name,
                    stream.type,
                    stream.channel_count,
                    stream.nominal_srate,
                    _LSL_FORMAT_CODES.get(stream.channel_format, pylsl.cf_float32),
                    sid,
                )
                desc = info.desc()
                _append_desc(desc, {k: v for k, v in stream.desc.items() if k != "acquisition"})
                acquisition = desc.append_child("acquisition")
                acquisition.append_child_value("manufacturer", "bci-stream")
                acquisition.append_child_value("model", "replay")
                acquisition.append_child_value("source_file", self.source)
                acquisition.append_child_value("original_source_id", stream.source_id)
                acquisition.append_child_value("speed", repr(self.speed))
                self._outlets.append(pylsl.StreamOutlet(info))
        except RuntimeError as exc:
            self.close()
            raise BciStreamError(f"cannot create the LSL outlets for {self.source}: {exc}") from exc
        _log.info(
            "LSL outlets open for %s: %s",
            self.source,
            "; ".join(f"{s.name!r} ({s.type}, {s.channel_count} ch, {s.nominal_srate:g} Hz)" for s in self.streams),
        )

    def _schedule(self) -> list[tuple[float, int, int, int]]:
        """(file time of the chunk's last sample, stream index, begin, end), in time order."""
        events = []
        for index, (stream, (begin, end)) in enumerate(zip(self.streams, self._spans, strict=True)):
            size = max(1, round(DEFAULT_CHUNK_SECONDS * stream.nominal_srate)) if stream.nominal_srate > 0 else 1
            for b in range(begin, end, size):
                e = min(b + size, end)
                events.append((float(stream.time_stamps[e - 1]), index, b, e))
        events.sort(key=lambda ev: (ev[0], ev[1]))
        return events

    def run(self, stop: threading.Event | None = None) -> bool:
        """Play every stream; block until done (True) or ``stop`` is set (False)."""
        self.start()
        if self.wait_consumers > 0 and not self._wait_for_consumers(stop):
            return False
        events = self._schedule()
        t0 = pylsl.local_clock()
        self.t0 = t0
        _log.info(
            "playing %d streams of %s from LSL time %.6f at speed %g", len(self.streams), self.source, t0, self.speed
        )
        for stamp, index, begin, end in events:
            if not Player._sleep_until(t0 + (stamp - self.origin) / self.speed, stop):
                _log.info("%s stopped: samples pushed %s", self.source, _counts(self.pushed))
                self._report_unconsumed()
                return False
            stream = self.streams[index]
            if stream.name in self.unconsumed and not self._outlets[index].have_consumers():
                if not self.unconsumed[stream.name]:
                    _warn_unconsumed(stream.name, "markers")
                self.unconsumed[stream.name] += end - begin
            stamps = (t0 + (stream.time_stamps[begin:end] - self.origin)).tolist()
            try:
                if stream.channel_format == "string":
                    self._outlets[index].push_chunk(stream.time_series[begin:end], stamps)
                else:
                    self._outlets[index].push_chunk(np.ascontiguousarray(stream.time_series[begin:end]), stamps)
            except RuntimeError as exc:
                raise BciStreamError(f"pushing to LSL stream {stream.name!r} failed: {exc}") from exc
            self.pushed[stream.name] += end - begin
        _log.info("%s ended: samples pushed %s", self.source, _counts(self.pushed))
        self._report_unconsumed()
        return True

    def _report_unconsumed(self) -> None:
        for name, lost in self.unconsumed.items():
            _report_unconsumed(name, lost, self.pushed[name])

    def _wait_for_consumers(self, stop: threading.Event | None) -> bool:
        outlets = [(o, stream.name) for o, stream in zip(self._outlets, self.streams, strict=True)]
        advice = "; replay only the streams your consumers read (--streams NAME ...)"
        return _wait_for_outlets(outlets, self.wait_consumers, stop, advice)

    def have_consumers(self) -> bool:
        return any(o.have_consumers() for o in self._outlets)

    def close(self) -> None:
        self._outlets = []

    def __enter__(self) -> XdfPlayer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def replay_main(
    path: str | Path,
    *,
    name: str | None = None,
    source_id: str | None = None,
    speed: float = 1.0,
    loop: bool = False,
    chunk: int | None = None,
    wait_consumers: float = DEFAULT_WAIT_CONSUMERS,
    event_fields: list[str] | None = None,
    stop_event: threading.Event | None = None,
    streams: list[str] | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> int:
    """Read ``path`` and play it over LSL until it ends or ``stop_event`` is set (``bci-stream replay``).

    Installs no signal handler: the caller sets ``stop_event`` (or lets KeyboardInterrupt through).
    Parameters are those of :class:`Player`; ``name`` defaults to the file name without its extension
    and ``event_fields`` goes to :func:`~bci_stream.recordings.read_recording`. Unlike the classes,
    ``wait_consumers`` defaults to :data:`DEFAULT_WAIT_CONSUMERS` (30 s): the first sample waits until
    every outlet has a consumer (e.g. the daemon's inlets), so no marker is pushed before they connect;
    0 plays at once.

    Returns
    -------
    int
        0 when the recording ended or was stopped.

    Raises
    ------
    RecordingError
        If the file cannot be read or played.
    ConfigError
        If an option is out of range.
    BciStreamError
        If liblsl fails.
    """
    player: Player | XdfPlayer
    if str(path).lower().endswith((".xdf", ".xdfz")):
        player = _xdf_player(
            path,
            streams=streams,
            start=start,
            duration=duration,
            speed=speed,
            wait_consumers=wait_consumers,
            source_id=source_id,
            refused={"--name": name, "--loop": loop or None, "--chunk": chunk, "--event-fields": event_fields},
        )
    else:
        if streams:
            raise ConfigError(f"--streams only applies to XDF files, not to {str(path)!r}; leave it out")
        recording = read_recording(path, event_fields=event_fields)
        if start or duration is not None:
            recording = crop_recording(recording, start, duration)
        stream_name = name if name is not None else stream_name_for(path)
        try:
            player = Player(
                recording,
                name=stream_name,
                source_id=source_id,
                speed=speed,
                loop=loop,
                chunk=chunk,
                wait_consumers=wait_consumers,
            )
        except ValueError as exc:
            raise ConfigError(f"replay {str(path)!r}: {exc}") from exc
    with player:
        finished = player.run(stop_event)
        if finished and player.have_consumers():
            # Let the last chunks reach connected consumers before the outlets go.
            if stop_event is not None:
                stop_event.wait(_LINGER_SECONDS)
            else:
                time.sleep(_LINGER_SECONDS)
    _log.info("replay of %s %s", path, "finished" if finished else "stopped")
    return 0


def _xdf_player(
    path: str | Path,
    *,
    streams: list[str] | None,
    start: float,
    duration: float | None,
    speed: float,
    wait_consumers: float,
    source_id: str | None,
    refused: dict[str, Any],
) -> XdfPlayer:
    """An :class:`XdfPlayer` for the (selected) streams of ``path``; options that do not apply are refused."""
    given = [flag for flag, value in refused.items() if value]
    if given:
        raise ConfigError(
            f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to an XDF session ({str(path)!r}): every stream is replayed under its "
            "own name and timestamps; select streams with --streams, a part with --start/--duration"
        )
    selected = select_xdf_streams(read_xdf_streams(path), streams, repr(str(path)))
    try:
        return XdfPlayer(
            selected,
            source=str(path),
            speed=speed,
            start=start,
            duration=duration,
            wait_consumers=wait_consumers,
            source_id=source_id,
        )
    except ValueError as exc:
        raise ConfigError(f"replay {str(path)!r}: {exc}") from exc
