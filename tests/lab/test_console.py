"""A console that explains itself: inspect MODEL, listen's status line and valence range, liblsl quiet, sys-info."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bci_stream.card import ModelCard, read_card, write_card
from bci_stream.cli import main
from bci_stream.listen import ValenceScale, format_message
from bci_stream.messages import Counts, ModelInfo, Status, Valence
from tests.support import make_valence_model

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "exported" / "cogninet-synth.onnx"
N170 = ROOT / "exported" / "n170-faces-houses.onnx"  # a bci-train card: provenance.crossval and data files


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bci_stream.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_inspect_model_prints_a_short_summary_and_json_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "inspect", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) <= 15  # not the 500–700 lines of raw JSON
    assert "task classification" in lines[0]
    assert "channels: 128 (A1, A2, A3, A4, A5, A6, … (+122))" in out
    assert "rate 1000 Hz; window +0.040 … +0.480 s" in out
    assert "filters: bandpass 5–95 Hz, notch 50 Hz" in out
    assert "classes: 8" in out and "events: '^stim/'" in out
    m = read_card(SHIPPED).provenance["metrics"]  # the summary shows the card's own numbers, whatever the build
    assert (
        f"accuracy: val accuracy {m['val_accuracy']:.3f}, n={m['n_val']}, chance {m['chance_level']:.3f}, split by-image"
        in out
    )
    assert main(["-q", "inspect", str(SHIPPED), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert len(card["input"]["channels"]) == 128 and len(card["preprocessing"]["normalization"]["mean"]) == 128


def test_inspect_real_model_shows_its_crossval_accuracy_and_data_files(capsys: pytest.CaptureFixture[str]) -> None:
    """A ``bci-train`` card has no ``metrics``: inspect shows its cross-validation, and its data files by name."""
    assert main(["-q", "inspect", str(N170)]) == 0
    out = capsys.readouterr().out
    prov = read_card(N170).provenance
    cv, files = prov["crossval"], [d["file"] for d in prov["data"]]  # the card's own numbers, whatever the build
    assert (
        f"accuracy: cross-validated accuracy {cv['accuracy']:.3f} ({len(cv['folds'])} folds, split {cv['split']}), "
        f"n={cv['n_trials']}, chance {cv['chance']:.3f}, permutation p {cv['p_value']:.3g}"
    ) in out
    (data,) = [line for line in out.splitlines() if line.startswith("data: ")]
    assert data.startswith(f"data: {len(files)} files: ") and "sha256" not in data and "'file'" not in data
    shown = re.fullmatch(r"data: \d+ files: (.+)\{(.+)\}(.+)", data)  # sub-01_ses-01_run-0{1,2,3,4,5}_eeg.fif
    assert shown, data
    assert [shown[1] + run + shown[3] for run in shown[2].split(",")] == files  # every file, by name, in order
    assert f"bci-stream {prov['packages']['bci-stream']}" in out  # provenance: the package versions it records


def _status(**counts: object) -> Status:
    return Status(
        seq=3, session="s", sent_at=0.0, state="running", uptime_s=1.0, eeg=None, markers=None, buffer_lag_ms=None,
        pending_epochs=0, provider="CPUExecutionProvider", model=ModelInfo(name="m", version="1", sha256="x"),
        counts=Counts(**counts), accuracy=None, chance=None, latency_p50_ms=None, latency_p99_ms=None,
    )  # fmt: skip


def test_listen_status_line_shows_ignored_markers_and_drops_by_reason() -> None:
    line = format_message(
        _status(
            markers=10, ignored_markers=3, predictions=7, drops=3, drops_by_reason={"stream_lost": 2, "shutdown": 1}
        )
    )
    assert "markers 10 (ignored 3)" in line
    assert "drops 3 (shutdown 1, stream_lost 2)" in line


def test_valence_bar_range_from_the_card_else_grown_to_fit(tmp_path: Path) -> None:
    path = make_valence_model(tmp_path / "v.onnx", channels=["Fz", "Cz"])
    assert not ValenceScale.choose(None, path).fixed  # no range recorded: auto
    card = read_card(path)
    write_card(
        path,
        ModelCard.model_validate(
            {**card.model_dump(by_alias=True), "output": {"name": "valence", "range": [-1.9, -0.6]}}
        ),
    )
    scale = ValenceScale.choose(None, path)
    assert (scale.lo, scale.hi, scale.fixed) == (-1.9, -0.6, True)
    assert ValenceScale.choose([-1, 1], path).source == "--valence-range"  # the flag wins
    msg = Valence(seq=0, session="s", sent_at=0.0, window_end=1.0, value=-1.25, model=ModelInfo(name="v", version="1", sha256="x"), added_latency_ms=1.0)  # fmt: skip
    bar = format_message(msg, scale).split("[")[1]
    assert bar.index("|") == 10  # -1.25 is the middle of -1.9 … -0.6: not pinned to an end
    auto = ValenceScale()
    for value in (-1.9, -0.6, -1.25):
        line = format_message(msg.model_copy(update={"value": value}), auto)
    assert (auto.lo, auto.hi) == (-1.95, -0.6) and "|" in line


# What `bci-stream -v... CMD` does first (cli._setup_logging), then some liblsl work that logs at INFO.
LSL_SCRIPT = (
    "import sys; from bci_stream.cli import _setup_logging; _setup_logging(int(sys.argv[1])); "
    "import pylsl; pylsl.StreamOutlet(pylsl.StreamInfo('quiet-test', 'EEG', 1, 10, 'float32', 'quiet-test')); "
    "pylsl.resolve_byprop('source_id', 'quiet-test', 1, 0.5)"
)


def test_liblsl_is_quiet_unless_verbose_and_a_users_level_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "lsl_api.cfg"
    cfg.write_text("[log]\nlevel = 0\n")
    runs = {
        "quiet": (["0"], {}),
        "verbose": (["1"], {}),
        "user's config": (["0"], {"LSLAPICFG": str(cfg)}),
    }
    procs = {
        key: subprocess.Popen(
            [sys.executable, "-c", LSL_SCRIPT, *argv],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        )
        for key, (argv, env) in runs.items()
    }
    err = {key: proc.communicate(timeout=60)[1] for key, proc in procs.items()}
    assert all(proc.returncode == 0 for proc in procs.values()), err
    assert "INFO|" not in err["quiet"] and "ERR|" not in err["quiet"]
    assert "INFO|" in err["verbose"]  # liblsl's own log (loguru), back with -v
    assert "INFO|" in err["user's config"]  # a level the user set in lsl_api.cfg wins


def test_sys_info_says_why_cuda_is_not_usable() -> None:
    out = run_cli("-q", "sys-info").stdout
    usable = next(line for line in out.splitlines() if "providers usable:" in line)
    if "CUDAExecutionProvider" not in out or "CUDAExecutionProvider" in usable:
        pytest.skip("CUDA is usable here, or this onnxruntime has no CUDA provider")
    line = next((x for x in out.splitlines() if "CUDA not usable:" in x), "")
    assert re.search(r"CUDA not usable: (its CUDA provider library cannot load \(\S+: .+\)|the CUDA libraries load"
                     r"|this onnxruntime)", line), out  # fmt: skip
    assert "cuDNN 9" in line and "provider = 'auto'" in line, line


def test_sys_info_names_every_component() -> None:
    result = run_cli("-q", "sys-info")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in (
        "Python:",
        "liblsl:",
        "pylsl:",
        "ONNX Runtime:",
        "providers available:",
        "providers usable:",
        "pyzmq:",
        "MNE:",
        "numpy:",
    ):
        assert name in out, out
    assert "CPUExecutionProvider" in out.split("providers usable:")[1].splitlines()[0]
