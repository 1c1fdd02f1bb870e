"""``bci-train``: synthetic data, distillation and the shipped models.

    bci-train synth  --out build/demo.fif --seconds 60 --seed 7 --classes 8 --subject 1
    bci-train distil --recording a.fif [b.fif ...] --teacher a.teacher.npz --out exported/NAME.onnx --epochs 6
    bci-train models [--out-dir exported]
    bci-train bench  exported/cogninet-synth.onnx

torch is imported only by the subcommands that train or time a model, so ``synth`` starts fast.
Errors a user can fix are printed as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bci_stream.errors import BciStreamError

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
    from bci_stream.recordings import read_recording

    from .teachers import PrecomputedTeacher

    teacher = PrecomputedTeacher.load(args.teacher) if args.teacher is not None else None
    recordings = [read_recording(p) for p in args.recording]
    result = train_student(
        recordings,
        events=args.events,
        label_regex=args.label_regex,
        image_regex=args.image_regex or None,
        n_times=args.n_times,
        tmin=args.tmin,
        bandpass=(args.bandpass[0], args.bandpass[1]) if args.bandpass else None,
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
        seed=args.seed,
        name=args.name or Path(args.out).stem,
    )
    path = export_onnx(result.model, result.card, args.out)
    print(json.dumps({"path": str(path), **result.metrics}, indent=2))
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
    import numpy as np

    from training.data.eeg_imagenet import load_eeg_imagenet, load_splits
    from training.evaluate import evaluate_eeg_imagenet, write_report

    data = load_eeg_imagenet(args.eeg_imagenet, tmin_samples=args.tmin_samples)
    kwargs: dict[str, object] = {}
    if args.splits is not None:
        kwargs["test_index"] = load_splits(args.splits, data)[args.split]["test"]
    if args.logits is not None:
        kwargs["logits"] = np.load(args.logits)
    results = evaluate_eeg_imagenet(data, **kwargs)
    path = write_report(args.report, results)
    print(results["sentence"] if results["confounded"] else f"no confound flagged; report in {path}")
    print(f"report: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .fit import DEFAULT_EVENTS, DEFAULT_IMAGE_REGEX, DEFAULT_LABEL_REGEX

    parser = argparse.ArgumentParser(prog="bci-train", description="Offline side of bci-stream.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("valence", help="valence students (band power, TCN, visual KD): bci-train valence --help")

    p = sub.add_parser("evaluate", help="EEG-ImageNet: accuracy with chance, permutation p and confound probes")
    p.add_argument("--eeg-imagenet", type=Path, required=True, help="eeg_*_std.pth file (a local, trusted file)")
    p.add_argument("--splits", type=Path, help="block_splits_by_image_all.pth; checked for leaks")
    p.add_argument("--split", type=int, default=0, help="which split of --splits gives the test set")
    p.add_argument("--logits", type=Path, help=".npy logits of a model for the test trials (else probes only)")
    p.add_argument("--tmin-samples", type=int, default=40, help="samples dropped after onset (20 or 40)")
    p.add_argument("--report", type=Path, default=Path("runs/evaluate.md"))
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("synth", help="write a synthetic 128-channel recording (.fif) and its teacher (.teacher.npz)")
    p.add_argument("--out", required=True, type=Path, help="output .fif (the teacher goes beside it)")
    p.add_argument("--seconds", type=_positive_float, default=60.0)
    p.add_argument("--seed", type=int, default=0, help="session seed (noise, stimulus order)")
    p.add_argument("--classes", type=int, default=8, help="number of classes, 2-40 (default 8)")
    p.add_argument("--subject", type=int, default=1, help="subject id (gain, latency, alpha frequency)")
    p.add_argument("--images-per-class", type=int, default=8)
    p.add_argument("--evoked-uv", type=_positive_float, default=None, help="class-specific evoked amplitude (µV)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("distil", help="train a student on recordings (KD from a precomputed teacher) and export it")
    p.add_argument("--recording", required=True, nargs="+", type=Path, help="recordings (.fif .set .xdf ...)")
    p.add_argument("--teacher", type=Path, default=None, help="teacher .npz; without it plain cross-entropy")
    p.add_argument("--out", required=True, type=Path, help="output .onnx")
    p.add_argument("--name", default=None, help="model name in the card (default: the file's stem)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--events", default=DEFAULT_EVENTS, help=f"marker regex (default {DEFAULT_EVENTS!r})")
    p.add_argument("--label-regex", default=DEFAULT_LABEL_REGEX)
    p.add_argument("--image-regex", default=DEFAULT_IMAGE_REGEX, help="'' to split by trial")
    p.add_argument("--tmin", type=float, default=0.04)
    p.add_argument("--n-times", type=int, default=440)
    p.add_argument("--bandpass", type=float, nargs=2, default=(5.0, 95.0), metavar=("LOW", "HIGH"))
    p.add_argument("--notch", type=float, default=50.0, help="line frequency; 0 for none")
    p.add_argument("--temperature", type=_positive_float, default=5.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=_positive_float, default=1e-3)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--pooling", choices=("mean", "last"), default="mean")
    p.add_argument("--val-fraction", type=float, default=0.3)
    p.set_defaults(func=_cmd_distil)

    p = sub.add_parser("models", help="rebuild the shipped students in exported/ deterministically")
    p.add_argument("--out-dir", type=Path, default=Path("exported"))
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("bench", help="per-epoch inference time, ONNX Runtime vs PyTorch eager (batch 1)")
    p.add_argument("model", type=Path)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["valence"]:  # the valence tool has its own parser: bci-train valence {synth,fit,evaluate,export}
        from training.valence.cli import main as valence_main

        return valence_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except (BciStreamError, ValueError, FileNotFoundError) as exc:
        print(f"bci-train {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
