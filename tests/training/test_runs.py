"""Config-driven runs: config validation, run folder, seeds, early stopping, resume, export, DDP (gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bci_stream.card import ModelCard, read_card
from bci_stream.errors import ConfigError
from training.cli import main as cli_main
from training.runs import export_run, fit_run, load_config

ROOT = Path(__file__).resolve().parents[2]

TINY = """
[data]
synth = {{ seconds = 24.0, seeds = [5], classes = 3, images_per_class = 3, evoked_uv = 30.0 }}
sfreq = 100.0
n_times = 40
bandpass = [5.0, 40.0]

[teacher]
source = "synthetic"

[student]
name = "cogninet-blstm"
options = {{ hidden = 8, n_features = 8, dropout = 0.1, n_layers = 1 }}

[train]
epochs = {epochs}
batch_size = 16
lr = 0.005
seed = 0
{extra}

[run]
name = "tiny"
"""


def write_config(tmp_path: Path, epochs: int = 4, extra: str = "", name: str = "tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(TINY.format(epochs=epochs, extra=extra))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    return fit_run(write_config(tmp), out=tmp / "run", progress=False)


def test_the_example_config_is_valid():
    config = load_config(ROOT / "configs" / "train-synth.toml")
    assert config.data.synth is not None and config.teacher.source == "synthetic"
    assert config.train.patience == 3
    assert config.train.test_fraction == 0.2


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda s: s.replace("lr = 0.005", "lr = 0.005\nlearning_rate = 1"), "train.learning_rate"),
        (lambda s: s.replace('name = "cogninet-blstm"', 'name = "nope"'), "student"),
        (lambda s: s.replace("batch_size = 16", "batch_size = 0"), "train.batch_size"),
        (lambda s: s.replace("[data]", '[data]\nrecordings = ["a.fif"]'), "data"),
        (lambda s: s.replace("sfreq = 100.0", "sfreq = [1"), "TOML"),
    ],
)
def test_config_errors_name_the_file_and_the_key(tmp_path, edit, key):
    path = write_config(tmp_path)
    path.write_text(edit(path.read_text()))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and key in str(err.value)


def test_run_folder(run):
    path = run.path
    names = {"config.toml", "checkpoint.pt", "model.pt", "card.json", "metrics.json", "report.md",
             "learning_curves.png", "confusion.png"}  # fmt: skip
    assert names <= {p.name for p in path.iterdir()}
    m = json.loads((path / "metrics.json").read_text())
    assert m["finished"] and m["split"] == "by-image" and len(m["history"]) == m["epochs_trained"] == 4
    assert m["chance_level"] == pytest.approx(1 / 3, abs=0.1) and 0 <= m["val_accuracy"] <= 1
    assert m["timing"]["epochs_per_s"] > 0 and m["timing"]["samples_per_s"] > 0
    assert np.array(m["confusion"]).sum() == m["n_val"]
    card = ModelCard.from_json((path / "card.json").read_text())
    assert card.input.sfreq == 100.0 and card.input.n_times == 40 and len(card.output.classes) == 3
    assert card.provenance["student"] == {"name": "cogninet-blstm", "hidden": 8, "n_features": 8, "dropout": 0.1,
                                          "n_layers": 1}  # fmt: skip
    # model.pt holds the best epoch's weights (lowest validation loss)
    best = min(m["history"], key=lambda r: r["val_loss"])["epoch"]
    assert m["best_epoch"] == best
    state = torch.load(path / "model.pt", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in run.model.state_dict().items())
    report = (path / "report.md").read_text()
    assert "chance" in report and "learning_curves.png" in report
    split = json.loads((path / "split.json").read_text())  # no test split by default: the current behaviour
    assert split["unit"] == "image" and split["test"] == {"index": [], "images": []} and m["n_test"] == 0
    assert split["split"] == "by-image" and split["chosen"].startswith("default") and split["leaky"] is None
    assert card.provenance["split"] == "by-image" and m["split_info"]["groups"]["test"] == 0
    assert len(split["train"]["index"]) == m["n_train"] and len(split["validation"]["index"]) == m["n_val"]


def test_held_out_test_split_is_drawn_first_and_never_selected_on(tmp_path, run):
    path = write_config(tmp_path, epochs=2, extra="test_fraction = 0.3")
    result = fit_run(path, out=tmp_path / "run", progress=False)
    assert result.path is not None
    split = json.loads((result.path / "split.json").read_text())
    parts = {name: set(split[name]["images"]) for name in ("train", "validation", "test")}
    assert all(parts.values())
    assert not (parts["train"] & parts["validation"] or parts["train"] & parts["test"]
                or parts["validation"] & parts["test"])  # fmt: skip
    m = result.metrics
    assert m["n_test"] == len(split["test"]["index"]) > 0
    assert m["n_train"] + m["n_val"] + m["n_test"] == run.metrics["n_train"] + run.metrics["n_val"]
    assert all(k.startswith(("val", "train", "loss", "epoch")) for r in m["history"] for k in r)  # no test metrics
    assert ModelCard.from_json((result.path / "card.json").read_text()).provenance["test_fraction"] == 0.3


def test_config_subjects_need_one_per_recording(tmp_path):
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace("[data]", '[data]\nsubjects = ["a"]'))
    with pytest.raises(ConfigError, match="subjects"):
        load_config(path)


def test_same_seed_same_metrics(tmp_path, run):
    again = fit_run(write_config(tmp_path), out=tmp_path / "again", progress=False)
    a, b = json.loads((run.path / "metrics.json").read_text()), json.loads((again.path / "metrics.json").read_text())
    a.pop("timing"), b.pop("timing")
    assert a == b


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, run):
    config = write_config(tmp_path)
    part = fit_run(config, out=tmp_path / "r", stop_after=2, progress=False)
    assert not part.metrics["finished"] and not (tmp_path / "r" / "model.pt").exists()
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["epoch"] == 2
    rest = fit_run(config, resume=tmp_path / "r", progress=False)
    assert rest.metrics["finished"]
    for k, v in run.final_state.items():
        assert torch.equal(rest.final_state[k], v), k
    straight = torch.load(run.path / "model.pt", weights_only=True)
    resumed = torch.load(tmp_path / "r" / "model.pt", weights_only=True)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    m1, m2 = (json.loads((p / "metrics.json").read_text()) for p in (run.path, tmp_path / "r"))
    assert m1["history"] == m2["history"]


def test_resume_refuses_another_config_and_an_existing_run(tmp_path, run):
    other = write_config(tmp_path, extra="patience = 1")
    with pytest.raises(ConfigError, match=r"train\.patience"):
        fit_run(other, resume=run.path, progress=False)
    with pytest.raises(ConfigError, match="already holds a run"):
        fit_run(other, out=run.path, progress=False)


def test_early_stopping_watches_validation_loss(tmp_path):
    config = write_config(tmp_path, epochs=12, extra="patience = 1")
    config.write_text(config.read_text().replace("lr = 0.005", "lr = 0.05"))
    r = fit_run(config, out=tmp_path / "e", progress=False)
    h, m = r.metrics["history"], r.metrics
    best = min(range(len(h)), key=lambda i: h[i]["val_loss"])
    assert m["best_epoch"] == h[best]["epoch"]
    assert m["stopped_early"]  # deterministic for this seed: val loss rises after its minimum
    assert len(h) < 12 and len(h) - m["best_epoch"] == 1 and h[-1]["val_loss"] >= h[best]["val_loss"]


def test_export_rebuilds_the_student(tmp_path, run):
    out = export_run(run.path, tmp_path / "tiny.onnx")
    assert read_card(out) == ModelCard.from_json((run.path / "card.json").read_text())


def test_cli_fit_and_export(tmp_path, capsys):
    config = write_config(tmp_path, epochs=1)
    assert cli_main(["fit", "--config", str(config), "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["finished"] is True
    assert cli_main(["export", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "model.onnx").is_file()
    bad = tmp_path / "bad.toml"
    bad.write_text(config.read_text().replace("[train]", "[train]\nepoch = 3"))
    assert cli_main(["fit", "--config", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_gloo(tmp_path):
    config = write_config(tmp_path, epochs=2)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "training.cli", "fit", "--config", str(config), "--out", str(out), "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["finished"] and len(m["history"]) == 2
    assert torch.load(out / "checkpoint.pt", weights_only=True)["world_size"] == 2
    assert proc.stdout.count('"run"') == 1  # only rank 0 reports (and writes) the run
    assert (out / "model.pt").is_file() and (out / "report.md").is_file()


def test_fit_flags_a_recording_copied_into_both_sides_of_its_split(tmp_path, caplog):
    """Two identical synthetic sessions (the same seed twice): the split is checked before any fitting."""
    from training.runs import prepare_data

    path = tmp_path / "copied.toml"
    path.write_text(TINY.format(epochs=1, extra="").replace("seeds = [5]", "seeds = [5, 5]"))
    with caplog.at_level("WARNING", logger="training.runs"):
        prepare_data(load_config(path))
    flagged = [r.getMessage() for r in caplog.records if r.name == "training.runs"]
    assert any("identical" in m for m in flagged), flagged
