"""Streams that go, come back, never start, or are ambiguous — against the real daemon process."""

from __future__ import annotations

import os
import signal
import time

import pylsl
import pytest

from tests.faults.rig import (
    Amp,
    Markers,
    check_accounting,
    check_slice,
    check_windows,
    daemon,
    reasons,
    run_scenario,
    unique,
    wait_streaming,
)

pytestmark = pytest.mark.e2e


def _status(sub, pred, timeout, what):
    sub.wait(lambda s: bool(s.statuses) and pred(s.statuses[-1]), timeout, what)
    return sub.statuses[-1]


def test_devices_restarted_under_new_source_ids_or_none_are_picked_up_again(tmp_path, probe_model):
    """Selected by name: the amplifier and the stimulus program restart with new source_ids (then none)."""
    name = unique("restart")
    amp = Amp(name=name, source_id=unique("amp-a")).start()
    markers = Markers(name=f"{name}-m", source_id=unique("stim-a"))
    with daemon(tmp_path, probe_model, eeg={"name": name}, markers={"name": f"{name}-m"}) as (d, sub):
        markers.wait_for_consumer()
        run_scenario(amp, markers, sub, seconds=1.5)
        first = len(markers.sent)
        sub.wait(lambda s: len(s.answers) >= first, 10, "answers before the restart")
        # both programs restart: new outlets, new source_ids (the EEG one with none at all)
        amp.close()
        markers.close()
        _status(sub, lambda st: not st["eeg"]["connected"] and not st["markers"]["connected"], 15, "both lost")
        amp = Amp(name=name, source_id=None).start()
        markers2 = Markers(name=f"{name}-m", source_id=unique("stim-b"))
        st = _status(sub, lambda st: st["eeg"]["connected"] and st["markers"]["connected"], 15, "both back")
        assert st["eeg"]["reconnects"] == 1 and st["markers"]["reconnects"] == 1 and st["state"] == "running"
        markers2.wait_for_consumer()
        markers2.sent = []
        mark = len(sub.answers)
        run_scenario(amp, markers2, sub, seconds=1.5)
        sub.wait(lambda s: len(s.answers) - mark >= len(markers2.sent), 10, "answers after the restart")
        # the source_id-less amplifier vanishes too: the daemon survives it (liblsl cannot recover such a stream)
        amp.close()
        _status(sub, lambda st: not st["eeg"]["connected"], 15, "EEG lost again")
        assert d.proc.poll() is None
    after = sub.answers[mark:]
    check_slice(after, markers2.sent)
    assert reasons(after) == {"prediction": len(after)}
    check_windows(after, amp)
    markers2.close()


def test_eeg_that_never_sends_is_reported_lost_and_markers_before_any_eeg_are_answered(tmp_path, probe_model, names):
    amp = Amp(name=names[0], source_id=names[0])  # the outlet exists, but no sample is ever pushed yet
    markers = Markers(name=names[1], source_id=names[1])
    with daemon(tmp_path, probe_model, eeg={"source_id": names[0]}, markers={"source_id": names[1]}) as (_d, sub):
        markers.wait_for_consumer()
        for i in range(3):
            markers.push(f"stim/c1/early-{i}", pylsl.local_clock())
        st = _status(sub, lambda st: st["eeg"] and not st["eeg"]["connected"], 10, "EEG reported lost")
        assert st["state"] == "degraded"
        sub.wait(lambda s: len(s.answers) >= 3, 5, "markers before any EEG answered")
        assert reasons(sub.answers) == {"stream-lost": 3}
        amp.start()  # the amplifier starts at last: served from then on
        mark = len(sub.answers)
        markers.sent = markers.sent[:0]
        run_scenario(amp, markers, sub, seconds=1.5)
        sub.wait(lambda s: len(s.answers) - mark >= len(markers.sent), 10, "answers")
    after = sub.answers[mark:]
    check_slice(after, markers.sent)
    assert reasons(after) == {"prediction": len(after)}
    check_windows(after, amp)
    amp.close()
    markers.close()


def test_markers_after_the_eeg_is_gone_for_good_are_answered_stream_lost(tmp_path, probe_model, names):
    amp = Amp(name=names[0], source_id=names[0]).start()
    markers = Markers(name=names[1], source_id=names[1])
    with daemon(tmp_path, probe_model, eeg={"source_id": names[0]}, markers={"source_id": names[1]}) as (_d, sub):
        markers.wait_for_consumer()
        wait_streaming(sub)
        amp.fault(stop=True)
        _status(sub, lambda st: not st["eeg"]["connected"], 10, "EEG lost")
        t = time.monotonic()
        for i in range(5):
            markers.push(f"stim/c1/late-{i}", pylsl.local_clock())
        sub.wait(lambda s: len(s.answers) >= 5, 5, "answers")
        assert time.monotonic() - t < 3.0  # answered at once, not held
    answers = check_accounting(sub, markers.sent)
    assert reasons(answers) == {"stream-lost": 5}
    amp.close()
    markers.close()


def test_a_stalled_daemon_is_not_a_lost_stream(tmp_path, probe_model, names):
    """SIGSTOP for 3 s (longer than stream_timeout): liblsl buffers, nothing is lost, every window is exact."""
    amp = Amp(name=names[0], source_id=names[0]).start()
    markers = Markers(name=names[1], source_id=names[1])
    with daemon(tmp_path, probe_model, eeg={"source_id": names[0]}, markers={"source_id": names[1]}) as (d, sub):
        markers.wait_for_consumer()

        def stall():
            os.kill(d.proc.pid, signal.SIGSTOP)
            time.sleep(3.0)  # pacing: the stall itself
            os.kill(d.proc.pid, signal.SIGCONT)

        run_scenario(amp, markers, sub, seconds=5.0, events=[(1.0, stall)])
        sub.wait(lambda s: len(s.answers) >= len(markers.sent), 10, "answers")
    answers = check_accounting(sub, markers.sent)
    assert reasons(answers) == {"prediction": len(answers)}
    assert all(st["eeg"]["connected"] and st["markers"]["connected"] for st in sub.statuses if st["eeg"])
    check_windows(answers, amp)
    amp.close()
    markers.close()


def test_two_eeg_streams_with_one_name_take_the_newest_and_say_so(tmp_path, probe_model):
    name = unique("twins")
    old = Amp(name=name, source_id=unique("old")).start()
    time.sleep(0.2)  # pacing: the second one is created later, so it is the newer
    new = Amp(name=name, source_id=unique("new")).start()
    markers = Markers(name=f"{name}-m", source_id=unique("m"))
    with daemon(tmp_path, probe_model, eeg={"name": name}, markers={"name": f"{name}-m"}) as (d, sub):
        st = _status(sub, lambda st: st["eeg"] is not None, 15, "EEG chosen")
        assert st["eeg"]["source_id"] == new.outlet.get_info().source_id()
        assert "2 EEG streams match" in d.stderr and "Taking the newest" in d.stderr
    for a in (old, new):
        a.close()
    markers.close()


def test_stream_without_channel_labels_is_served_by_position_with_a_warning(tmp_path, probe_model, names):
    amp = Amp(name=names[0], source_id=names[0], labels=False).start()
    markers = Markers(name=names[1], source_id=names[1])
    with daemon(tmp_path, probe_model, eeg={"source_id": names[0], "units": "V"}, markers={"source_id": names[1]}) as (
        d,
        sub,
    ):
        markers.wait_for_consumer()
        run_scenario(amp, markers, sub, seconds=1.5)
        sub.wait(lambda s: len(s.answers) >= len(markers.sent), 10, "answers")
        assert "declares no channel labels" in d.stderr and "[eeg] channels" in d.stderr
    answers = check_accounting(sub, markers.sent)
    check_windows(answers, amp)
    amp.close()
    markers.close()


@pytest.mark.parametrize(
    ("sfreq", "fmt"),
    [(1000.0, pylsl.cf_int16), (1000.0, pylsl.cf_double64), (250.0, pylsl.cf_float32), (2000.0, pylsl.cf_float32)],
)
def test_formats_and_rates_other_than_the_card_are_served(tmp_path, names, sfreq, fmt):
    """int16 and double64 streams; 250 and 2000 Hz streams for a 1 kHz card (resampled after a low-pass)."""
    from tests.faults.rig import make_probe_model

    band = None if sfreq == 1000.0 else (None, 100.0)
    model = make_probe_model(tmp_path / "probe.onnx", bandpass=band)
    amp = Amp(name=names[0], source_id=names[0], sfreq=sfreq, fmt=fmt).start()
    markers = Markers(name=names[1], source_id=names[1])
    with daemon(tmp_path, model, eeg={"source_id": names[0]}, markers={"source_id": names[1]}) as (_d, sub):
        markers.wait_for_consumer()
        run_scenario(amp, markers, sub, seconds=2.0)
        sub.wait(lambda s: len(s.answers) >= len(markers.sent), 10, "answers")
    answers = check_accounting(sub, markers.sent)
    assert reasons(answers) == {"prediction": len(answers)}
    for a in answers:  # the window is where the marker says, on the model's 1 kHz grid
        assert abs(a["window"]["start"] - (a["marker"]["time"] + 0.02)) <= 0.5 / sfreq + 1e-6
    if band is None:
        check_windows(answers, amp)
    amp.close()
    markers.close()


def test_events_come_from_the_card_and_markers_that_never_match_are_warned_about(tmp_path, names):
    from tests.faults.rig import make_probe_model

    model = make_probe_model(tmp_path / "go.onnx", events="^go/")
    amp = Amp(name=names[0], source_id=names[0]).start()
    markers = Markers(name=names[1], source_id=names[1])
    with daemon(
        tmp_path,
        model,
        eeg={"source_id": names[0]},
        markers={"source_id": names[1]},
        runtime={"no_match_warning": 1.0},
    ) as (d, sub):
        markers.wait_for_consumer()
        wait_streaming(sub)
        assert "'^go/' get an epoch (from the model card)" in d.stderr
        assert sub.statuses[-1]["events"] == "^go/ (from the model card)"
        t = pylsl.local_clock() - 0.3
        markers.push("go/c1/1", t)
        markers.push("stim/c1/2", t + 0.01)  # the config's old default: not this model's events
        sub.wait(lambda s: len(s.answers) >= 1, 5, "the card's event answered")
        for i in range(20):
            markers.push(f"Stim/{i}", pylsl.local_clock())
            sub.pump(0.1)
        st = _status(sub, lambda st: any("none has matched" in w for w in st["warnings"]), 10, "no-match warning")
        warning = next(w for w in st["warnings"] if "none has matched" in w)
        assert "'Stim/" in warning and "[markers] events" in warning
    assert [a["marker"]["value"] for a in sub.answers] == ["go/c1/1"]
    amp.close()
    markers.close()
