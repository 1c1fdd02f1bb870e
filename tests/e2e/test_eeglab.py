"""The real EEGLAB tutorial recording, replayed, with a student trained on its own channels."""

from __future__ import annotations

from pathlib import Path

import pytest

from bci_stream.client import Subscriber
from bci_stream.messages import Prediction
from bci_stream.recordings import read_recording
from tests.support import collect, daemon_config, playing, unique

pytestmark = pytest.mark.e2e
torch = pytest.importorskip("torch")

EEGLAB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "eeglab" / "test_raw.set"


@pytest.mark.skipif(not EEGLAB.is_file(), reason=f"{EEGLAB} not present")
def test_eeglab_square_markers_each_get_one_message(tmp_path: Path) -> None:
    from training.export import export_onnx
    from training.fit import train_student

    rec = read_recording(EEGLAB, event_fields=["position"])
    squares = [m for m in rec.markers if m.value.startswith("square/")]
    assert len(squares) == 80
    result = train_student(
        rec,
        events="^square/",
        label_regex=r"position=(?P<label>\d)",
        image_regex=None,
        n_times=56,  # 0.44 s at 128 Hz
        tmin=0.0,
        bandpass=(1.0, 40.0),
        notch=None,
        hidden=16,
        n_layers=1,
        epochs=3,
        seed=0,
        name="eeglab-square-position",
    )
    model = export_onnx(result.model, result.card, tmp_path / "eeglab.onnx")
    assert result.card.input.channels == rec.ch_names  # trained on the file's own 32 channels

    name = unique("eeglab")
    config = daemon_config(
        model, name, f"{name}-markers", markers={"events": "^square/", "label": r"position=(?P<label>\d)"}
    )
    from tests.support import running_daemon

    with Subscriber(config.publish.endpoint, timeout=2.0) as sub, running_daemon(config):
        sub.wait_for("status", timeout=15)
        with playing(rec, name=name, source_id=name, speed=25.0, wait_consumers=10):
            got = collect(sub, lambda m: len(m) >= len(squares), timeout=60)

    # the 74 'rt' button presses get nothing; each 'square' exactly one answer, in order
    assert [m.marker.value for m in got] == [m.value for m in squares]
    preds = [m for m in got if isinstance(m, Prediction)]
    assert len(preds) == len(squares), [m for m in got if not isinstance(m, Prediction)]
    assert all(p.true_label in {"1", "2"} and p.correct is not None for p in preds)
    assert [p.seq for p in preds] == list(range(len(preds)))
