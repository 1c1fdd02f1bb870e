"""One readable line per message, for ``bci-stream listen`` and the demo."""

from __future__ import annotations

from .messages import AnyMessage, Drop, Prediction, Status, Valence


def _short(value: str, width: int = 34) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def valence_bar(value: float, lo: float = -1.0, hi: float = 1.0, width: int = 21) -> str:
    """A text bar for a valence value on [lo, hi] (the shipped models' −1…1 scale; DEAP's SAM scale is 1…9)."""
    frac = min(max((value - lo) / (hi - lo), 0.0), 1.0)
    pos = round(frac * (width - 1))
    return "[" + "".join("|" if i == pos else ("·" if i != width // 2 else "+") for i in range(width)) + "]"


def format_message(msg: AnyMessage, valence_range: tuple[float, float] = (-1.0, 1.0)) -> str:
    """Render any message as one line (``valence_range``: the ends of the valence bar)."""
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
        return f"valence    #{msg.seq:<5d} t={msg.window_end:.2f} {msg.value:+.3f} {valence_bar(msg.value, *valence_range)}"
    if isinstance(msg, Status):
        eeg = f"{msg.eeg.name} {msg.eeg.measured_rate or 0:.0f} Hz" if msg.eeg else "waiting for streams"
        acc = f" acc {msg.accuracy:.2f} (chance {msg.chance:.2f})" if msg.accuracy is not None and msg.chance else ""
        lat = f" latency p50 {msg.latency_p50_ms:.1f} / p99 {msg.latency_p99_ms:.1f} ms" if msg.latency_p50_ms else ""
        c = msg.counts
        return (
            f"status     {msg.state:9s} {eeg}; markers {c.markers} predictions {c.predictions} drops {c.drops}"
            f"{acc}{lat} [{msg.provider}]"
        )
    return str(msg)
