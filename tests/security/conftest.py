"""Shared fixtures of the security tests: one set of CURVE keys per module, a tiny carded model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bci_stream.curve import KeyFiles, make_keys
from tests.e2e.test_daemon import CHANNELS, SFREQ
from tests.support import make_linear_model


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    """Server keys with one authorised client, ``alice``."""
    return make_keys(tmp_path_factory.mktemp("keys"), ["alice"])


@pytest.fixture(scope="module")
def mallory(tmp_path_factory: pytest.TempPathFactory, keys: KeyFiles) -> Path:
    """A well-formed client key pair the daemon does not list (she knows the public server key)."""
    other = make_keys(tmp_path_factory.mktemp("other"), ["mallory"])
    secret = keys.server_secret.parent / "mallory.key_secret"
    shutil.copy(other.client_secrets[0], secret)
    return secret


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.onnx"
    return make_linear_model(path, channels=CHANNELS, sfreq=SFREQ, n_times=50, classes=["a", "b"])
