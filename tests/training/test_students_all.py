"""Every registered student: NTC in, logits out, ``features``, ONNX export with parity, seed reproducibility, trains."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from bci_stream.card import InputSpec, ModelCard, Normalization, OutputSpec, Preprocessing, read_card
from training.export import export_onnx
from training.fit import train_student
from training.students import STUDENTS, TRAINING_OPTIONS, build_student
from training.synthetic import synthesize

N_CHANS, N_TIMES, SFREQ, N_OUTPUTS = 8, 64, 128.0, 3
CHANNELS = [f"C{i}" for i in range(N_CHANS)]
# small widths so each student builds, exports and trains in about a second on one thread
SMALL: dict[str, dict] = {
    "cogninet-blstm": {"hidden": 16, "n_features": 16},
    "eegimagenet-lstm": {"hidden": 16, "n_features": 16},
    "conv1d": {"filters": (8, 16)},
    "joint-encoder": {"rnn_hidden": 16, "embedding": 16, "filters": (8, 8, 16, 16)},
    "shallow-fbcsp": {"n_filters_time": 8, "n_filters_spat": 8},
}
NEEDS_BRAINDECODE = {"eegnet", "shallow-fbcsp"}
HAS_BRAINDECODE = importlib.util.find_spec("braindecode") is not None
# posterior channels of the synthetic BioSemi-128 world (training.synthetic.occipital_channels), where the
# class-specific evoked responses are
POSTERIOR = ["A5", "A10", "A13", "A16", "A19", "A22", "A25", "A28"]


def _students() -> list:
    marks = pytest.mark.skipif(not HAS_BRAINDECODE, reason="braindecode not installed")
    cases = [pytest.param(n, {}, marks=marks if n in NEEDS_BRAINDECODE else (), id=n) for n in sorted(STUDENTS)]
    cases += [  # the options that change the graph
        pytest.param("cogninet-blstm", {"n_layers": 1, "pooling": "last"}, id="cogninet-blstm-1-last"),
        pytest.param("cogninet-blstm", {"n_layers": 4}, id="cogninet-blstm-4"),
        pytest.param("joint-encoder", {"rnn": "gru"}, id="joint-encoder-gru"),
    ]
    return cases


def _card(name: str, options: dict) -> ModelCard:
    # built like training.fit builds its cards
    return ModelCard(
        name=f"test-{name}",
        version="1.0.0",
        task="classification",
        input=InputSpec(sfreq=SFREQ, n_times=N_TIMES, tmin=0.04, channels=CHANNELS, units="V"),
        preprocessing=Preprocessing(
            bandpass=(5.0, 45.0),
            notch=50.0,
            filter="causal-butter-4",
            normalization=Normalization(kind="channel", mean=[0.0] * N_CHANS, std=[1e-5] * N_CHANS),
        ),
        output=OutputSpec(name="logits", classes=["a", "b", "c"]),
        provenance={
            "student": {"name": name, **{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}},
            "seed": 0,
        },
    )


def _build(name: str, options: dict, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_student(name, n_chans=N_CHANS, n_outputs=N_OUTPUTS, n_times=N_TIMES, sfreq=SFREQ, **options).eval()


@pytest.mark.parametrize(("name", "extra"), _students())
def test_student_contract(name, extra, tmp_path):
    options = {**SMALL.get(name, {}), **extra}
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((5, N_TIMES, N_CHANS)).astype(np.float32))
    model = _build(name, options, seed=3)
    with torch.no_grad():
        logits, feats = model(x), model.features(x)
    assert logits.shape == (5, N_OUTPUTS) and logits.dtype == torch.float32
    assert feats.ndim == 2 and feats.shape[0] == 5 and feats.shape[1] > 0
    assert torch.isfinite(logits).all() and torch.isfinite(feats).all()
    if name == "joint-encoder":
        with torch.no_grad():
            assert torch.equal(model.embed(x), feats) and feats.shape[1] == options["embedding"]

    # same seed → same weights and outputs; another seed → other weights
    twin = _build(name, options, seed=3)
    a, b = model.state_dict(), twin.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        assert torch.equal(twin(x), logits)
    other = _build(name, options, seed=4).state_dict()
    assert any(not torch.equal(a[k], other[k]) for k in a if a[k].is_floating_point())

    # ONNX: export_onnx checks ONNX Runtime vs PyTorch (≤ 1e-4, batch 4 and 1) and the card round trip
    card = _card(name, options)
    path = export_onnx(model, card, tmp_path / f"{name}.onnx")
    assert read_card(path) == card


def test_training_options_a_student_lacks_are_dropped():
    # train_student passes hidden/n_layers/dropout/n_features/pooling to every student
    common = dict.fromkeys(TRAINING_OPTIONS)
    common.update(hidden=16, n_layers=2, dropout=0.5, n_features=16, pooling="mean")
    model = build_student("conv1d", N_CHANS, N_OUTPUTS, N_TIMES, SFREQ, filters=(8,), **common)
    assert model.dropout.p == 0.5
    with pytest.raises(TypeError):
        build_student("conv1d", N_CHANS, N_OUTPUTS, N_TIMES, SFREQ, no_such_option=1)
    with pytest.raises(ValueError, match="known: "):
        build_student("no-such-student", N_CHANS, N_OUTPUTS, N_TIMES, SFREQ)


@pytest.fixture(scope="module")
def sessions():
    # 3 classes, strong evoked responses, 2 short sessions (as in test_fit.py)
    return [synthesize(45.0, seed=s, n_classes=3, images_per_class=4, evoked_uv=30.0) for s in (11, 12)]


@pytest.mark.parametrize("name", [n for (n,) in [(c.values[0],) for c in _students()[: len(STUDENTS)]]])
def test_train_student_smoke(name, sessions):
    if name in NEEDS_BRAINDECODE and not HAS_BRAINDECODE:
        pytest.skip("braindecode not installed")
    result = train_student(
        [s.recording for s in sessions],
        channels=POSTERIOR, sfreq=SFREQ, n_times=N_TIMES, bandpass=(5.0, 45.0),
        student=name, epochs=6, hidden=16, n_features=16, dropout=0.1, lr=5e-3, batch_size=16, seed=0,
    )  # fmt: skip
    m = result.metrics
    assert m["n_classes"] == 3 and m["n_val"] >= 40
    assert all(np.isfinite(row["loss"]) for row in result.history)
    assert result.card.provenance["student"]["name"] == name
    if name in ("cogninet-blstm", "conv1d"):
        assert m["val_accuracy"] >= m["chance_level"] + 0.2, m
        assert m["p_value_binomial"] < 1e-3, m


# ------------------------------------------------------------------ embedding students (issue 13)
EMBED_DIM = 6
SMALL_EMBEDDERS: dict[str, dict] = {
    "joint-encoder": {"rnn_hidden": 16, "filters": (8, 8, 16, 16)},
    "nice": {"filters": 8, "kernel": 9},
    "spectrogram-cnn": {"filters": (8, 8), "n_fft": 16, "hop": 8},
}


def _embedder(name: str, seed: int) -> torch.nn.Module:
    from training.zoo.embedding import EMBEDDERS

    torch.manual_seed(seed)
    return EMBEDDERS[name](N_CHANS, EMBED_DIM, N_TIMES, SFREQ, **SMALL_EMBEDDERS[name]).eval()


def _embedding_names() -> list[str]:
    from training.zoo.embedding import EMBEDDERS

    assert set(EMBEDDERS) == set(SMALL_EMBEDDERS)  # a new embedder must be added here
    return sorted(EMBEDDERS)


@pytest.mark.parametrize("name", _embedding_names())
def test_embedding_student_contract(name, tmp_path):
    from training.embedding import embedding_card

    x = torch.from_numpy(np.random.default_rng(0).standard_normal((5, N_TIMES, N_CHANS)).astype(np.float32))
    model = _embedder(name, seed=3)
    with torch.no_grad():
        z = model(x)
    assert z.shape == (5, EMBED_DIM) and z.dtype == torch.float32
    assert torch.allclose(z.norm(dim=1), torch.ones(5), atol=1e-5)  # unit vectors
    twin, other = _embedder(name, seed=3), _embedder(name, seed=4)
    with torch.no_grad():
        assert torch.equal(twin(x), z)
        assert not torch.allclose(other(x), z)
    table = np.eye(3, EMBED_DIM, dtype=np.float32)
    card = embedding_card(model, f"test-{name}", CHANNELS, SFREQ, N_TIMES, classes=["a", "b", "c"], table=table)
    path = export_onnx(model, card, tmp_path / f"{name}.onnx")  # ORT parity ≤ 1e-4, card round trip
    back = read_card(path)
    assert back == card and back.task == "embedding" and back.output.dim == EMBED_DIM
    assert back.output.temperature == pytest.approx(0.07, rel=1e-4)


def test_spectrogram_in_the_graph_is_the_stft():
    # the fixed conv kernels compute |STFT|² of each channel (Hann window, one-sided bins), as torch.stft does
    model = _embedder("spectrogram-cnn", seed=0)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, N_TIMES, N_CHANS)).astype(np.float32))
    with torch.no_grad():
        ours = model.spectrogram(x)
    ref = torch.stft(x[0, :, 2], 16, hop_length=8, window=torch.hann_window(16, periodic=True), center=False,
                     return_complex=True)  # fmt: skip
    assert torch.allclose(ours[0, 2], torch.log(ref.abs() ** 2 + 1e-6), atol=1e-4)
