"""Recordings on disk, read into one in-memory shape used by replay and by training.

Supported: FIF, EDF/BDF, BrainVision (.vhdr), EEGLAB (.set) through MNE's readers, and XDF through
pyxdf (the EEG stream and its marker stream).

Every reader gives a :class:`Recording` whose marker times are seconds from the recording's first
sample, whatever the file format counts from (MNE's ``first_samp``, XDF's LSL clock).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .epochs import Marker
from .errors import RecordingError
from .signal import volts_per_unit
from .timing import Discontinuity

_log = logging.getLogger(__name__)

#: Extensions :func:`read_recording` understands, and what reads them.
SUPPORTED_EXTENSIONS = {
    ".fif": "mne",
    ".fif.gz": "mne",
    ".edf": "mne",
    ".bdf": "mne",
    ".vhdr": "mne",
    ".set": "mne",
    ".xdf": "pyxdf",
    ".xdfz": "pyxdf",
}

# Which mne.io function reads each extension that MNE handles.
_MNE_READERS = {
    ".fif": "read_raw_fif",
    ".fif.gz": "read_raw_fif",
    ".edf": "read_raw_edf",
    ".bdf": "read_raw_bdf",
    ".vhdr": "read_raw_brainvision",
    ".set": "read_raw_eeglab",
}


@dataclass
class Recording:
    """A continuous multichannel recording with its markers.

    Attributes
    ----------
    data : ndarray, shape (n_samples, n_channels)
        Samples in ``units`` (float64).
    sfreq : float
        Sampling rate in Hz.
    ch_names, ch_types : list of str
        Channel labels and types (``"eeg"``, ``"eog"``, ``"misc"`` ...).
    units : str
        Units of ``data`` (``"V"`` for everything MNE reads).
    markers : list of Marker
        Marker strings with times in seconds from the first sample.
    source : str
        Where it came from (a path), for messages.
    gaps : tuple of (int, int)
        Holes in the recording (an XDF file whose amplifier dropped out): sample index ranges ``[start, stop)``
        filled with NaN so that sample ``i`` stays at ``i / sfreq`` s and markers after a hole stay on their
        samples. The signal restarts at ``stop``: :meth:`pieces` says where, as a live inlet would.
    """

    data: np.ndarray
    sfreq: float
    ch_names: list[str]
    ch_types: list[str]
    units: str = "V"
    markers: list[Marker] = field(default_factory=list)
    source: str = "<memory>"
    gaps: tuple[tuple[int, int], ...] = ()

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_samples / self.sfreq

    @property
    def times(self) -> np.ndarray:
        """Time of each sample in seconds from the first."""
        return np.arange(self.n_samples) / self.sfreq

    def pieces(self) -> list[tuple[int, int, Discontinuity | None]]:
        """The recorded stretches between :attr:`gaps`: ``(start, stop, break)`` in sample indices.

        ``break`` is the :class:`~bci_stream.timing.Discontinuity` a live inlet reports at ``start`` (the
        signal jumped over the hole; None for the first stretch), so offline code restarts its filters and
        refuses the epochs that touch the hole exactly as the daemon does on a replay of the file.
        """
        times, out, begin = self.times, [], 0
        brk: Discontinuity | None = None
        for start, stop in sorted(self.gaps):
            if start == 0:  # a recording (or a crop) that begins in a hole: nothing before it to break from
                begin = stop
                continue
            if start > begin:
                out.append((begin, start, brk))
            before = float(times[start - 1])
            brk = Discontinuity(
                0, before, float(times[stop]) if stop < self.n_samples else float("nan"), float(times[start])
            )
            begin = stop
        if begin < self.n_samples:
            out.append((begin, self.n_samples, brk))
        return out

    def recorded(self) -> np.ndarray:
        """Boolean mask (n_samples,): True where a sample was recorded, False inside :attr:`gaps`."""
        mask = np.ones(self.n_samples, dtype=bool)
        for start, stop in self.gaps:
            mask[start:stop] = False
        return mask


def read_recording(path: str | Path, *, event_fields: list[str] | None = None) -> Recording:
    """Read a recording file into a :class:`Recording`.

    Parameters
    ----------
    path : str or Path
        A .fif, .edf, .bdf, .vhdr, .set or .xdf file.
    event_fields : list of str, optional
        EEGLAB only: event fields appended to each marker as ``type/field=value`` (for example
        ``["position"]`` turns ``square`` into ``square/position=1``). Fields that are empty for
        an event are left out of its marker.

    Returns
    -------
    Recording
        Data in volts for MNE formats and for XDF voltage channels; markers in seconds from the
        first sample.

    Raises
    ------
    RecordingError
        If the file is missing, its extension is unsupported, or it cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise RecordingError(
            f"recording {str(path)!r} does not exist (resolved to {str(path.resolve())!r}); "
            "check the path, or give an absolute one"
        )
    if not path.is_file():
        raise RecordingError(f"recording {str(path)!r} is not a file; give the path of a recording file")
    ext = _extension(path)
    if ext not in SUPPORTED_EXTENSIONS:
        shown = repr(ext) if ext else "no extension"
        raise RecordingError(
            f"recording {str(path)!r} has {shown}, which bci-stream cannot read; supported extensions: "
            f"{', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if event_fields and ext != ".set":
        raise RecordingError(
            f"event_fields={list(event_fields)!r} only applies to EEGLAB .set files, not to {ext} "
            f"({str(path)!r}); leave it out for this file"
        )
    if SUPPORTED_EXTENSIONS[ext] == "pyxdf":
        recording = _read_xdf(path)
    else:
        recording = _read_mne(path, ext, event_fields=list(event_fields or []))
    _log.info(
        "read %s: %d channels at %g Hz, %.1f s, %d markers",
        path,
        len(recording.ch_names),
        recording.sfreq,
        recording.duration,
        len(recording.markers),
    )
    return recording


def _extension(path: Path) -> str:
    """Lower-case extension of ``path``, including double ones such as ``.fif.gz``."""
    name = path.name.lower()
    for ext in SUPPORTED_EXTENSIONS:
        if name.endswith(ext) and len(name) > len(ext):
            return ext
    return path.suffix.lower()


# --------------------------------------------------------------------------------------------------------------------
# MNE formats


def _read_mne(path: Path, ext: str, *, event_fields: list[str]) -> Recording:
    """Read FIF, EDF/BDF, BrainVision or EEGLAB with MNE; data in volts, stim channels left out."""
    import mne  # heavy import, only when an MNE format is read

    reader_name = _MNE_READERS[ext]
    reader = getattr(mne.io, reader_name)
    try:
        raw = reader(path, preload=True, verbose="error")
    except Exception as exc:  # MNE raises many types (ValueError, OSError, KeyError ...) for bad files
        raise RecordingError(f"cannot read {str(path)!r} with mne.io.{reader_name}: {exc}") from exc

    types = list(raw.get_channel_types())
    data_picks = [i for i, kind in enumerate(types) if kind != "stim"]
    stim_names = [raw.ch_names[i] for i, kind in enumerate(types) if kind == "stim"]
    if not data_picks:
        raise RecordingError(f"recording {str(path)!r} has only stim channels ({', '.join(stim_names)}); no data")
    data = np.ascontiguousarray(raw.get_data(picks=data_picks).T, dtype=np.float64)
    sfreq = float(raw.info["sfreq"])

    if len(raw.annotations):
        # Annotation onsets count from the measurement start; the recording starts at first_time.
        onsets = np.asarray(raw.annotations.onset, dtype=np.float64) - raw.first_time
        values = [str(d) for d in raw.annotations.description]
        if event_fields:
            values = _eeglab_marker_values(path, values, onsets, sfreq, event_fields)
        markers = [Marker(v, float(t)) for v, t in zip(values, onsets, strict=True)]
        data, gaps = _acquisition_skips(data, raw, onsets, sfreq)
        data, gaps, markers = _boundaries(data, gaps, markers, raw, onsets, sfreq, path)
        markers = [m for m in markers if m.value not in (ACQ_SKIP, BOUNDARY)]
    else:
        if event_fields:
            raise RecordingError(
                f"event_fields={event_fields!r} were asked for, but {str(path)!r} has no events; leave it out"
            )
        markers = _stim_markers(raw, stim_names, path) if stim_names else []
        gaps = ()

    return Recording(
        data=data,
        sfreq=sfreq,
        ch_names=[raw.ch_names[i] for i in data_picks],
        ch_types=[types[i] for i in data_picks],
        units="V",
        markers=markers,
        source=str(path),
        gaps=gaps,
    )


#: MNE's annotation for a span the acquisition skipped (FIF): its samples are zeros, not EEG.
ACQ_SKIP = "BAD_ACQ_SKIP"
#: EEGLAB's event where data were removed or files joined: the signal jumps there.
BOUNDARY = "boundary"
#: s of hole put in at a boundary whose removed duration is unknown: a clear break for the daemon on a replay.
BOUNDARY_HOLE = 1.0


def _boundaries(
    data: np.ndarray,
    gaps: tuple[tuple[int, int], ...],
    markers: list[Marker],
    raw: Any,
    onsets: np.ndarray,
    sfreq: float,
    path: Path,
) -> tuple[np.ndarray, tuple[tuple[int, int], ...], list[Marker]]:
    """Each EEGLAB ``boundary`` becomes a NaN hole of the removed duration (or :data:`BOUNDARY_HOLE`).

    The samples on either side of a boundary were never adjacent: a filter run across it rings and an epoch
    across it mixes two signals. As a hole it is handled like an amplifier drop-out (filter restart, epochs
    touching it dropped ``discontinuity``, offline and on a replay); markers after it move with their samples.
    """
    inserts = []
    for onset, duration, what in zip(onsets, raw.annotations.duration, raw.annotations.description, strict=True):
        at = round(float(onset) * sfreq)
        if what == BOUNDARY and 0 < at < len(data):
            removed = float(duration) if np.isfinite(duration) and duration > 0 else BOUNDARY_HOLE
            inserts.append((at, max(1, round(removed * sfreq))))
    if not inserts:
        return data, gaps, markers
    data, holes, shifted = _insert_holes(data, inserts)
    moved = [(shifted(a), shifted(b - 1) + 1) for a, b in gaps] + holes
    markers = [Marker(m.value, m.time + (shifted(round(m.time * sfreq)) - round(m.time * sfreq)) / sfreq)
               for m in markers]  # fmt: skip
    _log.info(
        "%s: %d EEGLAB boundary event(s) (data removed or files joined) read as holes (%s): the filter restarts "
        "after each and epochs touching one are dropped",
        path,
        len(holes),
        ", ".join(f"{(b - a) / sfreq:g} s at {a / sfreq:.3f} s" for a, b in holes[:5]),
    )
    return data, tuple(sorted(moved)), markers


def _insert_holes(
    data: np.ndarray, inserts: list[tuple[int, int]]
) -> tuple[np.ndarray, list[tuple[int, int]], Callable[[int], int]]:
    """Put ``n`` NaN rows before original sample ``at``, for each ``(at, n)``.

    Returns the new data, the holes as ``[start, stop)`` in its indices, and the map from an original sample
    index to its new one (for what else must move: markers, earlier gaps).
    """
    inserts = sorted(inserts)

    def shifted(index: int) -> int:
        return index + sum(n for at, n in inserts if at <= index)

    pieces, begin = [], 0
    for at, n in inserts:
        pieces += [data[begin:at], np.full((n, data.shape[1]), np.nan)]
        begin = at
    pieces.append(data[begin:])
    return np.concatenate(pieces), [(shifted(at) - n, shifted(at)) for at, n in inserts], shifted


def _acquisition_skips(
    data: np.ndarray, raw: Any, onsets: np.ndarray, sfreq: float
) -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
    """``BAD_ACQ_SKIP`` spans become NaN holes (:attr:`Recording.gaps`), as an XDF file's holes do."""
    gaps = []
    for onset, duration, what in zip(onsets, raw.annotations.duration, raw.annotations.description, strict=True):
        start, stop = max(0, round(float(onset) * sfreq)), min(len(data), round((float(onset) + duration) * sfreq))
        if what == ACQ_SKIP and stop > start:
            gaps.append((start, stop))
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(gaps):  # MNE may annotate one skip twice (once per buffer it spans)
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(stop, merged[-1][1]))
        else:
            merged.append((start, stop))
    if merged:
        data = data.copy()
        for start, stop in merged:
            data[start:stop] = np.nan
        _log.info("%d acquisition skip(s) (%s) are holes: NaN, not zeros", len(merged), ACQ_SKIP)
    return data, tuple(merged)


def _stim_markers(raw: Any, stim_names: list[str], path: Path) -> list[Marker]:
    """Markers from stim channels (``str(event_id)``), for files that have no annotations."""
    import mne

    try:
        events = mne.find_events(raw, stim_channel=stim_names, shortest_event=1, verbose="error")
    except Exception as exc:  # find_events raises ValueError on odd stim channels
        raise RecordingError(f"cannot find events in the stim channels of {str(path)!r}: {exc}") from exc
    sfreq = float(raw.info["sfreq"])
    return [Marker(str(int(code)), float((sample - raw.first_samp) / sfreq)) for sample, _, code in events]


def _eeglab_marker_values(
    path: Path, descriptions: list[str], onsets: np.ndarray, sfreq: float, event_fields: Sequence[str]
) -> list[str]:
    """Append EEGLAB event fields to MNE's annotation descriptions (``square`` → ``square/position=1``).

    MNE turns ``EEG.event`` into annotations (type → description, latency → onset) but drops the
    other fields and may crop events outside the data, so the events are read again here and
    matched to the annotations by type and latency (within half a sample).
    """
    events = _load_eeglab_events(path)
    available = _field_names(events)
    missing = [name for name in event_fields if name not in available]
    if missing:
        raise RecordingError(
            f"EEGLAB file {str(path)!r} has no event field {', '.join(map(repr, missing))}; "
            f"available fields: {', '.join(available) or 'none'}"
        )

    # Per event type, both sequences sorted by time: walk them together.
    by_type: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for event in events:
        onset = (float(event["latency"]) - 1.0) / sfreq  # EEGLAB latencies are 1-based samples
        by_type.setdefault(str(event["type"]), []).append((onset, event))
    for queue in by_type.values():
        queue.sort(key=lambda item: item[0])
    position = dict.fromkeys(by_type, 0)
    tolerance = 0.5 / sfreq

    values = []
    for description, onset in zip(descriptions, onsets, strict=True):
        queue = by_type.get(description, [])
        i = position.get(description, 0)
        while i < len(queue) and queue[i][0] < onset - tolerance:
            i += 1  # an event MNE did not keep (cropped)
        if i == len(queue) or abs(queue[i][0] - onset) > tolerance:
            raise RecordingError(
                f"cannot match the annotation {description!r} at {onset:.4f} s of {str(path)!r} with an "
                "EEG.event entry of the same type and latency; the file's events and MNE's annotations disagree"
            )
        position[description] = i + 1
        event = queue[i][1]
        parts = [description]
        for name in event_fields:
            value = _format_field(event.get(name))
            if value is not None:
                parts.append(f"{name}={value}")
        values.append("/".join(parts))
    unmatched = len(events) - len(values)
    if unmatched:
        _log.info("%s: %d EEG.event entries have no annotation (outside the data)", path, unmatched)
    return values


def eeglab_event_fields(path: str | Path) -> list[str]:
    """The event fields of an EEGLAB .set file (``EEG.event``), sorted: what ``event_fields`` may name.

    Raises
    ------
    RecordingError
        If the events cannot be read (a MATLAB v7.3 file, a damaged file).
    """
    return _field_names(_load_eeglab_events(Path(path)))


def _field_names(events: list[dict[str, Any]]) -> list[str]:
    return sorted({name for event in events for name in event})


def _load_eeglab_events(path: Path) -> list[dict[str, Any]]:
    """``EEG.event`` of an EEGLAB .set file as a list of dicts (field name → value)."""
    from scipy.io import loadmat

    try:
        # EEGLAB saves either one struct ``EEG`` or its fields as top-level variables.
        mat = loadmat(path, squeeze_me=True, struct_as_record=False, variable_names=["EEG", "event"])
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5) files
        raise RecordingError(
            f"cannot read the events of {str(path)!r}: it is a MATLAB v7.3 (HDF5) file, which scipy cannot "
            "read; resave it from EEGLAB in the default MATLAB format, or read it without event_fields"
        ) from exc
    except Exception as exc:  # scipy raises ValueError/TypeError/OSError for damaged files
        raise RecordingError(f"cannot read the events of {str(path)!r} with scipy.io.loadmat: {exc}") from exc
    raw_events = getattr(mat["EEG"], "event", None) if "EEG" in mat else mat.get("event")
    if raw_events is None:
        return []
    events = []
    for struct in np.atleast_1d(raw_events).ravel():
        names = getattr(struct, "_fieldnames", None)
        if names is None:
            continue  # an empty event array comes back as an empty numeric array
        events.append({name: getattr(struct, name) for name in names})
    return events


def _format_field(value: Any) -> str | None:
    """An EEGLAB event field value as marker text, or None when it is empty."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        if value.size == 1:
            return _format_field(value.reshape(-1)[0])
        parts = [p for p in (_format_field(v) for v in value.ravel()) if p is not None]
        return ",".join(parts) or None
    if isinstance(value, str | bytes):
        text = value.decode() if isinstance(value, bytes) else value
        return text.strip() or None
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if not np.isfinite(number):
            return None
        return str(int(number)) if number.is_integer() else format(number, ".10g")
    return str(value)


# --------------------------------------------------------------------------------------------------------------------
# XDF


def _read_xdf(path: Path) -> Recording:
    """Read the EEG stream of an XDF file and its marker stream; data in volts where units allow."""
    import pyxdf

    try:
        streams, _header = pyxdf.load_xdf(str(path))
    except Exception as exc:  # pyxdf raises many types (struct.error, ValueError, OSError ...) for bad files
        raise RecordingError(f"cannot read {str(path)!r} with pyxdf.load_xdf: {exc}") from exc

    eeg = _pick_eeg_stream(streams, path)
    info = eeg["info"]
    name = _info_value(info, "name")
    sfreq = float(_info_value(info, "nominal_srate") or 0.0)
    if sfreq <= 0:
        raise RecordingError(
            f"stream {name!r} of {str(path)!r} has an irregular sampling rate (nominal_srate={sfreq:g}); "
            "bci-stream needs a regular EEG stream"
        )
    data = np.asarray(eeg["time_series"], dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    n_channels = data.shape[1]
    labels, types, units = _xdf_channels(info, n_channels)
    data = data * _xdf_scales(units, labels, name, path)[None, :]

    stamps = np.asarray(eeg["time_stamps"], dtype=np.float64)
    first = float(stamps[0])
    data, gaps = _fill_holes(data, stamps, sfreq, f"stream {name!r} of {str(path)!r}")
    markers = []
    marker_stream = _pick_marker_stream(streams, path)
    if marker_stream is not None:
        for sample, stamp in zip(marker_stream["time_series"], marker_stream["time_stamps"], strict=True):
            values = [str(v) for v in np.atleast_1d(sample)]
            markers.append(Marker(values[0] if len(values) == 1 else ",".join(values), float(stamp) - first))
        markers.sort(key=lambda m: m.time)
    return Recording(
        data=np.ascontiguousarray(data),
        sfreq=sfreq,
        ch_names=labels,
        ch_types=types,
        units="V",
        markers=markers,
        source=str(path),
        gaps=gaps,
    )


#: A hole is a step between consecutive stamps longer than one sample period by more than this (s): the
#: daemon's default ``[eeg] timing_tolerance``, so a file read offline breaks where its replay breaks live.
HOLE_TOLERANCE = 0.010


def _fill_holes(
    data: np.ndarray, stamps: np.ndarray, sfreq: float, what: str
) -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
    """Put every sample at ``round((stamp - first) * sfreq)``: holes in the stamps become NaN rows.

    Without this, the samples after an amplifier drop-out would move up to fill the hole while the markers
    kept their times, and every epoch after it would be cut from the wrong signal. Steps backwards (a clock
    reset) cannot be laid on one time axis; they are logged and the samples kept in order.
    """
    if len(stamps) < 2:
        return data, ()
    period = 1.0 / sfreq
    steps = np.diff(stamps)
    for i in np.flatnonzero(steps < period - HOLE_TOLERANCE)[:3]:
        _log.warning(
            "%s: EEG timestamps step back by %.3f s after %.3f s; kept in order, but times after it are off",
            what,
            period - steps[i],
            stamps[i] - stamps[0],
        )
    holes = _hole_steps(stamps, sfreq)
    if not len(holes):
        return data, ()
    data, gaps, _ = _insert_holes(data, [(i + 1, round(float(steps[i]) * sfreq) - 1) for i in holes.tolist()])
    _log.info(
        "%s: %d hole(s) in the EEG (%s), filled with NaN so markers stay on their samples",
        what,
        len(gaps),
        ", ".join(f"{a / sfreq:.3f}-{b / sfreq:.3f} s" for a, b in gaps[:5]),
    )
    return data, tuple(gaps)


def _hole_steps(stamps: np.ndarray, sfreq: float) -> np.ndarray:
    """Indices ``i`` where the step from ``stamps[i]`` to ``stamps[i + 1]`` is a hole (see :data:`HOLE_TOLERANCE`)."""
    return np.flatnonzero(np.diff(stamps) > 1.0 / sfreq + HOLE_TOLERANCE)


def _info_value(info: dict[str, Any], key: str) -> str:
    """A header field of a pyxdf stream info (pyxdf wraps each in a one-element list)."""
    value = info.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    return "" if value is None else str(value)


def _channel_count(stream: dict[str, Any]) -> int:
    series = stream["time_series"]
    if isinstance(series, np.ndarray) and series.ndim == 2:
        return int(series.shape[1])
    return int(_info_value(stream["info"], "channel_count") or 0)


def _pick_eeg_stream(streams: list[dict[str, Any]], path: Path) -> dict[str, Any]:
    """The numeric stream of type EEG with most channels, else the numeric stream with most channels."""
    numeric = [s for s in streams if _info_value(s["info"], "channel_format") != "string" and len(s["time_stamps"]) > 0]
    if not numeric:
        found = ", ".join(
            f"{_info_value(s['info'], 'name')!r} ({_info_value(s['info'], 'channel_format')}, "
            f"{len(s['time_stamps'])} samples)"
            for s in streams
        )
        raise RecordingError(f"{str(path)!r} has no numeric stream with samples; streams found: {found or 'none'}")
    eeg = [s for s in numeric if _info_value(s["info"], "type").lower() == "eeg"]
    chosen = max(eeg or numeric, key=_channel_count)
    if not eeg:
        _log.warning(
            "%s has no stream of type EEG; using %r (type %r), the numeric stream with most channels",
            path,
            _info_value(chosen["info"], "name"),
            _info_value(chosen["info"], "type"),
        )
    return chosen


def _pick_marker_stream(streams: list[dict[str, Any]], path: Path) -> dict[str, Any] | None:
    """The string stream of type Markers, else the first string stream, else None."""
    strings = [s for s in streams if _info_value(s["info"], "channel_format") == "string"]
    if not strings:
        _log.info("%s has no string (marker) stream; the recording has no markers", path)
        return None
    preferred = [s for s in strings if _info_value(s["info"], "type").lower() == "markers"]
    return (preferred or strings)[0]


def _xdf_channels(info: dict[str, Any], n_channels: int) -> tuple[list[str], list[str], list[str]]:
    """Labels, lower-case types and declared units (``""`` if none) of an XDF stream's channels."""
    channels: list[Any] = []
    try:
        channels = info["desc"][0]["channels"][0]["channel"]
    except (KeyError, IndexError, TypeError):
        channels = []
    if channels and len(channels) != n_channels:
        _log.warning(
            "stream %r describes %d channels but carries %d; ignoring its channel descriptions",
            _info_value(info, "name"),
            len(channels),
            n_channels,
        )
        channels = []
    if not channels:
        return [f"ch{i + 1}" for i in range(n_channels)], ["eeg"] * n_channels, [""] * n_channels
    labels = [_info_value(ch, "label") or f"ch{i + 1}" for i, ch in enumerate(channels)]
    types = [(_info_value(ch, "type") or "eeg").lower() for ch in channels]
    units = [_info_value(ch, "unit").strip() for ch in channels]
    return labels, types, units


def _xdf_scales(units: list[str], labels: list[str], stream: str, path: Path) -> np.ndarray:
    """Per-channel factors to volts: declared voltage units converted, undeclared assumed microvolts."""
    scales = np.ones(len(units))
    undeclared, other = [], []
    for i, unit in enumerate(units):
        if not unit:
            scales[i] = 1e-6
            undeclared.append(labels[i])
            continue
        try:
            scales[i] = volts_per_unit(unit)
        except ValueError:
            other.append(f"{labels[i]} ({unit})")
    if undeclared:
        _log.warning(
            "stream %r of %s declares no unit for %d channels (%s); assuming microvolts, the XDF/LSL convention",
            stream,
            path,
            len(undeclared),
            _shorten(undeclared),
        )
    if other:
        _log.warning(
            "stream %r of %s has channels in non-voltage units, kept as they are: %s", stream, path, _shorten(other)
        )
    return scales


def _shorten(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# --------------------------------------------------------------------------------------------------------------------
# Whole XDF sessions (every stream, as recorded)


@dataclass
class XdfStream:
    """One stream of an XDF file as recorded: header fields, metadata and clock-corrected samples.

    Attributes
    ----------
    name, type, source_id : str
        From the stream header.
    channel_count : int
    nominal_srate : float
        Hz; 0 for an irregular stream.
    channel_format : str
        XDF/LSL format name: ``float32``, ``double64``, ``int8``/``16``/``32``/``64`` or ``string``.
    desc : dict
        The header's ``<desc>`` as pyxdf parses it (tag → list of text or nested dicts); empty if none.
    time_series : ndarray, shape (n_samples, channel_count), or list of lists of str
        The samples, in the file's units.
    time_stamps : ndarray, shape (n_samples,)
        LSL seconds, clock-corrected (and dejittered for regular streams) by :func:`pyxdf.load_xdf`.
    """

    name: str
    type: str
    source_id: str
    channel_count: int
    nominal_srate: float
    channel_format: str
    desc: dict[str, Any]
    time_series: Any
    time_stamps: np.ndarray

    @property
    def n_samples(self) -> int:
        return len(self.time_stamps)

    @property
    def channels(self) -> list[dict[str, str]]:
        """Per-channel metadata (``label``, ``type``, ``unit`` ... as text), empty when the header has none."""
        try:
            entries = self.desc["channels"][0]["channel"]
        except (KeyError, IndexError, TypeError):
            return []
        return [{k: _info_value(ch, k) for k in ch} for ch in entries if isinstance(ch, dict)]

    def marker_counts(self) -> dict[str, int]:
        """Marker value → count for a string stream (channels joined with ``,``); empty for numeric streams."""
        if self.channel_format != "string":
            return {}
        counts: dict[str, int] = {}
        for sample in self.time_series:
            value = ",".join(str(v) for v in sample)
            counts[value] = counts.get(value, 0) + 1
        return counts


def read_xdf_streams(path: str | Path) -> list[XdfStream]:
    """Every stream of an XDF file, on clock-corrected timestamps (pyxdf's defaults).

    Raises
    ------
    RecordingError
        If the file is missing or pyxdf cannot read it.
    """
    import pyxdf

    path = Path(path)
    if not path.exists():
        raise RecordingError(f"XDF file {str(path)!r} does not exist (resolved to {str(path.resolve())!r})")
    try:
        raw_streams, _header = pyxdf.load_xdf(str(path))
    except Exception as exc:  # pyxdf raises many types (struct.error, ValueError, OSError ...) for bad files
        raise RecordingError(f"cannot read {str(path)!r} with pyxdf.load_xdf: {exc}") from exc
    streams = []
    for raw in raw_streams:
        info = raw["info"]
        desc = info.get("desc") or [None]
        fmt = _info_value(info, "channel_format") or "float32"
        stamps = np.asarray(raw["time_stamps"], dtype=np.float64)
        series = raw["time_series"]
        count = int(_info_value(info, "channel_count") or 0)
        if fmt != "string":
            series = np.asarray(series).reshape(len(stamps), count) if len(stamps) else np.zeros((0, count))
        else:
            series = [[str(v) for v in sample] for sample in series]
        streams.append(
            XdfStream(
                name=_info_value(info, "name"),
                type=_info_value(info, "type"),
                source_id=_info_value(info, "source_id"),
                channel_count=count,
                nominal_srate=float(_info_value(info, "nominal_srate") or 0.0),
                channel_format=fmt,
                desc=desc[0] if isinstance(desc[0], dict) else {},
                time_series=series,
                time_stamps=stamps,
            )
        )
    return streams


def select_xdf_streams(streams: list[XdfStream], names: Sequence[str] | None, source: str) -> list[XdfStream]:
    """The streams named in ``names`` (all when None), in file order.

    Raises
    ------
    RecordingError
        If a name matches no stream (the message lists the streams there are).
    """
    if not names:
        return list(streams)
    available = [s.name for s in streams]
    missing = [n for n in names if n not in available]
    if missing:
        raise RecordingError(
            f"{source} has no stream named {', '.join(map(repr, missing))}; its streams: "
            f"{', '.join(map(repr, available)) or 'none'} (use `bci-stream inspect FILE.xdf` to list them)"
        )
    return [s for s in streams if s.name in names]


def describe_xdf(streams: list[XdfStream], *, max_values: int = 20) -> list[str]:
    """Lines for ``bci-stream inspect FILE.xdf``: one block per stream; times relative to the file's first stamp."""
    firsts = [float(s.time_stamps[0]) for s in streams if s.n_samples]
    origin = min(firsts) if firsts else 0.0
    lines = []
    for s in streams:
        rate = f"{s.nominal_srate:g} Hz" if s.nominal_srate > 0 else "irregular"
        span = (
            f"first {s.time_stamps[0]:.3f} s, last {s.time_stamps[-1]:.3f} s (LSL clock; "
            f"+{s.time_stamps[0] - origin:.3f} … +{s.time_stamps[-1] - origin:.3f} s into the file)"
            if s.n_samples
            else "no samples"
        )
        lines.append(
            f"{s.name!r}: type {s.type!r}, {s.channel_count} channel{'s' if s.channel_count != 1 else ''} "
            f"{s.channel_format}, {rate}, {s.n_samples} samples; {span}"
        )
        if s.nominal_srate > 0 and s.n_samples > 1:
            steps = np.diff(s.time_stamps)
            holes = _hole_steps(s.time_stamps, s.nominal_srate)
            if len(holes):
                period = 1.0 / s.nominal_srate
                where = ", ".join(
                    f"{steps[i] - period:.3f} s missing after +{s.time_stamps[i] - origin:.3f} s" for i in holes[:3]
                )
                more = f" and {len(holes) - 3} more" if len(holes) > 3 else ""
                lines.append(f"    holes: {len(holes)} ({where}{more}); read as NaN, epochs touching them are dropped")
        labels = [ch.get("label", "") for ch in s.channels]
        if any(labels):
            units = sorted({ch.get("unit", "") for ch in s.channels} - {""})
            lines.append(f"    channels: {_shorten(labels)}" + (f"; units {', '.join(units)}" if units else ""))
        counts = _json_summary(s.marker_counts()) or s.marker_counts()
        if counts:
            lines.append(f"    markers: {s.n_samples} ({len(counts)} distinct)")
            for value, n in sorted(counts.items(), key=lambda kv: -kv[1])[:max_values]:
                lines.append(f"      {n:5d}  {value if len(value) <= 70 else value[:69] + '…'}")
            if len(counts) > max_values:
                lines.append(f"      ... and {len(counts) - max_values} more values")
    return lines


def _json_summary(counts: dict[str, int]) -> dict[str, int]:
    """Counts of JSON payloads (bci-stream's Predictions stream) by ``topic`` and label/reason; {} otherwise."""
    import json

    summary: dict[str, int] = {}
    for value, n in counts.items():
        try:
            payload = json.loads(value)
        except ValueError:
            return {}
        if not isinstance(payload, dict):
            return {}
        key = " ".join(str(payload[k]) for k in ("topic", "label", "reason") if k in payload) or "{...}"
        summary[key] = summary.get(key, 0) + n
    return summary


def crop_recording(recording: Recording, start: float = 0.0, duration: float | None = None) -> Recording:
    """The part ``[start, start + duration)`` s of ``recording``; markers shifted to count from the new start.

    Raises
    ------
    RecordingError
        If ``start`` is negative or beyond the data, or ``duration`` is not > 0.
    """
    if start < 0 or start >= recording.duration:
        raise RecordingError(
            f"start={start:g} s is outside {recording.source!r}, which lasts {recording.duration:.3f} s; "
            "give --start between 0 and its length"
        )
    if duration is not None and duration <= 0:
        raise RecordingError(f"duration={duration:g} s is invalid: it must be > 0")
    first = round(start * recording.sfreq)
    end = (
        recording.n_samples if duration is None else min(recording.n_samples, first + round(duration * recording.sfreq))
    )
    t_first, t_end = first / recording.sfreq, end / recording.sfreq
    markers = [Marker(m.value, m.time - t_first) for m in recording.markers if t_first <= m.time < t_end]
    gaps = tuple((max(a, first) - first, min(b, end) - first) for a, b in recording.gaps if a < end and b > first)
    return Recording(
        data=recording.data[first:end],
        sfreq=recording.sfreq,
        ch_names=list(recording.ch_names),
        ch_types=list(recording.ch_types),
        units=recording.units,
        markers=markers,
        source=recording.source,
        gaps=gaps,
    )
