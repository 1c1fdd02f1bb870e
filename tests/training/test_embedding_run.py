"""Embedding runs (issue 13): ``bci-train fit`` with ``[embedding]``, ``bci-train evaluate RUN`` zero-shot on classes
never seen in training nor used for selection, ``bci-train export RUN``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bci_stream.errors import ConfigError
from training.cli import main
from training.runs import fit_run

CONFIG = """
[data]
synth = { seconds = 120.0, seeds = [21], classes = 9, images_per_class = 4, evoked_uv = 30.0 }
sfreq = 200.0
n_times = 88
bandpass = [5.0, 45.0]

[student]
name = "nice"
options = { filters = 16 }

[embedding]
images = "synthetic"
objective = "infonce"
val_classes = 2
test_classes = 3

[train]
epochs = 10
batch_size = 32
lr = 0.003
seed = 0
threads = 1

[run]
name = "tiny-embedding"
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    """A finished embedding run; ``seen`` records the epochs train_embedding was given (training, selection)."""
    import training.embedding as embedding

    tmp = tmp_path_factory.mktemp("embrun")
    config = tmp / "emb.toml"
    config.write_text(CONFIG)
    seen: dict = {}
    real = embedding.train_embedding

    def spy(X, rows, labels, train_idx, val_idx, val_table, **kwargs):
        seen.update(train=np.asarray(train_idx), val=np.asarray(val_idx), n_table=len(val_table))
        return real(X, rows, labels, train_idx, val_idx, val_table, **kwargs)

    embedding.train_embedding = spy
    try:
        result = fit_run(config, out=tmp / "run", progress=False)
    finally:
        embedding.train_embedding = real
    assert result.path is not None
    return result.path, seen


def test_test_classes_are_never_trained_on_nor_used_for_selection(run):
    path, seen = run
    split = json.loads((path / "split.json").read_text())
    classes = split["classes"]
    assert len(classes["test"]) == 3 and len(classes["validation"]) == 2 and len(classes["train"]) == 4
    assert not set(classes["test"]) & (set(classes["train"]) | set(classes["validation"]))
    # what the training loop got: the training and validation epochs only, the validation classes' table only
    assert sorted(seen["train"].tolist()) == split["train"]["index"]
    assert sorted(seen["val"].tolist()) == split["validation"]["index"]
    assert not set(split["test"]["index"]) & (set(seen["train"].tolist()) | set(seen["val"].tolist()))
    assert seen["n_table"] == 2
    metrics = json.loads((path / "metrics.json").read_text())
    best = min(metrics["history"], key=lambda r: r["val_loss"])  # the epoch: lowest validation-class loss
    assert metrics["best_epoch"] == best["epoch"]
    card = json.loads((path / "card.json").read_text())
    assert card["task"] == "embedding" and card["output"]["classes"] == classes["test"]


def test_evaluate_reports_zero_shot_on_the_test_classes_with_chance_and_p(run, capsys):
    path, _ = run
    assert main(["evaluate", str(path), "--permutations", "300", "--json"]) == 0
    head = json.loads(capsys.readouterr().out)
    assert head["k"] == 3 and head["chance_top1"] == pytest.approx(1 / 3)
    assert head["n"] == len(json.loads((path / "split.json").read_text())["test"]["index"])
    assert head["top1"] >= head["chance_top1"] + 0.2 and head["p_top1"] < 0.01, head
    assert head["control_top1"] <= head["chance_top1"] + 0.1  # a shuffled table: nothing to find
    text = (path / "evaluation.md").read_text()
    assert "never seen in training and never used for selection" in text and "| shuffled (control) |" in text
    assert json.loads((path / "evaluation.json").read_text())["zeroshot"]["top1"] == head["top1"]


def test_evaluate_refuses_a_split_that_no_longer_matches(run, tmp_path):
    import shutil

    path, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    split = json.loads((copy / "split.json").read_text())
    split["classes"]["test"], split["classes"]["train"] = split["classes"]["train"][:3], split["classes"]["test"]
    (copy / "split.json").write_text(json.dumps(split))
    with pytest.raises(ConfigError, match=r"does not match RUN/split\.json"):
        from training.evaluate_run import evaluate_run

        evaluate_run(copy, n_permutations=10)


def test_export_gives_a_servable_zero_shot_model(run, tmp_path):
    from bci_stream.inference import OnnxModel
    from bci_stream.zeroshot import ZeroShotHead

    path, _ = run
    out = tmp_path / "emb.onnx"
    assert main(["export", str(path), "--out", str(out)]) == 0
    model = OnnxModel(out)
    card = model.card
    head = ZeroShotHead(card.output.dim, card.output.temperature, classes=card.output.classes, table=card.output.table)
    assert head.classes == json.loads((path / "split.json").read_text())["classes"]["test"]


def test_an_embedding_student_without_an_embedding_table_is_refused(tmp_path):
    from training.run_config import load_config

    config = tmp_path / "bad.toml"
    without = CONFIG.split("[embedding]")[0] + "[train]" + CONFIG.split("[train]")[1]
    config.write_text(without)
    with pytest.raises(ConfigError, match=r"'nice' without an \[embedding\] table"):
        load_config(config)
    config.write_text(CONFIG.split("[embedding]")[0].replace('"nice"', '"conv1d"').replace("{ filters = 16 }", "{}")
                      + "[embedding]\n")  # fmt: skip
    with pytest.raises(ConfigError, match="embedding student"):
        load_config(config)


def test_evaluate_draws_zeroshot_png_from_the_evaluated_numbers(run, monkeypatch):
    """``RUN/zeroshot.png``: a PNG linked from evaluation.md, drawn from the results evaluate returns (top-k curve
    whose k=1 / k=5 points are the table's top-1 / top-5, chance k/K, the control; confusion summing to n)."""
    import training.embedding_run as er
    from training.evaluate_run import evaluate_run

    path, _ = run
    given: list = []
    real = er.zeroshot_plot
    monkeypatch.setattr(er, "zeroshot_plot", lambda p, results: given.append(results) or real(p, results))
    results = evaluate_run(path, n_permutations=20)
    png = path / "zeroshot.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "![zero-shot top-k and confusion, test classes](zeroshot.png)" in (path / "evaluation.md").read_text()
    assert "[zeroshot.png](zeroshot.png)" in (path / "report.md").read_text()  # the run's report points to it
    assert given == [results]
    z, c, k = results["zeroshot"], results["control_shuffled_table"], results["zeroshot"]["k"]
    t, counts = results["topk"], np.asarray(results["confusion"]["counts"])
    assert t["k"] == list(range(1, k + 1)) and t["chance"] == pytest.approx([i / k for i in t["k"]])
    assert t["true"][0] == z["top1"] and t["true"][min(5, k) - 1] == z["top5"] and t["control"][0] == c["top1"]
    assert np.all(np.diff(t["true"]) >= 0) and t["true"][-1] == 1.0
    assert counts.shape == (k, k) and counts.sum() == z["n"] and np.trace(counts) / z["n"] == pytest.approx(z["top1"])
    assert results["confusion"]["classes"] == results["classes"]["test"]
    # what is drawn is what was given: the lines' y values and the image's counts
    fig = er.zeroshot_figure(results)
    curves, matrix = fig.axes
    ys = [list(line.get_ydata()) for line in curves.get_lines()]
    assert ys == [t["true"], t["control"], t["chance"]]
    assert np.array_equal(matrix.get_images()[0].get_array(), counts)
    assert f"K = {k}" in curves.get_title() and f"n = {z['n']}" in curves.get_title()
    assert "never seen in training" in fig._suptitle.get_text()
