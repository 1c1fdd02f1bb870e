"""``card_event_fields``: the EEGLAB event fields a card's label rule reads, as training writes the rule."""

from __future__ import annotations

import re

import pytest

from bci_stream.card import InputSpec, ModelCard, OutputSpec, Preprocessing, card_event_fields


def _card(label: str | None = None, label_map: dict[str, str] | None = None, provenance: dict | None = None):
    spec = InputSpec(sfreq=128.0, n_times=32, channels=["C3"], events="^square", label=label, label_map=label_map)
    return ModelCard(name="m", version="1", task="classification", input=spec, preprocessing=Preprocessing(),
                     output=OutputSpec(classes=["1", "2"]), provenance=provenance or {})  # fmt: skip


@pytest.mark.parametrize("field", ["position", "my.field", "a b"])
def test_a_field_rule_as_distil_writes_it_gives_its_field(field: str) -> None:
    assert card_event_fields(_card(label=rf"(?:^|/){re.escape(field)}=(?P<label>[^/]+)")) == [field]


def test_a_label_map_over_field_markers_gives_its_fields_in_order() -> None:
    card = _card(label_map={"square/position=1/side=l": "left", "square/position=2/side=r": "right"})
    assert card_event_fields(card) == ["position", "side"]


@pytest.mark.parametrize(
    ("label", "label_map"),
    [(r"stim/(?P<label>face|house)", None), (None, None), (None, {"1": "house", "2": "face"}),
     (r"(?:^|/)position=(?P<label>\d)", None)],
)  # fmt: skip
def test_rules_without_fields_give_none(label: str | None, label_map: dict[str, str] | None) -> None:
    assert card_event_fields(_card(label=label, label_map=label_map)) is None


def test_provenance_labels_field_is_used_when_recorded() -> None:
    assert card_event_fields(_card(label="x", provenance={"labels": {"field": "position", "regex": "x"}})) == [
        "position"
    ]


def test_the_demo_takes_given_fields_first_and_the_cards_only_for_a_set_file(tmp_path) -> None:
    from bci_stream.demo import demo_event_fields

    card = _card(label=r"(?:^|/)position=(?P<label>[^/]+)")
    assert demo_event_fields(tmp_path / "run.set", card, None) == ["position"]
    assert demo_event_fields(tmp_path / "run.SET", card, ["type", "position"]) == ["type", "position"]
    assert demo_event_fields(tmp_path / "run.fif", card, None) is None  # FIF markers are already whole
    assert demo_event_fields(tmp_path / "run.set", _card(label=r"stim/(?P<label>face|house)"), None) is None
