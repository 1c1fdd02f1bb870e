"""A small XDF writer and an LSL recorder built on it (what LabRecorder does, for tests and labs without it).

XDF 1.0 (https://github.com/sccn/xdf/wiki/Specifications): the magic ``XDF:``, then chunks of
``[n length bytes][length][uint16 tag][content]``. Tags used here: 1 FileHeader, 2 StreamHeader,
3 Samples, 4 ClockOffset, 6 StreamFooter. Every sample carries its own timestamp (no deduced
stamps), so holes and jitter are stored as they happened. ``pyxdf.load_xdf`` reads the result.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from xml.sax.saxutils import escape

import numpy as np
import pylsl

log = logging.getLogger(__name__)

# struct codes of XDF's numeric channel formats (little-endian).
_NUMERIC = {"float32": "f", "double64": "d", "int8": "b", "int16": "h", "int32": "i", "int64": "q"}

# pylsl channel_format codes → XDF names.
_LSL_FORMATS = {
    pylsl.cf_float32: "float32",
    pylsl.cf_double64: "double64",
    pylsl.cf_string: "string",
    pylsl.cf_int8: "int8",
    pylsl.cf_int16: "int16",
    pylsl.cf_int32: "int32",
    pylsl.cf_int64: "int64",
}


def _varlen(n: int) -> bytes:
    """XDF's variable-length integer: one byte giving the width (1, 4 or 8), then the value."""
    if n < 256:
        return struct.pack("<BB", 1, n)
    if n < 2**32:
        return struct.pack("<BI", 4, n)
    return struct.pack("<BQ", 8, n)


def stream_header_xml(
    *,
    name: str,
    type: str,
    channel_count: int,
    nominal_srate: float,
    channel_format: str,
    source_id: str = "",
    channels: Sequence[dict[str, str]] = (),
    created_at: float = 0.0,
) -> str:
    """The ``<info>`` XML of a stream header, as LSL's ``StreamInfo.as_xml`` would give it.

    ``channels``: one dict per channel (``label``, ``type``, ``unit`` ...), written under ``desc/channels``.
    """
    chans = "".join(
        "<channel>" + "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in ch.items()) + "</channel>" for ch in channels
    )
    return (
        '<?xml version="1.0"?><info>'
        f"<name>{escape(name)}</name><type>{escape(type)}</type><channel_count>{channel_count}</channel_count>"
        f"<nominal_srate>{nominal_srate:.17g}</nominal_srate><channel_format>{channel_format}</channel_format>"
        f"<source_id>{escape(source_id)}</source_id><version>1.1</version><created_at>{created_at:.17g}</created_at>"
        f"<desc>{'<channels>' + chans + '</channels>' if chans else ''}</desc></info>"
    )


class XdfWriter:
    """Write an XDF file chunk by chunk.

    Parameters
    ----------
    path : str or Path
        The file to create (overwritten).

    Examples
    --------
    >>> with XdfWriter("s.xdf") as w:  # doctest: +SKIP
    ...     w.add_stream(1, stream_header_xml(name="amp", type="EEG", channel_count=2, nominal_srate=250,
    ...                                       channel_format="float32"), "float32")
    ...     w.write_samples(1, [[0.0, 1.0]], [12.5])
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._formats: dict[int, str] = {}
        self._stats: dict[int, list[Any]] = {}  # id -> [first, last, count, offsets]
        self._file.write(b"XDF:")
        self._chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')

    def _chunk(self, tag: int, content: bytes) -> None:
        length = len(content) + 2
        width = 1 if length < 256 else 4 if length < 2**32 else 8
        code = {1: "B", 4: "I", 8: "Q"}[width]
        self._file.write(struct.pack(f"<B{code}H", width, length, tag) + content)

    def add_stream(self, stream_id: int, header_xml: str, channel_format: str) -> None:
        """Write a stream header; ``channel_format`` is one of XDF's names (``float32``, ``string`` ...)."""
        if channel_format != "string" and channel_format not in _NUMERIC:
            raise ValueError(f"channel_format={channel_format!r} is not an XDF format ({', '.join(_NUMERIC)}, string)")
        self._formats[stream_id] = channel_format
        self._stats[stream_id] = [None, None, 0, []]
        self._chunk(2, struct.pack("<I", stream_id) + header_xml.encode())

    def write_samples(
        self, stream_id: int, samples: Sequence[Sequence[Any]] | np.ndarray, stamps: Sequence[float]
    ) -> None:
        """Write one Samples chunk: ``samples[i]`` (one value per channel) stamped ``stamps[i]`` (s)."""
        if len(stamps) == 0:
            return
        fmt = self._formats[stream_id]
        body = [struct.pack("<I", stream_id), _varlen(len(stamps))]
        for sample, stamp in zip(samples, stamps, strict=True):
            body.append(struct.pack("<Bd", 8, float(stamp)))
            if fmt == "string":
                for value in sample:
                    raw = str(value).encode()
                    body.append(_varlen(len(raw)) + raw)
            else:
                values = list(np.asarray(sample).ravel())
                body.append(struct.pack(f"<{len(values)}{_NUMERIC[fmt]}", *values))
        self._chunk(3, b"".join(body))
        stats = self._stats[stream_id]
        stats[0] = float(stamps[0]) if stats[0] is None else stats[0]
        stats[1] = float(stamps[-1])
        stats[2] += len(stamps)

    def write_clock_offset(self, stream_id: int, collection_time: float, offset: float) -> None:
        """Record that at ``collection_time`` (recorder clock, s) the stream's clock was ``offset`` s behind."""
        self._chunk(4, struct.pack("<Idd", stream_id, collection_time, offset))
        self._stats[stream_id][3].append((collection_time, offset))

    def close(self) -> None:
        """Write every stream's footer and close the file (idempotent)."""
        if self._file.closed:
            return
        for stream_id, (first, last, count, offsets) in self._stats.items():
            xml = (
                '<?xml version="1.0"?><info>'
                f"<first_timestamp>{(first or 0.0):.17g}</first_timestamp>"
                f"<last_timestamp>{(last or 0.0):.17g}</last_timestamp><sample_count>{count}</sample_count>"
                "<clock_offsets>"
                + "".join(f"<offset><time>{t:.17g}</time><value>{v:.17g}</value></offset>" for t, v in offsets)
                + "</clock_offsets></info>"
            )
            self._chunk(6, struct.pack("<I", stream_id) + xml.encode())
        self._file.close()

    def __enter__(self) -> XdfWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class XdfRecorder:
    """Record LSL streams into an XDF file in a background thread, as LabRecorder does.

    Each stream gets an inlet without processing (timestamps as the sender stamped them) and clock
    offsets every ``offset_interval`` s, so ``pyxdf.load_xdf`` puts all streams on the recorder's clock.

    Parameters
    ----------
    path : str or Path
        The XDF file to write.
    streams : sequence of pylsl.StreamInfo
        What to record (from :func:`pylsl.resolve_byprop` and friends).
    offset_interval : float
        Seconds between clock-offset measurements.
    """

    def __init__(self, path: str | Path, streams: Sequence[pylsl.StreamInfo], *, offset_interval: float = 1.0) -> None:
        self.writer = XdfWriter(path)
        self.offset_interval = offset_interval
        self._inlets: list[tuple[int, pylsl.StreamInlet]] = []
        self._names: dict[int, str] = {}
        #: Samples recorded so far, per stream name.
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        for stream_id, info in enumerate(streams, start=1):
            inlet = pylsl.StreamInlet(info, max_buflen=360, recover=True)
            full = inlet.info(timeout=5.0)
            fmt = _LSL_FORMATS[full.channel_format()]
            self.writer.add_stream(stream_id, full.as_xml(), fmt)
            inlet.open_stream(timeout=5.0)
            self._inlets.append((stream_id, inlet))
            self._names[stream_id] = full.name()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._record, name="xdf-recorder", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> XdfRecorder:
        self._thread.start()
        return self

    def _offsets(self) -> None:
        for stream_id, inlet in self._inlets:
            try:
                offset = inlet.time_correction(timeout=2.0)
            except pylsl.TimeoutError:
                continue
            self.writer.write_clock_offset(stream_id, pylsl.local_clock(), offset)

    def _pull(self) -> int:
        total = 0
        for stream_id, inlet in self._inlets:
            samples, stamps = inlet.pull_chunk(timeout=0.0, max_samples=4096)
            if stamps:
                self.writer.write_samples(stream_id, samples, stamps)
                total += len(stamps)
                with self._lock:
                    name = self._names[stream_id]
                    self.counts[name] = self.counts.get(name, 0) + len(stamps)
        return total

    def _record(self) -> None:
        try:
            self._offsets()
            next_offsets = time.monotonic() + self.offset_interval
            while not self._stop.is_set():
                if not self._pull():
                    self._stop.wait(0.02)
                if time.monotonic() >= next_offsets:
                    self._offsets()
                    next_offsets = time.monotonic() + self.offset_interval
            while self._pull():  # what arrived before the stop
                pass
            self._offsets()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def wait_for(self, condition: Callable[[dict[str, int]], bool], timeout: float) -> None:
        """Wait until ``condition(counts)`` holds (samples recorded per stream name).

        Raises
        ------
        TimeoutError
            After ``timeout`` s, naming the counts reached.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                counts = dict(self.counts)
            if condition(counts):
                return
            if self.error is not None:
                raise self.error
            if time.monotonic() > deadline:
                raise TimeoutError(f"recording {self.writer.path}: condition not met within {timeout:g} s; {counts}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop recording, write the footers and close the file; re-raises an error of the recording thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for _, inlet in self._inlets:
            inlet.close_stream()
        self.writer.close()
        if self.error is not None:
            raise self.error

    def __enter__(self) -> XdfRecorder:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
