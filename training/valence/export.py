"""Export a valence student to ONNX with its model card, and check ONNX Runtime against torch.

The exported graph
------------------
- input ``features``: float32 ``(batch, steps, n_features)`` — *raw* relative band powers straight from
  :class:`bci_stream.features.FeaturePipeline`, consecutive windows on the hop grid, oldest first,
  channel-major (``channel × n_bands + band``). The per-feature standardisation fitted on the training split
  (``(x − mean) / std``) is **inside the graph**, so the daemon applies none; the card's
  ``preprocessing.normalization`` is therefore ``none``, and the values are repeated under
  ``provenance.standardization`` for inspection.
- output ``valence``: float32 ``(batch, steps)``, valence at every step; the daemon publishes the last step.
- both axes are dynamic; the card's ``input.n_times`` is the context the daemon feeds (≥ the TCN's receptive
  field, so the last step equals the offline full-trial prediction exactly).

The card: ``task = "valence"``, ``input.sfreq = 1 / hop`` (the feature rate, 4 Hz), ``input.n_times`` = context
steps, ``input.channels`` = EEG channels in feature order, ``input.features`` = the FeatureSpec,
``preprocessing`` = the causal band-pass the features are computed after.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bci_stream.card import InputSpec, ModelCard, OutputSpec, write_card
from bci_stream.features import feature_names
from training.fit import code_version

from ..errors import SettingError
from .data import FeatureSetup
from .fit import TrainedValence

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
OPSET = 17


class ExportedValence(nn.Module):
    """Standardisation + TCN, returning valence per step only."""

    def __init__(self, trained: TrainedValence) -> None:
        super().__init__()
        self.model = trained.model
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(trained.standardizer.mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(trained.standardizer.std, dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        valence, _ = self.model((features - self.mean) / self.std)
        return valence


def build_card(
    trained: TrainedValence,
    *,
    name: str,
    version: str = "1.0.0",
    context: int | None = None,
    provenance: dict[str, Any] | None = None,
) -> ModelCard:
    """The model card of ``trained`` (its :class:`FeatureSetup` must be set)."""
    setup: FeatureSetup | None = trained.setup
    if setup is None:
        raise SettingError("the trained model carries no feature setup; train it through training.valence.fit")
    rf = trained.model.receptive_field
    context = context or max(16, rf)
    if context < rf:
        raise SettingError(f"context {context} steps is shorter than the TCN's receptive field ({rf} steps)")
    n_bands = len(setup.spec.bands)
    if trained.n_features != len(setup.channels) * n_bands:
        raise SettingError(
            f"the model takes {trained.n_features} features but {len(setup.channels)} channels × {n_bands} bands "
            f"= {len(setup.channels) * n_bands}"
        )
    cfg = trained.config
    prov: dict[str, Any] = {
        "student": "valence-tcn",
        "architecture": {
            "channels": list(cfg.channels),
            "kernel_size": cfg.kernel_size,
            "dilations": list(cfg.dilations),
            "dropout": cfg.dropout,
            "receptive_field_steps": rf,
        },
        "loss": "(1 - CCC)(label, prediction) + kd_weight * L1(teacher features, student features)",
        "kd_weight": cfg.kd_weight,
        "l1": (
            "per-step L1 distance (sum over feature dims), mean over steps"
            if cfg.l1_reduction == "sum"
            else "mean absolute difference over steps and feature dims"
        ),
        "ccc_normalization": "population (1/N)",
        "training": {
            "steps": cfg.steps,
            "batch_size": cfg.batch_size,
            "crop": cfg.crop,
            "lr": cfg.lr,
            "seed": cfg.seed,
        },
        "input_tensor": (
            f"float32 (batch, steps, {trained.n_features}): raw relative band power from "
            "bci_stream.features.FeaturePipeline, consecutive hop-grid windows oldest first, channel-major "
            "(index = channel * n_bands + band); standardisation is inside the graph"
        ),
        "output_tensor": "float32 (batch, steps): valence per step; publish the last step",
        "feature_order": "channel-major",
        "feature_names": feature_names(setup.channels, setup.spec),
        "standardization": {
            "where": "inside the ONNX graph: (features - mean) / std",
            "mean": [float(v) for v in trained.standardizer.mean],
            "std": [float(v) for v in trained.standardizer.std],
        },
        "code_version": code_version(),
        **trained.info,
        **(provenance or {}),
    }
    return ModelCard(
        name=name,
        version=version,
        task="valence",
        input=InputSpec(
            name="features",
            layout="NTC",
            sfreq=1.0 / setup.spec.hop,
            n_times=context,
            tmin=0.0,
            channels=list(setup.channels),
            units="V",
            features=setup.spec,
        ),
        preprocessing=setup.preprocessing,
        output=OutputSpec(name="valence", classes=[], range=trained.output_range),
        provenance=prov,
    )


def _torch_export(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    dynamic = {"features": {0: "batch", 1: "steps"}, "valence": {0: "batch", 1: "steps"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # the TorchScript exporter: quick, one file, dynamic axes by name
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=["features"],
                output_names=["valence"],
                dynamic_axes=dynamic,
                opset_version=OPSET,
                dynamo=False,
            )
            return
        except Exception as exc:  # a torch without the TorchScript exporter: fall back to torch.export
            log.info("TorchScript ONNX export unavailable (%s); using the dynamo exporter", exc)
        steps = torch.export.Dim("steps", min=1)
        batch = torch.export.Dim("batch", min=1)
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=["features"],
            output_names=["valence"],
            dynamic_shapes=({0: batch, 1: steps},),
            dynamo=True,
            external_data=False,
        )


def export_valence(
    trained: TrainedValence,
    path: str | Path,
    *,
    name: str,
    version: str = "1.0.0",
    context: int | None = None,
    provenance: dict[str, Any] | None = None,
    check: bool = True,
) -> ModelCard:
    """Write ``trained`` as ONNX with its card to ``path``; check ORT against torch (≤ 1e-4) unless told not to.

    Raises
    ------
    AssertionError
        If ONNX Runtime and torch disagree by more than :data:`PARITY_TOLERANCE`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    card = build_card(trained, name=name, version=version, context=context, provenance=provenance)
    module = ExportedValence(trained).eval()
    example = torch.from_numpy(
        np.tile(trained.standardizer.mean.astype(np.float32), (1, card.input.n_times, 1))
    ).contiguous()
    _torch_export(module, example, path)
    write_card(path, card)
    if check:
        diff = parity(trained, path, context=card.input.n_times)
        if diff > PARITY_TOLERANCE:
            raise AssertionError(f"{path}: ONNX Runtime and torch differ by {diff:.2e} > {PARITY_TOLERANCE:g}")
        log.info("exported %s (%s): ORT vs torch max |diff| %.2e", path, card.name, diff)
    return card


def parity(trained: TrainedValence, path: str | Path, *, context: int = 16, seed: int = 0) -> float:
    """Max |ORT − torch| over random inputs around the training features (batch 3, two lengths)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    module = ExportedValence(trained).eval()
    rng = np.random.default_rng(seed)
    worst = 0.0
    for steps in (context, 3 * context + 1):
        x = trained.standardizer.mean + trained.standardizer.std * rng.standard_normal((3, steps, trained.n_features))
        x = np.clip(x, 0.0, 1.0).astype(np.float32)
        (got,) = session.run(["valence"], {"features": x})
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        worst = max(worst, float(np.max(np.abs(got - want))))
    return worst
