"""A live daemon serving an embedding model whose class table is swapped mid-session (issue 13)."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bci_stream.card import InputSpec, ModelCard, OutputSpec, Preprocessing, write_card
from bci_stream.client import Subscriber
from bci_stream.inference import OnnxModel
from bci_stream.messages import Drop, Prediction
from bci_stream.pipeline import epochs_from_recording
from bci_stream.signal import normalize
from bci_stream.zeroshot import load_table, probabilities
from tests.e2e.test_daemon import CHANNELS, SFREQ, small_recording
from tests.support import collect, daemon_config, playing, running_daemon, unique

pytestmark = pytest.mark.e2e
DIM, TEMPERATURE = 3, 0.05


def _embedding_model(path):
    """Mean over time of channels E1..E3 → a 3-d embedding (the daemon normalises via the cosine)."""
    w = np.zeros((len(CHANNELS), DIM), dtype=np.float32)
    w[0, 0] = w[1, 1] = w[2, 2] = 1e5  # volts → O(1)
    w[3:, :] = 2e4
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["eeg", "axes"], ["pooled"], keepdims=0),
         helper.make_node("MatMul", ["pooled", "W"], ["embedding"])],
        "emb", [helper.make_tensor_value_info("eeg", TensorProto.FLOAT, ["batch", 100, len(CHANNELS)])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIM])],
        initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"), numpy_helper.from_array(w, "W")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    card = ModelCard(name="zeroshot-test", task="embedding",
                     input=InputSpec(sfreq=SFREQ, n_times=100, tmin=0.02, channels=list(CHANNELS)),
                     preprocessing=Preprocessing(bandpass=(1.0, 40.0), notch=50.0),
                     output=OutputSpec(name="embedding", dim=DIM, temperature=TEMPERATURE))  # fmt: skip
    write_card(path, card)
    return path


def _table(path, classes, rows, stamp):
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, classes=np.asarray(classes, dtype=str), embeddings=np.asarray(rows, dtype=np.float32))
    os.replace(tmp, path)  # atomic: the daemon never reads half a file
    os.utime(path, ns=(stamp, stamp))


def test_class_table_swapped_mid_session_no_restart(tmp_path):
    model_path = _embedding_model(tmp_path / "emb.onnx")
    table = tmp_path / "classes.npz"
    _table(table, ["a", "b", "c"], np.eye(3), 1_000_000_000)
    rec = small_recording(12.0)
    expected = [m for m in rec.markers if m.value.startswith("stim/")]
    name = unique("eeg")
    config = daemon_config(model_path, name, f"{name}-markers", model={"classes": str(table)})
    with Subscriber(config.publish.endpoint, timeout=2.0) as sub, running_daemon(config) as runner:
        sub.wait_for("status", timeout=15)
        with playing(rec, name=name, source_id=name, speed=2.0, wait_consumers=10):
            got = collect(sub, lambda m: sum(isinstance(x, Prediction) for x in m) >= 5, timeout=30)
            _table(table, ["x", "y"], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], 2_000_000_000)
            got += collect(sub, lambda m: len(got) + len(m) >= len(expected), timeout=30)
        assert runner.daemon.zero_shot is not None and runner.daemon.zero_shot.version == 2

    # accounting intact: every marker answered once, in order, sequences without gaps
    assert [m.marker.value for m in got] == [m.value for m in expected]
    predictions = [m for m in got if isinstance(m, Prediction)]
    assert [p.seq for p in predictions] == list(range(len(predictions)))
    assert sub.gaps == {}
    assert all(d.reason == "non-finite" for d in got if isinstance(d, Drop))

    # before the swap the old table, after it the new one, never a mix; probabilities as offline
    kinds = ["old" if set(p.probabilities) == {"a", "b", "c"} else "new" for p in predictions]
    assert all(set(p.probabilities) in ({"a", "b", "c"}, {"x", "y"}) for p in predictions)
    first_new = kinds.index("new")
    assert first_new >= 5 and kinds == ["old"] * first_new + ["new"] * (len(kinds) - first_new)
    model = OnnxModel(model_path)
    card = model.card
    offline = epochs_from_recording(rec, card.input, card.preprocessing, events="^stim/")
    emb = model.run(normalize(offline.X, card.preprocessing.normalization))
    by_value = dict(zip([m.value for m in offline.markers], emb, strict=True))
    tables = {"old": (["a", "b", "c"], np.eye(3, dtype=np.float32)), "new": load_table(table)}
    worst = 0.0
    for p, kind in zip(predictions, kinds, strict=True):
        classes, rows = tables[kind]
        want = probabilities(by_value[p.marker.value], rows, TEMPERATURE)
        worst = max(worst, max(abs(p.probabilities[c] - want[i]) for i, c in enumerate(classes)))
        assert p.label == classes[int(np.argmax(want))]
    assert worst <= 1e-4
