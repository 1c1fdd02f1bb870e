"""Replay → daemon → subscriber over real LSL, ZeroMQ and ONNX Runtime (tiny models, fast)."""

from __future__ import annotations

import numpy as np
import pylsl
import pytest

from bci_stream.card import read_card
from bci_stream.client import Subscriber
from bci_stream.daemon import DaemonThread
from bci_stream.epochs import Marker
from bci_stream.inference import OnnxModel
from bci_stream.messages import Drop, Prediction, Status
from bci_stream.pipeline import epochs_from_recording
from bci_stream.recordings import Recording
from bci_stream.signal import normalize, softmax
from tests.support import collect, daemon_config, make_linear_model, playing, running_daemon, unique

pytestmark = pytest.mark.e2e

SFREQ = 500.0
CHANNELS = [f"E{i}" for i in range(1, 9)]


def small_recording(seconds: float = 12.0, *, nan_at: float | None = 5.05, seed: int = 3) -> Recording:
    """8 channels at 500 Hz in volts, a 'stim/<class>/<image>' marker every 0.3 s, a few others, optional NaNs."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SFREQ)
    data = rng.standard_normal((n, len(CHANNELS))) * 10e-6
    onsets = np.arange(0.5, seconds - 0.6, 0.3)
    classes = ["a", "b", "c"]
    markers = []
    for i, onset in enumerate(onsets):
        cls = classes[i % 3]
        k = int(onset * SFREQ)
        data[k + 20 : k + 80, : 3 + i % 3] += 20e-6  # a class-dependent response
        markers.append(Marker(f"stim/{cls}/{cls}_{i}", float(onset)))
        if i % 7 == 0:
            markers.append(Marker("button", float(onset + 0.1)))  # must be ignored
    if nan_at is not None:
        data[int(nan_at * SFREQ) : int(nan_at * SFREQ) + 5, 2] = np.nan
    return Recording(data, SFREQ, list(CHANNELS), ["eeg"] * len(CHANNELS), "V", markers, source="<small>")


@pytest.fixture
def linear_model(tmp_path):
    return make_linear_model(
        tmp_path / "linear.onnx",
        channels=CHANNELS[::-1][:6],  # a subset, in another order: mapping by name is exercised
        sfreq=SFREQ,
        n_times=100,
        tmin=0.02,
        classes=["a", "b", "c"],
        bandpass=(1.0, 40.0),
        notch=50.0,
    )


def test_every_marker_answered_once_in_order_and_online_equals_offline(linear_model):
    rec = small_recording()
    expected = [m for m in rec.markers if m.value.startswith("stim/")]
    name = unique("eeg")
    config = daemon_config(linear_model, name, f"{name}-markers")
    with Subscriber(config.publish.endpoint, timeout=2.0) as sub, running_daemon(config) as runner:
        sub.wait_for("status", timeout=15)
        with playing(rec, name=name, source_id=name, speed=4.0, wait_consumers=10):
            got = collect(sub, lambda m: len(m) >= len(expected), timeout=30)
        assert runner.daemon.counts.ignored_markers == len(rec.markers) - len(expected)

    # one answer per matching marker, in marker order, none missing
    assert len(got) == len(expected)
    t0 = got[0].marker.time - expected[0].time
    for msg, marker in zip(got, expected, strict=True):
        assert msg.marker.value == marker.value
        assert msg.marker.time - t0 == pytest.approx(marker.time, abs=1e-4)
    predictions = [m for m in got if isinstance(m, Prediction)]
    drops = [m for m in got if isinstance(m, Drop)]
    assert [p.seq for p in predictions] == list(range(len(predictions)))
    assert [d.seq for d in drops] == list(range(len(drops)))
    assert sub.gaps == {}

    # the NaN samples cost exactly the epochs that overlap them, and the daemon went on
    model = OnnxModel(linear_model)
    card = read_card(linear_model)
    offline = epochs_from_recording(rec, card.input, card.preprocessing, events="^stim/")
    assert {d.marker.value for d in offline.drops} == {d.marker.value for d in drops}
    assert drops and all(d.reason == "non-finite" for d in drops)
    assert predictions[-1].marker.time > drops[-1].marker.time

    # offline equals online: same epochs, same model output
    probs = softmax(model.run(normalize(offline.X, card.preprocessing.normalization)))
    by_value = {m.value: p for m, p in zip(offline.markers, probs, strict=True)}
    worst = max(
        max(abs(p.probabilities[c] - by_value[p.marker.value][i]) for i, c in enumerate(model.classes))
        for p in predictions
    )
    assert worst <= 1e-4
    # the window reported is the epoch actually cut: tmin after the marker, n_times / sfreq long
    for p in predictions:
        assert p.window.start - p.marker.time == pytest.approx(0.02, abs=0.5 / SFREQ)
        assert p.window.end - p.window.start == pytest.approx(100 / SFREQ)


def test_accuracy_and_labels_reported(linear_model):
    rec = small_recording(nan_at=None)
    name = unique("eeg")
    config = daemon_config(linear_model, name, f"{name}-markers")
    expected = sum(m.value.startswith("stim/") for m in rec.markers)
    with Subscriber(config.publish.endpoint, timeout=2.0) as sub, running_daemon(config):
        sub.wait_for("status", timeout=15)
        with playing(rec, name=name, source_id=name, speed=4.0, wait_consumers=10):
            got = collect(sub, lambda m: len(m) >= expected, timeout=30)
            status = collect(
                sub, lambda m: bool(m) and m[-1].counts.labelled == expected, timeout=5, topics=("status",)
            )[-1]
    preds = [m for m in got if isinstance(m, Prediction)]
    assert all(p.true_label in {"a", "b", "c"} and p.correct == (p.label == p.true_label) for p in preds)
    assert isinstance(status, Status)
    assert status.accuracy == pytest.approx(np.mean([p.correct for p in preds]))
    assert status.chance == pytest.approx(1 / 3)
    assert status.latency_p50_ms is not None and status.provider.endswith("ExecutionProvider")


def _marker_outlet(source_id: str) -> pylsl.StreamOutlet:
    info = pylsl.StreamInfo(source_id, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, source_id)
    return pylsl.StreamOutlet(info)


def test_pending_markers_are_dropped_on_shutdown(linear_model):
    """A marker whose epoch is not complete at stop is answered with a 'shutdown' drop, and stop is prompt.

    (3 s ahead is inside ``future_limit``: it waits for its samples, so only the stop can answer it.)"""
    rec = small_recording(seconds=60, nan_at=None)
    rec.markers = []
    name = unique("eeg")
    marker_id = unique("markers")  # our own marker outlet, not the player's
    config = daemon_config(linear_model, name, marker_id)
    outlet = _marker_outlet(marker_id)
    with Subscriber(config.publish.endpoint, timeout=2.0) as sub, playing(rec, name=name, source_id=name):
        runner = DaemonThread(config).start()
        sub.wait_for("status", timeout=15)
        assert outlet.wait_for_consumers(10)
        outlet.push_sample(["stim/a/ahead"], pylsl.local_clock() + 3.0)
        collect(sub, lambda m: bool(m) and m[-1].counts.markers == 1, timeout=10, topics=("status",))
        took = runner.stop(timeout=5)
        assert runner.error is None
        drop = collect(sub, lambda m: len(m) >= 1, timeout=5)[0]
    assert isinstance(drop, Drop) and drop.reason == "shutdown" and drop.marker.value == "stim/a/ahead"
    assert took < config.runtime.shutdown_timeout


def test_lost_stream_is_reported_and_recovered(linear_model):
    rec = small_recording(seconds=8, nan_at=None)
    name = unique("eeg")
    config = daemon_config(linear_model, name, f"{name}-markers", runtime={"stream_timeout": 0.5})
    n_first = sum(m.value.startswith("stim/") for m in rec.markers)
    with Subscriber(config.publish.endpoint, timeout=2.0) as sub, running_daemon(config):
        sub.wait_for("status", timeout=15)
        with playing(rec, name=name, source_id=name, speed=4.0, wait_consumers=10):
            first = collect(sub, lambda m: len(m) >= n_first, timeout=30)
        assert all(isinstance(m, Prediction) for m in first)
        lost = collect(sub, lambda m: bool(m) and m[-1].state == "degraded", timeout=10, topics=("status",))[-1]
        assert lost.eeg is not None and not lost.eeg.connected
        # the amplifier comes back under the same source_id: predictions resume
        with playing(rec, name=name, source_id=name, speed=4.0, wait_consumers=20):
            again = collect(sub, lambda m: sum(isinstance(x, Prediction) for x in m) >= 5, timeout=30)
        assert any(isinstance(m, Prediction) for m in again)


def test_slow_subscriber_never_stalls_the_daemon(linear_model):
    """A subscriber that never reads (tiny queue) costs the daemon nothing; another one gets every message."""
    import zmq

    rec = small_recording(nan_at=None)
    name = unique("eeg")
    config = daemon_config(linear_model, name, f"{name}-markers", publish={"high_water_mark": 20})
    expected = sum(m.value.startswith("stim/") for m in rec.markers)
    ctx = zmq.Context()
    stuck = ctx.socket(zmq.SUB)
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.RCVBUF, 1024)
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    stuck.connect(config.publish.endpoint)
    try:
        with Subscriber(config.publish.endpoint, timeout=2.0) as sub, running_daemon(config):
            sub.wait_for("status", timeout=15)
            with playing(rec, name=name, source_id=name, speed=4.0, wait_consumers=10):
                got = collect(sub, lambda m: len(m) >= expected, timeout=30)
        assert len(got) == expected and sub.gaps == {}
    finally:
        stuck.close(linger=0)
        ctx.term()


def _first_sample_model(path, channels, n_times, sfreq):
    """Logits = W · (the window's first sample): a window one sample off moves every logit by order 1."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from bci_stream.card import InputSpec, ModelCard, OutputSpec, Preprocessing, write_card

    w = (np.random.default_rng(5).standard_normal((len(channels), 3)) * 2e5).astype(np.float32)  # 10 µV → O(1)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["eeg", "first"], ["x0"], axis=1),
            helper.make_node("MatMul", ["x0", "W"], ["logits"]),
        ],
        "first-sample",
        [helper.make_tensor_value_info("eeg", TensorProto.FLOAT, ["batch", n_times, len(channels)])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(np.array(0, dtype=np.int64), "first"), numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    card = ModelCard.model_validate(
        {
            "name": "first-sample",
            "input": InputSpec(sfreq=sfreq, n_times=n_times, tmin=0.02, channels=channels).model_dump(),
            "preprocessing": Preprocessing(bandpass=(1.0, 200.0), notch=50.0).model_dump(),
            "output": OutputSpec(classes=["a", "b", "c"]).model_dump(),
        }
    )
    write_card(path, card)
    return path


def _logits(probabilities):
    """Logits up to their mean (what softmax keeps), from probabilities."""
    lp = np.log(np.asarray(probabilities))
    return lp - lp.mean(axis=-1, keepdims=True)


def test_offline_equals_online_to_the_sample_and_a_shifted_marker_fails_the_comparison(tmp_path):
    path = _first_sample_model(tmp_path / "first.onnx", CHANNELS, 100, SFREQ)
    rec = small_recording(nan_at=None)
    expected = [m for m in rec.markers if m.value.startswith("stim/")]
    name = unique("eeg")
    config = daemon_config(path, name, f"{name}-markers")
    with Subscriber(config.publish.endpoint, timeout=2.0) as sub, running_daemon(config):
        sub.wait_for("status", timeout=15)
        with playing(rec, name=name, source_id=name, speed=4.0, wait_consumers=10):
            got = collect(sub, lambda m: len(m) >= len(expected), timeout=30)
    predictions = [m for m in got if isinstance(m, Prediction)]
    assert len(predictions) == len(expected)
    online = _logits([[p.probabilities[c] for c in "abc"] for p in predictions])

    model, card = OnnxModel(path), read_card(path)

    def offline_logits(shift_samples: int) -> np.ndarray:
        shifted = Recording(
            rec.data,
            rec.sfreq,
            rec.ch_names,
            rec.ch_types,
            rec.units,
            [Marker(m.value, m.time + shift_samples / SFREQ) for m in rec.markers],
            source=rec.source,
        )
        cut = epochs_from_recording(shifted, card.input, card.preprocessing, events="^stim/")
        return _logits(softmax(model.run(normalize(cut.X, card.preprocessing.normalization))))

    same = np.abs(online - offline_logits(0)).max()
    assert same < 1e-3, f"offline and online logits differ by {same}"
    # the control: a marker moved by 2 samples must not pass the same comparison
    for shift in (-2, 2):
        assert np.abs(online - offline_logits(shift)).max() > 0.1
