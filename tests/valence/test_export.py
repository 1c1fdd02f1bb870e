"""Export: ONNX Runtime equals torch, the card round-trips, and the daemon contract gives the offline output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from bci_stream.card import ModelCard, read_card
from bci_stream.errors import ModelCardError
from bci_stream.features import FeatureContext, FeaturePipeline, default_feature_spec, default_preprocessing
from bci_stream.recordings import Recording
from training.valence.data import BIOSEMI32, FeatureSetup, SynthConfig, make_sequences, synth_trial
from training.valence.export import PARITY_TOLERANCE, ExportedValence, export_valence, parity
from training.valence.fit import FitConfig, TrainedValence, load_checkpoint, predict, save_checkpoint, train_valence

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "exported" / "valence-synth.onnx"
SETUP = FeatureSetup(default_feature_spec(), default_preprocessing(), list(BIOSEMI32))


@pytest.fixture(scope="module")
def trained_and_seqs() -> tuple[TrainedValence, list, list]:
    torch.set_num_threads(1)
    cfg = SynthConfig(subjects=1, trials=2, seconds=12.0, sfreq=256.0, channels="biosemi32", teacher_dim=16)
    trials = [synth_trial(cfg, 1, k) for k in (1, 2)]
    seqs = make_sequences(trials, SETUP)
    trained = train_valence(seqs, FitConfig(channels=(16, 16), steps=5, crop=16, batch_size=4), setup=SETUP)
    return trained, seqs, trials


def test_export_parity_and_card_round_trip(tmp_path: Path, trained_and_seqs) -> None:
    trained, seqs, _ = trained_and_seqs
    path = tmp_path / "valence.onnx"
    card = export_valence(trained, path, name="valence-test", version="0.1.0", provenance={"data": "unit test"})
    assert parity(trained, path) <= PARITY_TOLERANCE
    back = read_card(path)
    assert back == card
    assert ModelCard.from_json(back.to_json()) == back
    assert back.task == "valence"
    assert back.input.features == default_feature_spec()
    assert back.input.channels == list(BIOSEMI32) and back.input.units == "V"
    assert back.input.sfreq == 4.0 and back.input.n_times == 16 and back.input.name == "features"
    assert back.preprocessing.bandpass == (0.3, 45.0) and back.preprocessing.normalization.kind == "none"
    assert back.output.name == "valence"
    std = back.provenance["standardization"]
    assert isinstance(std, dict) and len(std["mean"]) == 192 and len(std["std"]) == 192
    # ORT on a real feature sequence equals the torch prediction of the whole sequence
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(["valence"], {"features": seqs[0].X[None].astype(np.float32)})
    np.testing.assert_allclose(got[0], predict(trained, seqs[:1])[0], atol=PARITY_TOLERANCE)


def test_checkpoint_round_trip(tmp_path: Path, trained_and_seqs) -> None:
    trained, seqs, _ = trained_and_seqs
    back = load_checkpoint(save_checkpoint(trained, tmp_path / "m.pt"))
    np.testing.assert_allclose(predict(back, seqs[:1])[0], predict(trained, seqs[:1])[0], atol=1e-6)
    assert back.setup is not None and back.setup.channels == list(BIOSEMI32)
    assert back.config == trained.config


def test_export_refuses_context_shorter_than_receptive_field(tmp_path: Path, trained_and_seqs) -> None:
    trained, _, _ = trained_and_seqs
    with pytest.raises(ValueError, match="receptive field"):
        export_valence(trained, tmp_path / "x.onnx", name="x", context=8)


def test_daemon_contract_live_chunks_give_the_offline_prediction(tmp_path: Path, trained_and_seqs) -> None:
    """A stream with more channels in another order and unit, fed in chunks through FeaturePipeline.from_card and
    FeatureContext; ONNX Runtime's output[0, -1] equals the offline full-trial prediction at that step."""
    trained, seqs, trials = trained_and_seqs
    path = tmp_path / "valence.onnx"
    card = export_valence(trained, path, name="valence-test")
    rec = trials[0].recording
    extra = np.random.default_rng(0).standard_normal((rec.n_samples, 3)) * 1e-5
    stream_channels = ["EXG1", *rec.ch_names[::-1], "EXG2", "EXG3"]
    raw = np.concatenate([extra[:, :1], rec.data[:, ::-1], extra[:, 1:]], axis=1) * 1e6  # µV, another order
    stamps = 500.0 + rec.times
    pipe = FeaturePipeline.from_card(card, stream_channels, rec.sfreq, "microvolts", source="EEG 'amp'")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    offline = predict(trained, seqs[:1])[0]
    context = FeatureContext(card.input.n_times, pipe.n_features)
    live = []
    for start in range(0, rec.n_samples, 37):
        for time, x in context.push(pipe.push(raw[start : start + 37], stamps[start : start + 37])):
            assert x.shape == (1, 16, 192) and x.dtype == np.float32
            (valence,) = sess.run(["valence"], {"features": x})
            live.append((time - 500.0, float(valence[0, -1])))
    assert len(live) == len(offline) - card.input.n_times + 1
    times = np.array([t for t, _ in live])
    np.testing.assert_allclose(times, seqs[0].times[card.input.n_times - 1 :], atol=1e-9)
    np.testing.assert_allclose([v for _, v in live], offline[card.input.n_times - 1 :], atol=PARITY_TOLERANCE)


def test_exported_module_standardises_inside_the_graph(trained_and_seqs) -> None:
    trained, seqs, _ = trained_and_seqs
    module = ExportedValence(trained).eval()
    with torch.no_grad():
        got = module(torch.from_numpy(seqs[0].X[None])).numpy()[0]
    np.testing.assert_allclose(got, predict(trained, seqs[:1])[0], atol=1e-5)


# ------------------------------------------------------------------------------------------- the shipped model


def test_shipped_demo_model_runs_on_the_128_channel_1khz_demo_montage() -> None:
    from training.synthetic import _montage

    card = read_card(SHIPPED)
    assert card.task == "valence" and card.input.features is not None
    biosemi128, _ = _montage()
    assert set(card.input.channels) <= set(biosemi128) and len(card.input.channels) == 32
    pipe = FeaturePipeline.from_card(card, biosemi128, 1000.0, "V", source="demo EEG")
    assert pipe.n_features == 192
    sess = ort.InferenceSession(str(SHIPPED), providers=["CPUExecutionProvider"])
    x = np.tile(np.full(192, 1 / 6, dtype=np.float32), (1, card.input.n_times, 1))
    (valence,) = sess.run(["valence"], {"features": x})
    assert valence.shape == (1, card.input.n_times) and np.isfinite(valence).all()
    with pytest.raises(ModelCardError, match=r"64 Hz"):
        FeaturePipeline.from_card(card, biosemi128, 64.0, "V")


def test_features_are_rate_agnostic_enough_for_the_demo() -> None:
    """The same synthetic trial at 1000 Hz and 256 Hz gives close features (Welch bins every 1 Hz at any rate)."""
    a = synth_trial(SynthConfig(seconds=10.0, sfreq=1000.0, channels="biosemi32", teacher_dim=8), 2, 1)
    from scipy.signal import resample_poly

    low = Recording(resample_poly(a.recording.data, 32, 125, axis=0), 256.0, a.recording.ch_names, ["eeg"] * 32)
    from bci_stream.features import features_from_recording

    _, X_hi = features_from_recording(a.recording, default_feature_spec())
    _, X_lo = features_from_recording(low, default_feature_spec())
    assert np.corrcoef(X_hi.ravel(), X_lo.ravel())[0, 1] > 0.99
