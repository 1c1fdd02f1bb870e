"""``bci-train fit --config RUN.toml`` on real recordings: event fields, label rules, window in seconds, band cap.

The same options ``distil`` has (issue 11), as ``[data]`` keys; the run's card records the events and the label rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bci_stream.card import ModelCard
from bci_stream.errors import ConfigError
from training.cli import main
from training.run_config import load_config
from training.runs import fit_run

CHANNELS = ["EEG 000", "EEG 005", "EEG 010", "EEG 020"]

TAIL = """
[student]
name = "cogninet-blstm"
options = {{ hidden = 8, n_features = 8, dropout = 0.0, n_layers = 1 }}

[train]
epochs = 1
batch_size = 16
seed = 0
val_fraction = 0.3

[run]
name = "{name}"
"""


def write(tmp_path: Path, data: str, name: str = "real") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text("[data]\n" + data.strip() + "\n" + TAIL.format(name=name))
    return path


def eeglab_data(eeglab: Path, rule: str, extra: str = "") -> str:
    return f"""
recordings = ["{eeglab}"]
events = "^square"
{rule}
image_regex = ""
channels = {json.dumps(CHANNELS)}
tmin = 0.0
tmax = 0.5
notch = 0.0
{extra}
"""


def card_of(run: Path) -> ModelCard:
    return ModelCard.from_json((run / "card.json").read_text())


def test_eeglab_event_field_run_records_events_and_rule(eeglab, tmp_path: Path, caplog) -> None:
    config = write(tmp_path, eeglab_data(eeglab, 'label_field = "position"'))
    with caplog.at_level("WARNING"):
        result = fit_run(config, out=tmp_path / "run", progress=False)
    card = card_of(tmp_path / "run")
    assert card.input.n_times == 64 and card.input.sfreq == 128.0  # (0.5 - 0) s at 128 Hz
    assert card.input.channels == CHANNELS
    assert card.preprocessing.bandpass == (5.0, 57.6)  # the default 5-95 Hz, capped below Nyquist ...
    assert "capped to 5-57.6 Hz" in caplog.text and "set [data] bandpass" in caplog.text  # ... and said so
    assert card.output.classes == ["1", "2"] and result.metrics["loss"] == "ce"  # no teacher: plain CE
    assert card.input.events == "^square" and card.input.label is not None
    assert card.provenance["labels"] == {"field": "position", "regex": card.input.label, "classes": ["1", "2"]}
    assert card.input.event_fields == ["position"]  # replay/demo read the label_field into the markers
    assert result.metrics["n_train"] + result.metrics["n_val"] == 80  # the 80 'square' events, 'rt' left out

    # bci-train evaluate rebuilds the same epochs and split from the saved config (event field read again)
    from training.evaluate_run import evaluate_run

    ev = evaluate_run(tmp_path / "run", n_permutations=1000)
    assert ev["split_kind"] == "validation" and ev["predictions"]["chance_majority"] >= 0.5


def test_card_records_every_field_read_into_the_markers_in_order(eeglab, tmp_path: Path) -> None:
    """``event_fields`` and ``label_field`` both shape the markers (``square/type=square/position=1``): the card
    names all of them, in the order read, so replay/demo build the very markers the rule was fitted on."""
    from bci_stream.recordings import read_recording
    from training.runs import data_spec

    config = load_config(write(tmp_path, eeglab_data(eeglab, 'label_field = "position"', 'event_fields = ["type"]')))
    fields = config.data.fields_to_read()
    spec, _ = data_spec(config, [read_recording(eeglab, event_fields=fields)])
    assert fields == ["type", "position"] and spec.event_fields == fields
    assert spec.label is not None and "position=" in spec.label  # labels from the label_field, not the first field


def test_n170_label_map_names_classes_and_card_carries_the_map(sub02, tmp_path: Path) -> None:
    """Marker values to classes by a table; ``[data.label_map]`` also picks which markers are labelled."""
    data = f"""
recordings = ["{sub02[0]}"]
events = "^stim/"
tmin = 0.0
tmax = 0.6
image_regex = ""
notch = 0.0
bandpass = [1.0, 30.0]

[data.label_map]
"stim/house" = "house"
"stim/face" = "face"
"""
    fit_run(write(tmp_path, data, "n170"), out=tmp_path / "run", progress=False)
    card = card_of(tmp_path / "run")
    assert card.input.n_times == 154  # 0.6 s at 256 Hz
    assert card.preprocessing.bandpass == (1.0, 30.0)
    assert sorted(card.output.classes) == ["face", "house"]
    assert card.provenance["labels"]["map"] == {"stim/house": "house", "stim/face": "face"}  # type: ignore[index]
    assert card.input.events == "^stim/"


def test_fit_command_line_runs_a_real_config(eeglab, tmp_path: Path, capsys) -> None:
    config = write(tmp_path, eeglab_data(eeglab, "", 'event_fields = ["position"]'))
    assert main(["fit", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    card = card_of(tmp_path / "run")
    assert card.provenance["labels"]["field"] == "position"  # type: ignore[index]  # the first event field
    assert card.input.event_fields == ["position"]


@pytest.mark.parametrize(
    ("rule", "extra", "keys"),
    [
        ('label_field = "position"\nlabel_regex = "x(?P<label>.)"', "", ["label_regex", "label_field"]),
        ('label_field = "position"', '[data.label_map]\n"square/position=1" = "left"', ["label_field", "label_map"]),
        ('label_field = "position"', "n_times = 40", ["tmax", "n_times"]),
        ('label_field = "position"', "sfreq = 128.0\nn_times = 40", ["tmax", "n_times"]),
        ('label_field = "position"', "bandpass = [5.0, 95.0]", ["bandpass", "57.6"]),
        ('label_field = "position"', "channels_typo = []", ["channels_typo"]),
        ('label_field = "position"', 'channels = ["EEG 000", "Cz"]', ["data.channels", "Cz"]),
        (
            'event_fields = ["position"]',
            '[data.label_map]\n"square/position=1" = "left"',
            ["'square/position=2'", "events", "label_map"],
        ),
    ],
)
def test_bad_combinations_are_refused_naming_file_and_keys(eeglab, tmp_path: Path, rule, extra, keys) -> None:
    # a later "channels" line would be a duplicate TOML key: the channel cases replace the default list
    data = eeglab_data(eeglab, rule, "" if extra.startswith("channels =") else extra)
    if extra.startswith("channels ="):
        data = data.replace(f"channels = {json.dumps(CHANNELS)}", extra)
    config = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        fit_run(config, out=tmp_path / "run", progress=False)
    message = str(err.value)
    assert str(config) in message and all(k in message for k in keys), message
    assert not (tmp_path / "run" / "model.pt").exists()


def test_tmax_equal_to_n_times_is_accepted(eeglab, tmp_path: Path) -> None:
    config = load_config(write(tmp_path, eeglab_data(eeglab, 'label_field = "position"', "n_times = 64")))
    assert config.data.window(128.0) == 64
