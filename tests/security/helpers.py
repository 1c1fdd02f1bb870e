"""Small helpers the security tests share."""

from __future__ import annotations

import socket


def any_interface_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def status_fields() -> dict[str, object]:
    return {
        "state": "running",
        "uptime_s": 0.0,
        "eeg": None,
        "markers": None,
        "buffer_lag_ms": None,
        "pending_epochs": 0,
        "provider": "cpu",
        "model": {"name": "m", "version": "1", "sha256": "0"},
        "counts": {},
        "accuracy": None,
        "chance": None,
        "latency_p50_ms": None,
        "latency_p99_ms": None,
    }
