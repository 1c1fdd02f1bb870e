"""``bci-train distil`` on a real recording: event fields, window in seconds, band under Nyquist, leak guard."""

from __future__ import annotations

import itertools
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
    assert card.input.event_fields == ["position"]  # --event-fields, for replay and demo to read too
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
    assert card.input.event_fields == ["position"]  # a map's rule names no field: --event-fields is recorded
    assert card.provenance["labels"]["regex"] == "^(?P<label>square/position=1|square/position=2)$"  # type: ignore[index]


def _distil(eeglab: Path, out: Path, *extra: str) -> list[str]:
    return ["distil", "--recording", str(eeglab), "--events", "^square", "--event-fields", "position",
            "--tmax", "0.3", "--out", str(out), *extra, *TINY]  # fmt: skip


def _trained_split(monkeypatch) -> dict:
    """Capture what distil hands train_student (the split plan) and the indices it trained / validated on."""
    import training.fit

    seen: dict = {}
    real = training.fit.train_student

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        seen.update(plan=kwargs["split"], train=result.train_index, val=result.val_index)
        return result

    monkeypatch.setattr(training.fit, "train_student", spy)
    return seen


def test_without_image_ids_one_recording_splits_by_whole_blocks(eeglab, tmp_path: Path, capsys, monkeypatch) -> None:
    """The EEGLAB file has no image ids and one recording: by-block by default, never by trial; every block (run of
    consecutive same-class trials, recomputed here from the markers) lies wholly on one side; the card says so."""
    from bci_stream.recordings import read_recording

    seen = _trained_split(monkeypatch)
    out = tmp_path / "m.onnx"
    assert main(_distil(eeglab, out)) == 0, capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out)
    prov = read_card(out).provenance
    assert prov["split"] == "by-block" and printed["split"] == "by-block"
    info = prov["split_info"]
    assert info["unit"] == "block" and info["leaky"] is None and "1 recording(s)" in info["chosen"], info
    assert info["groups"]["train"] + info["groups"]["validation"] == 13, info  # 6 + 7 blocks in the file
    labels = [
        m.value for m in read_recording(eeglab, event_fields=["position"]).markers if m.value.startswith("square")
    ]
    assert len(labels) == len(seen["train"]) + len(seen["val"]) == 80
    blocks = [0]
    for prev, cur in itertools.pairwise(labels):
        blocks.append(blocks[-1] + (cur != prev))
    side = {}
    for i in seen["train"]:
        side.setdefault(blocks[i], set()).add("train")
    for i in seen["val"]:
        side.setdefault(blocks[i], set()).add("val")
    assert len(side) == 13 and all(len(s) == 1 for s in side.values()), side
    assert {"train"} in side.values() and {"val"} in side.values()
    # epochs per class on each side (the class is the position in the marker), in the card and the printed metrics
    counts = {part: {c: sum(labels[i].endswith(f"={c}") for i in seen[key]) for c in ("1", "2")}
              for part, key in (("train", "train"), ("validation", "val"))}  # fmt: skip
    assert min(min(c.values()) for c in counts.values()) > 0, counts
    assert info["classes"] == counts and printed["split_info"]["classes"] == counts, info


def test_split_by_trial_is_warned_and_the_card_says_leaky(eeglab, tmp_path: Path, capsys, caplog) -> None:
    out = tmp_path / "m.onnx"
    assert main(_distil(eeglab, out, "--split", "by-trial")) == 0
    printed = json.loads(capsys.readouterr().out)
    prov = read_card(out).provenance
    assert prov["split"] == "by-trial" and "leaky" in prov["split_info"]["leaky"]
    assert "--split by-block" in prov["split_info"]["leaky"]
    assert any("--split by-trial" in w and "leaky" in w for w in printed["leak_warnings"]), printed["leak_warnings"]
    assert any("leaky" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_strict_refuses_split_by_trial_naming_split_and_the_leak_free_splits(eeglab, tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.onnx"
    assert main(_distil(eeglab, out, "--split", "by-trial", "--strict")) == 2
    err = capsys.readouterr().err
    assert "--split by-trial" in err and "refusing a leaky split (--strict)" in err, err
    assert all(f"--split {s}" in err for s in ("by-recording", "by-block", "by-image")), err
    assert not out.exists()


@pytest.mark.parametrize(
    ("split", "expect"),
    [("by-recording", "--split by-recording needs at least 2 recordings"), ("by-image", "--image-regex")],
)
def test_an_impossible_split_is_refused_naming_split(eeglab, tmp_path: Path, capsys, split: str, expect: str) -> None:
    out = tmp_path / "m.onnx"
    assert main(_distil(eeglab, out, "--split", split)) == 2
    err = capsys.readouterr().err
    assert expect in err and "--split by-block" in err, err
    assert not out.exists()


#: A tiny ``train_student`` on the EEGLAB file's square trials (labels: the position field).
TS_KWARGS = {"events": "^square", "label_regex": r"position=(?P<label>\d)", "n_times": 38, "tmin": 0.0,
             "bandpass": (5.0, 50.0), "notch": None, "hidden": 8, "n_layers": 1, "epochs": 1}  # fmt: skip


def test_train_student_split_argument_refuses_naming_split_and_defaults_unchanged(eeglab) -> None:
    from bci_stream.errors import ConfigError
    from bci_stream.recordings import read_recording
    from training.fit import train_student

    rec = read_recording(eeglab, event_fields=["position"])
    kwargs = TS_KWARGS
    with pytest.raises(ConfigError, match=r"train_student: split='by-recording' needs at least 2 recordings"):
        train_student(rec, split="by-recording", **kwargs)
    default = train_student(rec, **kwargs)  # no split: the old by-trial split, as before (warned in the log)
    assert default.card.provenance["split"] == "by-trial" and "split_info" not in default.card.provenance
    blocks = train_student(rec, split="by-block", **kwargs)
    assert blocks.card.provenance["split_info"]["chosen"] == "split" and blocks.metrics["split"] == "by-block"


def test_distil_refuses_a_split_that_leaves_a_class_on_one_side(sub02, tmp_path: Path, capsys) -> None:
    """Run 1 of sub-02 and a faces-only copy of run 2, ``--split by-recording``: no house on one side whatever the
    seed; exit 2 before training, naming --split, the class, the side and the epochs per class."""
    from tests.real.test_fit_split import class_counts_of, faces_only

    faces = faces_only(sub02[1], tmp_path)
    out = tmp_path / "m.onnx"
    args = ["distil", "--recording", str(sub02[0]), str(faces), "--events", "^stim/", "--label-regex",
            "stim/(?P<label>face|house)", "--image-regex", "", "--tmax", "0.6", "--split", "by-recording",
            "--seed", "1", "--out", str(out), *TINY]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    run1, only = class_counts_of([sub02[0], faces])
    for key in ("--split by-recording leaves a class out of a part",
                f"class 'house' is not in validation (its epochs are all in train ({run1['house']}))",
                f"train 'face' {run1['face']}, 'house' {run1['house']}; validation 'face' {only['face']}, 'house' 0",
                "give more recordings that hold it", "--split by-block"):  # fmt: skip
        assert key in err, err
    assert not out.exists()


def test_train_student_strict_refuses_by_trial_as_the_config_and_cli_do(eeglab, caplog) -> None:
    """``train_student(split='by-trial', strict=True)`` is refused with the error of ``[data] strict`` and
    ``--strict`` (naming ``strict=True`` and the leak-free ``split=`` values); without strict it trains, warned."""
    from bci_stream.errors import ConfigError
    from bci_stream.recordings import read_recording
    from training.fit import cut_epochs, epoch_spec, train_student
    from training.splits import CLI_OPTION, plan

    rec = read_recording(eeglab, event_fields=["position"])
    with pytest.raises(ConfigError) as err:
        train_student(rec, split="by-trial", strict=True, **TS_KWARGS)
    message = str(err.value)
    assert message.startswith("train_student: split='by-trial': refusing a leaky split (strict=True)"), message
    assert all(f"split={s!r}" in message for s in ("by-recording", "by-block", "by-image")), message
    assert "leave out strict=True to train on it with a warning" in message, message

    # the default split of epochs without image ids is by trial: refused as well under strict
    with pytest.raises(ConfigError, match=r"train_student: split=None \(the default: by trial.*strict=True"):
        train_student(rec, strict=True, **TS_KWARGS)
    # and so is a leaky plan made elsewhere (distil's --split by-trial) handed in
    spec, prep = epoch_spec([rec], channels=None, sfreq=None, n_times=38, tmin=0.0, bandpass=(5.0, 50.0), notch=None)
    data = cut_epochs([rec], spec, prep, events="^square", label_regex=TS_KWARGS["label_regex"])
    leaky = plan(data, "by-trial", image_regex=None, option=CLI_OPTION)
    with pytest.raises(ConfigError, match=r"split='by-trial' \(a given plan\): refusing a leaky split \(strict=True"):
        train_student(rec, split=leaky, strict=True, **TS_KWARGS)

    caplog.clear()
    with caplog.at_level("WARNING"):
        result = train_student(rec, split="by-trial", strict=False, **TS_KWARGS)
    assert any("split='by-trial'" in r.getMessage() and "not independent" in r.getMessage()
               and r.levelname == "WARNING" for r in caplog.records), caplog.text  # fmt: skip
    assert result.card.provenance["split"] == "by-trial" and "leaky" in result.metrics["split_info"]["leaky"]
