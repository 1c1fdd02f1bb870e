"""Embedding objectives, the embedding card, zero-shot retrieval on held-out planted classes (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bci_stream.card import InputSpec, ModelCard, OutputSpec
from bci_stream.errors import ModelCardError
from training.embedding import retrieval, zeroshot_synthetic
from training.losses import compatibility_hinge, symmetric_infonce


def test_hinge_is_zero_when_the_own_image_wins_by_the_margin():
    e = torch.tensor([[1.0, 0.0]])
    assert compatibility_hinge(e, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), 0.2).item() == 0.0
    # own image less compatible than the other class's image: margin + difference
    loss = compatibility_hinge(e, torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]), 0.2)
    assert loss.item() == pytest.approx(1.2)
    masked = compatibility_hinge(e, torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]), 0.2, torch.zeros(1))
    assert masked.item() == 0.0


def test_infonce_prefers_matching_pairs_and_is_symmetric():
    eye = torch.eye(4)
    scale = torch.tensor(np.log(10.0))
    assert symmetric_infonce(eye, eye, scale) < symmetric_infonce(eye, eye[[1, 2, 3, 0]], scale)
    a, b = torch.nn.functional.normalize(torch.randn(5, 3), dim=1), torch.nn.functional.normalize(torch.randn(5, 3))
    assert symmetric_infonce(a, b, scale).item() == pytest.approx(symmetric_infonce(b, a, scale).item(), rel=1e-6)


def test_embedding_card_needs_dim_and_temperature_and_a_matching_table():
    spec = InputSpec(sfreq=128.0, n_times=8, channels=["O1"])
    with pytest.raises(ValueError, match=r"output\.dim and output\.temperature"):
        ModelCard(name="x", task="embedding", input=spec, output=OutputSpec(name="embedding"))
    with pytest.raises(ValueError, match="table has 1 rows"):
        OutputSpec(dim=2, temperature=0.1, classes=["a", "b"], table=[[1.0, 0.0]])
    with pytest.raises(ValueError, match="length"):
        OutputSpec(dim=3, temperature=0.1, classes=["a"], table=[[1.0, 0.0]])
    card = ModelCard(name="x", task="embedding", input=spec, output=OutputSpec(dim=2, temperature=0.1))
    assert ModelCard.from_json(card.to_json()) == card
    with pytest.raises(ModelCardError):
        ModelCard.from_json(card.to_json().replace('"embedding"', '"embeddings"'))


def test_retrieval_counts_ranks_and_chance():
    table = np.eye(6)
    emb = table[[0, 1, 2, 3, 4, 5]] + 0.01
    r = retrieval(emb, np.arange(6), table, permutations=200)
    assert r["top1"] == 1.0 and r["chance_top1"] == pytest.approx(1 / 6) and r["chance_top5"] == pytest.approx(5 / 6)
    assert r["p_top1"] < 0.01
    wrong = retrieval(emb, np.roll(np.arange(6), 1), table, permutations=200)
    assert wrong["top1"] == 0.0 and wrong["p_top1"] == 1.0


@pytest.fixture(scope="module")
def zeroshot_rows(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("zs")
    return zeroshot_synthetic(encoder="nice", epochs=12, permutations=300, out=out), out


@pytest.mark.parametrize("objective", ["infonce", "hinge"])
def test_zero_shot_retrieval_of_unseen_classes_far_above_chance(zeroshot_rows, objective):
    rows, out = zeroshot_rows
    true = next(r for r in rows if r["objective"] == objective and r["table"] == "true")
    control = next(r for r in rows if r["objective"] == objective and r["table"] != "true")
    assert true["k"] == 8 and true["n"] == 96
    assert true["top1"] >= true["chance_top1"] + 0.3 and true["p_top1"] < 0.01, true
    # the shuffled class table: at (or below) chance, not significant
    assert control["top1"] <= control["chance_top1"] + 0.1 and control["p_top1"] > 0.05, control
    assert (out / f"nice-{objective}.onnx").is_file() and (out / "table.npz").is_file()


def test_image_embeddings_by_id_from_npz(tmp_path):
    from training.embedding import load_image_embeddings
    from training.errors import TrainingDataError

    path = tmp_path / "img.npz"
    np.savez(path, images=np.array(["n1_1", "n2_7"]), embeddings=np.array([[2.0, 0.0], [0.0, 3.0]], np.float32))
    assert np.allclose(load_image_embeddings(path, ["n2_7", "n1_1", "n2_7"]), [[0, 1], [1, 0], [0, 1]])
    with pytest.raises(TrainingDataError, match="n3_1"):
        load_image_embeddings(path, ["n1_1", "n3_1"])
    np.savez(path, ids=np.array(["a"]))
    with pytest.raises(TrainingDataError, match="lacks"):
        load_image_embeddings(path, ["a"])
