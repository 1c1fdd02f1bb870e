"""How a marker names its true class, for running accuracy (live in the daemon, offline in the demo).

Pure: no threads, no sockets. The rule comes from the daemon config's ``[markers] label``, else the model
card's ``input.label_map`` (whole marker value → class), else the card's label regex, else the default regex.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .card import InputSpec
from .config import MarkerSection, marker_rules


def class_for_label(label: str, classes: list[str]) -> str | None:
    """The model class a marker label names: the class itself, or a class whose first word it is.

    EEG-ImageNet classes read ``"n02951358 canoe"`` while markers carry ``n02951358``.
    """
    for cls in classes:
        if label == cls or label == cls.split(" ", 1)[0]:
            return cls
    return None


@dataclass(frozen=True)
class TruthRule:
    """How a marker names its true class, for live accuracy: a regex's ``label`` group, or a map of whole marker
    values to classes (a card's ``input.label_map``); ``described`` says which, and where it came from."""

    pattern: re.Pattern[str] | None
    mapping: dict[str, str] | None
    described: str

    @classmethod
    def choose(cls, markers: MarkerSection, card: InputSpec) -> TruthRule:
        """The config's ``[markers] label`` when given, else the card's label map, else its regex, else the default."""
        label = marker_rules(markers, card.events, card.label)[1]
        if markers.label is None and card.label_map:
            pairs = ", ".join(f"{k!r}: {v!r}" for k, v in list(card.label_map.items())[:10])
            more = f" ... ({len(card.label_map)} entries)" if len(card.label_map) > 10 else ""
            return cls(None, dict(card.label_map), f"map {{{pairs}{more}}} (from the model card)")
        if label:
            where = ("config [markers] label" if markers.label is not None
                     else "the model card" if card.label else "the default")  # fmt: skip
            return cls(re.compile(label), None, f"regex {label!r} (from {where})")
        return cls(None, None, "none (config [markers] label = ''): accuracy is not scored")

    def raw(self, value: str) -> str | None:
        """The true class the marker ``value`` names (before matching it to the model's classes), or None."""
        if self.mapping is not None:
            return self.mapping.get(value)  # a marker the map does not name has no true class
        m = self.pattern.search(value) if self.pattern is not None else None
        return m.groupdict().get("label") if m is not None else None
