"""Valence served live: band-power windows on the hop grid, independent of markers, equal to offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bci_stream.card import read_card
from bci_stream.client import Subscriber
from bci_stream.daemon import Daemon
from bci_stream.errors import ModelCardError
from bci_stream.features import features_from_recording
from bci_stream.inference import OnnxModel
from bci_stream.messages import Valence
from tests.e2e.test_daemon import CHANNELS, SFREQ, small_recording
from tests.support import collect, daemon_config, make_linear_model, make_valence_model, playing, running_daemon, unique

pytestmark = pytest.mark.e2e


@pytest.fixture
def models(tmp_path: Path) -> tuple[Path, Path]:
    clf = make_linear_model(tmp_path / "clf.onnx", channels=CHANNELS, sfreq=SFREQ, n_times=100, classes=["a", "b", "c"])
    val = make_valence_model(tmp_path / "val.onnx", channels=CHANNELS[:6], context=4)
    return clf, val


def test_valence_every_hop_for_the_whole_replay_equal_to_offline(models: tuple[Path, Path]) -> None:
    clf, val = models
    rec = small_recording(seconds=12.0, nan_at=None)
    card = read_card(val)
    times, X = features_from_recording(rec, card)
    context = card.input.n_times
    expected = len(times) - (context - 1)  # the first window with a full context is the 4th
    name = unique("eeg")
    config = daemon_config(clf, name, f"{name}-markers", model={"valence": str(val)})
    with Subscriber(config.publish.endpoint, ["valence", "status"], timeout=2.0) as sub, running_daemon(config):
        sub.wait_for("status", timeout=15)
        with playing(rec, name=name, source_id=name, speed=4.0, wait_consumers=10):
            got = collect(sub, lambda m: len(m) >= expected, timeout=30, topics=("valence",))
    assert len(got) == expected
    assert all(isinstance(v, Valence) for v in got)
    assert [v.seq for v in got] == list(range(expected))  # none missing
    ends = np.array([v.window_end for v in got])
    assert np.allclose(np.diff(ends), 0.25, atol=1e-3)  # 4 Hz, on the hop grid
    t0 = ends[0] - times[context - 1]
    assert np.allclose(ends - t0, times[context - 1 :], atol=1e-3)
    model = OnnxModel(val)
    offline = [float(model.run(X[k - context + 1 : k + 1][None]).reshape(-1)[-1]) for k in range(context - 1, len(X))]
    assert np.max(np.abs(np.array([v.value for v in got]) - offline)) <= 1e-4


def test_valence_model_the_stream_cannot_feed_is_refused(tmp_path: Path, models: tuple[Path, Path]) -> None:
    clf, _ = models
    too_many = make_valence_model(tmp_path / "wide.onnx", channels=[*CHANNELS, "Fz", "Pz"])
    name = unique("eeg")
    rec = small_recording(seconds=30, nan_at=None)
    with playing(rec, name=name, source_id=name):
        config = daemon_config(clf, name, f"{name}-markers", model={"valence": str(too_many)})
        with pytest.raises(
            ModelCardError, match=r"EEG stream '.*' has 8 channels but valence model 'valence-test' .* needs 10"
        ):
            Daemon(config).serve()
    slow = small_recording(seconds=30, nan_at=None)
    slow.data, slow.sfreq = slow.data[::8], SFREQ / 8  # 62.5 Hz: Nyquist below the 45 Hz band edge
    slow.markers = []
    clf_slow = make_linear_model(
        tmp_path / "slow.onnx", channels=CHANNELS, sfreq=SFREQ / 8, n_times=10, classes=["a", "b"]
    )
    fine = make_valence_model(tmp_path / "fine.onnx", channels=CHANNELS[:6])
    name = unique("eeg")
    with playing(slow, name=name, source_id=name):
        config = daemon_config(clf_slow, name, f"{name}-markers", model={"valence": str(fine)})
        with pytest.raises(ModelCardError, match=r"62\.5 Hz.*45"):
            Daemon(config).serve()
