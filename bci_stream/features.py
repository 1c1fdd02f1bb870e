"""Band-power features for valence models (METHODS.md §4), shared by training and the daemon.

Offline equals online: training computes its features with :func:`features_from_recording`, which runs
the very :class:`FeaturePipeline` the daemon feeds with LSL chunks, so both see the same numbers.

The feature contract
--------------------
From a raw stream to one feature vector, at the *stream's own rate* (nothing is resampled):

1. pick the card's channels by name (:func:`bci_stream.signal.channel_indices`), convert to the card's units;
2. causal Butterworth band-pass (card ``preprocessing``, 0.3–45 Hz, order 4, second-order sections, state
   kept between chunks and started as if the signal had been constant before its first sample) —
   :class:`bci_stream.signal.Preprocessor`;
3. average reference over the card's channels (subtract the mean of those channels, sample by sample), when
   ``features.reference == "average"``;
4. windows of ``W = round(window × sfreq)`` samples whose ends lie on a fixed grid of sample indices counted from
   the first sample the pipeline saw: window ``k`` covers samples ``[e_k − W, e_k)`` with
   ``e_k = W + round_half_up(k × hop × sfreq)``, k = 0, 1, 2 … (with the defaults at 128 Hz: ends 256, 288, …);
   its time is the timestamp of its last sample plus ``1 / sfreq`` (offline 2.0 s, 2.25 s, … from the start);
5. per channel, Welch's PSD inside the window (``scipy.signal.welch(window="hann", nperseg=S, noverlap=S // 2,
   detrend="constant")``): Hann segments of ``S = round(segment × sfreq)`` samples, 50 % overlap, mean removed per
   segment, periodograms averaged (3 segments for a 2 s window of 1 s segments; constant scale factors cancel in
   step 6), with scipy's one-sided doubling undone (every bin weighs |X_j|², DC and Nyquist included: it only
   matters for a band that contains 0 Hz or the Nyquist frequency); bins are ``j / segment`` Hz whatever the rate,
   so features are comparable across rates;
6. band power = sum of the PSD bins with ``low ≤ f < high``; relative band power = band power / sum over all
   bands of that channel (0 for every band of a channel without power);
7. feature order is **channel-major**: ``[ch0·band0, ch0·band1, …, ch0·band5, ch1·band0, …]``, i.e. index
   ``channel × n_bands + band`` (:func:`feature_names`).

A valence model (card ``task = "valence"``) then takes the last ``input.n_times`` consecutive feature vectors as
float32 ``(1, n_times, n_features)``, oldest first (:class:`FeatureContext`), and the daemon publishes the last
step of its ``(1, n_times)`` output with the time of the newest window. Windows touching a non-finite sample are
flagged (``FeatureFrames.finite``) and empty the context; after a stream gap, reset the pipeline and the context.

Arrays are ``(n_samples, n_channels)``, as LSL delivers them. Pure numpy/scipy: no torch, no files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from .card import FeatureSpec, InputSpec, ModelCard, Preprocessing
from .errors import ModelCardError
from .recordings import Recording
from .signal import Preprocessor, channel_indices

#: METHODS.md §4: delta, theta, alpha, low beta, high beta, gamma (Hz, ``[low, high)``).
DEFAULT_BANDS: tuple[tuple[float, float], ...] = (
    (0.3, 4.0),
    (4.0, 8.0),
    (8.0, 12.0),
    (12.0, 18.0),
    (18.0, 30.0),
    (30.0, 45.0),
)
DEFAULT_BANDPASS = (0.3, 45.0)
#: Windows computed together in one Welch call (bounds memory on long recordings at high rates).
_BLOCK = 64


def default_feature_spec(
    bands: Sequence[tuple[float, float]] = DEFAULT_BANDS,
    *,
    window: float = 2.0,
    hop: float = 0.25,
    segment: float = 1.0,
    reference: str = "average",
) -> FeatureSpec:
    """The METHODS.md §4 features: six relative band powers, 2 s window, 0.25 s hop, 1 s Welch segments."""
    spec = FeatureSpec(
        bands=[(float(lo), float(hi)) for lo, hi in bands],
        window=window,
        hop=hop,
        segment=segment,
        reference=reference,  # validated by pydantic
    )
    validate_feature_spec(spec)
    return spec


def default_preprocessing() -> Preprocessing:
    """The causal 0.3–45 Hz 4th-order Butterworth band-pass the features are computed after."""
    return Preprocessing(bandpass=DEFAULT_BANDPASS)


def validate_feature_spec(spec: FeatureSpec, *, target: str = "the feature spec") -> None:
    """Refuse a spec that cannot give features (empty or reversed bands, segment longer than window ...).

    Raises
    ------
    ModelCardError
        Naming the field and the value at fault.
    """
    if not spec.bands:
        raise ModelCardError(f"{target}: features.bands is empty; give at least one [low, high] band in Hz")
    for lo, hi in spec.bands:
        if not 0 <= lo < hi:
            raise ModelCardError(f"{target}: band [{lo:g}, {hi:g}] Hz must satisfy 0 <= low < high")
    if spec.window <= 0 or spec.hop <= 0 or spec.segment <= 0:
        raise ModelCardError(
            f"{target}: window ({spec.window:g} s), hop ({spec.hop:g} s) and segment ({spec.segment:g} s) must be > 0"
        )
    if spec.segment > spec.window:
        raise ModelCardError(
            f"{target}: Welch segment ({spec.segment:g} s) is longer than the window ({spec.window:g} s)"
        )


def n_features(spec: FeatureSpec, n_channels: int) -> int:
    return n_channels * len(spec.bands)


def feature_names(channels: Sequence[str], spec: FeatureSpec) -> list[str]:
    """``["Fp1 0.3-4Hz", "Fp1 4-8Hz", …]``: the channel-major feature order."""
    return [f"{ch} {lo:g}-{hi:g}Hz" for ch in channels for lo, hi in spec.bands]


def highest_band_edge(spec: FeatureSpec) -> float:
    return max(hi for _, hi in spec.bands)


def window_samples(spec: FeatureSpec, sfreq: float) -> tuple[int, int]:
    """``(W, S)``: samples per window and per Welch segment at ``sfreq``."""
    return round(spec.window * sfreq), round(spec.segment * sfreq)


def window_end(k: int | np.ndarray, spec: FeatureSpec, sfreq: float) -> np.ndarray:
    """Exclusive end sample index of window ``k`` (0-based) on the fixed grid: ``W + round_half_up(k·hop·sfreq)``."""
    w, _ = window_samples(spec, sfreq)
    return w + np.floor(np.asarray(k, dtype=np.float64) * spec.hop * sfreq + 0.5).astype(np.int64)


def _band_masks(spec: FeatureSpec, sfreq: float) -> tuple[int, np.ndarray]:
    """Segment length and a (n_bands, n_bins) 0/1 matrix that sums PSD bins into bands."""
    _, s = window_samples(spec, sfreq)
    freqs = np.fft.rfftfreq(s, 1.0 / sfreq)
    masks = np.stack([(freqs >= lo) & (freqs < hi) for lo, hi in spec.bands]).astype(np.float64)
    empty = [f"[{lo:g}, {hi:g}]" for (lo, hi), m in zip(spec.bands, masks, strict=True) if not m.any()]
    if empty:
        raise ModelCardError(
            f"band(s) {', '.join(empty)} Hz contain no Welch bin at {sfreq:g} Hz with {spec.segment:g} s segments "
            f"(bins every {sfreq / s:g} Hz up to {freqs[-1]:g} Hz); widen the bands or lengthen the segment"
        )
    return s, masks


def band_power_windows(windows: np.ndarray, sfreq: float, spec: FeatureSpec) -> np.ndarray:
    """Relative band power of many windows at once.

    Parameters
    ----------
    windows : ndarray, shape (n_windows, n_times, n_channels)
        Already filtered and referenced.
    sfreq : float
        Their sampling rate (Hz).
    spec : FeatureSpec
        Bands and Welch segment; ``n_times`` is taken as the window length.

    Returns
    -------
    ndarray, shape (n_windows, n_channels × n_bands)
        Channel-major (see the module docstring), float64.
    """
    windows = np.asarray(windows, dtype=np.float64)
    if windows.ndim != 3:
        raise ValueError(f"windows must be (n_windows, n_times, n_channels), got shape {windows.shape}")
    s, masks = _band_masks(spec, sfreq)
    n_win, n_times, n_ch = windows.shape
    if n_times < s:
        raise ValueError(f"a window of {n_times} samples is shorter than one Welch segment ({s} samples)")
    # scipy's one-sided density doubles every bin but DC and (for even S) Nyquist; the contract (step 5) weighs
    # all bins alike, as the band powers were trained on, so undo the doubling. Constant scale factors cancel.
    _, psd = sps.welch(
        windows, fs=sfreq, window="hann", nperseg=s, noverlap=s // 2, detrend="constant", axis=1, average="mean"
    )  # (n_win, n_bins, n_ch)
    psd[:, 1 : None if s % 2 else -1] /= 2.0
    psd = np.swapaxes(psd, 1, 2)  # (n_win, n_ch, n_bins)
    power = psd @ masks.T  # (n_win, n_ch, n_bands)
    total = power.sum(axis=2, keepdims=True)
    relative = np.divide(power, total, out=np.zeros_like(power), where=total > 0)
    return relative.reshape(n_win, n_ch * len(spec.bands))


def band_power_features(window: np.ndarray, sfreq: float, spec: FeatureSpec) -> np.ndarray:
    """Relative band power of one window ``(n_times, n_channels)`` → ``(n_channels × n_bands,)``, channel-major.

    The window must already be filtered and referenced (see :func:`average_reference`).
    """
    window = np.asarray(window, dtype=np.float64)
    if window.ndim != 2:
        raise ValueError(f"window must be (n_times, n_channels), got shape {window.shape}")
    return band_power_windows(window[None], sfreq, spec)[0]


def average_reference(x: np.ndarray) -> np.ndarray:
    """Subtract the mean over channels from every sample of ``x`` (n_samples, n_channels)."""
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean(axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------------------ checks


def check_feature_stream(
    spec: FeatureSpec,
    stream_sfreq: float,
    stream_channels: Sequence[str],
    channels: Sequence[str],
    *,
    source: str = "the stream",
    target: str = "the valence model",
) -> np.ndarray:
    """Refuse a stream that cannot give the features a valence model was trained on; return the channel picks.

    Raises
    ------
    ModelCardError
        Naming both sides: the stream has fewer channels than the model needs, lacks some of them, or
        samples too slowly to carry the highest band edge (its Nyquist frequency must exceed it).
    """
    validate_feature_spec(spec, target=target)
    if len(stream_channels) < len(channels):
        raise ModelCardError(
            f"{source} has {len(stream_channels)} channels but {target} needs {len(channels)} "
            f"({', '.join(list(channels)[:8])}{' ...' if len(channels) > 8 else ''}); "
            "use a model trained on this montage"
        )
    picks = channel_indices(stream_channels, channels, source=source, target=target)
    high = highest_band_edge(spec)
    nyquist = stream_sfreq / 2
    if stream_sfreq <= 0 or nyquist <= high:
        raise ModelCardError(
            f"{source} samples at {stream_sfreq:g} Hz (Nyquist {nyquist:g} Hz) but {target} uses band power up "
            f"to {high:g} Hz; stream at more than {2 * high:g} Hz"
        )
    _band_masks(spec, stream_sfreq)  # every band has at least one bin at this rate
    w, s = window_samples(spec, stream_sfreq)
    if s < 2 or w < s:
        raise ModelCardError(
            f"{source} at {stream_sfreq:g} Hz gives {w}-sample windows and {s}-sample Welch segments; "
            f"{target} needs a faster stream"
        )
    return picks


# --------------------------------------------------------------------------------------------------- streaming


@dataclass
class FeatureFrames:
    """Feature vectors emitted by one push: ``times`` (k,), ``X`` (k, n_features), ``finite`` (k,), ``ends`` (k,).

    ``times`` is the timestamp of each window's last sample + 1/sfreq; ``ends`` the exclusive end sample index
    counted from the first sample since construction or :meth:`FeatureStream.reset`; ``finite`` is False for a
    window that touches a sample marked non-finite (its features come from held values and should be dropped).
    """

    times: np.ndarray
    X: np.ndarray
    finite: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.times)

    @classmethod
    def empty(cls, n_features: int) -> FeatureFrames:
        return cls(np.zeros(0), np.zeros((0, n_features)), np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64))

    @classmethod
    def concat(cls, frames: Sequence[FeatureFrames], n_features: int) -> FeatureFrames:
        if not frames:
            return cls.empty(n_features)
        return cls(
            np.concatenate([f.times for f in frames]),
            np.concatenate([f.X for f in frames]),
            np.concatenate([f.finite for f in frames]),
            np.concatenate([f.ends for f in frames]),
        )


class FeatureStream:
    """Filtered, referenced chunks in; a feature vector every hop out, on a fixed grid of sample indices.

    Feeding a signal in one piece or in any chunking gives the same windows and the same values.

    Parameters
    ----------
    spec : FeatureSpec
        Bands, window, hop, segment (the reference is applied *before* this class; see :class:`FeaturePipeline`).
    sfreq : float
        Sampling rate of the chunks (Hz).
    n_channels : int
        Channels per sample.
    """

    def __init__(self, spec: FeatureSpec, sfreq: float, n_channels: int) -> None:
        validate_feature_spec(spec)
        self.spec = spec
        self.sfreq = float(sfreq)
        self.n_channels = n_channels
        self.n_features = n_features(spec, n_channels)
        self.window, self.segment = window_samples(spec, self.sfreq)
        _band_masks(spec, self.sfreq)  # fail now, not on the first window
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next sample is sample 0 of a new grid (call it after a stream gap)."""
        self.n_seen = 0  # samples pushed since the grid started
        self.n_emitted = 0  # windows emitted: the next one is window k = n_emitted
        self._buf = np.zeros((0, self.n_channels))
        self._times = np.zeros(0)
        self._finite = np.zeros(0, dtype=bool)

    def next_end(self) -> int:
        """Exclusive end sample index of the next window to be emitted."""
        return int(window_end(self.n_emitted, self.spec, self.sfreq))

    def push(self, samples: np.ndarray, timestamps: np.ndarray, finite: np.ndarray | None = None) -> FeatureFrames:
        """Add ``samples`` (n, n_channels) with ``timestamps`` (n,); return the windows completed by them.

        ``finite`` (n,) marks samples that were finite before the preprocessor repaired them (default: all).
        """
        x = np.asarray(samples, dtype=np.float64)
        t = np.asarray(timestamps, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise ValueError(f"samples must be (n, {self.n_channels}), got shape {x.shape}")
        if len(t) != len(x):
            raise ValueError(f"{len(x)} samples but {len(t)} timestamps")
        ok = np.ones(len(x), dtype=bool) if finite is None else np.asarray(finite, dtype=bool)
        first = self.n_seen - len(self._buf)  # sample index of self._buf[0]
        buf = np.concatenate([self._buf, x]) if len(self._buf) else x
        times = np.concatenate([self._times, t]) if len(self._times) else t
        oks = np.concatenate([self._finite, ok]) if len(self._finite) else ok
        self.n_seen += len(x)

        # windows whose end falls in (previous n_seen, n_seen]
        ends = []
        k = self.n_emitted
        while True:
            end = int(window_end(k, self.spec, self.sfreq))
            if end > self.n_seen:
                break
            ends.append(end)
            k += 1
        frames = []
        for i in range(0, len(ends), _BLOCK):
            block = np.asarray(ends[i : i + _BLOCK], dtype=np.int64)
            stops = block - first  # exclusive, into buf
            starts = stops - self.window
            windows = np.stack([buf[a:b] for a, b in zip(starts, stops, strict=True)])
            feats = band_power_windows(windows, self.sfreq, self.spec)
            win_ok = np.array([bool(oks[a:b].all()) for a, b in zip(starts, stops, strict=True)])
            win_t = times[stops - 1] + 1.0 / self.sfreq
            frames.append(FeatureFrames(win_t, feats, win_ok, block))
        self.n_emitted = k

        keep = min(len(buf), self.window)  # future windows start after n_seen − W
        self._buf = buf[len(buf) - keep :].copy()
        self._times = times[len(times) - keep :].copy()
        self._finite = oks[len(oks) - keep :].copy()
        return FeatureFrames.concat(frames, self.n_features)


class FeaturePipeline:
    """Raw stream chunks in, valence-model features out: pick → units → causal filter → reference → Welch.

    The daemon feeds it LSL chunks; :func:`features_from_recording` feeds it a whole recording. Both use this
    class, so offline features equal online ones.

    Parameters
    ----------
    spec : FeatureSpec
        From the card's ``input.features``.
    prep : Preprocessing
        From the card's ``preprocessing`` (band-pass and notch; its ``normalization`` is not applied here).
    stream_channels, stream_sfreq, stream_units
        The incoming signal.
    channels : list of str
        The card's ``input.channels``: the channels used, in feature order.
    units : str
        The card's ``input.units``.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        prep: Preprocessing,
        stream_channels: Sequence[str],
        stream_sfreq: float,
        stream_units: str,
        channels: Sequence[str],
        *,
        units: str = "V",
        source: str = "the stream",
        target: str = "the valence model",
    ) -> None:
        check_feature_stream(spec, stream_sfreq, stream_channels, channels, source=source, target=target)
        # The preprocessor's "model rate" is the stream rate: features are computed at the stream rate, so
        # nothing is resampled and no anti-alias filter beyond the card's band-pass is added.
        proxy = InputSpec(name="features", sfreq=stream_sfreq, n_times=1, channels=list(channels), units=units)
        self.preprocessor = Preprocessor(
            stream_channels, stream_sfreq, stream_units, proxy, prep, source=source, target=target
        )
        self.spec = spec
        self.channels = list(channels)
        self.sfreq = float(stream_sfreq)
        self.stream = FeatureStream(spec, stream_sfreq, len(channels))

    @classmethod
    def from_card(
        cls,
        card: ModelCard,
        stream_channels: Sequence[str],
        stream_sfreq: float,
        stream_units: str,
        *,
        source: str = "the stream",
        target: str | None = None,
    ) -> FeaturePipeline:
        """The pipeline a valence card asks for. Raises :class:`ModelCardError` for a card without features."""
        name = target or f"model {card.name!r}"
        if card.input.features is None:
            raise ModelCardError(f"{name} has no input.features in its card; it is not a band-power valence model")
        return cls(
            card.input.features,
            card.preprocessing,
            stream_channels,
            stream_sfreq,
            stream_units,
            card.input.channels,
            units=card.input.units,
            source=source,
            target=name,
        )

    @property
    def n_features(self) -> int:
        return self.stream.n_features

    def reset(self) -> None:
        """After a stream gap: restart the filter and the window grid."""
        self.preprocessor.reset()
        self.stream.reset()

    def push(self, raw: np.ndarray, timestamps: np.ndarray) -> FeatureFrames:
        """Add raw samples (n, n_stream_channels) in stream units with their timestamps; return completed windows."""
        filtered, finite = self.preprocessor.process(raw)
        if self.spec.reference == "average":
            filtered = average_reference(filtered)
        return self.stream.push(filtered, timestamps, finite)


class FeatureContext:
    """The last ``n_times`` feature vectors: turns :class:`FeatureFrames` into valence-model inputs.

    :meth:`push` returns, for every new frame once ``n_times`` consecutive finite frames are held, the frame's
    time and the model input ``(1, n_times, n_features)`` float32 (oldest first). A non-finite frame empties the
    context, so the model only ever sees consecutive clean windows; call :meth:`reset` after a stream gap.
    """

    def __init__(self, n_times: int, n_features: int) -> None:
        self.n_times = n_times
        self.n_features = n_features
        self._rows: list[np.ndarray] = []

    def reset(self) -> None:
        self._rows = []

    def push(self, frames: FeatureFrames) -> list[tuple[float, np.ndarray]]:
        ready = []
        for time, x, ok in zip(frames.times, frames.X, frames.finite, strict=True):
            if not ok:
                self._rows = []
                continue
            self._rows.append(np.asarray(x, dtype=np.float32))
            if len(self._rows) > self.n_times:
                del self._rows[0]
            if len(self._rows) == self.n_times:
                ready.append((float(time), np.stack(self._rows)[None]))
        return ready


def features_from_recording(
    recording: Recording,
    spec: FeatureSpec | ModelCard | None = None,
    *,
    channels: Sequence[str] | None = None,
    preprocessing: Preprocessing | None = None,
    units: str = "V",
) -> tuple[np.ndarray, np.ndarray]:
    """Features of a whole recording, computed exactly as the daemon computes them live.

    Parameters
    ----------
    recording : Recording
        Continuous signal; the filter runs from its first sample, the window grid starts there (and again
        after each hole, :attr:`Recording.gaps`, as the daemon restarts both after a discontinuity).
    spec : FeatureSpec or ModelCard, optional
        A card gives spec, channels, preprocessing and units at once; default :func:`default_feature_spec`.
    channels : list of str, optional
        Channels to use (default: the recording's EEG channels, or the card's).
    preprocessing : Preprocessing, optional
        Default :func:`default_preprocessing` (causal 0.3–45 Hz band-pass), or the card's.

    Returns
    -------
    times : ndarray (n_windows,)
        Window end times in seconds from the recording's first sample (2.0, 2.25, … by default).
    X : ndarray (n_windows, n_channels × n_bands)
        Relative band power, channel-major.
    """
    if isinstance(spec, ModelCard):
        card = spec
        if card.input.features is None:
            raise ModelCardError(f"model {card.name!r} has no input.features in its card")
        feature_spec = card.input.features
        channels = list(card.input.channels) if channels is None else channels
        preprocessing = card.preprocessing if preprocessing is None else preprocessing
        units = card.input.units
    else:
        feature_spec = spec if spec is not None else default_feature_spec()
    if channels is None:
        channels = [n for n, kind in zip(recording.ch_names, recording.ch_types, strict=True) if kind == "eeg"]
    pipeline = FeaturePipeline(
        feature_spec,
        preprocessing if preprocessing is not None else default_preprocessing(),
        recording.ch_names,
        recording.sfreq,
        recording.units,
        channels,
        units=units,
        source=recording.source,
    )
    times, parts = recording.times, []
    for start, stop, brk in recording.pieces():
        if brk is not None:  # after a hole, as live: the filter and the window grid start afresh
            pipeline.reset()
        frames = pipeline.push(recording.data[start:stop], times[start:stop])
        parts.append((frames.times, frames.X))
    return np.concatenate([t for t, _ in parts]), np.concatenate([x for _, x in parts])
