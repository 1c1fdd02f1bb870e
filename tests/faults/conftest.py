"""Fixtures of the fault suite: the probe model and stream names unique to each test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.rig import make_probe_model, unique


@pytest.fixture(scope="session")
def probe_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_probe_model(tmp_path_factory.mktemp("models") / "probe.onnx")


@pytest.fixture
def names() -> tuple[str, str]:
    """(EEG source_id, marker source_id) for one test."""
    base = unique("fault")
    return base, f"{base}-markers"
