"""Embedding runs (issue 13): ``bci-train fit`` with an ``[embedding]`` table, ``bci-train evaluate RUN`` zero-shot.

An embedding student (:data:`training.zoo.embedding.EMBEDDERS`) learns, from each epoch, the embedding of the image
it showed (:func:`training.embedding.train_embedding`: §2 hinge or §3 InfoNCE). The image embeddings come from
``[embedding] images``: ``"synthetic"`` (the synthetic world's own, :func:`training.synthetic.image_embeddings_of`),
a precomputed ``.npz`` or an ONNX image encoder over ``image_files`` (:func:`training.image_encoder.image_embeddings`).

The split is by **class**, drawn before any training (seed ``[train] seed``): ``test_classes`` classes are never seen
in training nor used for selection; ``val_classes`` classes choose the epoch (the loop's lowest validation loss, on
those classes only); the rest train. Each class's table row is the normalised mean of its images' embeddings.
Normalisation is fitted on the training epochs only. The run folder holds ``config.toml``, ``split.json`` (classes
and epoch indices per part), ``model.pt`` (best weights), ``card.json`` (task ``embedding``, the test classes'
table) and ``metrics.json``; :func:`evaluate_embedding_run` scores k-way retrieval on the test classes (top-1/top-5,
chance, permutation p, and a shuffled-table control) into ``RUN/evaluation.md`` / ``.json``, with
``RUN/zeroshot.png`` (:func:`zeroshot_figure`: top-k for k = 1..K beside the test classes' confusion).

No resume and no ``torchrun`` for embedding runs (one process, start to end).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bci_stream.card import ModelCard, OutputSpec, Preprocessing
from bci_stream.errors import ConfigError
from bci_stream.zeroshot import unit_rows

from .errors import TrainingDataError
from .evaluate import jsonable
from .run_config import RunConfig

log = logging.getLogger(__name__)


def _epochs(config: RunConfig) -> tuple[Any, Any, Any]:
    """The run's epochs (the daemon's path), its input spec and preprocessing (before normalisation)."""
    from .fit import cut_epochs
    from .runs import _load_data, data_spec

    d = config.data
    recordings, _ = _load_data(config)
    # the [data] keys of every fit run: tmax, the label rule, the band capped below Nyquist; the card records them
    input_spec, prep = data_spec(config, recordings)
    data = cut_epochs(recordings, input_spec, prep, events=d.events, label_regex=d.rule().cut_regex,
                      image_regex=d.image_regex or None)  # fmt: skip
    if data.split_unit != "image":
        raise TrainingDataError(
            f"an embedding run needs the image of every epoch: [data] image_regex {d.image_regex!r} matches no marker"
        )
    return data, input_spec, prep


def class_split(classes: list[str], config: RunConfig) -> dict[str, list[str]]:
    """Whole classes per part (``train`` / ``validation`` / ``test``), drawn with ``[train] seed``."""
    e = config.embedding
    assert e is not None
    if len(classes) < e.test_classes + e.val_classes + 2:
        raise TrainingDataError(
            f"{len(classes)} classes: an embedding run needs at least test_classes + val_classes + 2 "
            f"({e.test_classes} + {e.val_classes} + 2); lower [embedding] test_classes / val_classes or add classes"
        )
    order = [classes[i] for i in np.random.default_rng(config.train.seed).permutation(len(classes))]
    test, val = order[: e.test_classes], order[e.test_classes : e.test_classes + e.val_classes]
    train = order[e.test_classes + e.val_classes :]
    return {"train": sorted(train), "validation": sorted(val), "test": sorted(test)}


def _image_rows(config: RunConfig, run_images: list[str]) -> np.ndarray:
    """The unit image embedding of each epoch's image."""
    e = config.embedding
    assert e is not None
    if e.images == "synthetic":
        from .synthetic import image_embeddings_of

        return image_embeddings_of(run_images)
    from .image_encoder import DEFAULT_CACHE, image_embeddings

    return image_embeddings(e.images, run_images, images=e.image_files, cache_dir=e.image_cache or DEFAULT_CACHE)


def class_table(rows: np.ndarray, images: list[str], labels: list[str], classes: list[str]) -> np.ndarray:
    """Per class the normalised mean of its distinct images' embeddings (each image once, however often shown)."""
    first: dict[str, int] = {}
    for i, image in enumerate(images):
        first.setdefault(image, i)
    by_class: dict[str, list[np.ndarray]] = {c: [] for c in classes}
    for i in first.values():
        if labels[i] in by_class:
            by_class[labels[i]].append(rows[i])
    return unit_rows(np.stack([np.mean(by_class[c], axis=0) for c in classes])).astype(np.float32)


def _parts(labels: list[str], split: dict[str, list[str]]) -> dict[str, np.ndarray]:
    return {name: np.flatnonzero(np.isin(labels, cls)) for name, cls in split.items()}


def fit_embedding_run(config: RunConfig, config_path: Path, run_dir: Path) -> tuple[Path, dict[str, Any], ModelCard]:
    """Train an embedding run into ``run_dir``; returns (run_dir, metrics, card). See the module docstring."""
    import torch

    from bci_stream.signal import fit_channel_normalization, normalize

    from .embedding import retrieval, train_embedding
    from .loop import atomic_save

    e, tr = config.embedding, config.train
    assert e is not None
    if tr.threads is not None:
        torch.set_num_threads(tr.threads)
    data, input_spec, prep = _epochs(config)
    classes = sorted(set(data.labels))
    split = class_split(classes, config)
    parts = _parts(data.labels, split)
    rows = _image_rows(config, data.groups)
    table = class_table(rows, data.groups, data.labels, classes)
    y = np.array([classes.index(lab) for lab in data.labels], dtype=np.int64)
    norm = fit_channel_normalization(data.X[parts["train"]])  # training classes only
    X = normalize(data.X, norm).astype(np.float32)
    log.info("embedding run: %d epochs; classes %d train / %d validation / %d test (never seen); %d-d images",
             len(y), len(split["train"]), len(split["validation"]), len(split["test"]), rows.shape[1])  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config_path, run_dir / "config.toml")
    record: dict[str, Any] = {"unit": "class", "classes": split}
    record.update({name: {"index": [int(i) for i in idx]} for name, idx in parts.items()})
    (run_dir / "split.json").write_text(json.dumps(record, indent=2))
    # labels the loop sees: validation epochs index the validation classes' table (its val_top1 ranks among those
    # only, never the test classes); training epochs other numbers (the hinge only compares them with each other)
    n_val = len(split["validation"])
    lab = np.full(len(y), -1, dtype=np.int64)
    for name, offset in (("validation", 0), ("train", n_val)):
        lab[parts[name]] = [offset + split[name].index(data.labels[i]) for i in parts[name]]
    val_table = table[[classes.index(c) for c in split["validation"]]]
    fit = train_embedding(
        X, rows, lab, parts["train"], parts["validation"], val_table, encoder=config.student.name, objective=e.objective,
        options=dict(config.student.options), epochs=tr.epochs, lr=tr.lr, batch_size=tr.batch_size,
        margin=e.margin, patience=tr.patience, seed=tr.seed,
    )  # fmt: skip
    model = fit.model.eval()
    test_idx = [classes.index(c) for c in split["test"]]
    best = next((r for r in fit.history if r.get("epoch") == fit.best_epoch), {})
    card = ModelCard(
        name=config.run.name or config_path.stem, version=config.run.version, task="embedding", input=input_spec,
        preprocessing=Preprocessing(bandpass=prep.bandpass, notch=prep.notch, filter=prep.filter, normalization=norm),
        output=OutputSpec(name="embedding", dim=model.dim, temperature=round(model.temperature, 6),
                          classes=split["test"], table=table[test_idx].tolist()),
        provenance={
            "student": {"name": config.student.name, **config.student.options}, "loss": e.objective,
            "images": e.images, "data": "; ".join(data.sources), "events": config.data.events,
            "labels": {**config.data.rule().describe(), "classes": classes}, "split": "by-class",
            "classes": split, "seed": tr.seed,
            "metrics": {"best_epoch": fit.best_epoch, "val_top1": best.get("val_top1")},
        },
    )  # fmt: skip
    atomic_save(model.state_dict(), run_dir / "model.pt")
    (run_dir / "card.json").write_text(json.dumps(json.loads(card.to_json()), indent=2))
    from .embedding import embed

    val = retrieval(embed(model, X[parts["validation"]]), lab[parts["validation"]], val_table, permutations=0)
    metrics = {"history": fit.history, "best_epoch": fit.best_epoch, "classes": split,
               "n_train": len(parts["train"]), "n_val": len(parts["validation"]), "n_test": len(parts["test"]),
               "val_top1": val["top1"], "val_chance_top1": val["chance_top1"],
               "val_note": "the validation classes chose the epoch: optimistic; the test classes are scored by "
                           "bci-train evaluate RUN"}  # fmt: skip
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=jsonable))
    (run_dir / "report.md").write_text(
        f"# Embedding run {run_dir.name}\n\nStudent `{config.student.name}`, objective `{e.objective}`, split by "
        f"class: {len(split['train'])} training / {len(split['validation'])} validation (chose epoch "
        f"{fit.best_epoch}) / {len(split['test'])} test classes (never seen; `bci-train evaluate RUN`).\n\n"
        f"Validation-class top-1 {val['top1']:.3f} (chance {val['chance_top1']:.3f}; optimistic: these classes "
        "chose the epoch).\n\n"
        "The test classes: `bci-train evaluate RUN` writes [evaluation.md](evaluation.md) and the figure "
        "[zeroshot.png](zeroshot.png) (top-k retrieval with chance k/K and the shuffled-table control, confusion).\n"
    )
    log.info("done: %s  best epoch %d  validation-class top-1 %.3f (chance %.3f)", run_dir, fit.best_epoch,
             val["top1"], val["chance_top1"])  # fmt: skip
    return run_dir, metrics, card


def load_embedding_model(run: Path, card: ModelCard) -> Any:
    """The embedding student of a finished run, in eval mode."""
    import torch

    from .zoo.embedding import EMBEDDERS

    student = dict(card.provenance["student"])  # type: ignore[call-overload]
    name = student.pop("name")
    assert card.output.dim is not None
    build: Any = EMBEDDERS[name]  # each class takes (n_chans, dim, n_times, sfreq, **options)
    model = build(len(card.input.channels), card.output.dim, card.input.n_times, 0.0, **student)
    model.load_state_dict(torch.load(run / "model.pt", weights_only=True))
    return model.eval()


def evaluate_embedding_run(run: str | Path, *, n_permutations: int = 1000) -> dict[str, Any]:
    """k-way zero-shot retrieval of the run's **test classes** (never seen in training, never used to choose the
    epoch) with the card's class table: top-1/top-5, chance, permutation p; a shuffled table as control; the top-k
    curve (``topk``: k = 1..K, true / control / chance k/K) and the K × K ``confusion`` (true × top-1 retrieved).
    Writes ``RUN/evaluation.md``, ``RUN/evaluation.json`` and ``RUN/zeroshot.png``; returns the results.

    Raises
    ------
    ConfigError
        Not a finished embedding run, or the rebuilt split / normalisation differs from the recorded one.
    """
    from bci_stream.signal import fit_channel_normalization, normalize

    from .embedding import embed, retrieval
    from .run_report import confusion
    from .runs import load_config

    run = Path(run)
    missing = [n for n in ("config.toml", "card.json", "model.pt", "split.json") if not (run / n).is_file()]
    if missing:
        raise ConfigError(f"{run}: not a finished embedding run (missing {', '.join(missing)})")
    config = load_config(run / "config.toml")
    card = ModelCard.from_json((run / "card.json").read_text(), source=str(run / "card.json"))
    model = load_embedding_model(run, card)
    data, _, _ = _epochs(config)
    recorded = json.loads((run / "split.json").read_text())
    split = class_split(sorted(set(data.labels)), config)
    parts = _parts(data.labels, split)
    if split != recorded["classes"] or any(recorded[k]["index"] != parts[k].tolist() for k in parts):
        raise ConfigError(f"{run}: the rebuilt class split does not match RUN/split.json (data or config changed?)")
    norm = fit_channel_normalization(data.X[parts["train"]])
    saved = card.preprocessing.normalization
    if saved.mean is not None and not np.allclose(np.asarray(norm.mean), np.asarray(saved.mean), rtol=1e-6, atol=0):
        raise ConfigError(f"{run}: the rebuilt training classes' normalisation differs from the card's")
    test = parts["test"]
    X = normalize(data.X[test], saved).astype(np.float32)
    assert card.output.table is not None
    table = np.asarray(card.output.table, dtype=np.float32)
    names = list(card.output.classes)
    labels = np.array([names.index(data.labels[i]) for i in test])
    emb = embed(model, X)
    seed = config.train.seed
    true = retrieval(emb, labels, table, permutations=n_permutations, seed=seed)
    k = len(names)
    shuffled = table[np.roll(np.arange(k), 1)]
    control = retrieval(emb, labels, shuffled, permutations=n_permutations, seed=seed)
    ks = tuple(range(1, k + 1))  # the same retrieval, every k: top-1/top-5 of the curve are the table's numbers
    curve_true, curve_control = (retrieval(emb, labels, t, ks=ks, permutations=0) for t in (table, shuffled))
    top1 = np.argmax(unit_rows(emb) @ unit_rows(table).T, axis=1)
    results = {
        "run": str(run), "task": "embedding", "split_kind": "test classes",
        "split": f"{len(test)} epochs of {k} classes never seen in training nor used to choose the epoch "
                 f"(training classes {len(split['train'])}, validation classes {len(split['validation'])})",
        "classes": split, "best_epoch": dict(card.provenance.get("metrics") or {}).get("best_epoch"),  # type: ignore[call-overload]
        "zeroshot": true, "control_shuffled_table": control,
        "topk": {"k": list(ks), "true": [curve_true[f"top{i}"] for i in ks],
                 "control": [curve_control[f"top{i}"] for i in ks], "chance": [i / k for i in ks]},
        "confusion": {"classes": names, "rows": "true class", "columns": "top-1 retrieved class",
                      "counts": confusion(labels, top1, k).tolist()},
    }  # fmt: skip
    lines = [
        f"# Zero-shot evaluation of run {run.name}",
        "",
        f"**Split evaluated: the test classes ({', '.join(split['test'])}), never seen in training and never used "
        f"for selection; the epoch ({results['best_epoch']}) was chosen on the validation classes "
        f"({', '.join(split['validation'])}) only.**",
        "",
        "| class table | k | n | top-1 | chance | top-5 | chance | permutation p (top-1) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *(f"| {name} | {r['k']} | {r['n']} | {r['top1']:.3f} | {r['chance_top1']:.3f} | {r['top5']:.3f} | "
          f"{r['chance_top5']:.3f} | {r['p_top1']:.3g} |"
          for name, r in (("true", true), ("shuffled (control)", control))),
        "",
        f"Permutation p: labels shuffled {n_permutations} times, (1 + #≥) / (1 + permutations). The control gives "
        "every class another class's row: at chance when the model uses the table's content.",
        "",
        "![zero-shot top-k and confusion, test classes](zeroshot.png)",
        "",
        "Left: top-k retrieval accuracy, k = 1..K, with chance k/K and the shuffled-table control. Right: which "
        "class's row ranks first for the epochs of each test class (counts).",
        "",
    ]  # fmt: skip
    zeroshot_plot(run / "zeroshot.png", results)
    path = run / "evaluation.md"
    path.write_text("\n".join(lines))
    results["report"] = str(path)
    path.with_suffix(".json").write_text(json.dumps(results, indent=2, default=jsonable))
    return results


def zeroshot_figure(results: dict[str, Any]) -> Any:
    """The figure of ``RUN/zeroshot.png``, drawn only from ``results`` (:func:`evaluate_embedding_run`'s
    ``topk`` and ``confusion``): top-k accuracy for k = 1..K (true table, shuffled-table control, chance k/K)
    beside the K × K confusion of the test classes (true class × top-1 retrieved class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, cm = results["topk"], results["confusion"]
    counts, names = np.asarray(cm["counts"]), cm["classes"]
    k, n = len(names), int(counts.sum())
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1.1, 1]})
    ms = 6 if k <= 20 else 3
    a.plot(t["k"], t["true"], "o-", ms=ms, label="class table")
    a.plot(t["k"], t["control"], "s-", ms=ms, color="tab:orange", label="shuffled table (control)")
    a.plot(t["k"], t["chance"], "k--", linewidth=1, label="chance k/K")
    a.set(xlabel="k (true class among the top k)", ylabel="top-k accuracy", ylim=(0, 1.02))
    if k <= 20:
        a.set_xticks(t["k"])
    a.set_title(f"top-k retrieval, K = {k} classes, n = {n} epochs", fontsize=10)
    a.legend(fontsize=8, loc="lower right")
    b.imshow(counts, cmap="Blues", vmin=0)
    ticks, size = np.arange(k), 8 if k <= 15 else max(3, 8 - k // 10)
    b.set_xticks(ticks, names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center", fontsize=size)
    b.set_yticks(ticks, names, fontsize=size)
    b.set(xlabel="top-1 retrieved class", ylabel="true class")
    b.set_title(f"confusion (counts), top-1 {results['zeroshot']['top1']:.2f} vs chance {1 / k:.2f}", fontsize=10)
    if k <= 15:
        for (i, j), v in np.ndenumerate(counts):
            b.text(j, i, str(v), ha="center", va="center", fontsize=8,
                   color="white" if v > counts.max() / 2 else "black")  # fmt: skip
    fig.suptitle("zero-shot on the test classes (never seen in training nor used to choose the epoch)", fontsize=11)
    fig.tight_layout()
    return fig


def zeroshot_plot(path: Path, results: dict[str, Any]) -> Path:
    """Write :func:`zeroshot_figure` to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    fig = zeroshot_figure(results)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The numbers ``bci-train evaluate RUN`` prints for an embedding run."""
    z = results["zeroshot"]
    return {"report": results["report"], "split": "test classes, never seen in training nor used for selection",
            "k": z["k"], "n": z["n"], "top1": z["top1"], "chance_top1": z["chance_top1"], "top5": z["top5"],
            "chance_top5": z["chance_top5"], "p_top1": z["p_top1"],
            "control_top1": results["control_shuffled_table"]["top1"]}  # fmt: skip
