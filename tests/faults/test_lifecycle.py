"""Stops: SIGINT/SIGTERM while waiting for streams and mid-stream, with markers still in the inlet."""

from __future__ import annotations

import signal
import time

import pylsl
import pytest

from tests.faults.rig import Amp, Markers, check_accounting, daemon, reasons, wait_streaming

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_waiting_for_streams_exits_0(tmp_path, probe_model, names, signum):
    with daemon(tmp_path, probe_model, eeg={"source_id": names[0]}, markers={"source_id": names[1]}) as (d, _sub):
        d.signal(signum)
        assert d.wait_exit(10) == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_stream_answers_every_marker_already_sent_and_exits_0(tmp_path, probe_model, names, signum):
    amp = Amp(name=names[0], source_id=names[0])
    markers = Markers(name=names[1], source_id=names[1])
    timeout = 2.0
    with daemon(
        tmp_path,
        probe_model,
        eeg={"source_id": names[0]},
        markers={"source_id": names[1]},
        runtime={"shutdown_timeout": timeout},
    ) as (d, sub):
        amp.start()
        markers.wait_for_consumer()
        wait_streaming(sub)
        # 500 markers/s for 0.6 s; the stop arrives while many are still waiting in the inlet or for samples
        t_end = pylsl.local_clock() + 0.6
        i = 0
        while pylsl.local_clock() < t_end:
            markers.push(f"stim/c1/{i}", pylsl.local_clock())
            i += 1
            time.sleep(0.002)  # pacing: 500 markers/s
        asked = time.monotonic()
        d.signal(signum)
        assert d.wait_exit(timeout + 5) == 0
        took = time.monotonic() - asked
        sub.wait(lambda s: len(s.answers) >= len(markers.sent), 5, "every marker answered")
    answers = check_accounting(sub, markers.sent)
    r = reasons(answers)
    assert set(r) <= {"prediction", "shutdown"} and r.get("shutdown", 0) >= 1, r
    assert took < timeout + 1.5  # the process exits within shutdown_timeout (+ interpreter teardown)
    amp.close()
    markers.close()


def test_second_signal_stops_at_once(tmp_path, probe_model, names):
    with daemon(tmp_path, probe_model, eeg={"source_id": names[0]}, markers={"source_id": names[1]}) as (d, _sub):
        d.signal(signal.SIGINT)
        d.signal(signal.SIGINT)
        assert d.wait_exit(10) in (0, 130)


def test_until_idle_stops_with_exit_0_once_the_eeg_ends_and_answers_everything(tmp_path, probe_model, names):
    amp = Amp(name=names[0], source_id=names[0])
    markers = Markers(name=names[1], source_id=names[1])
    with daemon(
        tmp_path,
        probe_model,
        eeg={"source_id": names[0]},
        markers={"source_id": names[1]},
        runtime={"until_idle": 1.0, "stream_timeout": 5.0},
    ) as (d, sub):
        amp.start()
        markers.wait_for_consumer()
        wait_streaming(sub)
        for i in range(3):
            markers.push(f"stim/c1/{i}", pylsl.local_clock() - 0.3)
        markers.push("stim/c1/never-complete", pylsl.local_clock() + 0.2)
        amp.fault(stop=True)  # the replay ends
        assert d.wait_exit(15) == 0
        sub.wait(lambda s: len(s.answers) >= 4, 5, "every marker answered")
    answers = check_accounting(sub, markers.sent)
    assert [a["topic"] for a in answers] == ["prediction"] * 3 + ["drop"]
    assert answers[-1]["reason"] == "shutdown"
    amp.close()
    markers.close()
