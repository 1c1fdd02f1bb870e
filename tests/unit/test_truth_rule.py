"""Which rule scores live accuracy: ``[markers] label``, else the card's label map, else its regex, else the default."""

from __future__ import annotations

from bci_stream.card import InputSpec
from bci_stream.config import MarkerSection
from bci_stream.truth import TruthRule

CARD = {"sfreq": 256.0, "n_times": 10, "channels": ["Cz"]}


def test_the_cards_label_map_scores_whole_marker_values() -> None:
    rule = TruthRule.choose(MarkerSection(), InputSpec(**CARD, label_map={"1": "house", "2": "face"}))
    assert rule.described.startswith("map {'1': 'house', '2': 'face'} (from the model card)")
    assert [rule.raw(v) for v in ("1", "2", "12", "stim/1/")] == ["house", "face", None, None]


def test_a_config_label_overrides_the_cards_map_and_says_so() -> None:
    markers = MarkerSection(label=r"^(?P<label>\d)$")
    rule = TruthRule.choose(markers, InputSpec(**CARD, label_map={"1": "house"}))
    assert rule.mapping is None and rule.raw("1") == "1" and "config [markers] label" in rule.described


def test_a_cards_regex_else_the_default_else_none() -> None:
    field = InputSpec(**CARD, label=r"(?:^|/)position=(?P<label>[^/]+)")
    assert TruthRule.choose(MarkerSection(), field).raw("square/position=2") == "2"  # an EEGLAB event field
    default = TruthRule.choose(MarkerSection(), InputSpec(**CARD))
    assert default.raw("stim/n01/n01_3") == "n01" and "the default" in default.described
    off = TruthRule.choose(MarkerSection(label=""), InputSpec(**CARD, label_map={"1": "house"}))
    assert off.raw("1") is None and off.described.startswith("none")
