"""Real recordings for the issue-11 tests: the shared N170 and EEGLAB files (skipped where absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
N170 = SHARED / "n170"
EEGLAB = SHARED / "eeglab" / "test_raw.set"
SUB02 = [N170 / f"sub-02_ses-01_run-0{r}_eeg.fif" for r in (1, 2)]
LABEL = r"stim/(?P<label>face|house)"


@pytest.fixture(scope="session")
def sub02() -> list[Path]:
    if not all(p.is_file() for p in SUB02):
        pytest.skip(f"{N170} not present")
    return SUB02


@pytest.fixture(scope="session")
def eeglab() -> Path:
    if not EEGLAB.is_file():
        pytest.skip(f"{EEGLAB} not present")
    return EEGLAB


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
