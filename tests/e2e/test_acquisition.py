"""Acquisition apart from inference: honest timing, overload instead of falling behind, a dead worker surfaces."""

from __future__ import annotations

import pytest

from bci_stream.client import Subscriber
from bci_stream.errors import BciStreamError
from bci_stream.messages import Drop, Prediction, Status
from tests.e2e.test_daemon import CHANNELS, SFREQ, small_recording
from tests.support import collect, daemon_config, make_linear_model, playing, running_daemon, unique

pytestmark = pytest.mark.e2e


@pytest.fixture
def model(tmp_path):
    return make_linear_model(
        tmp_path / "m.onnx", channels=CHANNELS, sfreq=SFREQ, n_times=100, tmin=0.02, classes=["a", "b", "c"]
    )


def test_every_prediction_says_where_its_latency_went_from_arrival(model):
    rec = small_recording(nan_at=None)
    n = sum(m.value.startswith("stim/") for m in rec.markers)
    name = unique("eeg")
    config = daemon_config(model, name, f"{name}-markers")
    with Subscriber(config.publish.endpoint, timeout=2.0) as sub, running_daemon(config):
        sub.wait_for("status", timeout=15)
        with playing(rec, name=name, source_id=name, speed=4.0, wait_consumers=10):
            got = collect(sub, lambda m: len(m) >= n, timeout=30)
            status = collect(sub, lambda m: bool(m) and m[-1].counts.predictions == n, timeout=5, topics=("status",))
    for p in got:
        assert isinstance(p, Prediction)
        t = p.timing
        parts = t.preprocess_ms + t.queue_ms + t.inference_ms + t.publish_ms
        assert min(t.preprocess_ms, t.queue_ms, t.inference_ms, t.publish_ms) >= 0
        assert parts == pytest.approx(t.added_latency_ms, abs=0.5), t
        assert t.since_window_end_ms is None  # a replay at 4x runs ahead of the clock: left out, not negative
    last = status[-1]
    assert isinstance(last, Status)
    assert set(last.timing_p99_ms) == {"preprocess", "queue", "inference", "publish", "total"}
    assert last.cpu_percent is not None and last.cpu_percent > 0
    assert any("run ahead" in w for w in last.warnings)


def test_epochs_inference_cannot_take_in_time_are_answered_overload_in_order(model):
    """An age limit no inference can meet: every epoch is answered 'overload', none is lost or reordered."""
    rec = small_recording(nan_at=None)
    expected = [m for m in rec.markers if m.value.startswith("stim/")]
    name = unique("eeg")
    config = daemon_config(model, name, f"{name}-markers", runtime={"max_epoch_age": 1e-6})
    with Subscriber(config.publish.endpoint, timeout=2.0) as sub, running_daemon(config):
        sub.wait_for("status", timeout=15)
        with playing(rec, name=name, source_id=name, speed=4.0, wait_consumers=10):
            got = collect(sub, lambda m: len(m) >= len(expected), timeout=30)
    assert [m.marker.value for m in got] == [m.value for m in expected]
    assert all(isinstance(m, Drop) and m.reason == "overload" for m in got)


def test_a_dying_acquisition_thread_ends_the_daemon_with_its_error_and_answers_its_markers(model):
    rec = small_recording(seconds=20, nan_at=None)
    name = unique("eeg")
    config = daemon_config(model, name, f"{name}-markers")
    with Subscriber(config.publish.endpoint, timeout=2.0) as sub:
        runner = running_daemon(config)
        with (
            playing(rec, name=name, source_id=name, wait_consumers=10),
            pytest.raises(BciStreamError) as err,
            runner as r,
        ):
            sub.wait_for("status", timeout=15)
            collect(sub, lambda m: len(m) >= 2, timeout=15)
            pipeline = r.daemon.acquisition.pipeline

            def broken(*args, **kwargs):  # fault injection: a bug inside acquisition
                raise RuntimeError("boom in acquisition")

            pipeline.push_samples = broken
            r.thread.join(10)
            assert not r.thread.is_alive()  # the daemon did not carry on without its worker
        assert "acquisition stopped" in str(err.value) and "boom" in str(err.value.__cause__)
        # the markers it had accepted were answered all the same
        d = r.daemon
        assert d.counts.markers == d.counts.predictions + d.counts.drops
