"""Real recordings → labelled epochs: label rules, the window in seconds, the band under Nyquist, subsets."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from bci_stream.pipeline import epochs_from_recording
from bci_stream.recordings import read_recording
from training.realdata import LabelRule, RealDataError, capped_band, load_epochs, window_samples

from .conftest import LABEL


def test_window_in_seconds_gives_n_times_from_the_rate() -> None:
    assert window_samples(0.0, 0.8, 256.0) == 205
    assert window_samples(-0.1, 0.5, 128.0) == 77
    with pytest.raises(RealDataError, match="tmax must be after tmin"):
        window_samples(0.5, 0.5, 256.0)


def test_default_band_is_capped_below_nyquist_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert capped_band((5.0, 95.0), 128.0, explicit=False) == (5.0, 57.6)
    assert "capped to 5-57.6 Hz" in caplog.text and "--bandpass" in caplog.text
    assert capped_band((1.0, 30.0), 128.0, explicit=False) == (1.0, 30.0)


def test_asked_for_band_above_nyquist_is_refused_with_a_bandpass_hint() -> None:
    with pytest.raises(RealDataError, match=r"5-95 Hz cannot be filtered; pass --bandpass 5 57.6"):
        capped_band((5.0, 95.0), 128.0, explicit=True, source="test_raw.set")


def test_n170_epochs_are_the_daemons_epochs_with_labels_and_subjects(sub02) -> None:
    data = load_epochs(sub02[:1], events="^stim/", rule=LabelRule(regex=LABEL), tmin=0.0, tmax=0.8,
                       channels=["TP9", "TP10"])  # fmt: skip
    assert data.X.shape[1:] == (205, 2) and data.classes == ["face", "house"]
    assert set(data.subject) == {"02"} and len(set(data.epoch_hashes)) == len(data.y)
    # the very same numbers the daemon's pipeline cuts from the continuous recording
    rec = read_recording(sub02[0])
    es = epochs_from_recording(rec, data.input_spec, data.preprocessing, events="^stim/")
    np.testing.assert_array_equal(es.X, data.X)
    assert [m.value.split("/")[1] for m in es.markers] == [data.classes[i] for i in data.y]


def test_eeglab_event_field_is_a_label_rule(eeglab) -> None:
    rule = LabelRule(field="position")
    data = load_epochs([eeglab], events="^square", rule=rule, tmin=0.0, tmax=0.44, bandpass=(1.0, 40.0))
    assert data.classes == ["1", "2"] and np.bincount(data.y).tolist() == [40, 40]
    assert data.input_spec.n_times == 56
    assert rule.daemon_regex is not None and rule.label_of("square/position=2") == "2"


def test_card_input_records_the_fields_the_markers_were_read_with() -> None:
    assert LabelRule(field="position").card_input("^square")["event_fields"] == ["position"]  # crossval --export
    mapped = LabelRule.parse_mapping("square/position=1/side=l=left").card_input("^square", ["position", "side"])
    assert mapped["event_fields"] == ["position", "side"]
    assert mapped["label_map"] == {"square/position=1/side=l": "left"}
    custom = LabelRule(regex=r"position=(?P<label>\d)").card_input("^square", ["position"])
    assert custom["event_fields"] == ["position"]
    assert LabelRule(regex=r"stim/(?P<label>\w+)").card_input("^stim")["event_fields"] is None  # FIF: none read


def test_label_map_names_classes_by_marker_value() -> None:
    rule = LabelRule.parse_mapping("1=house, 2=face")
    assert rule.label_of("1") == "house" and rule.label_of("2") == "face" and rule.label_of("3") is None
    assert rule.describe() == {"map": {"1": "house", "2": "face"}}
    with pytest.raises(RealDataError, match="exactly one label rule"):
        LabelRule(regex="x", field="position")


def test_a_label_regex_must_name_its_group_as_the_daemon_requires() -> None:
    """A rule that labels by group number here would score nothing live (the card keeps it; the daemon's
    [markers] label reads the group named 'label'): refused, with the named spelling to use."""
    with pytest.raises(RealDataError, match=r"none named 'label'.*'stim/\(\?P<label>face\|house\)'"):
        LabelRule(regex="stim/(face|house)")
    assert LabelRule(regex="stim/(?:face|house)").label_of("stim/face") == "stim/face"  # no group: the whole match
    assert LabelRule(regex="stim/(?P<label>face|house)").label_of("stim/face/3") == "face"


def test_a_marker_the_label_rule_cannot_label_is_named(eeglab) -> None:
    with pytest.raises(RealDataError, match=r"marker 'square' .*--label-field"):
        load_epochs([eeglab], events="^square", rule=LabelRule(regex=r"position=(?P<label>\d)"), tmin=0.0, tmax=0.4,
                    bandpass=(1.0, 40.0))  # fmt: skip
