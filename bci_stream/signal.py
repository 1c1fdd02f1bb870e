"""Pure signal processing shared by the daemon and by training (offline equals online).

Nothing here knows about threads, sockets or files: functions take arrays in, give arrays out,
and the stateful pieces (:class:`CausalFilter`, :class:`Preprocessor`) keep their state explicitly
so that feeding a signal in one piece or in many chunks gives the same numbers.

Arrays are laid out ``(n_samples, n_channels)``, as LSL delivers them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import scipy
from scipy import signal as sps

from .card import InputSpec, ModelCard, Normalization, Preprocessing
from .errors import ModelCardError

log = logging.getLogger(__name__)

#: Anti-alias cutoff as a fraction of the model rate, used when the stream is faster than the model and the card
#: has no low-pass of its own: below the model's Nyquist (0.5) with room for the Butterworth roll-off.
ANTI_ALIAS_FRACTION = 0.45


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
    """Refuse a stream whose rate cannot supply what the model was trained on, or a card whose band cannot be carried.

    The stream must carry every frequency the model relies on: its Nyquist frequency must exceed the upper band
    edge of the card (or, without one, the stream must be at least the card's rate). The model's own grid must
    carry the band too (upper edge below ``input.sfreq / 2``), and when the stream is faster than the model the
    band must leave room for the anti-alias low-pass (:func:`filter_stages`) that runs before the epocher
    interpolates onto the model grid.

    Raises
    ------
    ModelCardError
        Naming the stream (``source``), the model (``target``), the rates, the band edge and what to do.
    """
    nyquist = stream_sfreq / 2
    model_nyquist = input_spec.sfreq / 2
    low, high = prep.bandpass if prep.bandpass is not None else (None, None)
    if stream_sfreq <= 0:
        raise ModelCardError(
            f"{source} has an irregular or zero sampling rate ({stream_sfreq} Hz); {target} needs a regular stream"
        )
    for edge in (high, low):
        if edge is not None and edge >= model_nyquist:
            raise ModelCardError(
                f"{target}'s card filters up to {edge:g} Hz but its epochs are sampled at {input_spec.sfreq:g} Hz "
                f"(Nyquist {model_nyquist:g} Hz), which cannot carry that band; the card is inconsistent: "
                f"re-export the model with band edges below {model_nyquist:g} Hz"
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
    cutoff = ANTI_ALIAS_FRACTION * input_spec.sfreq
    if high is None and low is not None and stream_sfreq > input_spec.sfreq and low >= cutoff:
        raise ModelCardError(
            f"{source} at {stream_sfreq:g} Hz is faster than {target} ({input_spec.sfreq:g} Hz) and needs an "
            f"anti-alias low-pass at {cutoff:g} Hz, but the card's high-pass edge is {low:g} Hz; "
            f"stream at {input_spec.sfreq:g} Hz"
        )


@dataclass(frozen=True)
class FilterStage:
    """One stage of the causal filter chain, described completely enough to design it again (frequencies in Hz).

    ``kind`` is ``"butterworth"`` (``btype`` lowpass/highpass/bandpass, ``order``, ``edges``: the -3 dB edges) or
    ``"notch"`` (``scipy.signal.iirnotch`` at ``edges[0]`` with quality factor ``q``, a second-order section).
    ``anti_alias`` marks a Butterworth low edge added because the stream is faster than the model.
    """

    kind: Literal["butterworth", "notch"]
    edges: tuple[float, ...]
    btype: Literal["lowpass", "highpass", "bandpass", "bandstop"] = "bandstop"
    order: int = 2
    q: float | None = None
    anti_alias: bool = False

    def sos(self, sfreq: float) -> np.ndarray:
        """Second-order sections of this stage at ``sfreq`` (Hz), shape (n_sections, 6)."""
        if self.kind == "notch":
            b, a = sps.iirnotch(self.edges[0], Q=self.q, fs=sfreq)
            return np.asarray(sps.tf2sos(b, a))
        wn = list(self.edges) if self.btype == "bandpass" else self.edges[0]
        return np.asarray(sps.butter(self.order, wn, btype=self.btype, fs=sfreq, output="sos"))

    def describe(self) -> dict[str, Any]:
        """JSON-ready description with the scipy (and, for Butterworth, MNE) call that designs this stage."""
        if self.kind == "notch":
            f0, q = self.edges[0], self.q
            return {
                "kind": "notch",
                "design": "scipy.signal.iirnotch (second-order IIR notch, -3 dB bandwidth = freq / q)",
                "freq_hz": f0,
                "q": q,
                "scipy": f"scipy.signal.tf2sos(*scipy.signal.iirnotch({f0!r}, Q={q!r}, fs=sfreq))",
                "applies": f"only when {f0:g} Hz is below the stream's Nyquist frequency (sfreq / 2)",
            }
        wn = list(self.edges) if self.btype == "bandpass" else self.edges[0]
        l_freq = self.edges[0] if self.btype in ("highpass", "bandpass") else None
        h_freq = self.edges[-1] if self.btype in ("lowpass", "bandpass") else None
        return {
            "kind": "butterworth",
            "btype": self.btype,
            "order": self.order,
            "edges_hz": list(self.edges),
            "anti_alias": self.anti_alias,
            "scipy": f"scipy.signal.butter({self.order}, {wn!r}, btype={self.btype!r}, fs=sfreq, output='sos')",
            # MNE designs the same sections (tests/unit/test_card.py checks it); its filter_data pads and starts
            # from a zero state, so apply the sections with scipy.signal.sosfilt as "apply" below says.
            "mne": (
                f"mne.filter.create_filter(None, sfreq, l_freq={l_freq!r}, h_freq={h_freq!r}, method='iir', "
                f"iir_params=dict(order={self.order}, ftype='butter', output='sos'), phase='forward')['sos']"
            ),
        }


def filter_stages(sfreq: float, prep: Preprocessing, model_sfreq: float) -> list[FilterStage]:
    """The causal filter chain at stream rate ``sfreq`` (Hz) for a card, in the order it is applied.

    A Butterworth stage for the card's band (band-pass, high-pass or low-pass, order from ``prep.filter``), then the
    notch (skipped at or above the stream's Nyquist). When the stream is faster than the model (``model_sfreq``)
    and the card has no low-pass, the Butterworth stage gets a low edge at :data:`ANTI_ALIAS_FRACTION` ×
    ``model_sfreq``, so that what the epocher interpolates onto the model grid is band-limited below its Nyquist.
    """
    order = prep.filter_order
    low, high = prep.bandpass if prep.bandpass is not None else (None, None)
    anti_alias = high is None and sfreq > model_sfreq
    if anti_alias:
        high = ANTI_ALIAS_FRACTION * model_sfreq
    stages: list[FilterStage] = []
    if low is not None and high is not None:
        stages.append(FilterStage("butterworth", (low, high), "bandpass", order, anti_alias=anti_alias))
    elif low is not None:
        stages.append(FilterStage("butterworth", (low,), "highpass", order))
    elif high is not None:
        stages.append(FilterStage("butterworth", (high,), "lowpass", order, anti_alias=anti_alias))
    if prep.notch is not None and prep.notch < sfreq / 2:
        stages.append(FilterStage("notch", (prep.notch,), q=prep.notch_q))
    return stages


def design_filter(sfreq: float, prep: Preprocessing, model_sfreq: float) -> np.ndarray | None:
    """Second-order sections for the card's causal filter at the stream rate ``sfreq`` (Hz).

    The stages are those of :func:`filter_stages` (scipy.signal.butter, scipy.signal.iirnotch), stacked in order.
    Returns None when there is nothing to filter.

    Raises
    ------
    ModelCardError
        If the stream is faster than the model and the chain would not low-pass below the model's Nyquist
        frequency before the epocher interpolates (a card that :func:`check_rate` refuses).
    """
    stages = filter_stages(sfreq, prep, model_sfreq)
    if sfreq > model_sfreq:
        edges = [s.edges[-1] for s in stages if s.kind == "butterworth" and s.btype in ("lowpass", "bandpass")]
        if not edges or edges[0] >= model_sfreq / 2:
            raise ModelCardError(
                f"the stream at {sfreq:g} Hz would reach the {model_sfreq:g} Hz model grid without a low-pass below "
                f"its Nyquist frequency ({model_sfreq / 2:g} Hz); the card's band {prep.bandpass} cannot be carried"
            )
    return np.vstack([s.sos(sfreq) for s in stages]) if stages else None


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


def describe_preprocessing(card: ModelCard) -> dict[str, Any]:
    """The card's complete preprocessing, as JSON-ready data a peer can rebuild with scipy or MNE alone.

    Written into every card as ``filters`` (:attr:`bci_stream.card.ModelCard.filters`): the order of operations,
    every filter stage with its family, order, edges and the scipy/MNE call that designs it, the anti-alias rule,
    how the sections are run (forward only, state carried, initial state) and the second-order sections themselves
    at the card's own rate (``input.sfreq``) for epoch models. Valence models filter at the stream's own rate, so
    their card lists the stages and no sections.
    """
    spec, prep = card.input, card.preprocessing
    stages = filter_stages(math.inf, prep, math.inf)  # every stage the card asks for, before any rate applies
    sections: dict[str, list[list[float]]] = {}
    if spec.features is None:
        try:
            sos = design_filter(spec.sfreq, prep, spec.sfreq)
            sections[f"{spec.sfreq:g}"] = [] if sos is None else sos.tolist()
        except (ValueError, ModelCardError) as exc:  # an inconsistent card is refused at run time by check_rate
            log.debug("no sections at %g Hz for card %r: %s", spec.sfreq, card.name, exc)
    rate = "the stream's own rate (features are not resampled)" if spec.features else "the stream's rate"
    return {
        "design": f"scipy.signal {scipy.__version__}",
        "steps": [
            "pick input.channels from the stream by name (exact, else case-insensitive)",
            "scale samples to input.units",
            "hold a non-finite sample at the channel's last finite value (epochs touching it are dropped)",
            f"run the stages below, in order, causally at {rate}",
            "epoch: the first sample is the stream sample nearest to marker + input.tmin, input.n_times samples; "
            "when the stream rate differs from input.sfreq, linear interpolation of the filtered stream onto "
            "marker + tmin + k / input.sfreq",
            "normalization (per channel: (x - mean) / std), float32, input.layout",
        ]
        if spec.features is None
        else [
            "pick input.channels by name, scale to input.units, hold non-finite samples",
            f"run the stages below, in order, causally at {rate}",
            "then input.features (average reference, Welch band power): see bci_stream/features.py",
        ],
        "stages": [s.describe() for s in stages],
        "anti_alias": {
            "kind": "butterworth",
            "order": prep.filter_order,
            "cutoff_hz": ANTI_ALIAS_FRACTION * spec.sfreq,
            "applies": "only when the stream is faster than input.sfreq and the card has no low-pass edge: the "
            "Butterworth stage then gets this low-pass edge (high-pass [low] becomes band-pass [low, cutoff]; "
            "without a band, a low-pass [cutoff] becomes the first stage, before the notch)",
        },
        "apply": "scipy.signal.sosfilt(sos, x, axis=0, zi=zi) on (n_samples, n_channels) chunks, forward only, "
        "zi carried from chunk to chunk, sos = the stages' sections stacked in order",
        "initial_state": "zi = scipy.signal.sosfilt_zi(sos)[:, :, None] * x[0][None, None, :] (as if the signal had "
        "been constant at its first sample); reset after a stream gap",
        "sections": sections,
    }


# ------------------------------------------------------------------------------- polyphase resampling (optional)
#
# Not used by the epocher today: it interpolates linearly onto the model grid after the causal low-pass that
# :func:`design_filter` guarantees below the model's Nyquist. This is the drop-in for a stream whose rate is close
# to the model's (e.g. 512 -> 500 Hz), where linear interpolation loses high frequencies. How the epocher would
# call it: take i0 = the stream sample nearest to marker + tmin (as the same-rate path does), wait until sample
# i0 + need + after exists (``need, before, after = polyphase_span(...)``; ``after`` / sfreq_in s of extra
# latency), check gaps and finiteness over [i0 - before, i0 + need + after), and return
# ``resample_epoch(buf.data[i0 - before : i0 + need + after], sfreq_in, sfreq_out, n_times)``.


def polyphase_factors(sfreq_in: float, sfreq_out: float, *, max_factor: int = 1000) -> tuple[int, int]:
    """``(up, down)``, coprime, with ``up / down == sfreq_out / sfreq_in`` (to 1e-9) and both <= ``max_factor``.

    Raises
    ------
    ModelCardError
        When the rates have no such ratio (e.g. 1000 Hz and 333.3333 Hz): resample by interpolation instead.
    """
    if sfreq_in <= 0 or sfreq_out <= 0:
        raise ModelCardError(f"rates must be > 0 Hz, got {sfreq_in:g} and {sfreq_out:g}")
    ratio = sfreq_out / sfreq_in
    frac = Fraction(ratio).limit_denominator(max_factor)
    up, down = frac.numerator, frac.denominator
    if up > max_factor or abs(up / down - ratio) > 1e-9 * ratio:
        raise ModelCardError(
            f"{sfreq_in:g} Hz -> {sfreq_out:g} Hz is not a ratio of integers up to {max_factor}; "
            "polyphase resampling cannot do it exactly"
        )
    return up, down


def polyphase_span(sfreq_in: float, sfreq_out: float, n_times: int) -> tuple[int, int, int]:
    """Stream samples :func:`resample_epoch` needs: ``(need, before, after)``.

    ``need`` covers the epoch itself; ``before`` and ``after`` the FIR half-length of ``scipy.signal.resample_poly``
    (10 × max(up, down) taps at the up-sampled rate) on each side, ``before`` rounded up to a multiple of ``down``
    so that an output sample falls exactly on the epoch's first stream sample.
    """
    up, down = polyphase_factors(sfreq_in, sfreq_out)
    half = math.ceil(10 * max(up, down) / up)
    need = math.ceil((n_times - 1) * down / up) + 1
    return need, math.ceil(half / down) * down, half


def resample_epoch(segment: np.ndarray, sfreq_in: float, sfreq_out: float, n_times: int) -> np.ndarray:
    """Polyphase-resample one epoch (``scipy.signal.resample_poly``, Kaiser window β = 5, zero phase).

    Parameters
    ----------
    segment : ndarray (before + need + after, n_channels)
        Stream samples from ``before`` samples ahead of the epoch's first sample (:func:`polyphase_span`).
    sfreq_in, sfreq_out : float
        Stream and model rates (Hz).
    n_times : int
        Samples wanted at ``sfreq_out``.

    Returns
    -------
    ndarray (n_times, n_channels)
        The epoch on the model grid, its first sample at the time of the segment's sample ``before``.
    """
    up, down = polyphase_factors(sfreq_in, sfreq_out)
    need, before, after = polyphase_span(sfreq_in, sfreq_out, n_times)
    x = np.asarray(segment, dtype=np.float64)
    if x.ndim != 2 or len(x) != before + need + after:
        raise ValueError(
            f"segment must be ({before + need + after}, n_channels) = {before} before + {need} + {after} after, "
            f"got shape {x.shape}"
        )
    y = sps.resample_poly(x, up, down, axis=0, window=("kaiser", 5.0))
    start = before * up // down
    return np.asarray(y[start : start + n_times])
