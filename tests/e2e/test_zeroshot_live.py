"""A live daemon serving an embedding model whose class table is swapped mid-session (issue 13)."""

from __future__ import annotations

import hashlib
import os
import signal
import time

import numpy as np
import onnx
import pylsl
import pytest
from onnx import TensorProto, helper, numpy_helper

from bci_stream.card import InputSpec, ModelCard, OutputSpec, Preprocessing, write_card
from bci_stream.client import Subscriber
from bci_stream.daemon import Daemon
from bci_stream.errors import ModelCardError
from bci_stream.inference import OnnxModel
from bci_stream.messages import Drop, Prediction, Status
from bci_stream.pipeline import epochs_from_recording
from bci_stream.signal import normalize
from bci_stream.zeroshot import load_table, probabilities
from tests.e2e.test_daemon import CHANNELS, SFREQ, small_recording
from tests.faults import rig
from tests.support import collect, daemon_config, make_linear_model, playing, running_daemon, unique

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


def _offline_embeddings(model_path, rec):
    """marker value → the model's raw embedding of that epoch, cut and run offline with ONNX Runtime."""
    model = OnnxModel(model_path)
    card = model.card
    offline = epochs_from_recording(rec, card.input, card.preprocessing, events="^stim/")
    emb = model.run(normalize(offline.X, card.preprocessing.normalization))
    return dict(zip([m.value for m in offline.markers], emb, strict=True))


@pytest.mark.parametrize("publish", [True, False], ids=["embeddings-on", "embeddings-off"])
def test_predictions_carry_the_unit_embedding_only_when_asked(tmp_path, publish):
    model_path = _embedding_model(tmp_path / "emb.onnx")
    table = tmp_path / "classes.npz"
    _table(table, ["a", "b", "c"], np.eye(3), 1_000_000_000)
    rec = small_recording(6.0)
    expected = [m for m in rec.markers if m.value.startswith("stim/")]
    name = unique("eeg")
    config = daemon_config(model_path, name, f"{name}-markers", model={"classes": str(table)},
                           publish={"embeddings": publish})  # fmt: skip
    with Subscriber(config.publish.endpoint, timeout=2.0) as sub, running_daemon(config):
        sub.wait_for("status", timeout=15)
        with playing(rec, name=name, source_id=name, speed=2.0, wait_consumers=10):
            got = collect(sub, lambda m: len(m) >= len(expected), timeout=30)
    predictions = [m for m in got if isinstance(m, Prediction)]
    assert len(predictions) >= 5
    if not publish:
        assert all(p.embedding is None for p in predictions)
        return
    by_value = _offline_embeddings(model_path, rec)
    for p in predictions:
        assert p.embedding is not None and len(p.embedding) == DIM
        vector = np.asarray(p.embedding)
        assert abs(np.linalg.norm(vector) - 1.0) < 1e-9
        want = by_value[p.marker.value]
        assert np.allclose(vector, want / np.linalg.norm(want), atol=1e-5)
        # the probabilities are the softmax of this very vector against the table
        assert np.allclose([p.probabilities[c] for c in "abc"], probabilities(vector, np.eye(3), TEMPERATURE),
                           atol=1e-6)  # fmt: skip


def test_embeddings_asked_of_a_classifier_is_refused_naming_the_key(tmp_path):
    model_path = make_linear_model(tmp_path / "lin.onnx", channels=list(CHANNELS), sfreq=SFREQ, n_times=100,
                                   classes=["x", "y"])  # fmt: skip
    config = daemon_config(model_path, unique("eeg"), unique("markers"), publish={"embeddings": True})
    with pytest.raises(ModelCardError, match=r"\[publish\] embeddings"):
        Daemon(config).start()


# --------------------------------------------------------------------------- SIGHUP on the real process
RIG_DIM, RIG_TEMPERATURE = 4, 0.1
OLD = (["a", "b", "c"], [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
NEW = (["x", "y", "z"], [[0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]])


def _rig_embedding_model(path):
    """On the fault rig's amplifier: embedding = the window's first sample (c0..c3) + (1, 0, 0, 1), never zero."""
    graph = helper.make_graph(
        [helper.make_node("Gather", ["eeg", "first"], ["sample"], axis=1),
         helper.make_node("Add", ["sample", "bias"], ["embedding"])],
        "rig-emb", [helper.make_tensor_value_info("eeg", TensorProto.FLOAT, ["batch", rig.N_TIMES, 4])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", RIG_DIM])],
        initializer=[numpy_helper.from_array(np.array(0, dtype=np.int64), "first"),
                     numpy_helper.from_array(np.array([1.0, 0.0, 0.0, 1.0], dtype=np.float32), "bias")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    card = ModelCard(name="rig-embedding", task="embedding",
                     input=InputSpec(sfreq=1000.0, n_times=rig.N_TIMES, tmin=rig.TMIN, channels=rig.CHANNELS,
                                     units="V"),
                     output=OutputSpec(name="embedding", dim=RIG_DIM, temperature=RIG_TEMPERATURE))  # fmt: skip
    write_card(path, card)
    return path


def _push_and_wait(markers, sub, amp, tag, n):
    """Push ``n`` markers now (stamped on the amplifier's clock) and wait until every one is answered."""
    for i in range(n):
        markers.push(f"stim/{tag}/{i}", pylsl.local_clock())
        sub.pump(0.02)  # polling rate: 50 markers/s
    sub.wait(lambda s: len(s.answers) >= len(markers.sent), 10, f"answers to the {tag!r} markers")
    return [a for a in sub.answers if a["marker"]["value"].startswith(f"stim/{tag}/")]


def test_sighup_swaps_a_table_the_file_watch_cannot_see(tmp_path):
    """The table file is rewritten with its old size and modification time (the watch is blind to it): answers keep
    the old table until SIGHUP, then use the new one; status names the new table; every marker answered once."""
    model = _rig_embedding_model(tmp_path / "rig-emb.onnx")
    table = tmp_path / "classes.npz"
    stamp = 1_000_000_000
    _table(table, *OLD, stamp)
    old_sha = hashlib.sha256(table.read_bytes()).hexdigest()
    name = unique("zs")
    amp = rig.Amp(name=name, source_id=name)
    markers = rig.Markers(name=f"{name}-markers", source_id=f"{name}-markers")
    with rig.daemon(tmp_path, model, eeg={"source_id": name}, markers={"source_id": f"{name}-markers"},
                    model={"classes": str(table)}, publish={"embeddings": True}) as (d, sub):  # fmt: skip
        amp.start()
        markers.wait_for_consumer()
        rig.wait_streaming(sub)
        before = _push_and_wait(markers, sub, amp, "before", 6)
        first = sub.statuses[-1]["class_table"]
        assert first["sha256"] == old_sha and first["reloads"] == 0 and first["classes"] == 3
        assert first["source"] == str(table)

        size = table.stat().st_size
        _table(table, *NEW, stamp)  # same shape and name lengths: same size; same mtime
        assert (table.stat().st_size, table.stat().st_mtime_ns) == (size, stamp)
        new_sha = hashlib.sha256(table.read_bytes()).hexdigest()
        assert new_sha != old_sha
        n_status = len(sub.statuses)
        sub.wait(lambda s: len(s.statuses) >= n_status + 3, 5, "three status ticks (the watch looks at each)")
        blind = _push_and_wait(markers, sub, amp, "blind", 6)

        d.signal(signal.SIGHUP)
        sub.wait(lambda s: s.statuses[-1]["class_table"]["sha256"] == new_sha, 5, "status naming the new table")
        status = sub.statuses[-1]["class_table"]
        assert status["reloads"] == 1 and status["version"] == 2 and status["classes"] == 3
        assert status["error"] is None and status["loaded_at"] > first["loaded_at"]
        assert abs(status["loaded_at"] - time.time()) < 10
        after = _push_and_wait(markers, sub, amp, "after", 6)
        assert d.proc.poll() is None  # SIGHUP did not stop it
    rig.check_accounting(sub, markers.sent)
    assert all(a["topic"] == "prediction" for a in sub.answers), rig.reasons(sub.answers)
    for answers, (classes, rows) in ((before, OLD), (blind, OLD), (after, NEW)):
        assert len(answers) == 6
        for a in answers:
            assert sorted(a["probabilities"]) == classes
            want = probabilities(np.asarray(a["embedding"]), np.asarray(rows) / np.linalg.norm(rows, axis=1)[:, None],
                                 RIG_TEMPERATURE)  # fmt: skip
            assert np.allclose([a["probabilities"][c] for c in classes], want, atol=1e-6)
    assert "reloaded (version 2, reload 1)" in d.stderr and new_sha[:12] in d.stderr
    amp.close()
    markers.close()


def test_status_names_the_card_table_and_listen_shows_it():
    from bci_stream.listen import format_message

    status = Status.model_validate({
        "seq": 0, "session": "s", "sent_at": 0.0, "state": "running", "uptime_s": 1.0, "eeg": None, "markers": None,
        "buffer_lag_ms": None, "pending_epochs": 0, "provider": "cpu",
        "model": {"name": "m", "version": "1", "sha256": "0"}, "counts": {}, "accuracy": None, "chance": 0.5,
        "latency_p50_ms": None, "latency_p99_ms": None,
        "class_table": {"source": "/tmp/t/classes.npz", "sha256": "abcdef0123", "classes": 40, "loaded_at": 1.0,
                        "version": 3, "reloads": 2, "error": "bad file"},
    })  # fmt: skip
    line = format_message(status)
    assert "table classes.npz 40 classes sha256 abcdef01 reloads 2 (last reload FAILED)" in line
