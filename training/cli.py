"""``bci-train``: synthetic data, distillation, config-driven runs, evaluation, sweeps and valence students.

    bci-train synth    --out build/demo.fif --seconds 60 --seed 7 --classes 8 --subject 1
    bci-train distil   --recording a.fif [b.fif ...] --teacher a.teacher.npz --out exported/NAME.onnx --epochs 6
    bci-train models   [--out-dir exported]
    bci-train bench    exported/cogninet-synth.onnx
    bci-train fit      --config configs/train-synth.toml [--resume RUN]
    bci-train export   RUN
    bci-train evaluate RUN [--loso] [--json]
    bci-train sweep    --config SWEEP.toml [--json]
    bci-train unseen   [--json]
    bci-train zeroshot [--encoder nice] [--out DIR] [--json]
    bci-train maps     MODEL.onnx --recording a.fif --out DIR [--classes TABLE.npz]
    bci-train image-embeddings ENCODER.onnx --images IMAGES.npz|DIR --out EMB.npz
    bci-train valence  {synth,fit,evaluate,export} --config configs/train-valence-synth.toml ...
    bci-train crossval --recordings a.fif b.fif --label "stim/(?P<label>face|house)" --tmax 0.8 --out runs/cv

One style with ``bci-stream`` (:mod:`bci_stream.cli_common`): the main file positional, configs with ``--config``,
``-v/-q`` on every subcommand, help with defaults. ``fit``, ``distil``, ``models`` and ``bench`` print JSON;
``--json`` turns the others' text into JSON. The spellings before that style (``fit CONFIG``, ``sweep CONFIG``,
``valence --config X export``) still work for one release, with a warning.

torch is imported only by the subcommands that train or time a model, so ``synth`` starts fast.
Exit status: 0 done; 2 a :class:`~bci_stream.errors.BciStreamError` (a user can fix it: one line on stderr); 1 a bug
(the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bci_stream.cli_common import HelpFormatter, SubcommandParser, setup_logging, verbosity_parser, warn_deprecated
from bci_stream.errors import BciStreamError, ConfigError

log = logging.getLogger("bci_train")


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _cmd_synth(args: argparse.Namespace) -> int:
    from .synthetic import synthesize, write_session

    session = synthesize(
        args.seconds,
        seed=args.seed,
        n_classes=args.classes,
        subject=args.subject,
        images_per_class=args.images_per_class,
        **({"evoked_uv": args.evoked_uv} if args.evoked_uv is not None else {}),
    )
    fif, teacher = write_session(session, args.out)
    print(
        f"wrote {fif} ({session.recording.data.shape[1]} channels, {session.recording.sfreq:g} Hz, "
        f"{session.recording.duration:g} s, {len(session.recording.markers)} stimuli, "
        f"{len(session.classes)} classes) and teacher {teacher}"
    )
    return 0


def _cmd_distil(args: argparse.Namespace) -> int:
    from .export import export_onnx
    from .fit import train_student

    missing = [p for p in [*args.recording, args.teacher] if p is not None and not Path(p).is_file()]
    if missing:
        raise BciStreamError(f"file not found: {', '.join(map(str, missing))}")
    from .fit import DEFAULT_LABEL_REGEX
    from .real_cli import distil_arguments, distil_leak_check
    from .teachers import PrecomputedTeacher

    teacher = PrecomputedTeacher.load(args.teacher) if args.teacher is not None else None
    real = distil_arguments(args, DEFAULT_LABEL_REGEX)  # issue 11: event fields, label map, tmax, channels, band cap
    recordings = real["recordings"]
    leak_warnings, split = distil_leak_check(args, recordings, real)  # the split trained on, leak-checked
    result = train_student(
        recordings,
        events=args.events,
        label_regex=real["label_regex"],
        image_regex=args.image_regex or None,
        channels=real["channels"],
        class_names=real["class_names"],
        n_times=real["n_times"],
        tmin=args.tmin,
        bandpass=real["bandpass"],
        notch=args.notch if args.notch and args.notch > 0 else None,
        teacher=teacher,
        temperature=args.temperature,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        hidden=args.hidden,
        n_layers=args.layers,
        pooling=args.pooling,
        val_fraction=args.val_fraction,
        split=split,
        seed=args.seed,
        name=args.name or Path(args.out).stem,
    )
    rule = real["rule"]  # a label map goes into the card as one, so the daemon scores the named classes live
    update = rule.card_input(args.events, args.event_fields)  # the fields the recordings were read with
    update["label"] = update["label"] or real["label_regex"]  # a regex without a label group: distil's own form
    card = result.card.model_copy(update={"input": result.card.input.model_copy(update=update)})
    path = export_onnx(result.model, card, args.out)
    print(json.dumps({"path": str(path), **result.metrics, "leak_warnings": leak_warnings}, indent=2))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import build_all

    results = build_all(args.out_dir)
    for metrics in results:
        metrics = {k: v for k, v in metrics.items() if k != "recipe"}
        print(json.dumps(metrics, indent=2))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import inference_speed

    print(json.dumps(inference_speed(args.model, runs=args.runs, threads=args.threads), indent=2))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if (args.run is None) == (args.eeg_imagenet is None):
        raise BciStreamError("give a run folder (bci-train evaluate RUN) or --eeg-imagenet FILE, not both or neither")
    if args.run is not None:
        from .evaluate_run import evaluate_run, headline

        if args.splits is not None or args.logits is not None or args.report is not None:
            raise BciStreamError(
                "--splits, --logits and --report belong to --eeg-imagenet; a run writes RUN/evaluation.md"
            )
        results = evaluate_run(args.run, n_permutations=args.permutations, loso=args.loso)
        if args.json:
            print(json.dumps(headline(results), indent=2))
            return 0
        if results.get("confounded"):
            print(results["sentence"])
        print(f"report: {results['report']}")
        print(json.dumps(headline(results), indent=2))
        return 0
    import numpy as np

    from training.data.eeg_imagenet import load_eeg_imagenet, load_splits
    from training.evaluate import evaluate_eeg_imagenet, write_report

    data = load_eeg_imagenet(args.eeg_imagenet, tmin_samples=args.tmin_samples)
    kwargs: dict[str, object] = {}
    if args.splits is not None:
        kwargs["test_index"] = load_splits(args.splits, data)[args.split]["test"]
    if args.logits is not None:
        kwargs["logits"] = np.load(args.logits)
    results = evaluate_eeg_imagenet(data, n_permutations=args.permutations, **kwargs)
    path = write_report(args.report or Path("runs/evaluate.md"), results)
    if args.json:
        print(json.dumps({"report": str(path), "confounded": results["confounded"], "sentence": results["sentence"]}))
        return 0
    print(results["sentence"] if results["confounded"] else f"no confound flagged; report in {path}")
    print(f"report: {path}")
    return 0


def _config_arg(args: argparse.Namespace, command: str) -> Path:
    """``--config X``, or the positional ``X`` of the spelling before the one CLI style (with a warning)."""
    if args.legacy_config is not None:
        warn_deprecated(f"bci-train {command} CONFIG", f"bci-train {command} --config CONFIG")
        if args.config is not None:
            raise ConfigError(f"bci-train {command}: give the config once (--config {args.config})")
        return Path(args.legacy_config)
    if args.config is None:
        raise ConfigError(f"bci-train {command}: --config CONFIG.toml is required")
    return Path(args.config)


def _cmd_fit(args: argparse.Namespace) -> int:
    from .runs import fit_run

    result = fit_run(_config_arg(args, "fit"), out=args.out, resume=args.resume, stop_after=args.stop_after,
                     progress=not args.no_progress)  # fmt: skip
    if result.path is not None:
        m = result.metrics
        keys = (
            "finished",
            "best_epoch",
            "epochs_trained",
            "val_accuracy",
            "chance_level",
            "p_value_permutation",
            "val_top1",
            "val_chance_top1",
        )  # the last two: an [embedding] run (validation classes)
        print(json.dumps({"run": str(result.path), **{k: m[k] for k in keys if k in m}}, indent=2))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .runs import export_run

    if args.quantize and not args.held_out:
        raise BciStreamError("--quantize needs held-out recordings the run never saw: add --held-out REC [REC ...]")
    path = export_run(args.run, args.out)
    print(path)
    if args.quantize:  # int8 beside it, kept only when it agrees (training/export.py)
        from .export import quantize_with_recordings

        report = quantize_with_recordings(path, args.held_out or [], min_agreement=args.min_agreement)
        print(json.dumps(report.record(), indent=2))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .evaluate import jsonable
    from .sweep import write_sweep

    result = write_sweep(_config_arg(args, "sweep"), args.out)
    if args.json:
        cells = {t: {" / ".join(k for k in key if k): {"accuracy": c.accuracy, "chance": c.chance,
                                                      "accuracies": c.accuracies} for key, c in table.items()}
                 for t, table in result.cells.items()}  # fmt: skip
        few = None if result.few_labels is None else dataclasses.asdict(result.few_labels)
        print(json.dumps({"cells": cells, "few_labels": few}, indent=2, default=jsonable))
        return 0
    print(result.markdown)
    return 0


def _cmd_unseen(args: argparse.Namespace) -> int:
    from .evaluate import jsonable
    from .unseen import unseen_classes

    result = unseen_classes(
        n_classes=args.classes,
        n_unseen=args.unseen,
        seconds=args.seconds,
        shots=args.shots,
        session_seed=args.session_seed,
        seed=args.seed,
        n_channels=args.channels,
        evoked_uv=args.evoked_uv,
        train={"epochs": args.epochs},
    )
    text = result.table()
    print(json.dumps(dataclasses.asdict(result), indent=2, default=jsonable) if args.json else text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("# Unseen classes (synthetic)\n\n" + text + "\n")
    return 0


def _cmd_zeroshot(args: argparse.Namespace) -> int:
    from .embedding import retrieval_markdown, zeroshot_synthetic

    rows = zeroshot_synthetic(encoder=args.encoder, objectives=tuple(args.objective), epochs=args.epochs,
                              lr=args.lr, seed=args.seed, permutations=args.permutations, out=args.out)  # fmt: skip
    text = retrieval_markdown(rows)
    print(json.dumps(rows, indent=2) if args.json else text)
    if args.out is not None:
        (args.out / "zeroshot.md").write_text("# Zero-shot retrieval on held-out synthetic classes\n\n" + text + "\n")
    return 0


def _cmd_maps(args: argparse.Namespace) -> int:
    from .maps import maps_for_model

    png, csv_path, imp = maps_for_model(args.model, args.recording, args.out, label_regex=args.label_regex,
                                        events=args.events, table_path=args.classes, n_windows=args.windows,
                                        seed=args.seed)  # fmt: skip
    print(json.dumps({"png": str(png), "csv": str(csv_path), "shape": list(imp.shape)}))
    return 0


def _cmd_image_embeddings(args: argparse.Namespace) -> int:
    from .image_encoder import DEFAULT_CACHE, encode_images, save_image_embeddings

    cache = None if args.no_cache else (args.cache_dir or DEFAULT_CACHE)
    ids, emb = encode_images(args.encoder, args.images, cache_dir=cache, batch_size=args.batch_size)
    save_image_embeddings(args.out, ids, emb)
    print(json.dumps({"out": str(args.out), "images": len(ids), "dim": int(emb.shape[1])}))
    return 0


def _add_embedding_commands(sub: Any) -> None:
    """zeroshot, maps, image-embeddings: embedding students (issue 13)."""
    from .fit import DEFAULT_EVENTS, DEFAULT_LABEL_REGEX
    from .zoo.embedding import EMBEDDERS

    p = sub.add_parser("zeroshot", help="zero-shot retrieval of held-out classes (planted synthetic embeddings)")
    p.add_argument("--encoder", choices=sorted(EMBEDDERS), default="nice", help="EEG encoder to train")
    p.add_argument("--objective", choices=["infonce", "hinge"], nargs="+", default=["infonce", "hinge"],
                   help="training objectives, one model each")  # fmt: skip
    p.add_argument("--epochs", type=int, default=15, help="training epochs (best on the validation classes kept)")
    p.add_argument("--lr", type=_positive_float, default=3e-3, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic world and the training")
    p.add_argument("--permutations", type=int, default=1000, help="label permutations for the top-1 p-value")
    p.add_argument("--out", type=Path, default=None, help="folder for the models, table.npz and zeroshot.md")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    p.set_defaults(func=_cmd_zeroshot)

    p = sub.add_parser("maps", help="channel-importance scalp maps (PNG + CSV) of an exported model")
    p.add_argument("model", type=Path, help="an .onnx model with its card")
    p.add_argument("--recording", type=Path, nargs="+", required=True, help="recordings to cut epochs from")
    p.add_argument("--out", type=Path, required=True, help="output folder (maps.png, importance.csv)")
    p.add_argument("--classes", type=Path, default=None, help="class table .npz for an embedding model")
    p.add_argument("--events", default=DEFAULT_EVENTS, help="marker regex (re.search) that gets an epoch")
    p.add_argument("--label-regex", default=DEFAULT_LABEL_REGEX, help="regex whose group 'label' is the class")
    p.add_argument("--windows", type=int, default=3, help="time windows per epoch")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise that replaces a channel")
    p.set_defaults(func=_cmd_maps)

    p = sub.add_parser("image-embeddings",
                       help="embed local images with a local ONNX image encoder (the .npz training reads)")  # fmt: skip
    p.add_argument("encoder", type=Path, help="ONNX image encoder: float32 (batch, 3, H, W) in [0, 1] → (batch, dim)")
    p.add_argument("--images", type=Path, required=True, help=".npz of image id → HxWx3 uint8, or a folder of ID.png")
    p.add_argument("--out", type=Path, required=True, help="the .npz to write (images, embeddings; L2-normalised)")
    p.add_argument(
        "--cache-dir", type=Path, default=None, help="cache folder (default: ~/.cache/bci-stream/image-embeddings)"
    )
    p.add_argument("--no-cache", action="store_true", help="encode again and keep no cached copy")
    p.add_argument("--batch-size", type=int, default=32, help="images per encoder call")
    p.set_defaults(func=_cmd_image_embeddings)


def build_parser() -> argparse.ArgumentParser:
    from .valence.cli import add_valence_parser

    parser = argparse.ArgumentParser(prog="bci-train", description="Offline side of bci-stream.",
                                     parents=[verbosity_parser(top=True)], formatter_class=HelpFormatter)  # fmt: skip
    # every subcommand: the same -v/-q and help with defaults (bci_stream.cli_common)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=SubcommandParser)
    add_valence_parser(sub)
    _add_data_commands(sub)
    _add_run_commands(sub)
    _add_study_commands(sub)
    _add_embedding_commands(sub)
    return parser


def _add_data_commands(sub: Any) -> None:
    """synth, distil, models, bench: data, the shipped students and their speed."""
    from .fit import DEFAULT_EVENTS, DEFAULT_IMAGE_REGEX, DEFAULT_LABEL_REGEX

    p = sub.add_parser("synth", help="write a synthetic 128-channel recording (.fif) and its teacher (.teacher.npz)")
    p.add_argument("--out", required=True, type=Path, help="output .fif (the teacher goes beside it)")
    p.add_argument("--seconds", type=_positive_float, default=60.0, help="recording length (s, at 1 kHz)")
    p.add_argument("--seed", type=int, default=0, help="session seed (noise, stimulus order)")
    p.add_argument("--classes", type=int, default=8, help="number of classes, 2-40")
    p.add_argument("--subject", type=int, default=1, help="subject id (gain, latency, alpha frequency)")
    p.add_argument("--images-per-class", type=int, default=8, help="distinct stimulus images per class")
    p.add_argument(
        "--evoked-uv", type=_positive_float, default=None, help="class-specific evoked amplitude (µV) (default: 20)"
    )
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("distil", help="train a student on recordings (KD from a precomputed teacher) and export it")
    p.add_argument("--recording", required=True, nargs="+", type=Path, help="recordings (.fif .set .xdf ...)")
    p.add_argument("--teacher", type=Path, default=None, help="teacher .npz; without it plain cross-entropy")
    p.add_argument("--out", required=True, type=Path, help="output .onnx")
    p.add_argument("--name", default=None, help="model name in the card (default: the file's stem)")
    p.add_argument("--epochs", type=int, default=6, help="training epochs")
    p.add_argument("--seed", type=int, default=0, help="one seed for split, initialisation and batch order")
    p.add_argument("--events", default=DEFAULT_EVENTS, help="marker regex (re.search) that gets an epoch")
    p.add_argument("--label-regex", default=DEFAULT_LABEL_REGEX, help="regex whose group 'label' is the class")
    p.add_argument(
        "--image-regex",
        default=DEFAULT_IMAGE_REGEX,
        help="regex whose group 'image' is the image id (the split unit); '' for none (see --split)",
    )
    p.add_argument("--tmin", type=float, default=0.04, help="epoch start after the marker (s)")
    p.add_argument("--n-times", type=int, default=440,
                   help="epoch length in samples at the recording's rate (440 = 0.44 s at 1 kHz); see --tmax")  # fmt: skip
    p.add_argument("--bandpass", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="causal band in Hz (default: 5-95, capped below the recording's Nyquist)")  # fmt: skip
    p.add_argument("--notch", type=float, default=50.0, help="line frequency (Hz); 0 for none")
    p.add_argument(
        "--temperature", type=_positive_float, default=5.0, help="KD softmax temperature T (loss (T²/2)·KL + CE)"
    )
    p.add_argument("--batch-size", type=int, default=32, help="epochs (trials) per training batch")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate")
    p.add_argument("--hidden", type=int, default=128, help="hidden units per recurrent layer of the student")
    p.add_argument("--layers", type=int, default=2, help="recurrent layers of the student")
    p.add_argument(
        "--pooling", choices=("mean", "last"), default="mean", help="student output over time: mean or last step"
    )
    p.add_argument(
        "--val-fraction", type=float, default=0.3, help="share of each class's images held out for validation"
    )
    from .real_cli import add_crossval_parser, add_distil_options

    add_distil_options(p)
    p.set_defaults(func=_cmd_distil)
    add_crossval_parser(sub)

    p = sub.add_parser("models", help="rebuild the shipped students in exported/ deterministically")
    p.add_argument("--out-dir", type=Path, default=Path("exported"), help="folder for the .onnx models and cards")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("bench", help="per-epoch inference time, ONNX Runtime vs PyTorch eager (batch 1)")
    p.add_argument("model", type=Path, help="exported .onnx with its card")
    p.add_argument("--runs", type=int, default=50, help="timed runs per engine")
    p.add_argument("--threads", type=int, default=None, help="threads per engine (default: the libraries' choice)")
    p.set_defaults(func=_cmd_bench)


def _add_run_commands(sub: Any) -> None:
    """fit, export, evaluate: config-driven runs and their honest evaluation."""
    p = sub.add_parser("fit", help="train a run from a TOML config (early stopping, checkpoints, report)")
    p.add_argument("--config", type=Path, default=None, help="run config, e.g. configs/train-synth.toml")
    p.add_argument(
        "legacy_config", type=Path, nargs="?", default=None, help=argparse.SUPPRESS
    )  # fit CONFIG: deprecated
    p.add_argument("--out", type=Path, default=None, help="run folder (default: [run] out or runs/NAME-TIME)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN", help="continue RUN from its checkpoint")
    p.add_argument("--stop-after", type=int, default=None, metavar="N", help="stop after N epochs (resume later)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("export", help="export a run's best model to ONNX with its card (parity checked)")
    p.add_argument("run", type=Path, help="run folder (card.json + model.pt)")
    p.add_argument("--out", type=Path, default=None, help="output .onnx (default: RUN/model.onnx)")
    p.add_argument("--quantize", action="store_true", help="also write NAME.int8.onnx if it agrees on --held-out")
    p.add_argument("--held-out", type=Path, nargs="+", metavar="REC", help="held-out recordings for --quantize")
    p.add_argument(
        "--min-agreement",
        type=float,
        default=0.98,
        help="least int8 vs float top-1 agreement (0-1) to keep the int8 model",
    )
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "evaluate",
        help="a run folder (RUN/evaluation.md) or EEG-ImageNet: accuracy with chance, permutation p, confound probes",
    )
    p.add_argument("run", type=Path, nargs="?", default=None,
                   help="a finished run folder of 'bci-train fit': its validation split (optimistic), RUN/evaluation.md")  # fmt: skip
    p.add_argument("--eeg-imagenet", type=Path, default=None, help="eeg_*_std.pth file (a local, trusted file)")
    p.add_argument("--splits", type=Path, help="block_splits_by_image_all.pth; checked for leaks")
    p.add_argument("--split", type=int, default=0, help="which split of --splits gives the test set")
    p.add_argument("--logits", type=Path, help=".npy logits of a model for the test trials (else probes only)")
    p.add_argument("--tmin-samples", type=int, default=40, help="samples dropped after onset (20 or 40)")
    p.add_argument("--report", type=Path, default=None, help="--eeg-imagenet report (default: runs/evaluate.md)")
    p.add_argument("--permutations", type=int, default=1000, help="label permutations for the p-value (>= 1000)")
    p.add_argument("--loso", action="store_true", help="RUN: also retrain leaving one subject out at a time")
    p.add_argument("--json", action="store_true", help="print the headline numbers as JSON only")
    p.set_defaults(func=_cmd_evaluate)


def _add_study_commands(sub: Any) -> None:
    """sweep, unseen: the paper's ablations and the unseen-classes protocol."""
    p = sub.add_parser("sweep", help="CogniNet ablations on synthetic data (temperature, depth, KL/L2, teachers)")
    p.add_argument("--config", type=Path, default=None, help="TOML config (see training/sweep.py)")
    p.add_argument(
        "legacy_config", type=Path, nargs="?", default=None, help=argparse.SUPPRESS
    )  # sweep CONFIG: deprecated
    p.add_argument("--out", type=Path, default=None, help="Markdown output (default: the config's out)")
    p.add_argument("--json", action="store_true", help="print the cells as JSON instead of the Markdown")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("unseen", help="unseen classes: unsupervised-KD features, SVM/kNN/RF, excerpt voting")
    p.add_argument("--classes", type=int, default=6, help="classes in the synthetic session")
    p.add_argument("--unseen", type=int, default=2, help="held-out classes (the last ones)")
    p.add_argument("--seconds", type=_positive_float, default=120.0, help="session length (s, at 1 kHz)")
    p.add_argument("--shots", type=int, default=5, help="labelled epochs per unseen class")
    p.add_argument("--epochs", type=int, default=20, help="student training epochs")
    p.add_argument("--channels", type=int, default=16, help="posterior channels (0: all 128)")
    p.add_argument("--evoked-uv", type=_positive_float, default=20.0, help="class-specific evoked amplitude (µV)")
    p.add_argument("--session-seed", type=int, default=0, help="seed of the synthetic session")
    p.add_argument("--seed", type=int, default=0, help="seed of the training and the classifiers")
    p.add_argument("--out", type=Path, default=None, help="also write the table (Markdown)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    p.set_defaults(func=_cmd_unseen)


def main(argv: Sequence[str] | None = None) -> int:
    """``bci-train``; returns the exit status (0, or 2 for a :class:`BciStreamError`); a bug raises."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = " ".join(["bci-train", *argv])
    setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except BciStreamError as exc:  # a user can fix it: one line; anything else is a bug and keeps its traceback
        print(f"bci-train {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
