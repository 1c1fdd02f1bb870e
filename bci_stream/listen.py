"""Readable console output: one line per message (``bci-stream listen``, the demo) and a model card summary."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .card import ModelCard, card_event_fields
from .messages import AnyMessage, Drop, Prediction, Status, Valence


def _short(value: str, width: int = 34) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def valence_bar(value: float, lo: float = -1.0, hi: float = 1.0, width: int = 21) -> str:
    """A text bar for a valence value on [lo, hi] (the shipped models' −1…1 scale; DEAP's SAM scale is 1…9)."""
    frac = min(max((value - lo) / (hi - lo), 0.0), 1.0) if hi > lo else 0.5
    pos = round(frac * (width - 1))
    return "[" + "".join("|" if i == pos else ("·" if i != width // 2 else "+") for i in range(width)) + "]"


@dataclass
class ValenceScale:
    """The ends of the valence bar: fixed (``--valence-range``, or the range the valence card records), or
    ``auto``: grown to cover every value seen so far, so the bar is never pinned to one end.
    """

    lo: float = math.nan
    hi: float = math.nan
    source: str = "auto"

    @property
    def fixed(self) -> bool:
        return self.source != "auto"

    @classmethod
    def choose(
        cls, given: tuple[float, float] | list[float] | None, card_path: str | Path | None = None
    ) -> ValenceScale:
        """``given`` if set, else the card's ``output.range``, else auto."""
        if given is not None:
            return cls(float(given[0]), float(given[1]), "--valence-range")
        if card_path is not None:
            from .card import read_card

            card = read_card(card_path)
            if card.output.range is not None:
                return cls(float(card.output.range[0]), float(card.output.range[1]), f"card of {card.name}")
        return cls()

    def place(self, value: float) -> tuple[float, float]:
        """The bar's ends for ``value`` (auto: widened to include it)."""
        if not self.fixed and math.isfinite(value):
            if math.isnan(self.lo):
                self.lo, self.hi = value - 0.05, value + 0.05
            self.lo, self.hi = min(self.lo, value), max(self.hi, value)
        return self.lo, self.hi


def _drops(counts: Any) -> str:
    by_reason = getattr(counts, "drops_by_reason", None) or {}
    if not by_reason:
        return f"drops {counts.drops}"
    return f"drops {counts.drops} (" + ", ".join(f"{r} {n}" for r, n in sorted(by_reason.items())) + ")"


def format_message(msg: AnyMessage, valence_range: tuple[float, float] | ValenceScale | None = None) -> str:
    """Render any message as one line.

    ``valence_range``: the ends of the valence bar, or a :class:`ValenceScale` (auto-ranging when None).
    """
    if isinstance(msg, Prediction):
        mark = "" if msg.correct is None else ("  ok " if msg.correct else "  MISS")
        truth = f" (true {msg.true_label})" if msg.correct is False else ""
        return (
            f"prediction #{msg.seq:<5d} {_short(msg.marker.value):34s} -> {_short(msg.label, 28):28s} "
            f"p={msg.probability:.2f}{mark}{truth}  latency {msg.timing.added_latency_ms:.1f} ms"
        )
    if isinstance(msg, Drop):
        return f"drop       #{msg.seq:<5d} {_short(msg.marker.value):34s} reason={msg.reason} {msg.detail}"
    if isinstance(msg, Valence):
        if isinstance(valence_range, ValenceScale):
            lo, hi = valence_range.place(msg.value)
        else:
            lo, hi = valence_range or (-1.0, 1.0)
        return (
            f"valence    #{msg.seq:<5d} t={msg.window_end:.2f} {msg.value:+.3f} "
            f"{lo:+.2f} {valence_bar(msg.value, lo, hi)} {hi:+.2f}"
        )
    if isinstance(msg, Status):
        eeg = f"{msg.eeg.name} {msg.eeg.measured_rate or 0:.0f} Hz" if msg.eeg else "waiting for streams"
        acc = f" acc {msg.accuracy:.2f} (chance {msg.chance:.2f})" if msg.accuracy is not None and msg.chance else ""
        lat = f" latency p50 {msg.latency_p50_ms:.1f} / p99 {msg.latency_p99_ms:.1f} ms" if msg.latency_p50_ms else ""
        c = msg.counts
        ignored = f" (ignored {c.ignored_markers})" if c.ignored_markers else ""
        t = msg.class_table
        table = (
            f" table {Path(t.source).name if t.source != 'card' else 'card'} {t.classes} classes "
            f"sha256 {t.sha256[:8]} reloads {t.reloads}{' (last reload FAILED)' if t.error else ''}"
            if t is not None
            else ""
        )
        return (
            f"status     {msg.state:9s} {eeg}; markers {c.markers}{ignored} predictions {c.predictions} {_drops(c)}"
            f"{acc}{lat}{table} [{msg.provider}]"
        )
    return str(msg)


# --------------------------------------------------------------------------------------------------------------------
# model card summary (`bci-stream inspect MODEL`)


def _names(items: list[str], first: int = 6) -> str:
    shown = ", ".join(items[:first])
    return shown + (f", … (+{len(items) - first})" if len(items) > first else "")


def _crossval_line(crossval: Any) -> str | None:
    """``bci-train crossval``/``fit`` cards: the pooled cross-validated accuracy with its split, folds, chance and p."""
    if not isinstance(crossval, dict) or not isinstance(crossval.get("accuracy"), int | float):
        return None
    folds = crossval.get("folds")
    how = [f"{len(folds)} folds" if isinstance(folds, list) and folds else "", f"split {crossval.get('split') or '?'}"]
    parts = [f"cross-validated accuracy {crossval['accuracy']:.3f} ({', '.join(x for x in how if x)})"]
    if isinstance(crossval.get("n_trials"), int):
        parts.append(f"n={crossval['n_trials']}")
    if isinstance(crossval.get("chance"), int | float):
        parts.append(f"chance {crossval['chance']:.3f}")
    if isinstance(crossval.get("p_value"), int | float):
        parts.append(f"permutation p {crossval['p_value']:.3g}")
    return ", ".join(parts)


def _accuracy_line(provenance: dict[str, Any]) -> str | None:
    metrics = provenance.get("metrics")
    if not isinstance(metrics, dict):
        return _crossval_line(provenance.get("crossval"))
    split = provenance.get("split")
    for key in ("test_accuracy", "val_accuracy", "accuracy"):
        if isinstance(metrics.get(key), int | float):
            which = key.replace("_accuracy", "") if key != "accuracy" else "reported"
            parts = [f"{which} accuracy {metrics[key]:.3f}"]
            n = metrics.get(f"n_{which}")
            if n:
                parts.append(f"n={n}")
            chance = metrics.get("chance_level", metrics.get("chance_uniform"))
            if isinstance(chance, int | float):
                parts.append(f"chance {chance:.3f}")
            if split:
                parts.append(f"split {split}")
            return ", ".join(parts)
    numbers = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if numbers:
        return ", ".join(f"{k} {v:.3g}" for k, v in list(numbers.items())[:6]) + (f", split {split}" if split else "")
    return _crossval_line(provenance.get("crossval"))


def _common_start(texts: list[str]) -> str:
    """The longest start that every text shares, character by character."""
    first, last = min(texts), max(texts)
    n = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), min(len(first), len(last)))
    return first[:n]


def _data_line(data: Any, width: int = 110) -> str:
    """The training data of a card: a description as is, a list of files by name (``sub-01_…run-0{1,2}_eeg.fif``)."""
    if not isinstance(data, list):
        return _short(str(data), width)
    names = [str(d.get("file", d)) if isinstance(d, dict) else str(d) for d in data]
    if len(names) < 2:
        return _short(", ".join(names) or "none", width)
    prefix = _common_start(names)
    suffix = _common_start([n[len(prefix) :][::-1] for n in names])[::-1]
    middles = [n[len(prefix) : len(n) - len(suffix)] for n in names]
    braced = f"{prefix}{{{','.join(middles)}}}{suffix}"
    shown = braced if len(braced) <= width and len(prefix) + len(suffix) >= 8 else _names(names, 3)
    return f"{len(names)} files: {_short(shown, width)}"


def card_summary(card: ModelCard, *, path: str | Path | None = None) -> list[str]:
    """A short, readable summary of a model card (the full card: ``inspect MODEL --json``)."""
    inp, pre = card.input, card.preprocessing
    lines = [f"{card.name} {card.version} — task {card.task}" + (f" ({path})" if path else "")]
    lines.append(f"channels: {len(inp.channels)} ({_names(inp.channels)}), units {inp.units}, layout {inp.layout}")
    if inp.features is not None:
        f = inp.features
        lines.append(
            f"features: relative band power in {len(f.bands)} bands "
            f"({', '.join(f'{lo:g}-{hi:g}' for lo, hi in f.bands)} Hz), {f.window:g} s windows every {f.hop:g} s "
            f"({1 / f.hop:g} Hz), {inp.n_times} steps of context, reference {f.reference}"
        )
    else:
        lines.append(
            f"rate {inp.sfreq:g} Hz; window {inp.tmin:+.3f} … {inp.tmin + inp.duration:+.3f} s around the marker "
            f"({inp.n_times} samples)"
        )
    band = "none"
    if pre.bandpass is not None:
        low, high = pre.bandpass
        band = f"{'DC' if low is None else f'{low:g}'}–{'Nyquist' if high is None else f'{high:g}'} Hz"
    notch = f", notch {pre.notch:g} Hz" if pre.notch else ""
    lines.append(f"filters: bandpass {band}{notch} ({pre.filter}, causal); normalization {pre.normalization.kind}")
    if card.output.classes:
        lines.append(f"classes: {len(card.output.classes)} ({_names(card.output.classes, 4)})")
    if card.output.range is not None:
        lines.append(f"output range: {card.output.range[0]:g} … {card.output.range[1]:g} (training data)")
    prov = card.provenance
    events = prov.get("events")
    labels = prov.get("labels")
    if events or labels:
        regex = labels.get("regex") if isinstance(labels, dict) else None
        rule = f", labels by map {card.input.label_map!r}" if card.input.label_map else ""
        lines.append(f"events: {events!r}" + (rule or (f", labels {regex!r}" if regex else "")))
    fields = card_event_fields(card)
    if fields:
        # replay/demo of a .set file need these fields, else its markers are plain types no label rule matches
        how = "" if inp.event_fields else "; parsed from the label rule of this older card"
        lines.append(f"event fields: {', '.join(fields)} (EEGLAB, read into the markers{how})")
    student = prov.get("student")
    student_name = student.get("name") if isinstance(student, dict) else student
    packages = prov.get("packages")
    versions = ", ".join(f"{k} {v}" for k, v in packages.items()) if isinstance(packages, dict) else None
    origin = [str(x) for x in (student_name, prov.get("loss"), prov.get("code_version") or versions) if x]
    if origin:
        lines.append(f"provenance: {'; '.join(origin)}")
    if prov.get("data"):
        lines.append(f"data: {_data_line(prov['data'])}")
    accuracy = _accuracy_line(prov)
    if accuracy:
        lines.append(f"accuracy: {accuracy}")
    return lines
