"""The daemon: startup → run → graceful stop, wiring acquisition, model and publisher.

Two threads. :class:`~bci_stream.acquisition.Acquisition` pulls the inlets as data arrives, corrects
timestamps, filters and cuts epochs; this module's loop takes what is ready from its queue, runs the
epochs in batches on ONNX Runtime and publishes, in marker order. The publisher (a ZeroMQ socket, not
thread-safe) is used by this loop only. A signal handler only calls :meth:`Daemon.request_stop`; an
error in either thread ends :meth:`Daemon.serve`, after every marker has been answered.

Accounting rule (DESIGN.md): every marker matching the events gets exactly one ``prediction`` or one
``drop``, in marker order. A ledger of accepted markers makes sure of it even if acquisition dies.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pylsl

from . import lsl
from .acquisition import Accepted, Acquisition, Item, StreamHealth, ValenceWindow
from .card import card_event_fields
from .config import DEFAULT_EVENTS, DaemonConfig, StreamSelector, marker_rules
from .epochs import Drop, DropReason, Epoch, Marker
from .errors import BciStreamError, ModelCardError
from .features import FeatureContext, FeaturePipeline
from .inference import OnnxModel, SessionSettings
from .messages import (
    ClassTable,
    Counts,
    MarkerInfo,
    ModelInfo,
    Prediction,
    Status,
    StreamStatus,
    Timing,
    Valence,
    Window,
)
from .messages import Drop as DropMessage
from .pipeline import EpochPipeline
from .publish import Publisher
from .signal import normalize, softmax
from .truth import TruthRule, class_for_label
from .zeroshot import ZeroShotHead, unit_rows

log = logging.getLogger(__name__)

_TIMING_PARTS = ("preprocess", "queue", "inference", "publish", "total")
#: Predictions without a true label, while none has had one, before the label rule is warned about.
_UNLABELLED_WARNING = 5


def format_drops(by_reason: Mapping[str, int]) -> str:
    """``drops: none`` or ``3 drops: overload 2, shutdown 1`` (reasons by count, then name)."""
    if not by_reason:
        return "drops: none"
    total = sum(by_reason.values())
    shown = ", ".join(f"{r} {n}" for r, n in sorted(by_reason.items(), key=lambda rn: (-rn[1], rn[0])))
    return f"{total} drop{'s' if total != 1 else ''}: {shown}"


class _NoMatchWatch:
    """Notices markers that keep arriving while none matches the events (fed by acquisition)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last_match: float | None = None
        self.unmatched_since: float | None = None
        self.sample: dict[str, int] = {}

    def __call__(self, marker: Marker, matched: bool) -> None:
        now = time.monotonic()
        with self._lock:
            if matched:
                self.last_match, self.unmatched_since = now, None
                self.sample.clear()
            else:
                if self.unmatched_since is None:
                    self.unmatched_since = now
                if len(self.sample) < 5 or marker.value[:60] in self.sample:
                    self.sample[marker.value[:60]] = self.sample.get(marker.value[:60], 0) + 1

    def unmatched_for(self) -> tuple[float, dict[str, int]]:
        with self._lock:
            if self.unmatched_since is None:
                return 0.0, {}
            return time.monotonic() - self.unmatched_since, dict(self.sample)


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
        self._parts: dict[str, deque[float]] = {k: deque(maxlen=2000) for k in _TIMING_PARTS}
        self.zero_shot: ZeroShotHead | None = None  # the class table of an embedding model (issue 13)
        self._valence_latencies: deque[float] = deque(maxlen=2000)
        self._truth = TruthRule(None, None, "none")  # how a marker names its true class (live accuracy)
        self.events: str = DEFAULT_EVENTS
        self._events_from = "default"
        self._unknown_labels: set[str] = set()
        self._ledger: deque[Marker] = deque()  # accepted markers not yet answered, in order
        self.model: OnnxModel | None = None
        self.valence_model: OnnxModel | None = None
        self.publisher: Publisher | None = None
        self.acquisition: Acquisition | None = None
        self._no_match = _NoMatchWatch()
        self._next_status = 0.0
        self._rates: dict[str, tuple[int, float]] = {}
        self._cpu = (time.process_time(), time.monotonic())
        self._cpu_percent: float | None = None
        self._clock_ahead = False
        self._served = False  # start() got to running (the stop summary is logged only then)
        self._start_warnings: list[str] = []  # start-up warnings, repeated in every status
        self._unlabelled = 0  # predictions whose marker the label rule gave no true class
        self._unlabelled_sample: list[str] = []

    # ------------------------------------------------------------------ lifecycle
    def request_stop(self) -> None:
        """Ask the loop to stop (safe from a signal handler: it only sets a flag)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        """Load the models, bind the publisher, wait for both streams, check them against the card, start pulling."""
        cfg = self.config
        settings = SessionSettings.from_config(cfg.model)
        self._check_model_file("model.path", "--model")
        self.model = OnnxModel(cfg.model.path, cfg.model.provider, settings)
        self.model.warm_up(repeats=1, batch_sizes=range(1, cfg.model.max_batch + 1))  # every batch size it may run
        warm_ms = self.model.warm_up()
        out = self.model.card.output
        if self.model.card.task == "embedding":
            assert out.dim is not None and out.temperature is not None  # the card validates both
            self.zero_shot = ZeroShotHead(out.dim, out.temperature, path=cfg.model.classes, classes=out.classes,
                                          table=out.table)  # fmt: skip
        elif cfg.publish.embeddings:
            raise ModelCardError(
                f"[publish] embeddings = true (run --embeddings), but {str(cfg.model.path)!r} is a "
                f"{self.model.card.task!r} model with no embedding to publish; leave it off or serve an embedding "
                "model (card task 'embedding')"
            )
        log.info("warm-up inference %.1f ms on %s", warm_ms, self.model.provider)
        if cfg.model.valence is not None:
            self._check_model_file("model.valence", "--valence-model")
            self.valence_model = OnnxModel(cfg.model.valence, cfg.model.provider, settings)
            if self.valence_model.card.task != "valence":
                raise ModelCardError(
                    f"[model] valence = {str(cfg.model.valence)!r} is a {self.valence_model.card.task!r} model; "
                    "it needs a card with task = 'valence'"
                )
            self.valence_model.warm_up()
        self._choose_events()
        self.publisher = Publisher(
            cfg.publish.endpoint,
            self.session,
            high_water_mark=cfg.publish.high_water_mark,
            log_path=cfg.publish.log,
            curve_secret_key=cfg.publish.curve_secret_key,
            curve_authorized_clients=cfg.publish.curve_authorized_clients,
            insecure=cfg.publish.insecure,
        )
        if cfg.publish.lsl:  # results as LSL outlets too, for the lab's recorder
            from .outlets import ResultOutlets

            vcard = self.valence_model.card if self.valence_model is not None else None
            outlets = ResultOutlets(
                self.model.card, endpoint=cfg.publish.endpoint, valence_card=vcard, session=self.session
            )
            self.publisher.sinks.append(outlets)
        self._publish_status()
        deadline = time.monotonic() + cfg.runtime.wait
        eeg_info = self._resolve(cfg.eeg, "EEG", "eeg", deadline)
        marker_info = self._resolve(cfg.markers, "marker", "markers", deadline)
        self._warn_if_unpinned(cfg.eeg, eeg_info, "EEG", "eeg")  # before its channels are checked: that may fail
        self._warn_if_unpinned(cfg.markers, marker_info, "marker", "markers")
        self.acquisition = Acquisition(
            cfg,
            eeg_info,
            marker_info,
            make_pipeline=self._make_pipeline,
            make_features=self._make_features if self.valence_model is not None else None,
            on_marker=self._no_match,
        )
        self.acquisition.start()
        self.state = "running"
        self._served = True
        acq = self.acquisition
        assert acq.eeg_health.description is not None and acq.marker_health.description is not None
        log.info(
            "serving %s on EEG %s and markers %s",
            self.model.card.name,
            acq.eeg_health.description.summary(),
            acq.marker_health.description.summary(),
        )

    def _check_model_file(self, key: str, flag: str) -> None:
        """A missing model file: say where its path came from and, for a relative one, the absolute path tried."""
        section, name = key.split(".")
        path = getattr(getattr(self.config, section), name)
        if path is None or Path(path).is_file():
            return
        path = Path(path)
        if path.is_absolute():
            tried, fix = "", f"Pass {flag} with an existing .onnx file, or correct [{section}] {name}"
        else:
            tried = (f"; relative paths are resolved against the current directory ({Path.cwd()}), so "
                     f"{str(path.absolute())!r} was tried")  # fmt: skip
            fix = (f"Pass {flag} with an .onnx file, set [{section}] {name} to an absolute path, or run from the "
                   "directory it is relative to")  # fmt: skip
        raise ModelCardError(f"model file {str(path)!r} (from {self.config.origin(key)}) does not exist{tried}. {fix}")

    def _choose_events(self) -> None:
        """Events and label rule: the config's when given, else the card's, else the defaults; say which."""
        assert self.model is not None
        card, markers = self.model.card.input, self.config.markers
        self.events, _label, self._events_from = marker_rules(markers, card.events, card.label)
        self._truth = TruthRule.choose(markers, card)
        log.info("markers matching %r get an epoch (from %s); true classes by %s", self.events, self._events_from,
                 self._truth.described)  # fmt: skip

    def _make_pipeline(self, desc: lsl.StreamDescription) -> EpochPipeline:
        assert self.model is not None
        cfg, card = self.config, self.model.card
        return EpochPipeline(
            card.input,
            card.preprocessing,
            self._channels(desc, card.input.channels),
            desc.nominal_rate,
            self._stream_units(desc),
            events=self.events,
            buffer_seconds=cfg.runtime.buffer_seconds,
            source=f"EEG stream {desc.name!r}",
            target=f"model {card.name!r} ({cfg.model.path})",
            future_limit=cfg.runtime.future_limit,
        )

    def _make_features(self, desc: lsl.StreamDescription) -> tuple[FeaturePipeline, FeatureContext]:
        assert self.valence_model is not None
        vcard = self.valence_model.card
        features = FeaturePipeline.from_card(
            vcard,
            self._channels(desc, vcard.input.channels),
            desc.nominal_rate,
            self._stream_units(desc),
            source=f"EEG stream {desc.name!r}",
            target=f"valence model {vcard.name!r} ({self.config.model.valence})",
        )
        return features, FeatureContext(vcard.input.n_times, features.n_features)

    def _channels(self, desc: lsl.StreamDescription, wanted: Sequence[str]) -> list[str]:
        """The stream's channel labels; for a stream that declares none, ``[eeg] channels`` or the card's order."""
        if desc.labelled:
            return list(desc.channels)
        given = self.config.eeg.channels
        if given is not None:
            if len(given) != desc.channel_count:
                raise ModelCardError(
                    f"[eeg] channels lists {len(given)} labels but EEG stream {desc.name!r} has "
                    f"{desc.channel_count} channels; give one label per stream channel, in stream order"
                )
            return list(given)
        if desc.channel_count == len(wanted):
            log.warning(
                "EEG stream %r declares no channel labels; taking its %d channels in the model's order (%s ...). "
                "Set [eeg] channels to say which is which",
                desc.name,
                desc.channel_count,
                ", ".join(wanted[:4]),
            )
            return list(wanted)
        raise ModelCardError(
            f"EEG stream {desc.name!r} declares no channel labels and has {desc.channel_count} channels, while the "
            f"model needs {len(wanted)} by name ({', '.join(wanted[:4])} ...). Set [eeg] channels to the stream's "
            "labels in stream order, or fix the amplifier's LSL metadata"
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

    def _warn_if_unpinned(self, selector: StreamSelector, info: pylsl.StreamInfo, role: str, section: str) -> None:
        """Neither name nor source_id chose the stream: any stream of the type on the network (another user's
        amplifier on the LAN) could have been taken; name the one that was, and how to pin it."""
        if selector.name or selector.source_id:
            return
        by = f"type {selector.type!r} only" if selector.type else "nothing (any stream)"
        message = (
            f"{role} stream chosen by {by}: took {info.name()!r} (source_id {info.source_id()!r}, host "
            f"{info.hostname()!r}); any other such stream on the network could be taken instead. Pin it with "
            f"[{section}] name or --{section}-name, or [{section}] source_id or --{section}-source-id"
        )
        self._start_warnings.append(message)
        log.warning("%s", message)

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
        """Loop until :meth:`request_stop`: take what acquisition made ready, infer, publish, report status."""
        acq = self.acquisition
        assert acq is not None
        while not self.stopping:
            self._handle(acq.queue.get(timeout=0.05))
            if acq.error is not None or not acq.alive:
                raise BciStreamError(f"acquisition stopped: {acq.error}") from acq.error
            self._check_health()
            self._maybe_status()

    def stop(self) -> None:
        """Answer every pending marker, send a last status, close everything, within ``shutdown_timeout``."""
        self.state = "stopping"
        deadline = time.monotonic() + self.config.runtime.shutdown_timeout
        acq = self.acquisition
        if acq is not None:
            # Acquisition pulls the inlets once more, then answers what is left with `shutdown`.
            if not acq.stop(timeout=0.5 * self.config.runtime.shutdown_timeout):
                log.error("acquisition did not stop in time; answering its markers here")
            self._handle(acq.queue.get(timeout=0.0), deadline=deadline)
        for marker in list(self._ledger):  # whatever acquisition could not answer
            self._publish_drop(marker, DropReason.SHUTDOWN.value, "the daemon stopped before the window was complete")
        if self.publisher is not None and self.model is not None:
            self._publish_status()
            self.publisher.close()
        if self._served:  # a start-up error is reported by itself, not as an empty stop summary
            log.info("stopped: %d markers, %d predictions, %s", self.counts.markers, self.counts.predictions,
                     format_drops(self._drops_by_reason))  # fmt: skip

    def serve(self) -> None:
        """Start, run until stopped, then stop gracefully (also after an error, which is re-raised)."""
        try:
            self.start()
            self.run()
        finally:
            self.stop()

    # ------------------------------------------------------------------ results
    def _handle(self, items: list[tuple[Item, float]], deadline: float | None = None) -> None:
        """Publish queued items in order, running consecutive epochs together in batches."""
        taken = lsl.local_clock()
        batch: list[tuple[Epoch, float]] = []
        for item, queued in items:
            if isinstance(item, Epoch):
                batch.append((item, queued))
                if len(batch) >= self.config.model.max_batch:
                    self._run_batch(batch, taken, deadline)
                    batch = []
                continue
            if batch:
                self._run_batch(batch, taken, deadline)
                batch = []
            if isinstance(item, Accepted):
                self._ledger.extend(item.markers)
                self.counts.markers += len(item.markers)
                self.counts.ignored_markers += item.ignored
            elif isinstance(item, Drop):
                self._publish_drop(item.marker, item.reason.value, item.detail)
            elif isinstance(item, ValenceWindow):
                self._valence(item)
        if batch:
            self._run_batch(batch, taken, deadline)

    def _run_batch(self, batch: list[tuple[Epoch, float]], taken: float, deadline: float | None) -> None:
        if deadline is not None and time.monotonic() > deadline:
            for epoch, _ in batch:
                self._publish_drop(epoch.marker, DropReason.SHUTDOWN.value, "no time left to run the model")
            return
        max_age = self.config.runtime.max_epoch_age
        fresh: list[tuple[Epoch, float]] = []
        for epoch, queued in batch:
            age = taken - (epoch.arrival or taken)
            if age > max_age:
                detail = f"its last sample arrived {age:.2f} s before inference could take it (limit {max_age:g} s)"
                self._publish_drop(epoch.marker, DropReason.OVERLOAD.value, detail)
            else:
                fresh.append((epoch, queued))
        if not fresh:
            return
        assert self.model is not None
        t0 = time.perf_counter()
        x = normalize(np.stack([e.data for e, _ in fresh]), self.model.card.preprocessing.normalization)
        t1 = time.perf_counter()
        try:
            out = self.model.run(x)
            # an embedding model: softmax(cosine / T) over the class table; else the logits' softmax
            probs = (
                self.zero_shot.probabilities(out)
                if self.zero_shot is not None
                else softmax(out.reshape(len(fresh), -1))
            )
        except BciStreamError as exc:
            log.error("%s", exc)
            for epoch, _ in fresh:
                self._publish_drop(epoch.marker, DropReason.INFERENCE_ERROR.value, str(exc))
            return
        done = lsl.local_clock()
        normalize_ms, inference_ms = (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3
        vectors: list[list[float] | None] = [None] * len(fresh)
        if self.zero_shot is not None and self.config.publish.embeddings:
            vectors = unit_rows(np.asarray(out).reshape(len(fresh), -1)).tolist()
        for (epoch, queued), p, vector in zip(fresh, probs, vectors, strict=True):
            arrival = epoch.arrival or queued
            parts = {
                "preprocess": (queued - arrival) * 1e3 + normalize_ms,
                "queue": (taken - queued) * 1e3,
                "inference": inference_ms,
            }
            self._publish_prediction(epoch, p, parts, len(fresh), done, vector)

    def _answered(self, marker: Marker) -> None:
        if self._ledger and self._ledger[0] is marker:
            self._ledger.popleft()
            return
        try:
            self._ledger.remove(marker)
        except ValueError:
            log.error("marker %r answered but never accepted (accounting bug)", marker.value[:60])
            return
        log.error("marker %r answered out of order (accounting bug)", marker.value[:60])

    def _model_info(self, model: OnnxModel | None = None) -> ModelInfo:
        model = model or self.model
        assert model is not None
        return ModelInfo(name=model.card.name, version=model.card.version, sha256=model.sha256)

    def _score(self, marker: Marker, label: str, classes: list[str]) -> tuple[str | None, bool | None]:
        raw = self._truth.raw(marker.value)
        if raw is None:
            self._watch_unlabelled(marker)
            return None, None
        true_label = class_for_label(raw, classes)
        if true_label is None:
            if raw not in self._unknown_labels:
                self._unknown_labels.add(str(raw))
                log.warning("marker label %r is not one of the model's classes; not scored", raw)
            return None, None
        correct = true_label == label
        self.counts.labelled += 1
        self.counts.correct += int(correct)
        return true_label, correct

    def _watch_unlabelled(self, marker: Marker) -> None:
        """Markers that get epochs keep coming, yet none has matched the label rule: say why accuracy is missing."""
        if self._truth.pattern is None and self._truth.mapping is None:  # [markers] label = "": accuracy not wanted
            return
        self._unlabelled += 1
        if len(self._unlabelled_sample) < 3 and marker.value[:60] not in self._unlabelled_sample:
            self._unlabelled_sample.append(marker.value[:60])
        if self.counts.labelled or self._unlabelled != _UNLABELLED_WARNING or self.acquisition is None:
            return  # warned once, at the count: not rebuilt on every later prediction (the publish path)
        assert self.model is not None
        shown = ", ".join(repr(v) for v in self._unlabelled_sample)
        fields = card_event_fields(self.model.card)
        if fields:
            fix = (
                f"The model card labels markers by EEGLAB event fields ({', '.join(fields)}): the replay or amplifier "
                f"must send them, e.g. `bci-stream replay FILE.set --event-fields {' '.join(fields)}`"
            )
        else:
            fix = "Set [markers] label to a regex whose (?P<label>...) group matches them ('' for no accuracy)"
        self.acquisition.warn_once(
            "no-label",
            f"{self._unlabelled} markers matching events {self.events!r} got predictions, but none matched the label "
            f"rule, {self._truth.described}; received e.g. {shown}. Predictions carry no true_label and no accuracy "
            f"is scored. {fix}",
        )

    def _publish_prediction(
        self, epoch: Epoch, probs: np.ndarray, parts: dict[str, float], batch: int, done: float,
        embedding: list[float] | None = None,
    ) -> None:  # fmt: skip
        assert self.model is not None and self.publisher is not None
        classes = self.zero_shot.classes if self.zero_shot is not None else self.model.classes
        order = np.argsort(probs)[::-1]
        label = classes[int(order[0])]
        true_label, correct = self._score(epoch.marker, label, classes)
        now = lsl.local_clock()
        parts["publish"] = (now - done) * 1e3
        added = (now - (epoch.arrival or now)) * 1e3
        parts["total"] = added
        for key, value in parts.items():
            self._parts[key].append(value)
        self._latencies.append(added)
        self.counts.predictions += 1
        self._answered(epoch.marker)
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
                inference_ms=parts["inference"],
                batch_size=batch,
                added_latency_ms=added,
                # A window that ends after "now" on our clock comes from a stream running ahead of it (a replay
                # at --speed > 1): the figure would be meaningless, so it is left out.
                since_window_end_ms=None if self._clock_ahead or now < epoch.end - 1e-3 else (now - epoch.end) * 1e3,
                preprocess_ms=parts["preprocess"],
                queue_ms=parts["queue"],
                publish_ms=parts["publish"],
            ),
            embedding=embedding,
        )

    def _publish_drop(self, marker: Marker, reason: str, detail: str) -> None:
        assert self.publisher is not None
        self.counts.drops += 1
        self._drops_by_reason[reason] += 1
        self._answered(marker)
        log.info("drop %s: %s (%s)", marker.value[:60], reason, detail)
        self.publisher.publish(
            DropMessage, marker=MarkerInfo(value=marker.value, time=marker.time), reason=reason, detail=detail
        )

    def _valence(self, window: ValenceWindow) -> None:
        """One valence-model run on a band-power context → one ``valence`` message."""
        model = self.valence_model
        assert model is not None and self.publisher is not None
        try:
            out = model.run(window.x)
        except BciStreamError as exc:
            log.error("valence: %s", exc)
            return
        added = (lsl.local_clock() - window.arrival) * 1e3
        self._valence_latencies.append(added)
        value = float(np.asarray(out).reshape(-1)[-1])  # the last step is the newest window
        self.publisher.publish(
            Valence, window_end=window.window_end, value=value, model=self._model_info(model), added_latency_ms=added
        )

    # ------------------------------------------------------------------ health and status
    def _check_health(self) -> None:
        acq = self.acquisition
        assert acq is not None
        connected = acq.eeg_health.connected and acq.marker_health.connected
        state = "running" if connected else "degraded"
        if state != self.state:
            self.state = state
            self._publish_status()
        newest = acq.newest_sample
        if newest is not None:
            ahead = newest - lsl.local_clock() > 0.5
            if ahead and not self._clock_ahead:
                acq.warn_once(
                    "ahead",
                    "EEG timestamps run ahead of this machine's LSL clock (a replay at --speed > 1?): "
                    "since_window_end_ms and buffer_lag_ms are left out; added_latency_ms stays exact",
                )
            self._clock_ahead = ahead
        waited, sample = self._no_match.unmatched_for()
        if waited > self.config.runtime.no_match_warning:
            shown = ", ".join(f"{v!r} ×{n}" for v, n in sample.items())
            acq.warn_once(
                "no-match",
                f"markers arrive but none has matched events {self.events!r} (from {self._events_from}) for "
                f"{waited:.0f} s; received e.g. {shown}. Set [markers] events to a regex that matches them",
            )
        idle = self.config.runtime.until_idle
        if idle is not None:
            last = acq.eeg_health.last_data
            silent = time.monotonic() - (last if last is not None else self.started_at)
            if silent > idle and not self.stopping:
                log.info("no EEG for %.1f s ([runtime] until_idle = %g s): stopping", silent, idle)
                self.request_stop()

    def _maybe_status(self) -> None:
        if time.monotonic() >= self._next_status:
            if self.zero_shot is not None:
                self.zero_shot.maybe_reload()  # between batches: a batch's classes never change under it
            self._publish_status()

    def _stream_status(self, key: str, health: StreamHealth) -> StreamStatus | None:
        d = health.description
        if d is None:
            return None
        now = time.monotonic()
        last_count, last_t = self._rates.get(key, (health.samples, self.started_at))
        rate = (health.samples - last_count) / (now - last_t) if now > last_t else None
        self._rates[key] = (health.samples, now)
        return StreamStatus(
            name=d.name,
            source_id=d.source_id,
            nominal_rate=d.nominal_rate,
            measured_rate=rate,
            connected=health.connected,
            seconds_since_data=None if health.last_data is None else now - health.last_data,
            since=health.since,
            reconnects=health.reconnects,
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
        acq = self.acquisition
        cpu, wall = time.process_time(), time.monotonic()
        if wall - self._cpu[1] > 0.2:
            self._cpu_percent = 100.0 * (cpu - self._cpu[0]) / (wall - self._cpu[1])
            self._cpu = (cpu, wall)
        newest = acq.newest_sample if acq is not None else None
        lag = None if newest is None or self._clock_ahead else (lsl.local_clock() - newest) * 1e3
        p50, p99 = self.latency_percentiles()
        v50, v99 = self.latency_percentiles("valence")
        parts = {k: np.asarray(v) for k, v in self._parts.items() if v}
        self.counts.drops_by_reason = dict(self._drops_by_reason)
        n_classes = len(self.zero_shot.classes if self.zero_shot is not None else self.model.classes)
        self.publisher.publish(
            Status,
            state=self.state,
            uptime_s=time.monotonic() - self.started_at,
            eeg=self._stream_status("eeg", acq.eeg_health) if acq else None,
            markers=self._stream_status("markers", acq.marker_health) if acq else None,
            buffer_lag_ms=lag,
            pending_epochs=acq.pending if acq else 0,
            provider=self.model.provider,
            model=self._model_info(),
            counts=self.counts.model_copy(),
            accuracy=(self.counts.correct / self.counts.labelled) if self.counts.labelled else None,
            chance=1.0 / n_classes if n_classes else None,
            latency_p50_ms=p50,
            latency_p99_ms=p99,
            valence_latency_p50_ms=v50,
            valence_latency_p99_ms=v99,
            timing_p50_ms={k: float(np.percentile(v, 50)) for k, v in parts.items()},
            timing_p99_ms={k: float(np.percentile(v, 99)) for k, v in parts.items()},
            cpu_percent=self._cpu_percent,
            queued=len(acq.queue) if acq else 0,
            events=f"{self.events} (from {self._events_from})",
            labels=self._truth.described,
            insecure=self.publisher.insecure,
            warnings=list(self.publisher.warnings) + self._start_warnings + (list(acq.warnings) if acq else []),
            class_table=ClassTable.model_validate(self.zero_shot.status()) if self.zero_shot is not None else None,
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
