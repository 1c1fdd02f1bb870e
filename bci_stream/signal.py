"""Pure signal processing shared by the daemon and by training (offline equals online).

Nothing here knows about threads, sockets or files: functions take arrays in, give arrays out,
and the stateful pieces (:class:`CausalFilter`, :class:`Preprocessor`) keep their state explicitly
so that feeding a signal in one piece or in many chunks gives the same numbers.

Arrays are laid out ``(n_samples, n_channels)``, as LSL delivers them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import signal as sps

from .card import InputSpec, Normalization, Preprocessing
from .errors import ModelCardError

# How many volts one unit is worth. Keys are lower-case; LSL streams and MNE use all of these.
_VOLTS_PER_UNIT = {
    "v": 1.0,
    "volt": 1.0,
    "volts": 1.0,
    "mv": 1e-3,
    "millivolt": 1e-3,
    "millivolts": 1e-3,
    "uv": 1e-6,
    "µv": 1e-6,
    "μv": 1e-6,
    "microvolt": 1e-6,
    "microvolts": 1e-6,
    "nv": 1e-9,
    "nanovolt": 1e-9,
    "nanovolts": 1e-9,
}


def volts_per_unit(unit: str) -> float:
    """Return how many volts one ``unit`` is (``"microvolts"`` → 1e-6).

    Raises
    ------
    ValueError
        If ``unit`` is not a voltage unit this module knows.
    """
    key = unit.strip().lower()
    if key not in _VOLTS_PER_UNIT:
        known = ", ".join(sorted({"V", "mV", "uV", "microvolts", "nV"}))
        raise ValueError(f"unit {unit!r} is not a known voltage unit (known: {known})")
    return _VOLTS_PER_UNIT[key]


def unit_scale(from_unit: str, to_unit: str) -> float:
    """Factor that converts samples in ``from_unit`` into ``to_unit``."""
    return volts_per_unit(from_unit) / volts_per_unit(to_unit)


def channel_indices(available: Sequence[str], required: Sequence[str], *, source: str, target: str) -> np.ndarray:
    """Indices into ``available`` that give ``required`` in order, matched by name.

    Matching is exact first, then case-insensitive (amplifiers disagree on ``FP1`` vs ``Fp1``).

    Raises
    ------
    ModelCardError
        Naming both sides (``source`` and ``target``) and every missing channel.
    """
    exact = {name: i for i, name in enumerate(available)}
    folded: dict[str, int] = {}
    for i, name in enumerate(available):
        folded.setdefault(name.lower(), i)
    indices, missing = [], []
    for name in required:
        if name in exact:
            indices.append(exact[name])
        elif name.lower() in folded:
            indices.append(folded[name.lower()])
        else:
            missing.append(name)
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        have = ", ".join(list(available)[:10]) + (" ..." if len(available) > 10 else "")
        raise ModelCardError(
            f"{target} needs {len(required)} channels but {source} lacks {len(missing)} of them: {shown}. "
            f"{source} has {len(available)} channels ({have}). Use a model trained on this montage."
        )
    return np.asarray(indices, dtype=np.intp)


def check_rate(stream_sfreq: float, input_spec: InputSpec, prep: Preprocessing, *, source: str, target: str) -> None:
    """Refuse a stream whose rate cannot supply what the model was trained on.

    The stream must carry every frequency the model relies on: its Nyquist frequency must exceed
    the upper band edge of the card (or, without one, the stream must be at least the card's rate).
    """
    nyquist = stream_sfreq / 2
    high = prep.highest_frequency
    if stream_sfreq <= 0:
        raise ModelCardError(
            f"{source} has an irregular or zero sampling rate ({stream_sfreq} Hz); {target} needs a regular stream"
        )
    if high is not None and high >= nyquist:
        raise ModelCardError(
            f"{source} samples at {stream_sfreq:g} Hz (Nyquist {nyquist:g} Hz) but {target} filters up to "
            f"{high:g} Hz; stream at more than {2 * high:g} Hz"
        )
    if high is None and stream_sfreq < input_spec.sfreq:
        raise ModelCardError(
            f"{source} samples at {stream_sfreq:g} Hz, below the {input_spec.sfreq:g} Hz {target} was trained "
            "on, and the card has no low-pass to say which frequencies matter; stream at the card's rate"
        )


def design_filter(sfreq: float, prep: Preprocessing, model_sfreq: float) -> np.ndarray | None:
    """Second-order sections for the card's causal filter at the stream rate ``sfreq`` (Hz).

    Adds an anti-alias low-pass at 0.45 × ``model_sfreq`` when the stream is faster than the model
    and the card has no low-pass of its own. Returns None when there is nothing to filter.
    """
    order = prep.filter_order
    nyquist = sfreq / 2
    sections: list[np.ndarray] = []
    low, high = prep.bandpass if prep.bandpass is not None else (None, None)
    if high is None and sfreq > model_sfreq:
        high = 0.45 * model_sfreq
    if low is not None and high is not None:
        sections.append(sps.butter(order, [low, high], btype="bandpass", fs=sfreq, output="sos"))
    elif low is not None:
        sections.append(sps.butter(order, low, btype="highpass", fs=sfreq, output="sos"))
    elif high is not None:
        sections.append(sps.butter(order, high, btype="lowpass", fs=sfreq, output="sos"))
    if prep.notch is not None and prep.notch < nyquist:
        b, a = sps.iirnotch(prep.notch, Q=30.0, fs=sfreq)
        sections.append(sps.tf2sos(b, a))
    return np.vstack(sections) if sections else None


class CausalFilter:
    """A causal IIR filter over ``n_channels`` that keeps its state between chunks.

    The state is initialised on the first sample as if the signal had been constant before it,
    which avoids the start-up step that a zero state gives on signals with a DC offset.
    """

    def __init__(self, sos: np.ndarray | None, n_channels: int) -> None:
        self.sos = sos
        self.n_channels = n_channels
        self._zi: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the state: the next sample starts the filter afresh (after a stream gap)."""
        self._zi = None

    def process(self, x: np.ndarray) -> np.ndarray:
        """Filter ``x`` of shape (n_samples, n_channels); returns float64 of the same shape."""
        x = np.asarray(x, dtype=np.float64)
        if self.sos is None or len(x) == 0:
            return x.copy()
        if self._zi is None:
            zi_unit = sps.sosfilt_zi(self.sos)  # (n_sections, 2)
            self._zi = zi_unit[:, :, None] * x[0][None, None, :]
        y, self._zi = sps.sosfilt(self.sos, x, axis=0, zi=self._zi)
        return np.asarray(y)


class Preprocessor:
    """Raw stream chunk → model channels, model units, causally filtered, with a finite mask.

    The same object runs offline over a whole recording and online over LSL chunks.

    Parameters
    ----------
    stream_channels : list of str
        Channel labels of the incoming signal.
    stream_sfreq : float
        Its sampling rate in Hz.
    stream_units : str
        Units of the incoming samples (``"microvolts"``, ``"V"`` ...).
    input_spec, prep : InputSpec, Preprocessing
        From the model card.
    source, target : str
        Names used in error messages (the stream and the model).
    """

    def __init__(
        self,
        stream_channels: Sequence[str],
        stream_sfreq: float,
        stream_units: str,
        input_spec: InputSpec,
        prep: Preprocessing,
        *,
        source: str = "the stream",
        target: str = "the model",
    ) -> None:
        self.picks = channel_indices(stream_channels, input_spec.channels, source=source, target=target)
        check_rate(stream_sfreq, input_spec, prep, source=source, target=target)
        try:
            self.scale = unit_scale(stream_units, input_spec.units)
        except ValueError as exc:
            raise ModelCardError(f"{source}: {exc}") from exc
        self.sfreq = stream_sfreq
        self.filter = CausalFilter(design_filter(stream_sfreq, prep, input_spec.sfreq), len(self.picks))
        self._last_finite = np.zeros(len(self.picks))

    def reset(self) -> None:
        self.filter.reset()

    def process(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(filtered, finite)`` for a chunk of shape (n_samples, n_stream_channels).

        Non-finite samples are held at the channel's last finite value before filtering so one
        bad sample cannot poison the filter state; ``finite`` marks them False so that every
        epoch touching them is dropped with reason ``non-finite``.
        """
        x = np.asarray(raw, dtype=np.float64)[:, self.picks] * self.scale
        finite_mask = np.isfinite(x)
        finite: np.ndarray = np.asarray(finite_mask.all(axis=1))
        if not finite.all():
            x = x.copy()
            for i in np.flatnonzero(~finite):  # ascending, so x[i - 1] is already repaired
                previous = x[i - 1] if i > 0 else self._last_finite
                bad = ~finite_mask[i]
                x[i, bad] = previous[bad]
        if len(x):
            self._last_finite = x[-1].copy()
        return self.filter.process(x), finite


def normalize(epochs: np.ndarray, norm: Normalization) -> np.ndarray:
    """Apply the card's normalisation to epochs shaped (..., n_times, n_channels)."""
    if norm.kind == "none":
        return epochs
    assert norm.mean is not None and norm.std is not None  # guaranteed by the card validator
    return (epochs - np.asarray(norm.mean)) / np.asarray(norm.std)


def fit_channel_normalization(epochs: np.ndarray) -> Normalization:
    """Per-channel mean and std over epochs shaped (n_epochs, n_times, n_channels).

    Call it on the training split only (METHODS.md, honest evaluation rule 2).
    """
    mean = epochs.mean(axis=(0, 1))
    std = epochs.std(axis=(0, 1))
    std = np.where(std > 0, std, 1.0)
    return Normalization(kind="channel", mean=mean.tolist(), std=std.tolist())


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=axis, keepdims=True))
