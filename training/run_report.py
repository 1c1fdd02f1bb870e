"""What a finished ``bci-train fit`` run writes: the card, ``metrics.json``, ``report.md`` and its two plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bci_stream.card import InputSpec, ModelCard, OutputSpec, Preprocessing

from .evaluate import jsonable
from .fit import code_version
from .loop import atomic_save
from .run_config import RunConfig


def confusion(y: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (y, pred), 1)
    return m


def run_card(
    config: RunConfig,
    config_path: Path,
    input_spec: InputSpec,
    prep: Preprocessing,
    norm: Any,
    classes: list[str],
    teacher: Any,
    loss_name: str,
    student_info: dict[str, Any],
    data: Any,
    metrics: dict[str, Any],
    split: dict[str, Any] | None = None,
) -> ModelCard:
    """The card of a fit run; ``split`` (:meth:`training.runs.SplitPlan.info`) names the split unit used."""
    tr = config.train
    rule = config.data.rule()
    mapped = rule.mapping or {}  # a label map names the classes: marker "1" → "house"
    names = [mapped.get(c) or (teacher.name_of(c) if teacher is not None else c) for c in classes]
    return ModelCard(
        name=config.run.name or config_path.stem,
        version=config.run.version,
        task="classification",
        input=input_spec,
        preprocessing=Preprocessing(bandpass=prep.bandpass, notch=prep.notch, filter=prep.filter, normalization=norm),
        output=OutputSpec(name="logits", classes=names),
        provenance={
            "student": student_info,
            "teacher": teacher.description if teacher is not None else None,
            "loss": loss_name,
            "temperature": tr.temperature if loss_name in ("kd-supervised", "kd-unsupervised") else None,
            "ce_weight": tr.ce_weight if loss_name == "kd-supervised" else None,
            "optimizer": {
                "name": "adam",
                "lr": tr.lr,
                "batch_size": tr.batch_size,
                "epochs": tr.epochs,
                "patience": tr.patience,
            },
            "data": "; ".join(data.sources),
            "events": config.data.events,
            "labels": {**rule.describe(), "classes": classes},
            "split": split["split"] if split else f"by-{data.split_unit}",
            "split_info": split,
            "val_fraction": tr.val_fraction,
            "test_fraction": tr.test_fraction,
            "selection": "early stopping on validation loss",
            "metrics": {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in metrics.items()},
            "code_version": code_version(),
            "seed": tr.seed,
        },
    )


def write_outputs(run_dir: Path, config: RunConfig, card: ModelCard, metrics: dict[str, Any], state: Any) -> None:
    atomic_save(state, run_dir / "model.pt")
    (run_dir / "card.json").write_text(json.dumps(json.loads(card.to_json()), indent=2))
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=jsonable))
    plots(run_dir, metrics)
    h = metrics["history"]
    lines = [
        f"# Run {run_dir.name}",
        "",
        f"Student `{config.student.name}`, loss `{metrics['loss']}`, split {metrics['split']} "
        f"({metrics['n_train']} train / {metrics['n_val']} validation / {metrics['n_test']} held-out test epochs, "
        f"the test split untouched here: `bci-train evaluate RUN`; normalisation from train only), "
        f"world size {metrics['world_size']}.",
        "",
        *([f"**Split {metrics['split']}: {leak}.**", ""] if (leak := (metrics.get("split_info") or {}).get("leaky"))
          else []),
        "| metric | value |",
        "| --- | --- |",
        f"| best epoch (lowest validation loss) | {metrics['best_epoch']} of {metrics['epochs_trained']}"
        f"{' (stopped early)' if metrics['stopped_early'] else ''} |",
        f"| validation accuracy | {100 * metrics['val_accuracy']:.1f}% |",
        f"| chance (majority / 1/n) | {100 * metrics['chance_level']:.1f}% / {100 * metrics['chance_uniform']:.1f}% |",
        f"| permutation p (1000, {metrics.get('permutation_unit', 'trial')}s permuted) | "
        f"{metrics['p_value_permutation']:.3g} |",
        f"| throughput | {metrics['timing']['epochs_per_s']:.2f} epochs/s, "
        f"{metrics['timing']['samples_per_s']:.0f} samples/s |",
        "",
        f"*{metrics['val_note']}.*",
        "",
        "| epoch | loss | train acc | val loss | val acc |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {r['epoch']} | {r['loss']:.4f} | {r['train_accuracy']:.3f} | {r['val_loss']:.4f} | "
          f"{r['val_accuracy']:.3f} |" for r in h),
        "",
        "![learning curves](learning_curves.png)",
        "",
        "![confusion](confusion.png)",
        "",
    ]  # fmt: skip
    (run_dir / "report.md").write_text("\n".join(lines))


def plots(run_dir: Path, metrics: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = metrics["history"]
    ep = [r["epoch"] for r in h]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(ep, [r["loss"] for r in h], label="train")
    a.plot(ep, [r["val_loss"] for r in h], label="validation")
    a.axvline(metrics["best_epoch"], color="grey", ls=":", label="best")
    a.set(xlabel="epoch", ylabel="loss")
    a.legend()
    b.plot(ep, [r["train_accuracy"] for r in h], label="train")
    b.plot(ep, [r["val_accuracy"] for r in h], label="validation")
    b.axhline(metrics["chance_level"], color="grey", ls="--", label="chance")
    b.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    b.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "learning_curves.png", dpi=80)
    plt.close(fig)
    cm = np.asarray(metrics["confusion"])
    fig, ax = plt.subplots(figsize=(4 + 0.2 * len(cm), 3.5 + 0.2 * len(cm)))
    ax.imshow(cm, cmap="Blues")
    ax.set(xlabel="predicted", ylabel="true", title="validation confusion (best epoch)")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(run_dir / "confusion.png", dpi=80)
    plt.close(fig)


__all__ = ["confusion", "plots", "run_card", "write_outputs"]
