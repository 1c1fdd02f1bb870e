"""Timing and signal faults against the real daemon process, one daemon and one pair of streams per module.

Each test sends its own markers, stamped at their true times, and checks its slice of the answers:
one per matching marker, in order, with the expected drop reasons, later markers served again, and
each served window starting within half a sample of its marker's true time (the probe model says
which sample it saw first).
"""

from __future__ import annotations

import math
import time

import pylsl
import pytest
import zmq

from tests.faults.rig import Rig, check_slice, check_windows, reasons, run_scenario

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def rig(tmp_path_factory, probe_model):
    with Rig(tmp_path_factory.mktemp("timing"), probe_model) as r:
        yield r


def _overlaps(answer, lo, hi, tmin=0.02, duration=0.1):
    start = answer["marker"]["time"] + tmin
    return start <= hi and start + duration >= lo


def test_hole_of_200_ms_drops_only_the_windows_over_it_and_later_windows_are_exact(rig):
    mark = rig.mark()
    hole: list[float] = []
    run_scenario(
        rig.amp,
        rig.markers,
        rig.sub,
        seconds=4.0,
        events=[(2.0, lambda: (hole.append(pylsl.local_clock()), rig.amp.fault(skip=200)))],
    )
    answers, sent = rig.settle(mark)
    check_slice(answers, sent)
    lo, hi = hole[0] - 0.05, hole[0] + 0.25
    drops = [a for a in answers if a["topic"] == "drop"]
    assert drops and all(a["reason"] == "discontinuity" and _overlaps(a, lo, hi) for a in drops), drops
    assert "jumped forward by 0.2" in drops[0]["detail"]
    assert check_windows(answers, rig.amp) >= len(answers) - 3
    # the windows after the hole are served again, exactly
    assert answers[-1]["topic"] == "prediction"


def test_nan_and_inf_cost_only_the_windows_that_touch_them(rig):
    mark = rig.mark()
    run_scenario(
        rig.amp,
        rig.markers,
        rig.sub,
        seconds=3.0,
        events=[
            (1.09, lambda: rig.amp.fault(nan_next=3, bad_value=math.nan)),  # inside a window
            (2.09, lambda: rig.amp.fault(nan_next=3, bad_value=math.inf)),
        ],
    )
    answers, sent = rig.settle(mark)
    check_slice(answers, sent)
    r = reasons(answers)
    assert set(r) <= {"prediction", "non-finite"} and 2 <= r.get("non-finite", 0) <= 4, r
    check_windows(answers, rig.amp)
    assert answers[-1]["topic"] == "prediction"


def test_flat_channels_are_served(rig):
    """c0 and c3 are flat (all zeros): nothing divides by their variance, every marker is predicted."""
    mark = rig.mark()
    run_scenario(rig.amp, rig.markers, rig.sub, seconds=1.5)
    answers, sent = rig.settle(mark)
    check_slice(answers, sent)
    assert reasons(answers) == {"prediction": len(answers)}
    assert all(math.isfinite(p) for a in answers for p in a["probabilities"].values())


def test_out_of_order_markers_are_answered_in_arrival_order_with_exact_windows(rig):
    mark = rig.mark()
    rig.sub.pump(0.1)
    now = pylsl.local_clock()
    for dt in (0.30, 0.10, 0.20, 0.05):  # the stimulus PC sends them shuffled
        rig.markers.push(f"stim/c1/shuffled-{dt}", now - dt + 0.1 / rig.amp.sfreq)
    answers, sent = rig.settle(mark)
    check_slice(answers, sent)
    assert check_windows(answers, rig.amp) == 4


def test_marker_an_hour_ahead_does_not_block_later_markers(rig):
    mark = rig.mark()
    rig.markers.push("stim/c1/an-hour-ahead", pylsl.local_clock() + 3600.0)
    run_scenario(rig.amp, rig.markers, rig.sub, seconds=1.5, start=0.2)
    answers, sent = rig.settle(mark, timeout=5)
    check_slice(answers, sent)
    assert answers[0]["reason"] == "future" and "after the newest sample" in answers[0]["detail"]
    assert reasons(answers[1:]) == {"prediction": len(answers) - 1}
    check_windows(answers, rig.amp)


def test_markers_stamped_in_unix_time_are_answered_future_with_a_warning_naming_the_fix(rig):
    mark = rig.mark()
    rig.markers.push("stim/c1/unix-time", time.time())
    run_scenario(rig.amp, rig.markers, rig.sub, seconds=1.0, start=0.2)
    answers, sent = rig.settle(mark, timeout=5)
    check_slice(answers, sent)
    assert answers[0]["reason"] == "future"
    rig.sub.wait(lambda s: any("Unix time" in w for w in s.statuses[-1]["warnings"]), 5, "clock warning in status")
    assert "pylsl.local_clock()" in rig.daemon.stderr and "clock_offset" in rig.daemon.stderr


def test_markers_as_the_world_sends_them_latin1_empty_and_100_kb(rig):
    mark = rig.mark()
    ignored_before = rig.sub.statuses[-1]["counts"]["ignored_markers"]
    rig.sub.pump(0.1)
    t = pylsl.local_clock() - 0.2 + 0.1 / rig.amp.sfreq
    rig.markers.push(b"stim/c1/caf\xe9-latin1", t)
    rig.markers.push(b"", t + 0.01)
    rig.markers.push("stim/c1/" + "x" * 100_000, t + 0.02)
    rig.markers.push(b"\xff\xfe\x00stim", t + 0.03)  # matches nothing: ignored, not a crash
    answers, _ = rig.settle(mark)
    assert [a["marker"]["value"][:14] for a in answers] == ["stim/c1/caf\ufffd-l", "stim/c1/xxxxxx"]
    assert reasons(answers) == {"prediction": 2}
    assert len(answers[1]["marker"]["value"]) == 100_008
    rig.sub.wait(lambda s: s.statuses[-1]["counts"]["ignored_markers"] == ignored_before + 2, 5, "ignored counted")
    assert "not UTF-8" in rig.daemon.stderr


def test_burst_of_500_markers_in_a_second_is_answered_in_order(rig):
    mark = rig.mark()
    run_scenario(rig.amp, rig.markers, rig.sub, seconds=1.2, start=0.1, every=0.002)
    answers, sent = rig.settle(mark, timeout=20)
    assert len(answers) >= 500
    check_slice(answers, sent)
    assert reasons(answers) == {"prediction": len(answers)}
    check_windows(answers, rig.amp)


def test_slow_and_vanishing_subscribers_never_stall_the_daemon(rig):
    ctx = zmq.Context()
    stuck = ctx.socket(zmq.SUB)  # never reads, tiny queue
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    stuck.connect(rig.daemon.endpoint)
    mark = rig.mark()
    gone = []
    for _ in range(5):  # subscribers that connect and vanish mid-stream
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(rig.daemon.endpoint)
        gone.append(s)
    run_scenario(
        rig.amp,
        rig.markers,
        rig.sub,
        seconds=2.0,
        every=0.01,
        events=[(1.0, lambda: [s.close(linger=0) for s in gone])],
    )
    answers, sent = rig.settle(mark)
    check_slice(answers, sent)
    assert reasons(answers) == {"prediction": len(answers)}
    stuck.close(linger=0)
    ctx.term()


def test_silence_of_5_s_is_reported_lost_then_recovered_with_exact_windows(rig):
    mark = rig.mark()
    run_scenario(
        rig.amp,
        rig.markers,
        rig.sub,
        seconds=8.0,
        events=[(1.0, lambda: rig.amp.fault(silent_until=pylsl.local_clock() + 5.0))],
    )
    answers, sent = rig.settle(mark)
    check_slice(answers, sent)
    r = reasons(answers)
    assert set(r) <= {"prediction", "stream-lost", "discontinuity"} and r.get("stream-lost", 0) >= 10, r
    lost = [s for s in rig.sub.statuses if s["eeg"] and not s["eeg"]["connected"]]
    assert lost and lost[0]["state"] == "degraded"
    assert rig.sub.statuses[-1]["eeg"]["connected"] and rig.sub.statuses[-1]["state"] == "running"
    assert answers[-1]["topic"] == "prediction"
    assert check_windows(answers, rig.amp) >= 5


def test_clock_jumps_of_plus_and_minus_10_s_are_discontinuities_and_serving_resumes(rig):
    mark = rig.mark()
    run_scenario(
        rig.amp,
        rig.markers,
        rig.sub,
        seconds=5.0,
        events=[(1.0, lambda: rig.amp.fault(stamp_offset=10.0)), (3.0, lambda: rig.amp.fault(stamp_offset=0.0))],
    )
    answers, sent = rig.settle(mark)
    check_slice(answers, sent)
    details = " ".join(a.get("detail", "") for a in answers)
    assert "jumped forward by 10.0" in details  # every marker of the +10 s stretch is refused, saying why
    assert "jumped backward by 10.0" in rig.daemon.stderr  # the way back is found and logged too
    assert set(reasons(answers)) <= {"prediction", "discontinuity", "late"}
    # after the clock came back, windows are exact again
    tail = [a for a in answers if a["marker"]["time"] > sent[0][1] + 3.8]
    assert tail and all(a["topic"] == "prediction" for a in tail)
    check_windows(tail, rig.amp)
