"""``bci-train evaluate RUN``: a tiny run, re-evaluated on its validation split with chance, p and probes."""

import json
from pathlib import Path

import pytest

from bci_stream.errors import ConfigError
from training.cli import main
from training.evaluate_run import TEST_NOTE, VALIDATION_NOTE, evaluate_run, headline
from training.runs import fit_run

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


TWO_SUBJECTS = TINY.replace(
    "seeds = [5, 6], classes = 3, images_per_class = 3",
    "seeds = [5], subjects = [1, 2], classes = 3, images_per_class = 4",
).replace("threads = 1", "threads = 1\ntest_fraction = 0.25")


@pytest.fixture(scope="module")
def held_out_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("heldout")
    config = tmp / "two.toml"
    config.write_text(TWO_SUBJECTS)
    result = fit_run(config, out=tmp / "run", progress=False)
    assert result.path is not None
    return result.path


def test_evaluate_run_uses_the_held_out_test_split(held_out_run):
    split = json.loads((held_out_run / "split.json").read_text())
    parts = [set(split[name]["images"]) for name in ("train", "validation", "test")]
    assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    metrics = json.loads((held_out_run / "metrics.json").read_text())
    assert metrics["n_test"] == len(split["test"]["index"]) > 0
    results = evaluate_run(held_out_run, loso=True)
    p = results["predictions"]
    assert results["split_kind"] == "test" and results["note"] == TEST_NOTE
    assert p["n"] == metrics["n_test"] and 0 < p["p_value_permutation"] <= 1
    assert set(p["per_subject"]) == {"subject 1, session seed 5", "subject 2, session seed 5"}
    text = (held_out_run / "evaluation.md").read_text()
    assert TEST_NOTE in text and "held-out test, never used for selection" in text
    assert "optimistic" not in text.split("## Leave-one-subject-out")[0]
    # leave-one-subject-out: one retrained fold per subject, fixed epochs = the run's best epoch
    loso = results["loso"]
    assert set(loso["subjects"]) == {"1", "2"} and loso["epochs"] == metrics["best_epoch"]
    for v in loso["subjects"].values():
        assert v["n_train"] + v["n_test"] == len(split["train"]["index"]) + len(split["validation"]["index"]) + len(
            split["test"]["index"]
        )
        assert 0 <= v["accuracy"] <= 1 and v["chance_uniform"] == pytest.approx(1 / 3)
    assert "## Leave-one-subject-out" in text
    print("held-out test", p["accuracy"], p["chance_majority"], "loso", loso)
    head = headline(results)
    assert head["split"].startswith("held-out test") and set(head["loso"]) == {"1", "2"}


def test_loso_needs_two_subjects(run):
    with pytest.raises(ConfigError, match="two subjects"):
        evaluate_run(run, loso=True)
