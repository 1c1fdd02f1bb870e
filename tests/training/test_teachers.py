"""Image-classifier teachers: a tiny ONNX classifier built with onnx.helper (nothing downloaded), the disk cache,
and the conversion to a PrecomputedTeacher that train_student reads."""

import sys

import numpy as np
import pytest

from training.teachers import (
    OnnxTeacher,
    PrecomputedTeacher,
    TeacherError,
    TorchvisionTeacher,
    image_key,
)

N_CLASSES = 4


def _tiny_onnx(path, weight: np.ndarray, bias: np.ndarray) -> None:
    """NCHW (dynamic batch, 3×8×8) → GlobalAveragePool → Flatten → Gemm → logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", weight.shape[1]])],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture()
def model_and_weights(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, N_CLASSES)).astype(np.float32)
    b = rng.normal(size=N_CLASSES).astype(np.float32)
    path = tmp_path / "tiny.onnx"
    _tiny_onnx(path, w, b)
    return path, w, b


def _images(n=5, seed=1):
    rng = np.random.default_rng(seed)
    return {f"img_{i}": rng.normal(size=(3, 8, 8)).astype(np.float32) for i in range(n)}


def test_onnx_teacher_computes_the_model_logits(model_and_weights, tmp_path):
    path, w, b = model_and_weights
    images = _images()
    teacher = OnnxTeacher(path, cache_dir=tmp_path / "cache")
    got = teacher.logits(images)
    expected = np.stack([img.mean(axis=(1, 2)) @ w + b for img in images.values()])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert teacher.n_computed == len(images)


def test_second_call_reads_the_cache(model_and_weights, tmp_path, monkeypatch):
    path, _, _ = model_and_weights
    images = _images()
    cache = tmp_path / "cache"
    first = OnnxTeacher(path, cache_dir=cache).logits(images)
    files = sorted(cache.rglob("*.npy"))
    assert len(files) == len(images)
    assert {f.stem for f in files} == {image_key(img) for img in images.values()}

    again = OnnxTeacher(path, cache_dir=cache)  # a new object (another process): only the disk cache helps

    def boom(batch):
        raise AssertionError("recomputed a cached image")

    monkeypatch.setattr(again, "_compute", boom)
    np.testing.assert_array_equal(again.logits(images), first)
    assert again.n_computed == 0 and again._session is None  # the model was not even loaded

    # a new image is computed (and only it)
    fresh = OnnxTeacher(path, cache_dir=cache)
    extra = {"new": np.ones((3, 8, 8), np.float32), **images}
    fresh.logits(extra)
    assert fresh.n_computed == 1


def test_cache_is_keyed_by_the_model_file(model_and_weights, tmp_path):
    path, w, b = model_and_weights
    images = _images(2)
    cache = tmp_path / "cache"
    a = OnnxTeacher(path, cache_dir=cache).logits(images)
    other = tmp_path / "other.onnx"
    _tiny_onnx(other, -w, b)
    t = OnnxTeacher(other, cache_dir=cache)
    c = t.logits(images)
    assert t.n_computed == 2 and not np.allclose(a, c)
    assert len({p.parent for p in cache.rglob("*.npy")}) == 2


def test_to_precomputed_feeds_lookup(model_and_weights, tmp_path):
    path, _, _ = model_and_weights
    images = _images(3)
    classes = [f"n0{i}" for i in range(N_CLASSES)]
    teacher = OnnxTeacher(path, classes=classes, cache_dir=tmp_path / "c")
    pre = teacher.to_precomputed(images)
    assert isinstance(pre, PrecomputedTeacher)
    assert pre.images == list(images) and pre.classes == classes
    np.testing.assert_array_equal(
        pre.lookup(["img_2", "img_0"], ["n03", "n01"]), teacher.logits(images)[[2, 0]][:, [3, 1]]
    )
    assert "ONNX" in pre.description
    with pytest.raises(TeacherError, match="classes given"):
        OnnxTeacher(path, classes=classes[:2], cache_dir=tmp_path / "c").to_precomputed(images)
    # round trip through the .npz format
    pre2 = PrecomputedTeacher.load(pre.save(tmp_path / "t.teacher.npz"))
    np.testing.assert_array_equal(pre2.logits, pre.logits)


def test_onnx_teacher_errors(tmp_path):
    with pytest.raises(TeacherError, match="does not exist"):
        OnnxTeacher(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(TeacherError, match="not a loadable ONNX"):
        OnnxTeacher(bad, cache_dir=tmp_path / "c").logits(_images(1))
    good = tmp_path / "g.onnx"
    _tiny_onnx(good, np.ones((3, 2), np.float32), np.zeros(2, np.float32))
    with pytest.raises(TeacherError, match=r"\(C, H, W\)"):
        OnnxTeacher(good, cache_dir=None).logits_of(np.zeros((8, 8), np.float32))


def _torchvision_ok() -> tuple[bool, str]:
    try:
        import torchvision.models  # noqa: F401
    except Exception as exc:  # ImportError, or RuntimeError from mismatched C++ ops
        return False, f"torchvision.models not importable ({type(exc).__name__}: {exc})"
    return True, ""


TV_OK, TV_WHY = _torchvision_ok()


def test_torchvision_teacher_names_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision.models", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(TeacherError, match="pip install torchvision"):
        TorchvisionTeacher("alexnet", tmp_path / "w.pt")


@pytest.mark.skipif(not TV_OK, reason=TV_WHY or "torchvision available")
def test_torchvision_teacher_local_weights_and_cache(tmp_path):
    import torch
    import torchvision.models as models

    torch.manual_seed(0)
    net = models.resnet18(weights=None, num_classes=N_CLASSES).eval()
    weights = tmp_path / "resnet18.pt"
    torch.save(net.state_dict(), weights)
    images = {f"i{k}": np.random.default_rng(k).normal(size=(3, 32, 32)).astype(np.float32) for k in range(2)}
    teacher = TorchvisionTeacher("resnet18", weights, num_classes=N_CLASSES, cache_dir=tmp_path / "c")
    got = teacher.logits(images)
    with torch.no_grad():
        ref = net(torch.from_numpy(np.stack(list(images.values())))).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    again = TorchvisionTeacher("resnet18", weights, num_classes=N_CLASSES, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(again.logits(images), got)
    assert again.n_computed == 0
