"""What trained a model, recorded so that a rebuild from the same sources gives the same bytes.

The card's provenance names the data (files and their sha256), the configuration, the seed and the versions of
the packages that shape the numbers — not a hash of source files, which changes with unrelated edits and makes
``make models`` rewrite every model file.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

#: Packages whose versions change what a training run computes or how the file is written.
PACKAGES = ("bci-stream", "numpy", "scipy", "torch", "onnx", "braindecode", "pyriemann", "scikit-learn", "mne")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """``{package: version}`` of the installed ``names`` (those not installed are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def reproducible(provenance: dict[str, Any]) -> dict[str, Any]:
    """``provenance`` without the source-hash ``code_version``, with ``packages`` (versions) instead."""
    kept = {k: v for k, v in provenance.items() if k != "code_version"}
    return {**kept, "packages": package_versions()}


def code_version() -> str:
    """One line naming the package versions that built a model (stable across unrelated source edits)."""
    return ", ".join(f"{k} {v}" for k, v in package_versions().items())
