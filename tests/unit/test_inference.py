"""Unit tests of bci_stream.inference: ONNX Runtime session tuning, optimised-model cache, warm-up, IO binding.

Real ONNX Runtime sessions on real models (a tiny linear one, and the shipped BLSTM where the graph matters);
no timing asserts (the numbers live in scripts/bench_ort.py).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bci_stream.card import read_card
from bci_stream.config import ModelSection, load_config
from bci_stream.errors import ConfigError, InferenceError
from bci_stream.inference import CPU, CUDA, OnnxModel, SessionSettings, cache_key, default_cache_dir
from tests.support import make_linear_model
from training.export import ExportError, held_out_set, quantize_if_agrees

SHIPPED = Path(__file__).parents[2] / "exported" / "cogninet-synth.onnx"
CHANNELS = ["Fp1", "Fp2", "Cz", "Pz"]


@pytest.fixture(scope="module")
def linear(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "linear.onnx"
    return make_linear_model(path, channels=CHANNELS, sfreq=100.0, n_times=50, classes=["a", "b", "c"])


def batch(n: int, n_times: int, n_ch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, n_times, n_ch)).astype(np.float32)


# --------------------------------------------------------------------------- session options


def test_default_settings_one_thread_no_spinning_all_optimisations(linear):
    model = OnnxModel(linear, "cpu")
    options = model.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert model.cache_path is None  # a library user opts in to the cache


def test_settings_are_applied(linear):
    settings = SessionSettings(intra_op_threads=2, inter_op_threads=0, allow_spinning=True, graph_optimization="basic")
    options = OnnxModel(linear, "cpu", settings).session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_settings_from_daemon_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    section = ModelSection(intra_op_threads=3, allow_spinning=True, cudnn_conv_algo_search="EXHAUSTIVE")
    settings = SessionSettings.from_config(section)
    assert (settings.intra_op_threads, settings.inter_op_threads, settings.allow_spinning) == (3, 1, True)
    assert settings.cudnn_conv_algo_search == "EXHAUSTIVE"
    assert settings.cache_dir == default_cache_dir() == tmp_path / "xdg" / "bci-stream" / "onnxruntime"
    assert SessionSettings.from_config(ModelSection(cache_dir=tmp_path / "c")).cache_dir == tmp_path / "c"
    assert SessionSettings.from_config(ModelSection(cache_optimized=False)).cache_dir is None
    defaults = SessionSettings.from_config(ModelSection())
    assert (defaults.intra_op_threads, defaults.allow_spinning, defaults.io_binding) == (1, False, False)


def test_config_refuses_bad_tuning_values_naming_the_key():
    with pytest.raises(ConfigError, match=r"\[model\] intra_op_threads.*-1"):
        load_config(None, {"model": {"intra_op_threads": -1}})
    with pytest.raises(ConfigError, match=r"\[model\] cudnn_conv_algo_search"):
        load_config(None, {"model": {"cudnn_conv_algo_search": "FAST"}})


def test_cuda_provider_options():
    options = SessionSettings(cuda_device_id=1, cuda_mem_limit_mb=512).cuda_options()
    assert options == {
        "device_id": "1",
        "cudnn_conv_algo_search": "HEURISTIC",
        "arena_extend_strategy": "kSameAsRequested",
        "do_copy_in_default_stream": "1",
        "gpu_mem_limit": str(512 * 1024 * 1024),
    }


def test_cuda_asked_for_without_a_usable_gpu_is_refused(linear):
    try:
        model = OnnxModel(linear, "cuda")
    except InferenceError as exc:
        message = str(exc)
        if CUDA in ort.get_available_providers():  # onnxruntime-gpu fell back: it says why and what to do
            assert re.search(
                r"fell back to CPUExecutionProvider: (its CUDA provider library cannot load \(\S+: .+\)"
                r"|the CUDA libraries load but no NVIDIA driver does|the CUDA libraries and the driver load"
                r"|this onnxruntime \S+ has no CUDA provider library)",
                message,
            ), message
            assert re.search(r"Install CUDA \d+\.x and cuDNN 9 .*provider = 'auto'.* or 'cpu'", message), message
        else:  # a CPU-only onnxruntime: refused before a session is made
            assert "install onnxruntime-gpu" in message
    else:  # a GPU machine: it really runs on CUDA, with our options
        assert model.provider == CUDA
        assert model.session.get_provider_options()[CUDA]["cudnn_conv_algo_search"] == "HEURISTIC"


# --------------------------------------------------------------------------- optimised-model cache


def test_optimised_model_cached_then_reused_with_same_outputs(tmp_path):
    cache = tmp_path / "cache"
    plain = OnnxModel(SHIPPED, "cpu", SessionSettings())
    first = OnnxModel(SHIPPED, "cpu", SessionSettings(cache_dir=cache))
    assert first.cache_path is not None and first.cache_path.is_file()
    assert first.cache_path.name == cache_key(first.sha256, CPU, first.settings)
    assert [p.name for p in cache.iterdir()] == [first.cache_path.name]  # no temporary file left
    stamp = first.cache_path.stat().st_mtime_ns
    second = OnnxModel(SHIPPED, "cpu", SessionSettings(cache_dir=cache))
    assert second.cache_path == first.cache_path
    assert second.cache_path.stat().st_mtime_ns == stamp  # reused, not rewritten
    assert second.session.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    x = batch(3, 440, 128)
    np.testing.assert_allclose(second.run(x), plain.run(x), rtol=0, atol=1e-5)
    np.testing.assert_allclose(first.run(x), plain.run(x), rtol=0, atol=1e-5)
    assert second.card == plain.card and second.sha256 == plain.sha256  # card read from the model file itself


def test_cache_key_names_what_the_graph_depends_on():
    a = cache_key("ab" * 32, CPU, SessionSettings())
    assert a.startswith("ab" * 16) and f"ort{ort.__version__}" in a and "-cpu-all-" in a
    assert cache_key("cd" * 32, CPU, SessionSettings()) != a
    assert cache_key("ab" * 32, CUDA, SessionSettings()) != a
    assert cache_key("ab" * 32, CPU, SessionSettings(graph_optimization="extended")) != a


def test_damaged_cache_entry_is_rebuilt(linear, tmp_path, caplog):
    cache = tmp_path / "cache"
    model = OnnxModel(linear, "cpu", SessionSettings(cache_dir=cache))
    assert model.cache_path is not None
    model.cache_path.write_bytes(b"not an onnx model")
    with caplog.at_level(logging.WARNING, logger="bci_stream.inference"):
        again = OnnxModel(linear, "cpu", SessionSettings(cache_dir=cache))
    assert "unreadable optimised-model cache entry" in caplog.text
    assert again.cache_path == model.cache_path and again.cache_path.read_bytes() != b"not an onnx model"
    x = batch(2, 50, 4)
    np.testing.assert_allclose(again.run(x), OnnxModel(linear, "cpu").run(x), rtol=0, atol=1e-6)


def test_unwritable_cache_runs_without_it(linear, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="bci_stream.inference"):
        model = OnnxModel(linear, "cpu", SessionSettings(cache_dir=blocker / "cache"))
    assert model.cache_path is None
    assert "not writable" in caplog.text
    assert model.run(batch(1, 50, 4)).shape == (1, 3)


# --------------------------------------------------------------------------- warm-up, IO binding


def test_warm_up_every_batch_size(linear):
    model = OnnxModel(linear, "cpu")
    first = model.warm_up(repeats=1, batch_sizes=range(1, 6))
    assert sorted(model.warm_ms) == [1, 2, 3, 4, 5]
    assert first == model.warm_ms[1] and all(ms > 0 for ms in model.warm_ms.values())
    assert isinstance(model.warm_up(), float)  # the old call still works
    with pytest.raises(ValueError, match="batch_sizes"):
        model.warm_up(batch_sizes=[0])


@pytest.mark.parametrize("n", [1, 5])
def test_io_binding_gives_the_same_outputs(linear, n):
    x = batch(n, 50, 4, seed=n)
    bound = OnnxModel(linear, "cpu", SessionSettings(io_binding=True)).run(x)
    np.testing.assert_array_equal(bound, OnnxModel(linear, "cpu").run(x))
    assert bound.shape == (n, 3)


# --------------------------------------------------------------------------- int8 quantisation at export (issue 8)


def _labelled(path: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = batch(n, 50, 4, seed=seed)
    y = OnnxModel(path, "cpu").run(x).argmax(axis=1)
    y[:10] = (y[:10] + 1) % 3  # some errors, so accuracy is not trivially 1
    return x, y


def test_quantized_model_kept_when_it_agrees(linear, tmp_path):
    float_path = tmp_path / "m.onnx"
    float_path.write_bytes(linear.read_bytes())
    x, y = _labelled(float_path, 300, seed=11)
    report = quantize_if_agrees(float_path, x, y, min_agreement=0.9, held_out="300 random epochs")
    assert report.kept and report.path == tmp_path / "m.int8.onnx"
    assert report.agreement >= 0.9 and report.n_epochs == 300
    assert report.float_accuracy == pytest.approx(290 / 300)
    int8 = OnnxModel(report.path, "cpu")  # a carded model the daemon loads
    ops = {n.op_type for n in onnx.load(str(report.path)).graph.node}
    assert ops & {"DynamicQuantizeMatMul", "MatMulInteger", "DynamicQuantizeLinear"}, ops
    for card in (int8.card, read_card(float_path)):  # recorded in both cards
        q = card.provenance["quantization"]
        assert q["kept"] is True and q["top1_agreement"] == round(report.agreement, 6)
        assert q["float_accuracy"] == round(290 / 300, 6) and q["int8_accuracy"] == round(report.int8_accuracy, 6)
        assert q["chance_level"] == round(report.chance_level, 6) and q["held_out"] == "300 random epochs"
    assert int8.card.provenance == {**read_card(linear).provenance, "quantization": q}
    np.testing.assert_allclose(int8.run(x[:5]), OnnxModel(float_path, "cpu").run(x[:5]), atol=0.05)


def test_quantized_model_refused_when_it_disagrees(tmp_path):
    # two classes whose weights differ by less than one int8 step: quantisation decides between them by rounding
    w = np.random.default_rng(3).standard_normal((4, 1)).astype(np.float32)
    weights = np.hstack([w, w + 1e-4 * np.random.default_rng(4).standard_normal((4, 1)).astype(np.float32)])
    path = make_linear_model(tmp_path / "tie.onnx", channels=CHANNELS, sfreq=100.0, n_times=50, classes=["a", "b"],
                             weights=weights)  # fmt: skip
    (tmp_path / "tie.int8.onnx").write_bytes(b"an int8 model of an earlier export")
    report = quantize_if_agrees(path, batch(200, 50, 4, seed=5), min_agreement=0.999)
    assert not report.kept and report.path is None and report.agreement < 0.999
    assert not (tmp_path / "tie.int8.onnx").exists()  # the stale one is gone too
    assert not list(tmp_path.glob(".*tmp"))
    q = read_card(path).provenance["quantization"]
    assert q["kept"] is False and q["file"] is None and q["float_accuracy"] is None


def test_quantize_needs_held_out_epochs(linear, tmp_path):
    with pytest.raises(ExportError, match="no held-out epochs"):
        quantize_if_agrees(linear, np.zeros((0, 50, 4), np.float32), out=tmp_path / "q.onnx")


def test_held_out_set_cuts_and_labels_recordings_as_the_card_says(linear, tmp_path):
    from bci_stream.epochs import Marker
    from bci_stream.recordings import Recording

    card = read_card(linear)
    card = card.model_copy(
        update={
            "provenance": {
                "events": "^stim/",
                "labels": {"regex": r"stim/(?P<label>[^/]+)/", "classes": ["c", "a", "b"]},
            }
        }
    )
    values = ["stim/a/1", "stim/b/2", "other", "stim/zzz/3", "stim/c/4"]
    rec = Recording(
        data=np.random.default_rng(0).standard_normal((1200, 4)) * 1e-5,
        sfreq=100.0,
        ch_names=["Pz", "Cz", "Fp2", "Fp1"],  # another order: picked by name
        ch_types=["eeg"] * 4,
        markers=[Marker(v, 1.0 + 2.0 * i) for i, v in enumerate(values)],
    )
    x, y = held_out_set(card, [rec, rec])
    assert x.shape == (8, 50, 4) and x.dtype == np.float32
    assert y.tolist() == [1, 2, -1, 0] * 2  # "other" is not an event; "zzz" is not a class
    np.testing.assert_allclose(x[0], rec.data[100:150][:, [3, 2, 1, 0]], rtol=1e-6)  # card: no filter, no norm


def test_cache_keeps_only_the_newest_entries(linear, tmp_path, monkeypatch):
    import bci_stream.inference as inference

    cache = tmp_path / "cache"
    cache.mkdir()
    for i in range(3):
        (cache / f"{i:032d}-ort0-cpu-all-x.onnx").write_bytes(b"old")
        os.utime(cache / f"{i:032d}-ort0-cpu-all-x.onnx", ns=(i * 10**9, i * 10**9))
    monkeypatch.setattr(inference, "CACHE_ENTRIES", 2)
    model = OnnxModel(linear, "cpu", SessionSettings(cache_dir=cache))
    assert sorted(p.name for p in cache.iterdir()) == sorted([model.cache_path.name, f"{2:032d}-ort0-cpu-all-x.onnx"])
