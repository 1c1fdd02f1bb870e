"""Export: ONNX Runtime gives PyTorch's logits (≤ 1e-4), the batch axis is dynamic, the card round-trips."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from bci_stream.card import InputSpec, ModelCard, Normalization, OutputSpec, Preprocessing, read_card
from training.export import ExportError, export_onnx
from training.students import STUDENTS, build_student

CHANNELS = ["O1", "Oz", "O2", "Pz"]


def _card() -> ModelCard:
    return ModelCard(
        name="tiny-blstm",
        input=InputSpec(sfreq=100.0, n_times=20, tmin=0.04, channels=CHANNELS, units="V"),
        preprocessing=Preprocessing(
            bandpass=(1.0, 40.0),
            notch=None,
            normalization=Normalization(kind="channel", mean=[0.0] * 4, std=[1e-5] * 4),
        ),
        output=OutputSpec(classes=["a", "b", "c"]),
        provenance={"student": {"name": "cogninet-blstm", "hidden": 8}, "seed": 0},
    )


def _model(pooling: str = "last") -> torch.nn.Module:
    torch.manual_seed(0)
    return build_student("cogninet-blstm", 4, 3, 20, 100.0, hidden=8, n_layers=2, pooling=pooling).eval()


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_export_parity_dynamic_batch_and_card(tmp_path, pooling):
    model, card = _model(pooling), _card()
    path = export_onnx(model, card, tmp_path / "tiny.onnx")
    assert read_card(path) == card
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["eeg"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    for batch in (1, 7):
        x = np.random.default_rng(batch).standard_normal((batch, 20, 4)).astype(np.float32)
        got = session.run(["logits"], {"eeg": x})[0]
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        assert got.shape == (batch, 3)
        assert np.max(np.abs(got - expected)) <= 1e-4


def test_same_model_same_file(tmp_path):
    a = export_onnx(_model(), _card(), tmp_path / "a.onnx")
    b = export_onnx(_model(), _card(), tmp_path / "b.onnx")
    assert a.read_bytes() == b.read_bytes()


def test_export_fails_loudly_and_leaves_nothing(tmp_path):
    path = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="disagree"):
        export_onnx(_model(), _card(), path, atol=-1.0)  # no difference can pass a negative tolerance
    assert not path.exists() and not list(tmp_path.iterdir())


def test_registry_and_signal_arguments():
    assert "cogninet-blstm" in STUDENTS
    model = build_student("cogninet-blstm", 4, 3, 20, 100.0)  # defaults: 2 layers, hidden 128, 128-d features
    assert model.lstm.num_layers == 2 and model.lstm.hidden_size == 128 and model.lstm.bidirectional
    assert model.features(torch.zeros(2, 20, 4)).shape == (2, 128)
    with pytest.raises(ValueError, match="unknown student"):
        build_student("nope", 4, 3, 20, 100.0)
