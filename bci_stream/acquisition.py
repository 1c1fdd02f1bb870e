"""Acquisition: one thread that pulls the EEG and marker inlets as data arrives and cuts epochs.

It is apart from inference so that samples are pulled (and their arrival time taken) while a batch
runs. It owns the inlets, the timestamp corrector and the epoch pipeline; what it produces goes, in
marker order, into a :class:`ResultQueue` that the daemon's inference loop reads:

- :class:`Accepted` — markers that matched the events (the daemon's ledger: each gets one answer);
- :class:`~bci_stream.epochs.Epoch` / :class:`~bci_stream.epochs.Drop` — the answers, in marker order;
- :class:`ValenceWindow` — band-power model inputs on the hop grid.

Stream health follows DESIGN.md: a stream is *lost* after ``stream_timeout`` seconds without samples
*while we were pulling* (a stalled process is not a lost stream), or when it disappears from the
network; while lost, the selector is resolved again so a device restarted under a new ``source_id``
(or none) is picked up. Any error that ends the thread is kept in :attr:`Acquisition.error`, and the
daemon re-raises it: a dead worker never vanishes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pylsl

from . import lsl
from .config import DaemonConfig
from .epochs import Drop, DropReason, Epoch, Marker
from .errors import BciStreamError, StreamLostError
from .features import FeatureContext, FeaturePipeline
from .pipeline import EpochPipeline
from .timing import StampCorrector

log = logging.getLogger(__name__)

_WATCH_INTERVAL = 0.5  # s between looks at which streams are on the network
_ABSENT_CHECKS = 3  # looks in a row without the marker stream before it counts as lost

# A marker this far from the newest EEG sample was surely stamped on another clock (Unix time, say).
_OTHER_CLOCK_S = 1e5


@dataclass
class Accepted:
    """Markers that matched the events, in arrival order: each will get one prediction or one drop."""

    markers: list[Marker]
    ignored: int = 0  # markers that arrived with them but match no event


@dataclass
class ValenceWindow:
    """One valence-model input: the feature context ending at ``window_end`` (LSL time, s)."""

    window_end: float
    x: np.ndarray
    arrival: float


Item = Accepted | Epoch | Drop | ValenceWindow


class ResultQueue:
    """What acquisition hands to inference, in order; bounded, never blocking the producer.

    When more than ``max_epochs`` epochs wait, the oldest are answered ``overload`` in place (so the
    answers keep marker order) rather than the daemon falling ever further behind.
    """

    def __init__(self, max_epochs: int) -> None:
        self.max_epochs = max_epochs
        self._items: deque[tuple[Item, float]] = deque()
        self._epochs = 0
        self._cond = threading.Condition()

    def put(self, items: Sequence[Item]) -> None:
        if not items:
            return
        now = lsl.local_clock()
        with self._cond:
            for item in items:
                self._items.append((item, now))
                self._epochs += isinstance(item, Epoch)
            if self._epochs > self.max_epochs:
                self._shed()
            self._cond.notify()

    def _shed(self) -> None:
        for i, (item, queued) in enumerate(self._items):
            if self._epochs <= self.max_epochs:
                break
            if isinstance(item, Epoch):
                detail = f"more than {self.max_epochs} epochs waited for inference"
                self._items[i] = (Drop(item.marker, DropReason.OVERLOAD, detail), queued)
                self._epochs -= 1

    def get(self, timeout: float) -> list[tuple[Item, float]]:
        """Everything queued (with the LSL time it was queued), waiting up to ``timeout`` s for the first."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            items = list(self._items)
            self._items.clear()
            self._epochs = 0
            return items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


@dataclass
class StreamHealth:
    """What status reports about one stream (written by acquisition, read by the daemon)."""

    description: lsl.StreamDescription | None = None
    connected: bool = False
    since: float = field(default_factory=time.time)  # unix time of the last change of `connected`
    samples: int = 0
    last_data: float | None = None  # monotonic time of the newest sample
    reconnects: int = 0


class Acquisition:
    """Pull, correct, epoch; hand results to a :class:`ResultQueue`. Runs in its own thread.

    Parameters
    ----------
    config : DaemonConfig
        The daemon's config (runtime timeouts, selectors).
    eeg, markers : pylsl.StreamInfo
        The streams found at start.
    make_pipeline : callable
        Builds the :class:`EpochPipeline` for an EEG stream description (again after a reconnect, when
        the stream may have changed).
    make_features : callable, optional
        Builds the valence :class:`FeaturePipeline` and its context for a description.
    events_matched : callable
        Called with each marker value (matching or not), for the daemon's no-match warning.
    """

    def __init__(
        self,
        config: DaemonConfig,
        eeg: pylsl.StreamInfo,
        markers: pylsl.StreamInfo,
        *,
        make_pipeline: Callable[[lsl.StreamDescription], EpochPipeline],
        make_features: Callable[[lsl.StreamDescription], tuple[FeaturePipeline, FeatureContext]] | None = None,
        on_marker: Callable[[Marker, bool], None] | None = None,
    ) -> None:
        self.config = config
        self.queue = ResultQueue(config.runtime.max_queued_epochs)
        self._make_pipeline = make_pipeline
        self._make_features = make_features
        self._on_marker = on_marker
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.eeg_health = StreamHealth()
        self.marker_health = StreamHealth()
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        timeout = config.runtime.stream_timeout
        self._eeg_watch = lsl.StreamWatch(config.eeg, forget_after=max(2.0, timeout))
        self._marker_watch = lsl.StreamWatch(config.markers, forget_after=max(2.0, timeout))
        self._eeg: lsl.EegInlet | None = None
        self._markers: lsl.MarkerInlet | None = None
        self.pipeline: EpochPipeline | None = None
        self._features: tuple[FeaturePipeline, FeatureContext] | None = None
        self._corrector: StampCorrector | None = None
        self._open_eeg(eeg)
        self._open_markers(markers)
        self._newest: float | None = None
        self._marker_absent = 0  # consecutive watch checks that did not see the marker stream
        self._silent = 0.0  # seconds spent pulling without an EEG sample
        self._last_pull = time.monotonic()
        self._next_watch = 0.0
        self.thread = threading.Thread(target=self._main, name="acquisition", daemon=True)

    # ------------------------------------------------------------------ public
    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float) -> bool:
        """Pull once more, answer every pending marker (``shutdown``) and end; True if it ended in time."""
        self._stop.set()
        self.thread.join(timeout)
        return not self.thread.is_alive()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    @property
    def pending(self) -> int:
        pipeline = self.pipeline
        return pipeline.epocher.pending if pipeline is not None else 0

    @property
    def newest_sample(self) -> float | None:
        """LSL time of the newest EEG sample (corrected), s; None before the first."""
        return self._newest

    def warn_once(self, key: str, message: str) -> None:
        """Log ``message`` once per ``key`` and keep it for ``status``."""
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
            self.warnings.append(message)
        log.warning("%s", message)

    # ------------------------------------------------------------------ opening
    def _open_eeg(self, info: pylsl.StreamInfo) -> None:
        inlet = lsl.EegInlet(info)
        desc = inlet.description
        pipeline = self._make_pipeline(desc)  # may raise: a restarted device with another montage
        if self._eeg is not None:
            self._close(self._eeg)
            self.eeg_health.reconnects += 1
        self._eeg, self.pipeline = inlet, pipeline
        self._corrector = StampCorrector(
            desc.nominal_rate, tolerance=self.config.eeg.timing_tolerance, halftime=self.config.eeg.dejitter_halftime
        )
        self._features = self._make_features(desc) if self._make_features is not None else None
        self._set_connected(self.eeg_health, True, desc)
        self.eeg_health.last_data = None
        self._silent = 0.0

    def _open_markers(self, info: pylsl.StreamInfo) -> None:
        inlet = lsl.MarkerInlet(info)
        if self._markers is not None:
            self._close(self._markers)
            self.marker_health.reconnects += 1
        self._markers = inlet
        self._set_connected(self.marker_health, True, inlet.description)

    @staticmethod
    def _close(inlet: lsl.EegInlet | lsl.MarkerInlet) -> None:
        try:
            inlet.close()
        except Exception:  # closing a dead inlet must not end acquisition
            log.debug("closing an inlet failed", exc_info=True)

    @staticmethod
    def _set_connected(health: StreamHealth, connected: bool, desc: lsl.StreamDescription | None = None) -> None:
        if desc is not None:
            health.description = desc
        if health.connected != connected:
            health.connected = connected
            health.since = time.time()

    # ------------------------------------------------------------------ the loop
    def _main(self) -> None:
        try:
            while not self._stop.is_set():
                self._cycle(self.config.runtime.poll_interval)
            self._finish()
        except BaseException as exc:  # surfaced by the daemon, which re-raises it
            self.error = exc
            log.error("acquisition stopped: %s", exc, exc_info=not isinstance(exc, BciStreamError))
        finally:
            for inlet in (self._eeg, self._markers):
                if inlet is not None:
                    self._close(inlet)
            self._eeg_watch.close()
            self._marker_watch.close()

    def _cycle(self, wait: float) -> None:
        self._pull_markers()
        self._pull_eeg(wait)
        now = time.monotonic()
        if now >= self._next_watch:
            stalled = now - self._next_watch > 0.5  # this process did not run for a while
            self._next_watch = now + _WATCH_INTERVAL
            self._watch_streams(stalled)
        assert self.pipeline is not None
        if self.eeg_health.connected:
            self.queue.put(self.pipeline.poll())
        else:
            self.queue.put(self.pipeline.drain(DropReason.STREAM_LOST, "the EEG stream is lost"))

    def _finish(self) -> None:
        """On stop: what is already in the inlets is still answered, then every pending marker."""
        self._cycle(0.0)
        assert self.pipeline is not None
        self.queue.put(self.pipeline.drain(DropReason.SHUTDOWN, "the daemon stopped before the window was complete"))

    def _pull_markers(self) -> None:
        if self._markers is None:
            return
        try:
            markers = self._markers.pull()
        except StreamLostError as exc:
            self._marker_lost(str(exc))
            return
        if not markers:
            return
        assert self.pipeline is not None
        self.marker_health.samples += len(markers)
        self.marker_health.last_data = time.monotonic()
        offset = self.config.markers.clock_offset
        if offset:
            markers = [Marker(m.value, m.time + offset) for m in markers]
        accepted = self.pipeline.push_markers(markers)
        if self._on_marker is not None:
            chosen = {id(m) for m in accepted}
            for m in markers:
                self._on_marker(m, id(m) in chosen)
        if accepted:
            self._check_clock(accepted)
        self.queue.put([Accepted(accepted, ignored=len(markers) - len(accepted))])

    def _pull_eeg(self, wait: float) -> None:
        if self._eeg is None:
            self._stop.wait(min(wait, 0.05))
            return
        started = time.monotonic()
        # Only time spent pulling counts towards "lost": a stalled process is not a silent stream.
        if started - self._last_pull < 0.5:
            self._silent += started - self._last_pull
        try:
            samples, stamps = self._eeg.pull(timeout=wait)
        except StreamLostError as exc:
            self._eeg_lost(str(exc))
            return
        arrival = lsl.local_clock()
        self._last_pull = time.monotonic()
        n = len(stamps)
        if n == 0:
            # A pull that took far longer than asked spanned a stall of this process: count only the wait.
            self._silent += min(self._last_pull - started, wait + 0.05)
            if self._silent > self.config.runtime.stream_timeout:
                waited = "since it was opened" if self.eeg_health.last_data is None else "while pulling"
                self._eeg_lost(f"no samples for {self._silent:.1f} s {waited}")
            return
        self._silent = 0.0
        self.eeg_health.samples += n
        self.eeg_health.last_data = self._last_pull
        assert self._corrector is not None and self.pipeline is not None
        if not self.eeg_health.connected:
            self._eeg_recovered(float(stamps[0]))
        corrected, breaks = self._corrector.process(stamps)
        for brk in breaks:
            log.warning("discontinuity: %s", brk.describe(self._corrector.nominal_rate))
        self.pipeline.push_samples(samples, corrected, arrival, breaks)
        self._newest = float(corrected[-1])
        self._check_rate()
        if self._features is not None:
            self._push_features(samples, corrected, arrival, bool(breaks))

    def _push_features(self, samples: np.ndarray, stamps: np.ndarray, arrival: float, broke: bool) -> None:
        assert self._features is not None
        features, context = self._features
        if broke:  # band power over a jump is meaningless: start the windows afresh
            features.reset()
            context.reset()
        ready = context.push(features.push(samples, stamps))
        self.queue.put([ValenceWindow(end, x, arrival) for end, x in ready])

    # ------------------------------------------------------------------ health
    def _eeg_lost(self, why: str) -> None:
        if not self.eeg_health.connected:
            return
        assert self._eeg is not None and self.pipeline is not None
        self._set_connected(self.eeg_health, False)
        log.warning("EEG stream %r lost: %s; looking for it again", self._eeg.description.name, why)
        self.pipeline.restart_signal(after=None)
        if self._corrector is not None:
            self._corrector.restart()
        if self._features is not None:
            self._features[0].reset()
            self._features[1].reset()

    def _eeg_recovered(self, first: float) -> None:
        """Samples again from the same inlet (liblsl reconnected it): a new signal starts here."""
        assert self._eeg is not None and self.pipeline is not None
        self._set_connected(self.eeg_health, True)
        last = self._newest if self._newest is not None else first
        detail = f"the EEG stream resumed at {first:.4f} s after a loss (last sample before: {last:.4f} s)"
        self.pipeline.restart_signal(after=first, span=(min(last, first), max(last, first)), detail=detail)
        log.warning("EEG stream %r is back: %s", self._eeg.description.name, detail)

    def _marker_lost(self, why: str) -> None:
        if not self.marker_health.connected:
            return
        assert self._markers is not None
        self._set_connected(self.marker_health, False)
        log.warning("marker stream %r lost: %s; looking for it again", self._markers.description.name, why)

    def _watch_streams(self, stalled: bool) -> None:
        """Notice streams that left the network, and open a replacement for a lost one."""
        eeg_visible = self._eeg_watch.matching()
        marker_visible = self._marker_watch.matching()
        if self._markers is not None and self.marker_health.connected:
            uid = self._markers.description.uid
            absent = bool(uid) and not any(i.uid() == uid for i in marker_visible)
            # After a stall the resolver has not heard anyone for a while: give it time to hear them again.
            self._marker_absent = 0 if (not absent or stalled) else self._marker_absent + 1
            if self._marker_absent >= _ABSENT_CHECKS:
                self._marker_lost("it no longer answers on the network")
        if not self.eeg_health.connected:
            self._reopen(eeg_visible, self._eeg, "EEG", self._open_eeg)
        if not self.marker_health.connected:
            self._reopen(marker_visible, self._markers, "marker", self._open_markers)

    def _reopen(
        self,
        visible: list[pylsl.StreamInfo],
        current: lsl.EegInlet | lsl.MarkerInlet | None,
        role: str,
        open_: Callable[[pylsl.StreamInfo], None],
    ) -> None:
        old_uid = current.description.uid if current is not None else ""
        fresh = [i for i in visible if i.uid() != old_uid]
        if not fresh:
            return  # liblsl itself picks the same outlet up again (recover=True) if it comes back
        info = max(fresh, key=lambda i: i.created_at())
        try:
            open_(info)
        except BciStreamError as exc:
            log.warning("a new %s stream appeared but cannot be used: %s", role, exc)
            return
        log.warning("%s stream picked up again: %s", role, lsl.describe(info).summary())

    def _check_rate(self) -> None:
        assert self._corrector is not None
        rate = self._corrector.measured_rate
        nominal = self._corrector.nominal_rate
        if rate is None or self._corrector.segment_seconds < 10.0:
            return
        off = abs(rate / nominal - 1.0)
        if off > self.config.eeg.rate_tolerance:
            self.warn_once(
                "rate",
                f"EEG stream runs at {rate:.2f} Hz by its timestamps, {100 * off:.2f} % off its nominal "
                f"{nominal:g} Hz (tolerance [eeg] rate_tolerance = {self.config.eeg.rate_tolerance:g}); "
                "timestamps follow the measured rate, but check the amplifier's rate setting",
            )

    def _check_clock(self, markers: list[Marker]) -> None:
        newest = self.newest_sample
        if newest is None:
            return
        for m in markers:
            ahead = m.time - newest
            if abs(ahead) > _OTHER_CLOCK_S:
                self.warn_once(
                    "clock",
                    f"marker {m.value[:40]!r} is stamped {ahead:+.0f} s from the newest EEG sample: the stimulus "
                    "program stamps with another clock (Unix time?). Stamp markers with pylsl.local_clock() (or "
                    "push them without a timestamp), or set [markers] clock_offset",
                )
            elif abs(ahead) > max(self.config.runtime.future_limit, self.config.runtime.buffer_seconds):
                self.warn_once(
                    "offset",
                    f"marker {m.value[:40]!r} is stamped {ahead:+.3f} s from the newest EEG sample, beyond what the "
                    "daemon can serve: a clock offset between the stimulus PC and the amplifier? Fix the clocks "
                    f"or set [markers] clock_offset = {-ahead:.3f}",
                )
