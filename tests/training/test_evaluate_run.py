"""``bci-train evaluate RUN``: a tiny run, re-evaluated on its validation split with chance, p and probes."""

import json
from pathlib import Path

import pytest

from training.cli import main
from training.evaluate_run import VALIDATION_NOTE, evaluate_run
from training.runs import ConfigError, fit_run

TINY = """
[data]
synth = { seconds = 20.0, seeds = [5, 6], classes = 3, images_per_class = 3, evoked_uv = 30.0 }
sfreq = 100.0
n_times = 40
bandpass = [5.0, 40.0]

[teacher]
source = "none"

[student]
name = "conv1d"
options = { filters = [8, 8], kernel_size = 5 }

[train]
epochs = 2
batch_size = 16
lr = 0.005
seed = 0
threads = 1

[run]
name = "tiny-eval"
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("evalrun")
    config = tmp / "tiny.toml"
    config.write_text(TINY)
    result = fit_run(config, out=tmp / "run", progress=False)
    assert result.path is not None
    return result.path


def test_evaluate_run_writes_the_report(run):
    results = evaluate_run(run)
    report = run / "evaluation.md"
    assert report.is_file() and (run / "evaluation.json").is_file()
    p = results["predictions"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert p["n"] == metrics["n_val"]
    assert p["accuracy"] == pytest.approx(metrics["val_accuracy"])  # the same split and the same best model
    assert 0 < p["p_value_permutation"] <= 1 and p["n_permutations"] == 1000
    assert p["chance_uniform"] == pytest.approx(1 / 3) and "top5" not in p  # 3 classes
    assert set(p["per_subject"]) == {"subject 1, session seed 5", "subject 1, session seed 6"}
    assert results["probes"]["n_blocks"] == 2 and results["probes"]["time"] is not None
    text = report.read_text()
    assert VALIDATION_NOTE in text and "early stopping" in text
    for word in ("accuracy", "chance", "permutation p", "subject"):
        assert word in text
    if results["confounded"]:
        assert text.startswith("**WARNING")
    else:
        assert text.startswith("# Run")
    saved = json.loads((run / "evaluation.json").read_text())
    assert saved["predictions"]["accuracy"] == p["accuracy"] and saved["note"] == VALIDATION_NOTE


def test_cli_evaluate_run(run, capsys, tmp_path):
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "evaluation.md" in out and "accuracy" in out and "p_value_permutation" in out
    assert main(["evaluate"]) == 2  # neither a run nor --eeg-imagenet
    assert main(["evaluate", str(tmp_path)]) == 2  # not a run folder
    assert "not a run folder" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        evaluate_run(tmp_path)
