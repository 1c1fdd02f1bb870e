"""The daemon: startup → run → graceful stop, wiring inlets, pipeline, model and publisher.

One thread does everything in a loop (pull markers, pull EEG, cut ready epochs, run them in
batches, publish), so there is no worker that could die unseen: any unexpected error leaves
:meth:`Daemon.serve`, pending markers are answered with ``drop`` (reason ``shutdown``) and the
process exits non-zero. A signal handler only calls :meth:`Daemon.request_stop`.

Accounting rule (DESIGN.md): every marker matching ``[markers] events`` gets exactly one
``prediction`` or one ``drop``, in marker order.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Sequence

import numpy as np
import pylsl

from . import lsl
from .config import DaemonConfig, StreamSelector
from .epochs import Drop, DropReason, Epoch, Marker
from .errors import BciStreamError, ModelCardError
from .features import FeatureContext, FeaturePipeline
from .inference import OnnxModel
from .messages import Counts, MarkerInfo, ModelInfo, Prediction, Status, StreamStatus, Timing, Valence, Window
from .messages import Drop as DropMessage
from .pipeline import EpochPipeline
from .publish import Publisher
from .signal import normalize, softmax
from .zeroshot import ZeroShotHead

log = logging.getLogger(__name__)


def class_for_label(label: str, classes: list[str]) -> str | None:
    """The model class a marker label names: the class itself, or a class whose first word it is.

    EEG-ImageNet classes read ``"n02951358 canoe"`` while markers carry ``n02951358``.
    """
    for cls in classes:
        if label == cls or label == cls.split(" ", 1)[0]:
            return cls
    return None


class _RateMeter:
    """Samples per second over the last status interval."""

    def __init__(self) -> None:
        self.count = 0
        self.since = time.monotonic()
        self.last_data: float | None = None

    def add(self, n: int) -> None:
        self.count += n
        if n:
            self.last_data = time.monotonic()

    def take(self) -> float | None:
        now = time.monotonic()
        elapsed = now - self.since
        rate = self.count / elapsed if elapsed > 0 else None
        self.count, self.since = 0, now
        return rate

    def silent_for(self) -> float | None:
        return None if self.last_data is None else time.monotonic() - self.last_data


class Daemon:
    """``bci-stream run``: serve one model on one EEG stream and one marker stream.

    Use :meth:`serve` (start, run until stopped, stop) or the three steps separately.
    """

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.session = uuid.uuid4().hex[:12]
        self._stop = threading.Event()
        self.started_at = time.monotonic()
        self.state = "starting"
        self.counts = Counts()
        self._drops_by_reason: Counter[str] = Counter()
        self._latencies: deque[float] = deque(maxlen=2000)
        self._label_re = re.compile(config.markers.label) if config.markers.label else None
        self._unknown_labels: set[str] = set()
        self.model: OnnxModel | None = None
        self.publisher: Publisher | None = None
        self.eeg: lsl.EegInlet | None = None
        self.markers: lsl.MarkerInlet | None = None
        self.pipeline: EpochPipeline | None = None
        self.valence_model: OnnxModel | None = None
        self.zero_shot: ZeroShotHead | None = None  # the class table of an embedding model (issue 13)
        self.features: FeaturePipeline | None = None
        self._feature_context: FeatureContext | None = None
        self._valence_latencies: deque[float] = deque(maxlen=2000)
        self._eeg_rate = _RateMeter()
        self._marker_rate = _RateMeter()
        self._next_status = 0.0
        self._lost = False

    # ------------------------------------------------------------------ lifecycle
    def request_stop(self) -> None:
        """Ask the loop to stop (safe from a signal handler: it only sets a flag)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        """Load the model, bind the publisher, wait for both streams and check them against the card."""
        cfg = self.config
        self.model = OnnxModel(cfg.model.path, cfg.model.provider)
        warm_ms = self.model.warm_up()
        out = self.model.card.output
        if self.model.card.task == "embedding":
            assert out.dim is not None and out.temperature is not None  # the card validates both
            self.zero_shot = ZeroShotHead(out.dim, out.temperature, path=cfg.model.classes, classes=out.classes,
                                          table=out.table)  # fmt: skip
        log.info("warm-up inference %.1f ms on %s", warm_ms, self.model.provider)
        if cfg.model.valence is not None:
            self.valence_model = OnnxModel(cfg.model.valence, cfg.model.provider)
            if self.valence_model.card.task != "valence":
                raise ModelCardError(
                    f"[model] valence = {str(cfg.model.valence)!r} is a {self.valence_model.card.task!r} model; "
                    "it needs a card with task = 'valence'"
                )
            self.valence_model.warm_up()
        self.publisher = Publisher(
            cfg.publish.endpoint, self.session, high_water_mark=cfg.publish.high_water_mark, log_path=cfg.publish.log
        )
        self._publish_status()
        deadline = time.monotonic() + cfg.runtime.wait
        eeg_info = self._resolve(cfg.eeg, "EEG", "eeg", deadline)
        marker_info = self._resolve(cfg.markers, "marker", "markers", deadline)
        self.eeg = lsl.EegInlet(eeg_info)
        self.markers = lsl.MarkerInlet(marker_info)
        desc = self.eeg.description
        units = self._stream_units(desc)
        card = self.model.card
        self.pipeline = EpochPipeline(
            card.input,
            card.preprocessing,
            list(desc.channels),
            desc.nominal_rate,
            units,
            events=cfg.markers.events,
            buffer_seconds=cfg.runtime.buffer_seconds,
            source=f"EEG stream {desc.name!r}",
            target=f"model {card.name!r} ({cfg.model.path})",
        )
        if self.valence_model is not None:
            vcard = self.valence_model.card
            self.features = FeaturePipeline.from_card(
                vcard,
                list(desc.channels),
                desc.nominal_rate,
                units,
                source=f"EEG stream {desc.name!r}",
                target=f"valence model {vcard.name!r} ({cfg.model.valence})",
            )
            self._feature_context = FeatureContext(vcard.input.n_times, self.features.n_features)
        self.state = "running"
        log.info(
            "serving %s on EEG %s and markers %s; events %r",
            card.name,
            desc.summary(),
            self.markers.description.summary(),
            cfg.markers.events,
        )

    def _resolve(self, selector: StreamSelector, role: str, section: str, deadline: float) -> pylsl.StreamInfo:
        return lsl.resolve(
            selector,
            role=role,
            wait=max(0.0, deadline - time.monotonic()),
            config_section=section,
            stop=self._stop,
            on_tick=self._maybe_status,  # keep status flowing so clients can handshake while we wait
        )

    def _stream_units(self, desc: lsl.StreamDescription) -> str:
        if self.config.eeg.units:
            return self.config.eeg.units
        declared = {u for u in desc.units if u}
        if len(declared) == 1:
            return declared.pop()
        if len(declared) > 1:
            raise BciStreamError(
                f"EEG stream {desc.name!r} declares mixed units {sorted(declared)}; set [eeg] units to override"
            )
        log.warning("EEG stream %r declares no units; assuming microvolts (set [eeg] units to override)", desc.name)
        return "microvolts"

    def run(self) -> None:
        """Loop until :meth:`request_stop`: pull, epoch, infer, publish, report status."""
        assert self.eeg is not None and self.markers is not None and self.pipeline is not None
        poll = self.config.runtime.poll_interval
        while not self.stopping:
            new_markers = self.markers.pull()
            if new_markers:
                self._marker_rate.add(len(new_markers))
                accepted = self.pipeline.push_markers(new_markers)
                self.counts.markers += len(accepted)
                self.counts.ignored_markers += len(new_markers) - len(accepted)
            samples, stamps = self.eeg.pull(timeout=poll)
            if len(stamps):
                arrival = lsl.local_clock()
                if self._lost:
                    self._recovered()
                self._eeg_rate.add(len(stamps))
                self.pipeline.push_samples(samples, stamps, arrival)
                if self.features is not None:
                    self._valence(samples, stamps, arrival)
            elif not self._lost:
                silent = self._eeg_rate.silent_for()
                if silent is not None and silent > self.config.runtime.stream_timeout:
                    self._stream_lost(silent)
            if self._lost:
                self._emit(self.pipeline.drain(DropReason.STREAM_LOST, "no EEG data"))
            else:
                self._emit(self.pipeline.poll())
            self._maybe_status()

    def stop(self) -> None:
        """Answer every pending marker with ``drop`` (shutdown), send a last status, close everything."""
        self.state = "stopping"
        if self.pipeline is not None:
            self._emit(self.pipeline.drain(DropReason.SHUTDOWN, "daemon stopped"))
        if self.publisher is not None:
            self._publish_status()
        for part in (self.eeg, self.markers):
            if part is not None:
                try:
                    part.close()
                except Exception:  # closing a dead inlet must not hide the original error
                    log.debug("closing inlet failed", exc_info=True)
        if self.publisher is not None:
            self.publisher.close()
        log.info(
            "stopped: %d markers, %d predictions, %d drops %s",
            self.counts.markers,
            self.counts.predictions,
            self.counts.drops,
            dict(self._drops_by_reason),
        )

    def serve(self) -> None:
        """Start, run until stopped, then stop gracefully (also after an error, which is re-raised)."""
        try:
            self.start()
            self.run()
        finally:
            self.stop()

    # ------------------------------------------------------------------ stream health
    def _stream_lost(self, silent: float) -> None:
        assert self.eeg is not None and self.pipeline is not None
        self._lost = True
        self.state = "degraded"
        log.warning(
            "EEG stream %r lost: no data for %.1f s; waiting for it to come back", self.eeg.description.name, silent
        )
        self._publish_status()

    def _recovered(self) -> None:
        assert self.eeg is not None and self.pipeline is not None
        self._lost = False
        self.state = "running"
        self.pipeline.restart_signal()  # the filter state and buffer belong to the old signal
        if self.features is not None and self._feature_context is not None:
            self.features.reset()
            self._feature_context.reset()
        log.warning("EEG stream %r recovered", self.eeg.description.name)

    # ------------------------------------------------------------------ results
    def _emit(self, results: Sequence[Epoch | Drop]) -> None:
        """Publish results in marker order, running the epochs among them in batches."""
        if not results:
            return
        epochs = [r for r in results if isinstance(r, Epoch)]
        outputs: dict[int, tuple[np.ndarray, float, int]] = {}
        failed: dict[int, str] = {}
        max_batch = self.config.model.max_batch
        for start in range(0, len(epochs), max_batch):
            batch = epochs[start : start + max_batch]
            try:
                probs, ms = self._infer(batch)
            except BciStreamError as exc:
                log.error("%s", exc)
                for e in batch:
                    failed[id(e)] = str(exc)
                continue
            for e, p in zip(batch, probs, strict=True):
                outputs[id(e)] = (p, ms, len(batch))
        for r in results:
            if isinstance(r, Drop):
                self._publish_drop(r.marker, r.reason.value, r.detail)
            elif id(r) in failed:
                self._publish_drop(r.marker, DropReason.INFERENCE_ERROR.value, failed[id(r)])
            else:
                p, ms, n = outputs[id(r)]
                self._publish_prediction(r, p, ms, n)

    def _infer(self, batch: list[Epoch]) -> tuple[np.ndarray, float]:
        assert self.model is not None
        card = self.model.card
        x = normalize(np.stack([e.data for e in batch]), card.preprocessing.normalization)
        t = time.perf_counter()
        logits = self.model.run(x)
        ms = (time.perf_counter() - t) * 1e3
        if self.zero_shot is not None:  # embeddings → softmax(cosine / T) over the class table
            return self.zero_shot.probabilities(logits), ms
        return softmax(logits.reshape(len(batch), -1)), ms

    def _model_info(self) -> ModelInfo:
        assert self.model is not None
        return ModelInfo(name=self.model.card.name, version=self.model.card.version, sha256=self.model.sha256)

    def _publish_prediction(self, epoch: Epoch, probs: np.ndarray, inference_ms: float, batch: int) -> None:
        assert self.model is not None and self.publisher is not None
        classes = self.zero_shot.classes if self.zero_shot is not None else self.model.classes
        order = np.argsort(probs)[::-1]
        label = classes[int(order[0])]
        true_label = correct = None
        if self._label_re is not None and (m := self._label_re.search(epoch.marker.value)):
            raw = m.group("label")
            true_label = class_for_label(raw, classes)
            if true_label is None:
                if raw not in self._unknown_labels:
                    self._unknown_labels.add(raw)
                    log.warning("marker label %r is not one of the model's classes; not scored", raw)
            else:
                correct = true_label == label
                self.counts.labelled += 1
                self.counts.correct += int(correct)
        now = lsl.local_clock()
        added = (now - epoch.arrival) * 1e3 if epoch.arrival else 0.0
        self._latencies.append(added)
        self.counts.predictions += 1
        k = min(self.config.model.top_k, len(classes))
        self.publisher.publish(
            Prediction,
            marker=MarkerInfo(value=epoch.marker.value, time=epoch.marker.time),
            window=Window(start=epoch.start, end=epoch.end),
            label=label,
            probability=float(probs[order[0]]),
            probabilities={c: float(p) for c, p in zip(classes, probs, strict=True)},
            top_k=[(classes[int(i)], float(probs[i])) for i in order[:k]],
            true_label=true_label,
            correct=correct,
            model=self._model_info(),
            timing=Timing(
                inference_ms=inference_ms,
                batch_size=batch,
                added_latency_ms=added,
                since_window_end_ms=(now - epoch.end) * 1e3,
            ),
        )

    def _publish_drop(self, marker: Marker, reason: str, detail: str) -> None:
        assert self.publisher is not None
        self.counts.drops += 1
        self._drops_by_reason[reason] += 1
        log.info("drop %s: %s (%s)", marker.value, reason, detail)
        self.publisher.publish(
            DropMessage, marker=MarkerInfo(value=marker.value, time=marker.time), reason=reason, detail=detail
        )

    def _valence(self, samples: np.ndarray, stamps: np.ndarray, arrival: float) -> None:
        """Band-power windows on the hop grid → valence model → one ``valence`` message per window."""
        assert self.features is not None and self._feature_context is not None
        assert self.valence_model is not None and self.publisher is not None
        ready = self._feature_context.push(self.features.push(samples, stamps))
        if not ready:
            return
        model = self.valence_model
        info = ModelInfo(name=model.card.name, version=model.card.version, sha256=model.sha256)
        for window_end, x in ready:
            try:
                out = model.run(x)
            except BciStreamError as exc:
                log.error("valence: %s", exc)
                continue
            now = lsl.local_clock()
            added = (now - arrival) * 1e3
            self._valence_latencies.append(added)
            value = float(np.asarray(out).reshape(-1)[-1])  # the last step is the newest window
            self.publisher.publish(Valence, window_end=window_end, value=value, model=info, added_latency_ms=added)

    # ------------------------------------------------------------------ status
    def _maybe_status(self) -> None:
        if time.monotonic() >= self._next_status:
            if self.zero_shot is not None:
                self.zero_shot.maybe_reload()  # between batches: a batch's classes never change under it
            self._publish_status()

    def _stream_status(self, inlet: lsl.EegInlet | lsl.MarkerInlet | None, meter: _RateMeter) -> StreamStatus | None:
        if inlet is None:
            return None
        d = inlet.description
        return StreamStatus(
            name=d.name,
            source_id=d.source_id,
            nominal_rate=d.nominal_rate,
            measured_rate=meter.take(),
            connected=not (self._lost and isinstance(inlet, lsl.EegInlet)),
            seconds_since_data=meter.silent_for(),
        )

    def latency_percentiles(self, which: str = "prediction") -> tuple[float | None, float | None]:
        """Added-latency p50 and p99 (ms) over the last 2000 ``prediction`` or ``valence`` messages."""
        values = self._latencies if which == "prediction" else self._valence_latencies
        if not values:
            return None, None
        p50, p99 = np.percentile(np.asarray(values), [50, 99])
        return float(p50), float(p99)

    def _publish_status(self) -> None:
        assert self.model is not None and self.publisher is not None
        self._next_status = time.monotonic() + self.config.publish.status_interval
        lag = None
        if self.pipeline is not None and len(self.pipeline.buffer):
            lag = (lsl.local_clock() - float(self.pipeline.buffer.times[-1])) * 1e3
        p50, p99 = self.latency_percentiles()
        v50, v99 = self.latency_percentiles("valence")
        self.counts.drops_by_reason = dict(self._drops_by_reason)
        n_classes = len(self.zero_shot.classes if self.zero_shot is not None else self.model.classes)
        self.publisher.publish(
            Status,
            state=self.state,
            uptime_s=time.monotonic() - self.started_at,
            eeg=self._stream_status(self.eeg, self._eeg_rate),
            markers=self._stream_status(self.markers, self._marker_rate),
            buffer_lag_ms=lag,
            pending_epochs=self.pipeline.epocher.pending if self.pipeline else 0,
            provider=self.model.provider,
            model=self._model_info(),
            counts=self.counts.model_copy(),
            accuracy=(self.counts.correct / self.counts.labelled) if self.counts.labelled else None,
            chance=1.0 / n_classes if n_classes else None,
            latency_p50_ms=p50,
            latency_p99_ms=p99,
            valence_latency_p50_ms=v50,
            valence_latency_p99_ms=v99,
        )


class DaemonThread:
    """A :class:`Daemon` serving in a background thread (benchmarks, tests, embedding in your own program).

    An error that ends the daemon is kept in :attr:`error` and re-raised by :meth:`stop`, so a daemon
    that dies in its thread never vanishes.
    """

    def __init__(self, config: DaemonConfig) -> None:
        self.daemon = Daemon(config)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, name="daemon", daemon=True)

    def _serve(self) -> None:
        try:
            self.daemon.serve()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def start(self) -> DaemonThread:
        self.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> float:
        """Ask for a graceful stop and wait; returns how long it took (s).

        Raises
        ------
        BciStreamError
            If the thread is still alive after ``timeout``.
        BaseException
            The error that ended the daemon, if any.
        """
        t = time.monotonic()
        self.daemon.request_stop()
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise BciStreamError(f"daemon did not stop within {timeout:g} s")
        if self.error is not None:
            raise self.error
        return time.monotonic() - t
