"""Real recordings → labelled epochs, cut and filtered by the daemon's own code.

A user brings recordings (FIF, EDF, EEGLAB, XDF ...) whose classes live in the markers: in a regex group
(``stim/(?P<label>face|house)``), in an EEGLAB event field (``square`` + ``position`` = 1 or 2), or in a table
from marker values to class names (``1=house,2=face``). :func:`load_epochs` reads them, derives the model input
from an epoch window in seconds (``n_times`` follows from the rate), caps a band the rate cannot carry (and says
so), and cuts every epoch with :func:`bci_stream.pipeline.epochs_from_recording` — the causal filter runs over the
continuous recording exactly as it runs live, so offline equals online.

Each epoch keeps the recording it came from, the subject (``sub-XX`` in the file name) and a hash of its raw
samples, which :mod:`training.leaks` uses to find copied recordings and epochs across folds.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bci_stream.card import InputSpec, Preprocessing
from bci_stream.errors import BciStreamError
from bci_stream.pipeline import epochs_from_recording
from bci_stream.recordings import Recording, read_recording

log = logging.getLogger(__name__)

#: Highest band edge we accept, as a share of the Nyquist frequency: a 4th-order Butterworth needs room above it.
MAX_BAND_SHARE = 0.9


class RealDataError(BciStreamError):
    """The recordings, the label rule or the epoch window cannot give a labelled training set (says why)."""


# --------------------------------------------------------------------------------------------------- label rule


@dataclass(frozen=True)
class LabelRule:
    """Where a marker's class is: exactly one of ``regex``, ``field`` or ``mapping``.

    ``regex``: named group ``label`` (a regex without groups: the whole match; groups without one named
    ``label`` are refused, as the daemon's ``[markers] label`` refuses them). ``field``: an EEGLAB event field,
    read into the marker as ``type/field=value`` (see :func:`bci_stream.recordings.read_recording`).
    ``mapping``: marker value → class name (exact match).
    """

    regex: str | None = None
    field: str | None = None
    mapping: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        given = [n for n in ("regex", "field", "mapping") if getattr(self, n)]
        if len(given) != 1:
            raise RealDataError(
                f"give exactly one label rule (--label REGEX, --label-field FIELD or --label-map A=x,B=y); got "
                f"{', '.join(given) or 'none'}"
            )
        if self.regex:
            try:
                pattern = re.compile(self.regex)
            except re.error as exc:
                raise RealDataError(f"label regex {self.regex!r} is not a valid regular expression: {exc}") from exc
            if pattern.groups and "label" not in pattern.groupindex:
                # The card keeps the rule and the daemon's [markers] label reads the class from the group named
                # 'label': a rule that works here by group number would score nothing live.
                named = re.sub(r"(?<!\\)\((?!\?)", "(?P<label>", self.regex, count=1)
                raise RealDataError(
                    f"label regex {self.regex!r} has a group but none named 'label'; name the class's group, "
                    f"e.g. {named!r}, so the daemon reads the same class from the model card"
                )

    @classmethod
    def parse_mapping(cls, text: str) -> LabelRule:
        """``"1=house,2=face"`` → a mapping rule (the last ``=`` splits, so values may hold ``=``)."""
        pairs = [p for p in text.split(",") if p.strip()]
        mapping = {}
        for pair in pairs:
            if "=" not in pair:
                raise RealDataError(f"--label-map entry {pair!r} is not MARKER=CLASS (e.g. 1=house,2=face)")
            key, value = pair.rsplit("=", 1)
            mapping[key.strip()] = value.strip()
        return cls(mapping=mapping)

    @property
    def event_fields(self) -> list[str] | None:
        return [self.field] if self.field else None

    @property
    def daemon_regex(self) -> str | None:
        """A regex with a ``label`` group the daemon's ``[markers] label`` accepts (None for a mapping)."""
        if self.field:
            return rf"(?:^|/){re.escape(self.field)}=(?P<label>[^/]+)"
        if self.regex:  # a named 'label' group, or no group at all (the whole match: __post_init__)
            return self.regex if re.compile(self.regex).groups else f"(?P<label>{self.regex})"
        return None

    @property
    def cut_regex(self) -> str:
        """A regex whose ``label`` group is a marker's raw class, for
        :func:`training.fit.cut_epochs`; for a mapping, the marker values themselves, matched whole."""
        if self.mapping is not None:
            return "^(?P<label>" + "|".join(re.escape(k) for k in self.mapping) + ")$"
        return self.daemon_regex or self.regex or ""

    def card_input(self, events: str | None, event_fields: Sequence[str] | None = None) -> dict[str, object]:
        """The card's ``input`` fields for this rule: what the daemon reads to choose the markers and score them live
        without extra flags, and what replay/demo read into the markers (fit, distil and crossval --export alike).

        Parameters
        ----------
        events : str or None
            Regex of the markers that get an epoch (``input.events``).
        event_fields : sequence of str, optional
            The EEGLAB event fields the training recordings were read with, in order (``--event-fields``,
            ``[data] event_fields`` plus ``label_field``); default: the rule's own field, if any.

        Returns
        -------
        dict
            ``events``, ``label``, ``label_map`` and ``event_fields`` for ``InputSpec.model_copy(update=...)``.
        """
        # recorded, not left to be parsed back out of the label rule: a custom regex or a map over field markers
        # cannot name its fields, and replay/demo must build the very markers the rule was written for
        fields = list(event_fields) if event_fields else self.event_fields
        return {"events": events, "label": self.daemon_regex, "label_map": dict(self.mapping) if self.mapping else None,
                "event_fields": fields}  # fmt: skip

    def describe(self) -> dict[str, object]:
        """The rule as the card records it."""
        if self.mapping:
            return {"map": dict(self.mapping)}
        if self.field:
            return {"field": self.field, "regex": self.daemon_regex}
        return {"regex": self.regex}

    def label_of(self, value: str) -> str | None:
        if self.mapping is not None:
            return self.mapping.get(value)
        pattern = re.compile(self.daemon_regex or self.regex or "")
        m = pattern.search(value)
        if m is None:
            return None
        return m.group("label")


# --------------------------------------------------------------------------------------------------- window, band


def window_samples(tmin: float, tmax: float, sfreq: float) -> int:
    """Samples in ``[tmin, tmax)`` at ``sfreq`` Hz (rounded; at least 2)."""
    if not tmax > tmin:
        raise RealDataError(f"epoch window tmin {tmin:g} s .. tmax {tmax:g} s: tmax must be after tmin")
    n = round((tmax - tmin) * sfreq)
    if n < 2:
        raise RealDataError(f"epoch window {tmin:g}..{tmax:g} s holds {n} samples at {sfreq:g} Hz; widen it")
    return n


def capped_band(
    bandpass: tuple[float | None, float | None] | None,
    sfreq: float,
    *,
    explicit: bool,
    source: str = "the data",
    option: str = "--bandpass",
) -> tuple[float | None, float | None] | None:
    """The band to train with at ``sfreq`` Hz.

    A default band (``explicit=False``) whose high edge the rate cannot carry is capped to
    :data:`MAX_BAND_SHARE` × Nyquist, with a log message saying so. A band the user asked for is refused instead,
    with a hint that names ``option``: a command-line flag (``--bandpass``) or a config key (``[data] bandpass``).
    """
    if bandpass is None:
        return None
    low, high = bandpass
    nyquist = sfreq / 2
    limit = round(MAX_BAND_SHARE * nyquist, 1)
    if high is None or high <= limit:
        return bandpass
    lo = low if low is not None else 1
    verb = "pass" if option.startswith("--") else "set"  # a flag is passed, a config key is set

    def fix(high_edge: float) -> str:
        if verb == "pass":
            return f"pass {option} {lo:g} {high_edge:g}"
        return f"set {option} = [{float(lo)!r}, {float(high_edge)!r}]"

    if explicit:
        raise RealDataError(
            f"{source} samples at {sfreq:g} Hz (Nyquist {nyquist:g} Hz): the band {low:g}-{high:g} Hz cannot be "
            f"filtered; {fix(limit)} (high edge at most {limit:g} Hz)"
        )
    if low is not None and low >= limit:
        raise RealDataError(
            f"{source} at {sfreq:g} Hz cannot carry the default band {low:g}-{high:g} Hz; {verb} {option} (a band "
            f"below {limit:g} Hz)"
        )
    log.warning(
        "band %g-%g Hz is above what %g Hz can carry: capped to %g-%g Hz (%g x Nyquist); %s to choose",
        low or 0, high, sfreq, low or 0, limit, MAX_BAND_SHARE, f"{verb} {option}",
    )  # fmt: skip
    return (low, limit)


# --------------------------------------------------------------------------------------------------- the epochs


@dataclass
class RealEpochs:
    """Labelled epochs of several recordings, in recording then time order.

    ``X`` is (n, n_times, n_chans) float64 volts, filtered, not normalised; ``y`` indexes ``classes``;
    ``recording`` the index into ``sources`` per epoch; ``subject`` the subject id per epoch; ``epoch_hashes``
    sha256 of each epoch's raw samples (float32); ``recording_hashes`` one content hash per recording and
    ``file_hashes`` the sha256 of each file (provenance).
    """

    X: np.ndarray
    y: np.ndarray
    classes: list[str]
    recording: np.ndarray
    subject: list[str]
    sources: list[str]
    times: np.ndarray
    input_spec: InputSpec
    preprocessing: Preprocessing
    events: str | None
    rule: LabelRule
    epoch_hashes: list[str] = field(default_factory=list)
    recording_hashes: list[str] = field(default_factory=list)
    file_hashes: list[str] = field(default_factory=list)
    n_dropped: int = 0


def subject_of(source: str) -> str:
    """``sub-01`` from a BIDS-like file name, else the file's stem (one subject per file)."""
    m = re.search(r"sub-([A-Za-z0-9]+)", Path(source).name)
    return m.group(1) if m else Path(source).stem


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def recording_content_hash(rec: Recording) -> str:
    """sha256 of a recording's samples (float32, so a copy re-saved at single precision still matches) and markers."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(rec.data, dtype=np.float32).tobytes())
    h.update(f"{rec.sfreq:.6f}".encode())
    for m in rec.markers:
        h.update(f"{m.value}@{m.time:.6f}\n".encode())
    return h.hexdigest()


def load_epochs(
    paths: Sequence[str | Path],
    *,
    events: str | None,
    rule: LabelRule,
    tmin: float,
    tmax: float,
    channels: Sequence[str] | None = None,
    bandpass: tuple[float | None, float | None] | None = (1.0, 30.0),
    bandpass_explicit: bool = True,
    notch: float | None = None,
    filter_order: int = 4,
) -> RealEpochs:
    """Read ``paths`` and cut labelled epochs ``[t0 + tmin, t0 + tmax)`` with the daemon's pipeline.

    Every recording must have the first one's rate; ``channels`` defaults to the first one's EEG channels.
    Markers that match ``events`` but that the label rule cannot label are an error naming the marker.
    """
    if not paths:
        raise RealDataError("no recordings given")
    recs = [read_recording(p, event_fields=rule.event_fields) for p in paths]
    first = recs[0]
    for rec in recs[1:]:
        if rec.sfreq != first.sfreq:
            raise RealDataError(f"{rec.source} samples at {rec.sfreq:g} Hz, {first.source} at {first.sfreq:g} Hz")
    if channels is None:
        channels = [c for c, t in zip(first.ch_names, first.ch_types, strict=True) if t == "eeg"]
    for rec in recs:
        missing = [c for c in channels if c not in rec.ch_names]
        if missing:
            raise RealDataError(f"{rec.source} lacks channels {missing}; it has {rec.ch_names}")
    band = capped_band(bandpass, first.sfreq, explicit=bandpass_explicit, source=first.source)
    spec = InputSpec(
        sfreq=first.sfreq, n_times=window_samples(tmin, tmax, first.sfreq), tmin=tmin, channels=list(channels),
        units="V",
    )  # fmt: skip
    prep = Preprocessing(bandpass=band, notch=notch, filter=f"causal-butter-{filter_order}")
    xs, labels, rec_index, times, hashes = [], [], [], [], []
    n_dropped = 0
    for r, rec in enumerate(recs):
        es = epochs_from_recording(rec, spec, prep, events=events)
        n_dropped += len(es.drops)
        chan_idx = [rec.ch_names.index(c) for c in channels]
        for i, marker in enumerate(es.markers):
            label = rule.label_of(marker.value)
            if label is None:
                hint = "" if rule.field else "; for an EEGLAB event field use --label-field FIELD"
                raise RealDataError(
                    f"{rec.source}: marker {marker.value!r} matches events {events!r} but the label rule "
                    f"{rule.describe()} gives it no class{hint}"
                )
            labels.append(label)
            rec_index.append(r)
            times.append(marker.time)
            i0 = round(es.starts[i] * rec.sfreq)
            raw = rec.data[i0 : i0 + spec.n_times, chan_idx]
            hashes.append(hashlib.sha256(np.ascontiguousarray(raw, dtype=np.float32).tobytes()).hexdigest())
        xs.append(es.X)
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise RealDataError(f"the label rule {rule.describe()} gives {len(classes)} class(es) {classes}; need >= 2")
    index = {c: i for i, c in enumerate(classes)}
    log.info(
        "%d epochs (%d dropped) from %d recording(s), classes %s, %d samples x %d channels at %g Hz",
        len(labels), n_dropped, len(recs), classes, spec.n_times, len(channels), spec.sfreq,
    )  # fmt: skip
    return RealEpochs(
        X=np.concatenate(xs),
        y=np.array([index[label] for label in labels], dtype=np.int64),
        classes=classes,
        recording=np.array(rec_index, dtype=np.int64),
        subject=[subject_of(recs[r].source) for r in rec_index],
        sources=[rec.source for rec in recs],
        times=np.array(times),
        input_spec=spec,
        preprocessing=prep,
        events=events,
        rule=rule,
        epoch_hashes=hashes,
        recording_hashes=[recording_content_hash(rec) for rec in recs],
        file_hashes=[file_sha256(p) for p in paths],
        n_dropped=n_dropped,
    )
