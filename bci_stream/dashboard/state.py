"""What the dashboard shows, folded from the daemon's ZeroMQ messages (pure Python, no web parts).

:class:`DashboardState` takes every message (:meth:`DashboardState.update`) and gives a JSON-ready
:meth:`DashboardState.snapshot`. Counts, rates, provider, accuracy and latency percentiles are the
daemon's own, copied from its latest ``status`` message, so the page says what ``status`` says; the
latency histogram, the confusion matrix and the valence trace are built here from the individual
``prediction`` and ``valence`` messages.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np

from ..messages import AnyMessage, Drop, Prediction, Status, Valence

#: Latency histogram bin edges, ms (log-spaced; the last bin takes everything above).
LATENCY_EDGES_MS = [0.0, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]


class DashboardState:
    """Thread-safe aggregate of the message stream.

    Parameters
    ----------
    history : int
        Predictions (and drops) kept for the "last N" list.
    card_summary : list of str, optional
        Lines describing the model card (``bci-stream dashboard --model``).
    """

    def __init__(self, *, history: int = 20, card_summary: list[str] | None = None, endpoint: str = "") -> None:
        self._lock = threading.Lock()
        self.version = 0
        self.endpoint = endpoint
        self.card_summary = card_summary or []
        self.status: Status | None = None
        self.recent: deque[dict[str, Any]] = deque(maxlen=history)
        self.latencies: deque[float] = deque(maxlen=2000)
        self.valence: deque[tuple[float, float]] = deque(maxlen=240)
        self.confusion: dict[str, dict[str, int]] = {}
        self.classes: list[str] = []
        self.received: dict[str, int] = {}
        self.gaps: dict[str, int] = {}
        self._last_seq: dict[str, tuple[str, int]] = {}
        self.session: str | None = None
        self.last_message_at: float | None = None

    def update(self, msg: AnyMessage) -> None:
        """Fold one message in."""
        with self._lock:
            self._count(msg)
            if isinstance(msg, Status):
                self.status = msg
            elif isinstance(msg, Prediction):
                self._prediction(msg)
            elif isinstance(msg, Drop):
                self.recent.appendleft(
                    {"kind": "drop", "marker": msg.marker.value, "time": msg.marker.time, "reason": msg.reason}
                )
            elif isinstance(msg, Valence):
                self.valence.append((msg.window_end, msg.value))
            self.version += 1
            self.last_message_at = time.time()

    def _count(self, msg: AnyMessage) -> None:
        self.received[msg.topic] = self.received.get(msg.topic, 0) + 1
        if msg.session != self.session:  # a new daemon run: its seq start again at 0
            self.session = msg.session
            self._last_seq = {}
        last = self._last_seq.get(msg.topic)
        if last is not None and msg.seq > last[1] + 1:
            self.gaps[msg.topic] = self.gaps.get(msg.topic, 0) + msg.seq - last[1] - 1
        self._last_seq[msg.topic] = (msg.session, msg.seq)

    def _prediction(self, msg: Prediction) -> None:
        if list(msg.probabilities) != self.classes:  # the first, or a new zero-shot class table
            self.classes = list(msg.probabilities)
        self.latencies.append(msg.timing.added_latency_ms)
        self.recent.appendleft(
            {
                "kind": "prediction",
                "marker": msg.marker.value,
                "time": msg.marker.time,
                "label": msg.label,
                "probability": msg.probability,
                "probabilities": msg.probabilities,
                "true_label": msg.true_label,
                "correct": msg.correct,
                "latency_ms": msg.timing.added_latency_ms,
            }
        )
        if msg.true_label is not None:
            row = self.confusion.setdefault(msg.true_label, {})
            row[msg.label] = row.get(msg.label, 0) + 1

    def _histogram(self) -> dict[str, Any]:
        if not self.latencies:
            return {"edges": LATENCY_EDGES_MS, "counts": [0] * len(LATENCY_EDGES_MS)}
        values = np.asarray(self.latencies)
        edges = np.asarray([*LATENCY_EDGES_MS, np.inf])
        counts, _ = np.histogram(values, bins=edges)
        return {"edges": LATENCY_EDGES_MS, "counts": [int(c) for c in counts]}

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, as JSON-ready values."""
        with self._lock:
            status = self.status.model_dump() if self.status is not None else None
            local = [float(p) for p in np.percentile(np.asarray(self.latencies), [50, 99])] if self.latencies else None
            return {
                "version": self.version,
                "endpoint": self.endpoint,
                "session": self.session,
                "status": status,
                "card_summary": self.card_summary,
                "recent": list(self.recent),
                "classes": self.classes,
                "valence": [list(v) for v in self.valence],
                "latency_histogram": self._histogram(),
                "latency_seen_p50_p99": local,
                "confusion": self.confusion,
                "received": dict(self.received),
                "gaps": dict(self.gaps),
                "last_message_at": self.last_message_at,
            }
