"""Recipes of the students shipped in ``exported/``; ``bci-train models`` rebuilds them from scratch.

Every recipe generates its training recordings in memory with fixed seeds, distils, exports, and then scores the
exported file with ONNX Runtime on the demo recording that ``make demo`` replays (a different seed, never used for
training or selection), so the numbers in the log are the numbers the demo will show.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bci_stream.card import read_card

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoData:
    """What ``make demo`` generates: ``bci-train synth --out build/demo.fif`` with these options."""

    seconds: float = 60.0
    seed: int = 7
    classes: int = 8
    subject: int = 1

    def command(self, out: str = "build/demo.fif") -> str:
        return (
            f"bci-train synth --out {out} --seconds {self.seconds:g} --seed {self.seed} "
            f"--classes {self.classes} --subject {self.subject}"
        )


@dataclass(frozen=True)
class SynthRecipe:
    """A CogniNet student distilled from the synthetic teacher on synthetic sessions."""

    file: str = "cogninet-synth.onnx"
    name: str = "cogninet-synth"
    version: str = "1.0.0"
    n_classes: int = 8
    subjects: tuple[int, ...] = (1,)
    session_seeds: tuple[int, ...] = (101, 102, 103, 104, 105, 106)
    session_seconds: float = 120.0
    synth: dict[str, Any] = field(default_factory=dict)  # extra options of training.synthetic.synthesize
    epochs: int = 7
    seed: int = 0
    hidden: int = 128
    n_layers: int = 2
    pooling: str = "mean"
    temperature: float = 5.0
    demo: DemoData = field(default_factory=DemoData)


RECIPES: tuple[SynthRecipe, ...] = (SynthRecipe(),)
DEMO = RECIPES[0].demo


def demo_accuracy(onnx_path: str | Path, demo: DemoData = DEMO) -> dict[str, Any]:
    """Accuracy of the exported model on the demo recording, cut by the daemon's pipeline, run by ONNX Runtime."""
    import onnxruntime as ort

    from bci_stream.pipeline import epochs_from_recording
    from bci_stream.signal import normalize

    from .synthetic import synthesize

    card = read_card(onnx_path)
    session_data = synthesize(demo.seconds, seed=demo.seed, n_classes=demo.classes, subject=demo.subject)
    es = epochs_from_recording(session_data.recording, card.input, card.preprocessing, events=r"^stim/")
    X = normalize(es.X, card.preprocessing.normalization).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = sess.run([card.output.name], {card.input.name: X})[0]
    wnids = [name.split(" ", 1)[0] for name in card.output.classes]
    truth = np.array([wnids.index(m.value.split("/")[1]) for m in es.markers])
    correct = int((logits.argmax(1) == truth).sum())
    counts = np.bincount(truth, minlength=len(wnids))
    return {
        "demo_accuracy": correct / len(truth),
        "demo_n": len(truth),
        "demo_chance_level": float(counts.max() / counts.sum()),
        "demo_command": demo.command(),
    }


def build(recipe: SynthRecipe, out_dir: str | Path = "exported") -> dict[str, Any]:
    """Generate, distil, export and score one recipe; returns its metrics (also logged)."""
    from .export import export_onnx
    from .fit import train_student
    from .synthetic import synthesize

    t0 = time.perf_counter()
    sessions = [
        synthesize(recipe.session_seconds, seed=seed, n_classes=recipe.n_classes, subject=subject, **recipe.synth)
        for subject in recipe.subjects
        for seed in recipe.session_seeds
    ]
    t_synth = time.perf_counter() - t0
    description = (
        f"synthetic sessions (training.synthetic): subjects {list(recipe.subjects)}, seeds "
        f"{list(recipe.session_seeds)}, {recipe.session_seconds:g} s each, {recipe.n_classes} classes"
    )
    result = train_student(
        [s.recording for s in sessions],
        teacher=sessions[0].teacher,
        epochs=recipe.epochs,
        seed=recipe.seed,
        hidden=recipe.hidden,
        n_layers=recipe.n_layers,
        pooling=recipe.pooling,
        temperature=recipe.temperature,
        name=recipe.name,
        version=recipe.version,
        data_description=description,
    )
    del sessions
    path = export_onnx(result.model, result.card, Path(out_dir) / recipe.file)
    metrics = {
        **result.metrics,
        **demo_accuracy(path, recipe.demo),
        "synth_seconds": round(t_synth, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "model_bytes": path.stat().st_size,
        "path": str(path),
        "recipe": asdict(recipe),
    }
    log.info(
        "%s: val acc %.3f (chance %.3f), demo acc %.3f on %d epochs (chance %.3f), %d bytes, %.0f s",
        path, metrics["val_accuracy"], metrics["chance_level"], metrics["demo_accuracy"], metrics["demo_n"],
        metrics["demo_chance_level"], metrics["model_bytes"], metrics["total_seconds"],
    )  # fmt: skip
    return metrics


def build_all(out_dir: str | Path = "exported") -> list[dict[str, Any]]:
    return [build(recipe, out_dir) for recipe in RECIPES]
