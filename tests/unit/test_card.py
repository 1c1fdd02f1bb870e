"""Unit tests of bci_stream.card: the model card inside ONNX metadata."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from scipy import signal as sps

from bci_stream.card import CARD_KEY, SCHEMA_VERSION, ModelCard, Normalization, Preprocessing, read_card, write_card
from bci_stream.errors import ModelCardError

CHANNELS = ["Fp1", "Fp2", "Cz"]


def card_dict() -> dict:
    return {
        "schema": 1,
        "name": "tiny",
        "version": "1.2.3",
        "task": "classification",
        "input": {
            "name": "eeg",
            "layout": "NTC",
            "sfreq": 1000.0,
            "n_times": 440,
            "tmin": 0.04,
            "channels": list(CHANNELS),
            "units": "V",
        },
        "preprocessing": {
            "bandpass": [5.0, 95.0],
            "notch": 50.0,
            "filter": "causal-butter-4",
            "normalization": {"kind": "channel", "mean": [0.0, 1e-6, -2e-6], "std": [1e-5, 2e-5, 3e-5]},
        },
        "output": {"name": "logits", "classes": ["canoe", "dog", "cat"]},
        "provenance": {"teacher": "t", "temperature": 5, "metrics": {"test_accuracy": 0.5}},
    }


def tiny_onnx(path, extra_meta: dict[str, str] | None = None) -> None:
    """An Identity model eeg (1, 440, 3) -> logits, saved at ``path``."""
    x = helper.make_tensor_value_info("eeg", TensorProto.FLOAT, [1, 440, 3])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 440, 3])
    graph = helper.make_graph([helper.make_node("Identity", ["eeg"], ["logits"])], "tiny", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in (extra_meta or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


# --------------------------------------------------------------------------- round trips


def test_json_round_trip_keeps_every_field():
    card = ModelCard.from_json(json.dumps(card_dict()))
    again = ModelCard.from_json(card.to_json())
    assert again == card
    dumped = json.loads(card.to_json())
    assert dumped["schema"] == SCHEMA_VERSION  # alias, not "schema_"
    assert "schema_" not in dumped
    assert dumped["input"]["channels"] == CHANNELS
    assert dumped["preprocessing"]["bandpass"] == [5.0, 95.0]
    assert dumped["provenance"]["metrics"] == {"test_accuracy": 0.5}


def test_card_properties():
    card = ModelCard.from_json(json.dumps(card_dict()))
    assert card.input.duration == pytest.approx(0.44)
    assert card.preprocessing.filter_order == 4
    assert card.preprocessing.highest_frequency == 95.0
    assert Preprocessing().highest_frequency is None
    assert Preprocessing(bandpass=(1.0, None)).highest_frequency is None
    assert Preprocessing(filter="causal-butter-2").filter_order == 2


def test_write_then_read_round_trip(tmp_path):
    path = tmp_path / "m.onnx"
    tiny_onnx(path, {"producer_note": "keep me"})
    card = ModelCard.from_json(json.dumps(card_dict()))
    write_card(path, card)
    assert read_card(path) == card
    assert read_card(str(path)) == card  # str paths too

    model = onnx.load(str(path))
    onnx.checker.check_model(model)  # still a valid model
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["producer_note"] == "keep me"  # other metadata kept
    assert [n.op_type for n in model.graph.node] == ["Identity"]


def test_write_card_replaces_the_previous_card(tmp_path):
    path = tmp_path / "m.onnx"
    tiny_onnx(path)
    first = ModelCard.from_json(json.dumps(card_dict()))
    d = card_dict()
    d["version"] = "2.0.0"
    second = ModelCard.from_json(json.dumps(d))
    write_card(path, first)
    write_card(path, second)
    keys = [p.key for p in onnx.load(str(path)).metadata_props]
    assert keys.count(CARD_KEY) == 1
    assert read_card(path).version == "2.0.0"


def test_minimal_card_defaults():
    card = ModelCard.from_json(
        json.dumps(
            {"name": "m", "input": {"sfreq": 250, "n_times": 10, "channels": ["C3"]}, "output": {"classes": ["a", "b"]}}
        )
    )
    assert card.schema_ == SCHEMA_VERSION
    assert card.input.units == "V"
    assert card.input.layout == "NTC"
    assert card.preprocessing.normalization.kind == "none"
    assert card.preprocessing.bandpass is None


# --------------------------------------------------------------------------- invalid cards


def _mutate(fn):
    d = copy.deepcopy(card_dict())
    fn(d)
    return json.dumps(d)


INVALID = [
    ("missing channels", lambda d: d["input"].pop("channels"), r"input\.channels"),
    ("empty channels", lambda d: d["input"].update(channels=[]), r"input\.channels"),
    ("duplicate channels", lambda d: d["input"].update(channels=["Fp1", "Fp1", "Cz"]), r"duplicated.*Fp1"),
    ("one class", lambda d: d["output"].update(classes=["only"]), r"classes"),
    ("no classes", lambda d: d.pop("output"), r"classes"),
    ("bandpass reversed", lambda d: d["preprocessing"].update(bandpass=[95.0, 5.0]), r"bandpass"),
    ("bandpass zero low", lambda d: d["preprocessing"].update(bandpass=[0.0, 95.0]), r"bandpass"),
    ("bandpass equal", lambda d: d["preprocessing"].update(bandpass=[5.0, 5.0]), r"bandpass"),
    ("bandpass 3 values", lambda d: d["preprocessing"].update(bandpass=[1.0, 2.0, 3.0]), r"bandpass"),
    (
        "normalization length vs channels",
        lambda d: d["preprocessing"]["normalization"].update(mean=[0.0, 0.0], std=[1.0, 1.0]),
        r"normalization.*2 channel means.*3 channels",
    ),
    (
        "normalization mean vs std",
        lambda d: d["preprocessing"]["normalization"].update(std=[1.0, 1.0]),
        r"normalization.*mean has 3.*std 2",
    ),
    ("normalization std zero", lambda d: d["preprocessing"]["normalization"].update(std=[1.0, 0.0, 1.0]), r"std"),
    ("normalization without std", lambda d: d["preprocessing"]["normalization"].pop("std"), r"std"),
    ("unknown top-level key", lambda d: d.update(colour="blue"), r"colour"),
    ("unknown nested key", lambda d: d["input"].update(sampling_rate=1000), r"input\.sampling_rate"),
    ("wrong schema", lambda d: d.update(schema=2), r"schema 2"),
    ("bad filter", lambda d: d["preprocessing"].update(filter="fir-101"), r"filter"),
    ("bad filter order", lambda d: d["preprocessing"].update(filter="causal-butter-x"), r"filter"),
    ("zero sfreq", lambda d: d["input"].update(sfreq=0), r"input\.sfreq"),
    ("zero n_times", lambda d: d["input"].update(n_times=0), r"input\.n_times"),
    ("bad units", lambda d: d["input"].update(units="furlong"), r"input\.units"),
    ("bad layout", lambda d: d["input"].update(layout="TNC"), r"input\.layout"),
    ("bad task", lambda d: d.update(task="regression"), r"task"),
    ("missing name", lambda d: d.pop("name"), r"name"),
]


@pytest.mark.parametrize(("mutate", "match"), [(m, r) for _, m, r in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_card_raises_naming_the_key(mutate, match):
    with pytest.raises(ModelCardError, match=match) as info:
        ModelCard.from_json(_mutate(mutate), source="model.onnx")
    assert str(info.value).startswith("model.onnx: invalid model card")


def test_base_card_is_valid():
    # guards the parametrised test above: every failure comes from the mutation
    ModelCard.from_json(json.dumps(card_dict()))


def test_valence_card_needs_no_classes():
    d = card_dict()
    d["task"] = "valence"
    d["output"] = {"name": "valence"}
    d["input"]["features"] = {"bands": [[4.0, 8.0], [8.0, 13.0]], "window": 2.0, "hop": 0.5}
    card = ModelCard.from_json(json.dumps(d))
    assert card.input.features is not None
    assert card.input.features.bands == [(4.0, 8.0), (8.0, 13.0)]


def test_one_sided_bandpass_is_valid():
    assert Preprocessing(bandpass=(1.0, None)).bandpass == (1.0, None)
    assert Preprocessing(bandpass=(None, 40.0)).highest_frequency == 40.0


@pytest.mark.parametrize("bandpass", [[-5.0, None], [0.0, None], [None, -3.0], [None, 0.0]])
def test_one_sided_bandpass_must_be_positive(bandpass):
    d = card_dict()
    d["preprocessing"]["bandpass"] = bandpass
    with pytest.raises(ModelCardError, match="bandpass"):
        ModelCard.from_json(json.dumps(d))


def test_invalid_json_raises():
    with pytest.raises(ModelCardError, match="not valid JSON"):
        ModelCard.from_json("{not json", source="x.onnx")


def test_normalization_none_needs_nothing():
    assert Normalization().kind == "none"
    with pytest.raises(ValueError, match="mean"):
        Normalization(kind="channel")


# --------------------------------------------------------------------------- files


def test_model_without_card(tmp_path):
    path = tmp_path / "bare.onnx"
    tiny_onnx(path, {"other": "x"})
    with pytest.raises(ModelCardError, match=r"bci_stream\.card") as info:
        read_card(path)
    assert "bare.onnx" in str(info.value)


def test_missing_model_file(tmp_path):
    path = tmp_path / "nope.onnx"
    with pytest.raises(ModelCardError, match="does not exist") as info:
        read_card(path)
    assert "nope.onnx" in str(info.value)


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(ModelCardError, match="does not exist"):
        read_card(tmp_path)


def test_garbage_file_is_not_onnx(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\xff\x00 definitely not protobuf \x13\x37" * 10)
    with pytest.raises(ModelCardError, match=r"junk\.onnx"):
        read_card(path)


def test_invalid_card_inside_model_names_the_file(tmp_path):
    path = tmp_path / "bad.onnx"
    d = card_dict()
    d["output"]["classes"] = ["one"]
    tiny_onnx(path, {CARD_KEY: json.dumps(d)})
    with pytest.raises(ModelCardError, match=r"bad\.onnx.*classes"):
        read_card(path)


def test_card_is_frozen():
    card = ModelCard.from_json(json.dumps(card_dict()))
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError for frozen models
        card.name = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- a card a peer can follow (issue 8)


def peer_preprocess(card_json: dict, stream_channels: list[str], stream_sfreq: float, chunks: list) -> np.ndarray:
    """What a user without bci_stream writes from the card's JSON: scipy only, stages designed from their fields.

    Picks the card's channels by name, scales V→card units, designs every stage (plus the anti-alias edge when
    the card says it applies) with scipy.signal at the stream rate, and runs them forward with carried state.
    """
    filters, spec = card_json["filters"], card_json["input"]
    picks = [stream_channels.index(ch) for ch in spec["channels"]]
    scale = {"V": 1.0, "mV": 1e3, "uV": 1e6}[spec["units"]]
    sos_parts = []
    for stage in filters["stages"]:
        if stage["kind"] == "butterworth":
            edges = list(stage["edges_hz"])
            btype = stage["btype"]
            if stream_sfreq > spec["sfreq"] and btype == "highpass":  # the card's anti-alias rule
                edges, btype = [edges[0], filters["anti_alias"]["cutoff_hz"]], "bandpass"
            wn = edges if btype == "bandpass" else edges[0]
            sos_parts.append(sps.butter(stage["order"], wn, btype=btype, fs=stream_sfreq, output="sos"))
        elif stage["kind"] == "notch" and stage["freq_hz"] < stream_sfreq / 2:
            sos_parts.append(sps.tf2sos(*sps.iirnotch(stage["freq_hz"], Q=stage["q"], fs=stream_sfreq)))
    if stream_sfreq > spec["sfreq"] and not any(s["kind"] == "butterworth" for s in filters["stages"]):
        sos_parts.insert(0, sps.butter(4, filters["anti_alias"]["cutoff_hz"], fs=stream_sfreq, output="sos"))
    sos = np.vstack(sos_parts)
    if f"{stream_sfreq:g}" in filters["sections"]:  # the card's own sections agree with the redesign
        np.testing.assert_array_equal(sos, np.asarray(filters["sections"][f"{stream_sfreq:g}"]))
    out, zi = [], None
    for chunk in chunks:
        x = np.asarray(chunk, dtype=np.float64)[:, picks] * scale
        if not len(x):
            continue
        if zi is None:
            zi = sps.sosfilt_zi(sos)[:, :, None] * x[0][None, None, :]
        y, zi = sps.sosfilt(sos, x, axis=0, zi=zi)
        out.append(y)
    return np.concatenate(out)


PEER_CASES = {
    "band-notch-q": ({"bandpass": [5.0, 95.0], "notch": 50.0, "notch_q": 12.0}, 1000.0, 1000.0, "V"),
    "butter-2-uV": ({"bandpass": [1.0, 40.0], "notch": 60.0, "filter": "causal-butter-2"}, 250.0, 250.0, "uV"),
    "faster-stream-highpass": ({"bandpass": [0.5, None], "notch": 50.0}, 1000.0, 2000.0, "V"),
    "faster-stream-no-band": ({"notch": 50.0}, 500.0, 1000.0, "V"),
}


@pytest.mark.parametrize("case", sorted(PEER_CASES))
def test_peer_rebuilds_preprocessing_from_card_json_with_scipy_alone(tmp_path, case):
    from bci_stream.signal import Preprocessor  # the daemon's side

    prep, model_sfreq, stream_sfreq, units = PEER_CASES[case]
    d = card_dict()
    d["input"].update(sfreq=model_sfreq, units=units)
    d["preprocessing"].update(prep)
    d["preprocessing"].pop("normalization")
    path = tmp_path / "m.onnx"
    tiny_onnx(path)
    write_card(path, ModelCard.from_json(json.dumps(d)))
    raw_json = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}[CARD_KEY])
    assert raw_json["filters"]["sections"], "the card lists the sections at its own rate"

    rng = np.random.default_rng(0)
    stream_channels = ["Cz", "x", "Fp2", "Fp1"]
    raw = rng.normal(size=(3000, 4)) * 2e-5 + np.array([1e-3, 0.0, -2e-3, 5e-4])  # volts, DC offsets
    edges = sorted({0, 3000, *rng.integers(0, 3000, size=25).tolist()})
    chunks = [raw[a:b] for a, b in itertools.pairwise(edges)]
    peer = peer_preprocess(raw_json, stream_channels, stream_sfreq, chunks)

    card = read_card(path)
    pre = Preprocessor(stream_channels, stream_sfreq, "V", card.input, card.preprocessing)
    daemon = np.concatenate([pre.process(c)[0] for c in chunks])
    np.testing.assert_allclose(peer, daemon, rtol=0, atol=1e-9 * np.max(np.abs(daemon)))


def test_card_stages_match_mne_create_filter():
    mne = pytest.importorskip("mne")
    card = ModelCard.from_json(json.dumps(card_dict()))
    stage = card.filters["stages"][0]
    sfreq = card.input.sfreq
    got = mne.filter.create_filter(
        None, sfreq, l_freq=stage["edges_hz"][0], h_freq=stage["edges_hz"][1], method="iir",
        iir_params=dict(order=stage["order"], ftype="butter", output="sos"), phase="forward", verbose="error",
    )["sos"]  # fmt: skip
    np.testing.assert_allclose(got, np.asarray(card.filters["sections"]["1000"])[: len(got)], rtol=0, atol=1e-12)


def test_card_json_names_every_filter_completely():
    filters = json.loads(ModelCard.from_json(json.dumps(card_dict())).to_json())["filters"]
    band, notch = filters["stages"]
    assert band == {**band, "kind": "butterworth", "btype": "bandpass", "order": 4, "edges_hz": [5.0, 95.0]}
    assert notch == {**notch, "kind": "notch", "freq_hz": 50.0, "q": 30.0}
    assert "iirnotch" in notch["scipy"] and "butter(4, [5.0, 95.0]" in band["scipy"] and "create_filter" in band["mne"]
    assert np.asarray(filters["sections"]["1000"]).shape == (5, 6)
    assert "sosfilt_zi" in filters["initial_state"] and "sosfilt" in filters["apply"]
    assert filters["anti_alias"]["cutoff_hz"] == 450.0


def test_old_cards_and_shipped_models_still_load():
    old = card_dict()  # no notch_q, no filters: as every card written before them
    card = ModelCard.from_json(json.dumps(old))
    assert card.preprocessing.notch_q == 30.0
    for path in sorted(Path(__file__).parents[2].joinpath("exported").glob("*.onnx")):
        shipped = read_card(path)
        again = ModelCard.from_json(shipped.to_json(), source=str(path))  # with its filters section now
        assert again == shipped


def test_edited_sections_are_refused():
    d = json.loads(ModelCard.from_json(json.dumps(card_dict())).to_json())
    d["filters"]["sections"]["1000"][0][0] *= 1.001
    with pytest.raises(ModelCardError, match=r"m\.onnx: the card's filters\.sections at 1000 Hz .*differ"):
        ModelCard.from_json(json.dumps(d), source="m.onnx")
    d["filters"]["sections"] = "nope"
    with pytest.raises(ModelCardError, match=r"filters\.sections"):
        ModelCard.from_json(json.dumps(d), source="m.onnx")


def test_sections_listed_at_another_stream_rate_are_checked_there():
    from bci_stream.signal import design_filter  # the reference a peer compares with

    d = json.loads(ModelCard.from_json(json.dumps(card_dict())).to_json())
    card = ModelCard.from_json(json.dumps(card_dict()))
    d["filters"]["sections"]["2000"] = design_filter(2000.0, card.preprocessing, 1000.0).tolist()
    assert ModelCard.from_json(json.dumps(d)) == card
    d["filters"]["sections"]["2000"] = d["filters"]["sections"]["1000"]  # the 1 kHz design is wrong at 2 kHz
    with pytest.raises(ModelCardError, match="at 2000 Hz"):
        ModelCard.from_json(json.dumps(d))
    del d["filters"]["sections"]["2000"]
    d["filters"]["sections"]["fast"] = []
    with pytest.raises(ModelCardError, match=r"filters\.sections\['fast'\]"):
        ModelCard.from_json(json.dumps(d))
