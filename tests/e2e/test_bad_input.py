"""Bad input gets a clear error (naming the thing, the value and what to do) and a non-zero exit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bci_stream.card import InputSpec, Preprocessing
from bci_stream.config import load_config
from bci_stream.daemon import Daemon
from bci_stream.demo import free_tcp_endpoint
from bci_stream.epochs import Marker
from bci_stream.errors import ConfigError, ModelCardError, RecordingError, StreamNotFoundError
from bci_stream.pipeline import epochs_from_recording
from bci_stream.recordings import Recording, read_recording
from tests.e2e.test_daemon import CHANNELS, SFREQ, small_recording
from tests.support import daemon_config, make_linear_model, playing, unique

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bci_stream.cli", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_linear_model(tmp_path / "m.onnx", channels=CHANNELS, sfreq=SFREQ, n_times=50, classes=["a", "b"])


def test_no_such_stream(model: Path) -> None:
    config = daemon_config(model, unique("absent"), unique("absent"), runtime={"wait": 0.5})
    daemon = Daemon(config)
    with pytest.raises(
        StreamNotFoundError,
        match=r"no EEG stream with type='EEG', source_id='absent-\w+' appeared within 0.5 s\. Streams found",
    ):
        daemon.serve()
    run = cli(
        "run", "--model", str(model), "--eeg-name", unique("nope"), "--wait", "0.5", "--endpoint", free_tcp_endpoint()
    )
    assert run.returncode == 2
    assert "no EEG stream with name='nope-" in run.stderr and "bci-stream replay" in run.stderr


def test_model_needs_channels_the_stream_lacks(tmp_path: Path) -> None:
    model = make_linear_model(
        tmp_path / "oz.onnx", channels=["E1", "Oz", "POz"], sfreq=SFREQ, n_times=50, classes=["a", "b"]
    )
    name = unique("eeg")
    config = daemon_config(model, name, f"{name}-markers")
    with playing(small_recording(seconds=30), name=name, source_id=name):
        with pytest.raises(ModelCardError, match=r"needs 3 channels but EEG stream '.*' lacks 2 of them: Oz, POz"):
            Daemon(config).serve()
        run = cli("run", "--model", str(model), "--eeg-name", name, "--wait", "10", "--endpoint", free_tcp_endpoint())
    assert run.returncode == 2 and "lacks 2 of them: Oz, POz" in run.stderr


def test_rate_too_low_for_the_card(tmp_path: Path) -> None:
    model = make_linear_model(
        tmp_path / "fast.onnx", channels=CHANNELS, sfreq=1000, n_times=100, classes=["a", "b"], bandpass=(5, 300)
    )
    name = unique("eeg")
    config = daemon_config(model, name, f"{name}-markers")
    with (
        playing(small_recording(seconds=30), name=name, source_id=name),
        pytest.raises(ModelCardError, match=r"samples at 500 Hz \(Nyquist 250 Hz\) but model .* filters up to 300 Hz"),
    ):
        Daemon(config).serve()


def test_config_unknown_key_and_wrong_type(tmp_path: Path, model: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[eeg]\nnmae = "Amp"\n[runtime]\nwait = "soon"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: \[eeg\] nmae: unknown key.*\[runtime\] wait: .*number.*'soon'"):
        load_config(bad)
    run = cli("run", "--config", str(bad), "--model", str(model))
    assert run.returncode == 2 and "[eeg] nmae: unknown key" in run.stderr and str(bad) in run.stderr
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"\[markers\] events: .*not a valid regular expression"):
        load_config(None, {"markers": {"events": "stim/("}})


def test_config_errors_name_their_source(tmp_path: Path, model: Path) -> None:
    """The file is checked as written (an override never hides its error); a bad override names its flag."""
    good = tmp_path / "good.toml"
    good.write_text('[publish]\nendpoint = "tcp://127.0.0.1:5556"\n')
    with pytest.raises(ConfigError, match=r"^--endpoint \(sets \[publish\] endpoint\): .*'127\.0\.0\.1:5556'") as err:
        load_config(good, {"publish": {"endpoint": "127.0.0.1:5556"}}, {"publish.endpoint": "--endpoint"})
    assert "good.toml" not in str(err.value)
    with pytest.raises(ConfigError, match=r"^override \[runtime\] wait: .*-1") as err:
        load_config(None, {"runtime": {"wait": -1}})
    assert "<defaults>" not in str(err.value)
    bad = tmp_path / "bad.toml"
    bad.write_text('[runtime]\nwait = "30s"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: \[runtime\] wait: .*'30s'"):
        load_config(bad, {"runtime": {"wait": 1.0}}, {"runtime.wait": "--wait"})
    run = cli("run", "--config", str(good), "--model", str(model), "--endpoint", "127.0.0.1:5556", "--wait", "0")
    assert run.returncode == 2, run.stderr
    assert "error: --endpoint (sets [publish] endpoint): " in run.stderr and "good.toml" not in run.stderr
    run = cli("run", "--config", str(bad), "--model", str(model), "--wait", "0")
    assert run.returncode == 2 and f"{bad}: [runtime] wait:" in run.stderr and "'30s'" in run.stderr, run.stderr
    run = cli("run", "--config", str(bad), "--model", str(model), "--wait", "1", "--endpoint", free_tcp_endpoint())
    assert run.returncode == 2 and f"{bad}: [runtime] wait:" in run.stderr, run.stderr


def test_missing_model_says_where_the_relative_path_came_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative model path is resolved against the current directory: the error says so, and who gave it."""
    config_file = tmp_path / "repo" / "daemon.toml"
    config_file.parent.mkdir()
    config_file.write_text('[model]\npath = "exported/m.onnx"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    tried = re.escape(repr(str(elsewhere / "exported" / "m.onnx")))
    with pytest.raises(ModelCardError, match=rf"'exported/m\.onnx' \(from \[model\] path in .*daemon\.toml\).*{tried}"):
        Daemon(load_config(config_file)).start()
    default = re.escape(repr(str(elsewhere / "exported" / "cogninet-synth.onnx")))
    with pytest.raises(ModelCardError, match=rf"\(from the built-in default\).*current directory.*{default}"):
        Daemon(load_config(None)).start()
    with pytest.raises(ModelCardError, match=r"'/nowhere/m\.onnx' \(from an override\) does not exist\. Pass --model"):
        Daemon(load_config(None, {"model": {"path": "/nowhere/m.onnx"}})).start()
    run = subprocess.run(
        [sys.executable, "-m", "bci_stream.cli", "run", "--config", str(config_file), "--model", "x.onnx", "--wait", "0"],
        capture_output=True, text=True, timeout=60, check=False, cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "'x.onnx' (from --model) does not exist" in run.stderr and repr(str(elsewhere / "x.onnx")) in run.stderr


def test_missing_and_unsupported_files(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"missing\.fif"):
        read_recording(tmp_path / "missing.fif")
    run = cli("replay", str(tmp_path / "missing.fif"))
    assert run.returncode == 2 and "missing.fif" in run.stderr
    odd = tmp_path / "notes.txt"
    odd.write_text("not EEG")
    with pytest.raises(RecordingError, match=r"\.txt"):
        read_recording(odd)
    run = cli("replay", str(odd))
    assert run.returncode == 2 and ".txt" in run.stderr
    run = cli("run", "--model", str(tmp_path / "nope.onnx"), "--wait", "0")
    assert run.returncode == 2 and "nope.onnx" in run.stderr and "does not exist" in run.stderr


def test_recording_shorter_than_one_epoch() -> None:
    rec = Recording(
        np.zeros((100, 2)), 1000.0, ["a", "b"], ["eeg", "eeg"], "V", [Marker("stim/x/1", 0.01)], "short.fif"
    )
    spec = InputSpec(sfreq=1000, n_times=440, tmin=0.04, channels=["a", "b"])
    with pytest.raises(RecordingError, match=r"short\.fif: recording lasts 0\.100 s, shorter than one epoch"):
        epochs_from_recording(rec, spec, Preprocessing())
