"""``bci-train distil`` on a real recording: event fields, window in seconds, band under Nyquist, leak guard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bci_stream.card import read_card
from training.cli import main

TINY = ["--hidden", "8", "--layers", "1", "--epochs", "1", "--notch", "0"]


def test_plain_square_markers_with_a_field_regex_get_an_event_fields_hint(eeglab, tmp_path: Path, capsys) -> None:
    rc = main(["distil", "--recording", str(eeglab), "--events", "^square", "--label-regex", r"position=(?P<label>\d)",
               "--out", str(tmp_path / "m.onnx"), *TINY])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "marker 'square'" in err and "--event-fields" in err


def test_a_band_above_nyquist_is_refused_naming_bandpass(eeglab, tmp_path: Path, capsys) -> None:
    rc = main(["distil", "--recording", str(eeglab), "--events", "^square", "--event-fields", "position",
               "--bandpass", "5", "95", "--out", str(tmp_path / "m.onnx"), *TINY])  # fmt: skip
    assert rc == 2
    assert "pass --bandpass 5 57.6" in capsys.readouterr().err


def test_eeglab_field_labels_tmax_and_capped_default_band_make_a_served_card(eeglab, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eeglab.onnx"
    rc = main(["distil", "--recording", str(eeglab), "--events", "^square", "--event-fields", "position",
               "--tmin", "0", "--tmax", "0.5", "--channels", "EEG 000,EEG 005,EEG 010,EEG 020", "--out", str(out), *TINY])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    card = read_card(out)
    assert card.input.n_times == 64 and card.input.channels == ["EEG 000", "EEG 005", "EEG 010", "EEG 020"]
    assert card.preprocessing.bandpass == (5.0, 57.6)  # the default 5-95 Hz, capped at 128 Hz
    assert card.output.classes == ["1", "2"]  # plain cross-entropy: no teacher
    assert card.input.events == "^square" and card.input.label is not None and "position=" in card.input.label
    assert json.loads(capsys.readouterr().out)["leak_warnings"] == []


def test_distil_flags_and_strict_refuses_a_copied_recording(eeglab, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "copy_of_test_raw.set"
    shutil.copyfile(eeglab, copy)
    shutil.copyfile(eeglab.with_suffix(".fdt"), copy.with_suffix(".fdt"))
    args = ["distil", "--recording", str(eeglab), str(copy), "--events", "^square", "--event-fields", "position",
            "--tmax", "0.5", "--image-regex", "", "--out", str(tmp_path / "m.onnx"), *TINY]  # fmt: skip
    assert main(args) == 0
    warnings = json.loads(capsys.readouterr().out)["leak_warnings"]
    assert any("identical recordings" in w and "copy_of_test_raw.set" in w for w in warnings), warnings
    assert main([*args, "--strict"]) == 2
    assert "refusing to fit (--strict)" in capsys.readouterr().err


@pytest.mark.parametrize("field", ["position"])
def test_card_provenance_is_versions_not_source_hashes(eeglab, tmp_path: Path, field: str) -> None:
    out = tmp_path / "m.onnx"
    assert main(["distil", "--recording", str(eeglab), "--events", "^square", "--event-fields", field,
                 "--tmax", "0.3", "--out", str(out), *TINY]) == 0  # fmt: skip
    version = read_card(out).provenance["code_version"]
    assert "sha256" not in str(version) and "torch" in str(version) and "numpy" in str(version)


def test_label_map_turns_marker_values_into_named_classes(eeglab, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    assert main(["distil", "--recording", str(eeglab), "--events", "^square", "--event-fields", "position",
                 "--label-map", "square/position=1=left,square/position=2=right", "--tmax", "0.3",
                 "--out", str(out), *TINY]) == 0  # fmt: skip
    card = read_card(out)
    assert card.output.classes == ["left", "right"]
    # the daemon scores by the map (not the regex that picked the values out)
    assert card.input.label_map == {"square/position=1": "left", "square/position=2": "right"}
    assert card.provenance["labels"]["regex"] == "^(?P<label>square/position=1|square/position=2)$"  # type: ignore[index]
