"""The one training loop: every command that trains goes through `training.loop.fit_model`; checkpoints load with
`weights_only=True`; a bug inside training is a traceback (exit 1), a user error one line (exit 2)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from training import loop
from training.cli import main
from training.sweep import few_labels_check

ROOT = Path(__file__).resolve().parents[2]

RUN = """
[data]
synth = { seconds = 24.0, seeds = [5], subjects = [1, 2], classes = 3, images_per_class = 3, evoked_uv = 30.0 }
sfreq = 100.0
n_times = 40
bandpass = [5.0, 40.0]
[teacher]
source = "synthetic"
[student]
options = { hidden = 4, n_features = 4, dropout = 0.1, n_layers = 1 }
[train]
epochs = 1
batch_size = 16
"""

CROSSVAL = [
    *("crossval", "--recordings", str(ROOT / "data/n170/sub-01_ses-01_run-06_eeg.fif")),
    *("--label", "stim/(?P<label>face|house)", "--split", "shuffled", "--folds", "2", "--students", "conv1d"),
    *("--baseline", "", "--epochs", "1", "--permutations", "10"),
]

SWEEP = """
tables = ["loss"]
seeds = [0]
losses = ["kd-supervised"]
[data]
seconds = 20.0
n_classes = 2
images_per_class = 3
n_channels = 4
[train]
epochs = 1
hidden = 4
n_features = 4
"""

VALENCE = """
[synth]
subjects = 2
trials = 2
seconds = 10.0
sfreq = 128.0
teacher_dim = 8
[fit]
channels = [8, 8]
steps = 3
batch_size = 4
crop = 16
"""


class Recorder(loop.Callback):
    """Counts, per command label, the loop's events and the `name` each fit_model call was given."""

    def __init__(self) -> None:
        self.label = "?"
        self.steps: dict[str, int] = defaultdict(int)
        self.fits: dict[str, list[str]] = defaultdict(list)
        self.ends: dict[str, int] = defaultdict(int)

    def on_fit_start(self, state: loop.LoopState, model) -> None:
        self.fits[self.label].append(state.name)

    def on_step(self, state: loop.LoopState, step: loop.Step) -> None:
        assert step.loss == step.loss and step.n > 0  # a real loss on a real batch
        self.steps[self.label] += 1

    def on_fit_end(self, state: loop.LoopState, model) -> None:
        self.ends[self.label] += 1


def test_every_command_that_trains_goes_through_the_one_loop(tmp_path, capsys):
    from training.models import DemoData, SynthRecipe, build

    run_cfg, sweep_cfg, valence_cfg = (tmp_path / n for n in ("run.toml", "sweep.toml", "valence.toml"))
    run_cfg.write_text(RUN)
    sweep_cfg.write_text(SWEEP)
    valence_cfg.write_text(VALENCE)
    assert main(["synth", "--out", str(tmp_path / "s.fif"), "--seconds", "10", "--classes", "3"]) == 0
    commands = {
        "fit": lambda: main(["fit", "--config", str(run_cfg), "--out", str(tmp_path / "run"), "--no-progress"]),
        "evaluate --loso": lambda: main(["evaluate", str(tmp_path / "run"), "--loso", "--json"]),
        "distil": lambda: main(
            [
                "distil",
                "--recording",
                str(tmp_path / "s.fif"),
                "--teacher",
                str(tmp_path / "s.teacher.npz"),
                "--out",
                str(tmp_path / "d.onnx"),
                "--epochs",
                "1",
                "--hidden",
                "4",
            ]
        ),
        "models": lambda: (
            build(
                SynthRecipe(
                    file="m.onnx",
                    n_classes=3,
                    session_seeds=(1,),
                    session_seconds=10.0,
                    synth={"images_per_class": 3},
                    epochs=1,
                    hidden=4,
                    demo=DemoData(seconds=8.0, classes=3),
                ),
                tmp_path,
            )
            and 0
        ),
        "sweep": lambda: main(["sweep", "--config", str(sweep_cfg), "--out", str(tmp_path / "sweep.md")]),
        "few-labels": lambda: (
            few_labels_check(
                {
                    "data": {"seconds": 20.0, "n_classes": 2, "images_per_class": 4, "n_channels": 4},
                    "train": {"hidden": 4, "n_features": 4},
                    "few_labels": {"seconds": 20.0, "test_seconds": 20.0, "train_images": 2, "epochs": 1, "seeds": [1]},
                }
            )
            and 0
        ),
        "unseen": lambda: main(
            [
                "unseen",
                "--classes",
                "5",
                "--unseen",
                "2",
                "--seconds",
                "40",
                "--epochs",
                "1",
                "--channels",
                "4",
                "--shots",
                "2",
            ]
        ),
        "valence": lambda: main(
            ["valence", "fit", "--config", str(valence_cfg), "--synth", "--out", str(tmp_path / "v.pt")]
        ),
        "crossval": lambda: main([*CROSSVAL, "--out", str(tmp_path / "cv")]),
    }
    with loop.observe(Recorder()) as rec:
        for label, run in commands.items():
            rec.label = label
            assert run() == 0, label
    capsys.readouterr()
    expected = {
        "fit": {"fit"},
        "evaluate --loso": {"loso"},
        "distil": {"distil"},
        "models": {"distil"},
        "sweep": {"distil"},
        "few-labels": {"distil"},
        "unseen": {"distil"},
        "valence": {"valence"},
        "crossval": {"crossval"},
    }
    assert {label: set(names) for label, names in rec.fits.items()} == expected
    for label in commands:
        assert rec.steps[label] > 0 and rec.ends[label] == len(rec.fits[label]), label
    assert len(rec.fits["evaluate --loso"]) == 2  # one retraining per held-out subject
    assert len(rec.fits["few-labels"]) == 3  # CE, supervised KD, unsupervised KD
    assert len(rec.fits["crossval"]) == 2  # one training per fold
    assert rec.steps["valence"] == 3  # the valence run is one epoch of `steps` optimiser steps


def test_checkpoint_rng_state_loads_with_weights_only_and_restores_every_generator(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.normal()  # a cached Gaussian is part of NumPy's state
    path = tmp_path / "rng.pt"
    loop.atomic_save({"rng": loop.rng_state()}, path)
    expected = (torch.rand(3), np.random.normal(size=3), random.random())
    loop.set_rng_state(loop.load_checkpoint(path)["rng"])  # torch.load(weights_only=True)
    again = (torch.rand(3), np.random.normal(size=3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


class _Boom(loop.Callback):
    def on_step(self, state, step):
        raise ValueError("a deliberate bug inside a training step")


def _cli(args: list[str], *, bug: bool, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real `bci-train` entry point (`python -m training.cli`) in a subprocess; `bug` plants a raising hook."""
    plant = "import training.loop as L, tests.training.test_loop as T; L._OBSERVERS.append(T._Boom()); " if bug else ""
    code = f"import runpy, sys; sys.argv = ['bci-train', *{args!r}]; {plant}runpy.run_module('training.cli', run_name='__main__')"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_a_bug_inside_training_exits_1_with_its_traceback_a_user_error_exits_2_in_one_line(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(RUN.replace("subjects = [1, 2], ", ""))  # one subject: less data to make
    bug = _cli(["fit", "--config", str(cfg), "--out", str(tmp_path / "r"), "--no-progress"], bug=True, cwd=ROOT)
    assert bug.returncode == 1, bug.stderr[-2000:]
    assert "Traceback (most recent call last)" in bug.stderr and "ValueError: a deliberate bug" in bug.stderr
    assert "training/loop.py" in bug.stderr  # the traceback reaches into the loop
    cfg.write_text(RUN.replace("epochs = 1", "epoch = 1"))
    user = _cli(["fit", "--config", str(cfg)], bug=False, cwd=ROOT)
    assert user.returncode == 2, user.stderr[-2000:]
    assert "Traceback" not in user.stderr and str(cfg) in user.stderr and "train.epoch" in user.stderr
    assert user.stderr.strip().count("\n") == 0  # one line


@pytest.mark.parametrize(
    ("kind", "text", "argv", "key"),
    [
        ("run", RUN.replace("batch_size = 16", "batchsize = 16"), ["fit", "--config"], "train.batchsize"),
        ("sweep", SWEEP.replace("epochs = 1", "epoch = 3"), ["sweep", "--config"], "train.epoch"),
        ("sweep", SWEEP.replace("seeds = [0]", "seed = [0]"), ["sweep", "--config"], "seed"),
        (
            "valence",
            VALENCE.replace("steps = 3", "step = 3"),
            ["valence", "fit", "--synth", "--out", "m.pt", "--config"],
            "fit.step",
        ),
        (
            "valence",
            VALENCE.replace("[synth]", "[synthetic]"),
            ["valence", "fit", "--synth", "--out", "m.pt", "--config"],
            "synthetic",
        ),
    ],
)
def test_a_mistyped_key_in_each_kind_of_config_is_refused_naming_file_and_key(tmp_path, capsys, kind, text, argv, key):
    from bci_stream.errors import ConfigError
    from training.run_config import load_config as load_run
    from training.sweep import load_config as load_sweep
    from training.valence.cli import load_config as load_valence

    path = tmp_path / f"{kind}.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        {"run": load_run, "sweep": load_sweep, "valence": load_valence}[kind](path)
    message = str(err.value)
    assert str(path) in message and key in message and "unknown" in message, message
    assert main([*argv, str(path)]) == 2  # and the CLI refuses it before training anything
    assert str(path) in capsys.readouterr().err


def test_one_error_hierarchy_shared_with_bci_stream():
    import ast

    from bci_stream import errors
    from training import errors as training_errors
    from training import runs
    from training.export import ExportError
    from training.teachers import TeacherError
    from training.valence.data import ValenceDataError

    assert runs.ConfigError is errors.ConfigError  # no shadowing ConfigError of its own
    for cls in (
        training_errors.TrainingDataError,
        training_errors.SettingError,
        ValenceDataError,
        TeacherError,
        ExportError,
        training_errors.ConfigFileNotFoundError,
    ):
        assert issubclass(cls, errors.BciStreamError), cls
    defined = {
        node.name
        for path in (ROOT / "training").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
    }
    assert "ConfigError" not in defined


def test_a_checkpoint_that_needs_unpickling_is_refused_not_loaded(tmp_path):
    from bci_stream.errors import ConfigError

    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 2, "rng": {"numpy": np.random.get_state()}}, path)  # the format before the one loop
    with pytest.raises(ConfigError, match="never loaded"):
        loop.load_checkpoint(path)
