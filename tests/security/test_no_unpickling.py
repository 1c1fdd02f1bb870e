"""Nothing unpickles untrusted data: downloaded DEAP and EEG-ImageNet files cannot run code, and the sources stay so."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from training.valence.data import UnsafePickleError, ValenceDataError, load_deap

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "pickle.load / pickle.loads": re.compile(r"\bpickle\s*\.\s*loads?\s*\("),
    "allow_pickle=True": re.compile(r"allow_pickle\s*=\s*True"),
    "weights_only=False": re.compile(r"weights_only\s*=\s*False"),
}
TORCH_LOAD = re.compile(r"\btorch\s*\.\s*load\s*\(((?:[^()]|\([^()]*\))*)\)")


class RunsCode:
    """What an attacker puts in a pickle: unpickling it calls ``os.system``, which writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"echo pwned > {self.marker}",)


def test_sources_never_unpickle() -> None:
    """No ``pickle.load(s)``, ``allow_pickle=True`` or ``weights_only=False``; every ``torch.load`` says weights_only=True."""
    found = []
    for folder in ("bci_stream", "training"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            where = path.relative_to(ROOT)
            for what, pattern in FORBIDDEN.items():
                for m in pattern.finditer(text):
                    found.append(f"{where}:{text.count(chr(10), 0, m.start()) + 1}: {what}")
            for m in TORCH_LOAD.finditer(text):
                if not re.search(r"weights_only\s*=\s*True", m.group(1)):
                    found.append(
                        f"{where}:{text.count(chr(10), 0, m.start()) + 1}: torch.load without weights_only=True"
                    )
    assert not found, "unsafe deserialisation:\n" + "\n".join(found)


def test_the_grep_catches_what_it_should() -> None:
    bad = 'x = pickle.load(fh)\ny = np.load(p, allow_pickle=True)\nz = torch.load(p, map_location="cpu")\n'
    hits = [what for what, pattern in FORBIDDEN.items() if pattern.search(bad)]
    assert hits == ["pickle.load / pickle.loads", "allow_pickle=True"]
    assert [m.group(1) for m in TORCH_LOAD.finditer(bad)] == ['p, map_location="cpu"']


def write_deap(path: Path, protocol: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    content = {"data": rng.standard_normal((2, 40, 3 * 128 + 64)), "labels": rng.uniform(1, 9, (2, 4))}
    with path.open("wb") as fh:
        pickle.dump(content, fh, protocol=protocol)
    return content


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_real_deap_layout_still_loads(tmp_path: Path, protocol: int) -> None:
    content = write_deap(tmp_path / "s01.dat", protocol)
    trials = load_deap(tmp_path / "s01.dat")
    assert len(trials) == 2 and trials[0].subject == "s01"
    np.testing.assert_allclose(trials[1].recording.data, content["data"][1, :32].T)
    np.testing.assert_allclose(trials[0].labels, content["labels"][0, 0])


def test_a_malicious_deap_file_is_refused_and_its_code_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    bad = tmp_path / "s02.dat"
    with bad.open("wb") as fh:
        pickle.dump({"data": RunsCode(marker), "labels": np.zeros((1, 4))}, fh, protocol=2)
    with pytest.raises(UnsafePickleError, match=r"refused to unpickle '.*s02\.dat'.*(posix|os)\.system.*run code"):
        load_deap(bad)
    assert not marker.exists()
    assert issubclass(UnsafePickleError, ValenceDataError)  # the CLI's existing handling covers it


def test_a_malicious_pth_file_is_refused_and_its_code_does_not_run(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from training.data.eeg_imagenet import EEGImageNetError, load_eeg_imagenet

    marker = tmp_path / "marker"
    bad = tmp_path / "eeg_5_95_std.pth"
    trial = {"eeg": torch.zeros(4, 500), "image": 0, "label": 0, "subject": 1}
    torch.save({"dataset": [trial], "labels": ["n1"], "images": ["n1_1"], "means": RunsCode(marker)}, bad)
    with pytest.raises(EEGImageNetError, match=r"refused to load '.*eeg_5_95_std\.pth'.*system.*run code"):
        load_eeg_imagenet(bad)
    assert not marker.exists()
    good = tmp_path / "good.pth"
    torch.save({"dataset": [trial], "labels": ["n1"], "images": ["n1_1"]}, good)
    assert load_eeg_imagenet(good).X.shape == (1, 440, 4)
