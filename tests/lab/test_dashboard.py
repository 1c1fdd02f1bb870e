"""The dashboard in a real headless Chromium, against a live replay + daemon: its numbers follow ``status``."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bci_stream.client import Subscriber, SubscriberTimeout
from bci_stream.dashboard.state import DashboardState
from bci_stream.messages import Drop, Prediction, Status
from tests.e2e.test_daemon import CHANNELS, SFREQ, small_recording
from tests.lab.browser import Chromium, find_chromium
from tests.support import daemon_config, make_linear_model, make_valence_model, playing, running_daemon, unique

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

# What the page shows, read from its DOM (the ids are the page's contract with this test).
READ_PAGE = """(() => {
  const t = (id) => document.getElementById(id).textContent;
  return {seq: t("status-seq"), state: t("state"), provider: t("provider"), markers: t("c-markers"),
          ignored: t("c-ignored"), predictions: t("c-predictions"), drops: t("c-drops"), p50: t("lat-p50"),
          p99: t("lat-p99"), accuracy: t("accuracy"), gaps: t("gaps"),
          reasons: Object.fromEntries([...document.querySelectorAll("#drops-by-reason td[data-reason]")]
                                      .map((td) => [td.dataset.reason, td.textContent])),
          bars: document.querySelectorAll("#recent .probs").length,
          confusion: document.querySelectorAll("#confusion td").length,
          card: t("card")};
})()"""


class StatusLog:
    """Every ``status`` (by seq) and every answer the daemon publishes, collected in a thread."""

    def __init__(self, endpoint: str) -> None:
        self.statuses: dict[int, Status] = {}
        self.answers = 0
        self._stop = threading.Event()
        self._sub = Subscriber(endpoint, timeout=0.5)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._sub.recv(timeout=0.3)
            except SubscriberTimeout:
                continue
            if isinstance(msg, Status):
                self.statuses[msg.seq] = msg
            elif isinstance(msg, Prediction | Drop):
                self.answers += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sub.close()


def expected_page(status: Status) -> dict[str, Any]:
    """The page's text for ``status``, formatted as the page formats it."""
    c = status.counts

    def fixed(v: float | None, digits: int) -> str:
        return "–" if v is None else f"{v:.{digits}f}"

    return {
        "seq": str(status.seq),
        "state": status.state,
        "provider": status.provider,
        "markers": str(c.markers),
        "ignored": str(c.ignored_markers),
        "predictions": str(c.predictions),
        "drops": str(c.drops),
        "p50": fixed(status.latency_p50_ms, 2),
        "p99": fixed(status.latency_p99_ms, 2),
        "accuracy": fixed(status.accuracy, 3),
        "reasons": {k: str(v) for k, v in c.drops_by_reason.items()},
    }


def start_dashboard(endpoint: str, model: Path) -> tuple[subprocess.Popen[str], str]:
    """``bci-stream dashboard`` as a real process on a free port; returns it and its URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bci_stream.cli",
            "-q",
            "dashboard",
            "--endpoint",
            endpoint,
            "--port",
            "0",
            "--model",
            str(model),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the first line names the URL (the process exits, and readline returns, on error)
    assert line.startswith("dashboard on http://127.0.0.1:"), f"dashboard did not start: {line}{proc.stdout.read()}"
    return proc, line.split()[2]


@pytest.fixture(scope="module")
def chromium_path() -> str:
    exe = find_chromium()
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it)")
    return exe


def test_page_numbers_update_and_match_status(chromium_path: str, tmp_path: Path) -> None:
    clf = make_linear_model(tmp_path / "clf.onnx", channels=CHANNELS, sfreq=SFREQ, n_times=100, classes=["a", "b", "c"])
    val = make_valence_model(tmp_path / "val.onnx", channels=CHANNELS[:6], context=4)
    rec = small_recording(seconds=8.0)  # NaNs at 5.05 s: a marker dropped, with its reason
    expected = sum(m.value.startswith("stim/") for m in rec.markers)
    name = unique("eeg")
    config = daemon_config(clf, name, f"{name}-markers", model={"valence": str(val)})
    with running_daemon(config):
        log = StatusLog(config.publish.endpoint)
        proc, url = start_dashboard(config.publish.endpoint, clf)
        try:
            with Chromium(tmp_path / "profile") as browser:
                browser.open(url)
                browser.wait_for("document.getElementById('status-seq').textContent !== '–'")
                with playing(rec, name=name, source_id=name, speed=2.5, wait_consumers=10):
                    browser.wait_for("+document.getElementById('c-predictions').textContent > 3")
                    early = browser.evaluate(READ_PAGE)
                    deadline = time.monotonic() + 30
                    while log.answers < expected:
                        assert time.monotonic() < deadline, f"{log.answers} of {expected} markers answered"
                        time.sleep(0.1)  # polling rate of a deadline wait
                    browser.wait_for(
                        f"(+document.getElementById('c-predictions').textContent) + "
                        f"(+document.getElementById('c-drops').textContent) === {expected}"
                    )
                    late = browser.evaluate(READ_PAGE)
                    shot = browser.screenshot(tmp_path / "dashboard.png")
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()

    # the page's numbers are those of the status message it names, and they moved on
    for page in (early, late):
        status = log.statuses[int(page["seq"])]
        assert {k: page[k] for k in expected_page(status)} == expected_page(status)
    assert int(late["seq"]) > int(early["seq"])
    assert int(late["predictions"]) > int(early["predictions"])
    assert int(late["predictions"]) + int(late["drops"]) == expected
    assert late["reasons"], "the NaN stretch drops a marker; its reason is listed"
    assert late["gaps"] == "none"
    assert late["bars"] > 0 and late["confusion"] >= 9  # probability bars; a 3 × 3 confusion matrix
    assert "linear-test 0.0.1" in late["card"]
    assert shot.stat().st_size > 20_000  # saved under the test's tmp dir for a person to look at


def test_state_counts_seq_gaps_per_topic_and_resets_on_a_new_session() -> None:
    state = DashboardState()
    base = {"session": "s1", "sent_at": 0.0, "window_end": 1.0, "value": 0.1, "added_latency_ms": 1.0}
    from bci_stream.messages import ModelInfo, Valence

    info = ModelInfo(name="v", version="1", sha256="x")
    for seq in (0, 1, 4, 5):
        state.update(Valence(seq=seq, model=info, **base))
    assert state.snapshot()["gaps"] == {"valence": 2}
    state.update(Valence(seq=0, model=info, **{**base, "session": "s2"}))  # a restarted daemon: seq from 0
    assert state.snapshot()["gaps"] == {"valence": 2}
    assert len(state.snapshot()["valence"]) == 5


def test_state_classes_follow_a_swapped_class_table() -> None:
    from bci_stream.messages import MarkerInfo, ModelInfo, Timing, Window

    state = DashboardState()

    def prediction(seq: int, probs: dict[str, float]) -> Prediction:
        label = max(probs, key=probs.__getitem__)
        return Prediction(seq=seq, session="s", sent_at=0.0, marker=MarkerInfo(value=f"stim/{seq}", time=1.0),
                          window=Window(start=1.0, end=1.1), label=label, probability=probs[label],
                          probabilities=probs, top_k=[(label, probs[label])],
                          model=ModelInfo(name="m", version="1", sha256="x"),
                          timing=Timing(inference_ms=1.0, batch_size=1, added_latency_ms=1.0))  # fmt: skip

    state.update(prediction(0, {"a": 0.7, "b": 0.2, "c": 0.1}))
    assert state.snapshot()["classes"] == ["a", "b", "c"]
    state.update(prediction(1, {"x": 0.4, "y": 0.6}))  # after a zero-shot table swap
    snap = state.snapshot()
    assert snap["classes"] == ["x", "y"]
    # the page draws each recent row from its own probabilities, so the older row keeps its table's classes
    assert [sorted(r["probabilities"]) for r in snap["recent"]] == [["x", "y"], ["a", "b", "c"]]
