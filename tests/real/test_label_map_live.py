"""Live accuracy for a model whose classes come from a label map (marker value → class), served by the daemon.

The N170 runs relabelled as the original CSV had them (1 = house, 2 = face): a regex could pick ``1``/``2`` out but
not name them, so the card carries the map, the daemon scores by it, and live accuracy equals offline accuracy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bci_stream.card import read_card
from bci_stream.client import Subscriber
from bci_stream.demo import offline_accuracy
from bci_stream.epochs import Marker
from bci_stream.listen import card_summary
from bci_stream.messages import Prediction, Status
from bci_stream.recordings import read_recording
from bci_stream.truth import TruthRule
from tests.support import collect, daemon_config, playing, running_daemon, unique

pytestmark = pytest.mark.e2e

CODES = {"stim/house": "1", "stim/face": "2"}  # the eeg-notebooks CSV marker column
MAP = {"1": "house", "2": "face"}

CONFIG = """
[data]
recordings = ["{train}"]
events = "^[12]$"
image_regex = ""
tmin = 0.0
tmax = 0.5
bandpass = [1.0, 30.0]
notch = 0.0

[data.label_map]
"1" = "house"
"2" = "face"

[student]
name = "cogninet-blstm"
options = {{ hidden = 8, n_features = 8, dropout = 0.0, n_layers = 1 }}

[train]
epochs = 2
batch_size = 16
seed = 0

[run]
name = "n170-codes"
"""


def coded(src: Path, dst: Path) -> Path:
    """``src`` with its markers written as the CSV's codes (``1``/``2``), as FIF."""
    from training.synthetic import write_fif

    rec = read_recording(src)
    rec.markers = [Marker(CODES[m.value], m.time) for m in rec.markers]
    return write_fif(rec, dst)


def test_daemon_scores_live_accuracy_by_the_cards_label_map(sub02, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from training.runs import export_run, fit_run

    train, test = coded(sub02[0], tmp_path / "run1.fif"), coded(sub02[1], tmp_path / "run2.fif")
    config = tmp_path / "codes.toml"
    config.write_text(CONFIG.format(train=train))
    fit_run(config, out=tmp_path / "run", progress=False)
    model = export_run(tmp_path / "run")
    card = read_card(model).input
    assert card.label_map == MAP and card.events == "^[12]$"  # the run's card carries the map
    assert any("labels by map {'1': 'house', '2': 'face'}" in line for line in card_summary(read_card(model)))

    rec = read_recording(test)
    name = unique("n170-codes")
    cfg = daemon_config(model, name, f"{name}-markers")  # no [markers]: events and labels from the card
    with Subscriber(cfg.publish.endpoint, timeout=2.0) as sub, running_daemon(cfg):
        sub.wait_for("status", timeout=15)
        with playing(rec, name=name, source_id=name, speed=10.0, wait_consumers=10):
            got = collect(sub, lambda m: len(m) >= len(rec.markers), timeout=90)
        status = collect(sub, lambda m: bool(m) and m[-1].counts.labelled == len(got), timeout=10,
                         topics=("status",))[-1]  # fmt: skip

    preds = [m for m in got if isinstance(m, Prediction)]
    assert len(preds) == len(rec.markers) == 198, [m for m in got if not isinstance(m, Prediction)]
    assert [p.true_label for p in preds] == [MAP[m.value] for m in rec.markers]  # every marker scored, by the map
    live = sum(bool(p.correct) for p in preds) / len(preds)
    assert isinstance(status, Status) and status.accuracy == pytest.approx(live)
    assert status.labels is not None and status.labels.startswith("map {'1': 'house', '2': 'face'}"), status.labels

    # the same epochs cut offline (the replay's float32 round trip), scored by the same rule
    offline = offline_accuracy(test, model, "^[12]$", TruthRule.choose(cfg.markers, card))
    assert f"{live:.3f}" == offline, (live, offline)
