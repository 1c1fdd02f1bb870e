"""Helpers for the lab tests: a LabRecorder-like XDF session written with bci_stream.xdf_writer, and inlets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pylsl

from bci_stream.xdf_writer import XdfWriter, stream_header_xml

EEG_RATE = 250.0
N_EEG = 16
HOLE = (2.0, 4.5)  # s into the file: the amplifier dropped out (longer than pyxdf's 2 s / 500-sample break)
EEG_CLOCK_OFFSET = 0.25  # s: the amplifier's host clock runs this far behind the recorder's


def eeg_header(name: str, labels: list[str], rate: float) -> str:
    """A LabRecorder-like header of a float32 EEG stream in microvolts (source_id = name)."""
    channels = [{"label": c, "type": "EEG", "unit": "microvolts"} for c in labels]
    return stream_header_xml(name=name, type="EEG", channel_count=len(labels), nominal_srate=rate,
                             channel_format="float32", source_id=name, channels=channels)  # fmt: skip


def marker_header(name: str) -> str:
    """A header of a string marker stream (source_id = name)."""
    return stream_header_xml(name=name, type="Markers", channel_count=1, nominal_srate=0, channel_format="string",
                             source_id=name)  # fmt: skip


def write_session(path: Path, tag: str) -> dict[str, Any]:
    """A 16-channel EEG with a hole, a stimulus marker stream and a response marker stream, like LabRecorder's.

    The EEG is stamped on its own clock, ``EEG_CLOCK_OFFSET`` s behind the recorder's (clock-offset chunks
    say so); the markers on the recorder's clock. Returns what was written, on the recorder's clock.
    """
    t_start = 1000.0
    n_before, n_after = int(HOLE[0] * EEG_RATE), int(1.5 * EEG_RATE)
    times = np.concatenate(
        [t_start + np.arange(n_before) / EEG_RATE, t_start + HOLE[1] + np.arange(n_after) / EEG_RATE]
    )
    rng = np.random.default_rng(4)
    eeg = (rng.standard_normal((len(times), N_EEG)) * 10).astype(np.float32)
    labels = [f"Ch{i + 1}" for i in range(N_EEG)]
    stim_times = t_start + np.array([0.5, 1.0, 1.5, 4.75, 5.25, 5.75])  # three before the hole, three after
    stim_values = ["stim/face/1", "stim/house/2", "stim/face/3", "stim/house/4", "stim/face/5", "stim/house/6"]
    resp_times = stim_times[[0, 3, 4]] + 0.4
    resp_values = ["resp/left", "resp/right", "resp/left"]
    names = {"eeg": f"g.USBamp-{tag}", "stim": f"LSL_Marker_Strings-{tag}", "resp": f"Responses-{tag}"}
    with XdfWriter(path) as w:
        w.add_stream(
            1,
            stream_header_xml(
                name=names["eeg"],
                type="EEG",
                channel_count=N_EEG,
                nominal_srate=EEG_RATE,
                channel_format="float32",
                source_id=f"gUSBamp-{tag}",
                channels=[{"label": c, "type": "EEG", "unit": "microvolts"} for c in labels],
            ),
            "float32",
        )
        w.add_stream(
            2,
            stream_header_xml(
                name=names["stim"],
                type="Markers",
                channel_count=1,
                nominal_srate=0,
                channel_format="string",
                source_id=f"stim-{tag}",
            ),
            "string",
        )
        w.add_stream(
            3,
            stream_header_xml(
                name=names["resp"],
                type="Markers",
                channel_count=1,
                nominal_srate=0,
                channel_format="string",
                source_id=f"resp-{tag}",
            ),
            "string",
        )
        for k in range(0, len(times), 25):  # EEG in 0.1 s chunks, stamped on the amplifier's clock
            w.write_samples(1, eeg[k : k + 25], list(times[k : k + 25] - EEG_CLOCK_OFFSET))
        w.write_samples(2, [[v] for v in stim_values], list(stim_times))
        w.write_samples(3, [[v] for v in resp_values], list(resp_times))
        for t in (t_start, t_start + 3.0, t_start + 6.0):
            w.write_clock_offset(1, t, EEG_CLOCK_OFFSET)
            w.write_clock_offset(2, t, 0.0)
            w.write_clock_offset(3, t, 0.0)
    return {
        "names": names,
        "labels": labels,
        "eeg": eeg,
        "eeg_times": times,
        "stim": (stim_values, stim_times),
        "resp": (resp_values, resp_times),
    }


def open_inlet(name: str, timeout: float = 10.0) -> pylsl.StreamInlet:
    """An inlet without processing (timestamps as pushed) on the stream called ``name``."""
    found = pylsl.resolve_byprop("name", name, 1, timeout)
    assert found, f"no LSL stream named {name!r} within {timeout} s"
    inlet = pylsl.StreamInlet(found[0], max_buflen=60)
    inlet.open_stream(timeout)
    return inlet


def pull_n(inlet: pylsl.StreamInlet, n: int, timeout: float = 15.0) -> tuple[list[Any], np.ndarray]:
    """Pull until ``n`` samples arrived; fail after ``timeout`` s."""
    samples: list[Any] = []
    stamps: list[float] = []
    deadline = time.monotonic() + timeout
    while len(stamps) < n:
        assert time.monotonic() < deadline, f"got {len(stamps)} of {n} samples within {timeout} s"
        x, ts = inlet.pull_chunk(timeout=0.2, max_samples=4096)
        samples += x
        stamps += ts
    return samples, np.asarray(stamps)
