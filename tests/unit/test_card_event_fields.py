"""``card_event_fields``: the EEGLAB event fields a card names: recorded in ``input.event_fields``, else (older
cards) parsed from the label rule as training wrote it."""

from __future__ import annotations

import json
import re

import pytest

from bci_stream.card import InputSpec, ModelCard, OutputSpec, Preprocessing, card_event_fields, read_card, write_card
from bci_stream.errors import ModelCardError
from bci_stream.listen import card_summary
from tests.unit.test_card import tiny_onnx


def _card(
    label: str | None = None,
    label_map: dict[str, str] | None = None,
    provenance: dict | None = None,
    event_fields: list[str] | None = None,
):
    spec = InputSpec(sfreq=128.0, n_times=32, channels=["C3"], events="^square", label=label, label_map=label_map,
                     event_fields=event_fields)  # fmt: skip
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


# --------------------------------------------------------------------------- recorded in input.event_fields


def test_recorded_event_fields_round_trip_through_the_onnx_file(tmp_path, capsys) -> None:
    from bci_stream.cli import main

    path = tmp_path / "m.onnx"
    tiny_onnx(path)
    card = _card(label=r"position=(?P<label>[12])", event_fields=["type", "position"])
    write_card(path, card)
    back = read_card(path)
    assert back == card and back.input.event_fields == ["type", "position"]
    assert json.loads(back.to_json())["input"]["event_fields"] == ["type", "position"]
    assert main(["-q", "inspect", str(path)]) == 0  # bci-stream inspect MODEL names them
    assert "event fields: type, position (EEGLAB, read into the markers)" in capsys.readouterr().out


def test_a_card_without_event_fields_serialises_as_before_the_field_existed() -> None:
    # byte-identical re-exports of older cards: the key is left out, not written as null
    assert "event_fields" not in json.loads(_card(label="x").to_json())["input"]


def test_an_empty_event_fields_list_is_refused_naming_the_key() -> None:
    data = json.loads(_card(label="x").to_json())
    data["input"]["event_fields"] = []
    with pytest.raises(ModelCardError, match=r"input\.event_fields"):
        ModelCard.from_json(json.dumps(data))


def test_recorded_fields_win_over_what_the_label_rule_would_give() -> None:
    card = _card(label=r"(?:^|/)position=(?P<label>[^/]+)", event_fields=["type", "position"])
    assert card_event_fields(card) == ["type", "position"]
    mapped = _card(label_map={"square/position=1/side=l": "left"}, event_fields=["side", "position"])
    assert card_event_fields(mapped) == ["side", "position"]


@pytest.mark.parametrize(
    ("label", "label_map"),
    [(r"position=(?P<label>[12])", None),  # a custom regex over field markers
     (None, {"square/position=1": "left", "square/side=r/position=2": "right"})],  # keys in mixed field orders
)  # fmt: skip
def test_rules_the_parse_cannot_read_give_the_recorded_fields(label, label_map) -> None:
    assert card_event_fields(_card(label=label, label_map=label_map)) is None  # an older card: not recoverable
    assert card_event_fields(_card(label=label, label_map=label_map, event_fields=["position"])) == ["position"]


def test_the_demo_reads_the_recorded_fields_of_a_custom_regex_card(tmp_path) -> None:
    from bci_stream.demo import demo_event_fields

    card = _card(label=r"position=(?P<label>[12])", event_fields=["position"])
    assert demo_event_fields(tmp_path / "run.set", card, None) == ["position"]


def test_inspect_shows_recorded_fields_and_says_when_they_were_parsed() -> None:
    recorded = card_summary(_card(label=r"position=(?P<label>[12])", event_fields=["type", "position"]))
    assert "event fields: type, position (EEGLAB, read into the markers)" in recorded
    parsed = card_summary(_card(label=r"(?:^|/)position=(?P<label>[^/]+)"))
    assert any(line.startswith("event fields: position") and "older card" in line for line in parsed), parsed
    assert not any(line.startswith("event fields") for line in card_summary(_card(label="stim/(?P<label>x)")))
