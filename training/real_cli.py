"""The real-recording parts of ``bci-train``: the ``crossval`` subcommand and the ``distil`` options for any recording.

Kept apart from :mod:`training.cli` so that file only gains a parser hook and a few lines (issue 11):

    bci-train crossval --recordings ../shared/data/n170/sub-01*.fif --events '^stim/' \\
        --label 'stim/(?P<label>face|house)' --tmin 0 --tmax 0.8 --students eegnet,shallow-fbcsp \\
        --baseline xdawn --out runs/n170-sub01
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from bci_stream.errors import BciStreamError

from .realdata import LabelRule, RealDataError, capped_band, window_samples

log = logging.getLogger("bci_train")

#: The band ``distil`` uses when none is given (before capping below Nyquist).
DEFAULT_BAND = (5.0, 95.0)


def _rule(args: argparse.Namespace) -> LabelRule:
    if args.label_map:
        return LabelRule.parse_mapping(args.label_map)
    return LabelRule(regex=args.label or None, field=args.label_field or None)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_crossval(args: argparse.Namespace) -> int:
    from .crossval import StudentSpec, crossval, write_results
    from .realdata import load_epochs

    missing = [str(p) for p in args.recordings if not Path(p).is_file()]
    if missing:
        raise BciStreamError(f"recording(s) not found: {', '.join(missing)}")
    train = {"epochs": args.epochs, "seed": args.seed, "lr": args.lr, "batch_size": args.batch_size}
    students = [StudentSpec.parse(s, **train) for s in args.students.split(",") if s.strip()] if args.students else []
    baseline = None if args.baseline in ("", "none") else args.baseline
    if not students and baseline is None:
        raise BciStreamError("nothing to cross-validate: give --students NAME,... and/or --baseline xdawn")
    data = load_epochs(
        args.recordings, events=args.events, rule=_rule(args), tmin=args.tmin, tmax=args.tmax,
        channels=args.channels.split(",") if args.channels else None,
        bandpass=tuple(args.bandpass) if args.bandpass else (1.0, 30.0), bandpass_explicit=args.bandpass is not None,
        notch=args.notch or None,
    )  # fmt: skip
    result = crossval(
        data, students=students, baseline=baseline, split=args.split, n_folds=args.folds, reject_uv=args.reject_uv,
        n_permutations=args.permutations, strict=args.strict, seed=args.seed, progress=_progress,
    )  # fmt: skip
    command = getattr(args, "command_line", None) or "bci-train crossval " + " ".join(
        shlex.quote(a) for a in sys.argv[2:]
    )
    report = write_results(args.out, result, command=command, data=data, reject_uv=args.reject_uv,
                           n_permutations=args.permutations)  # fmt: skip
    print(f"chance {result.chance:.3f}, split {result.split}, {result.n_trials} trials")
    for w in result.warnings:
        print(f"WARNING leak: {w}")
    for name, m in result.models.items():
        auc = "n/a" if m["auc"] is None else f"{m['auc']:.3f}"
        print(f"{name:28s} accuracy {m['accuracy']:.3f}  auc {auc}  p {m['p_value']:.3g}")
    print(f"results: {Path(args.out) / 'results.json'}; report: {report}")
    if args.export is not None:
        from .real_export import best_student, export_student

        spec = best_student(result, students)
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                  if k not in ("func", "out", "export", "verbose", "recordings", "command", "command_line")}  # fmt: skip
        path = export_student(data, result, spec, args.export, name=args.name or Path(args.export).stem,
                              reject_uv=args.reject_uv, config=config)  # fmt: skip
        print(f"exported {spec.label} to {path}")
    return 0


def add_crossval_parser(sub: Any) -> None:
    """The ``crossval`` subcommand's parser (called from :func:`training.cli.build_parser`)."""
    from .crossval import SPLITS

    p = sub.add_parser("crossval", help="students and the xDAWN baseline on the same leak-checked folds of recordings")
    p.add_argument("--recordings", required=True, nargs="+", type=Path, help="recording files (.fif .set .xdf ...)")
    p.add_argument("--events", default="^stim/", help="marker regex (re.search) that gets an epoch")
    label = p.add_mutually_exclusive_group(required=True)
    label.add_argument(
        "--label", help="regex whose group named 'label' is the class, e.g. 'stim/(?P<label>face|house)'"
    )
    label.add_argument("--label-field", help="EEGLAB event field holding the class, e.g. position")
    label.add_argument("--label-map", help="marker value to class, e.g. '1=house,2=face'")
    p.add_argument("--split", choices=SPLITS, default="by-recording", help="the unit train and test folds never share")
    p.add_argument("--folds", type=int, default=5, help="k for by-block and shuffled splits")
    p.add_argument("--students", default="eegnet,shallow-fbcsp",
                   help="comma-separated students, each NAME[+aug][+bal] ('' for none)")  # fmt: skip
    p.add_argument("--baseline", default="xdawn", help="xdawn (xDAWN(2) covariances + tangent space + LR) or none")
    p.add_argument("--tmin", type=float, default=0.0, help="epoch start after the marker (s)")
    p.add_argument("--tmax", type=float, default=0.8, help="epoch end after the marker (s)")
    p.add_argument("--channels", default=None, help="comma-separated channel subset (default: every EEG channel)")
    p.add_argument("--bandpass", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="causal band (Hz) (default: 1-30, capped below Nyquist)")  # fmt: skip
    p.add_argument("--notch", type=float, default=0.0, help="line frequency (Hz); 0 for none")
    p.add_argument("--reject-uv", type=float, default=None,
                   help="drop training-fold epochs with peak-to-peak >= this (µV); test epochs are all kept (default: none dropped)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=20, help="training epochs per fold (fixed; no selection)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, default=32, help="epochs (trials) per training batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds, initialisation and batch order")
    p.add_argument("--permutations", type=int, default=1000, help="label permutations for the p-value")
    p.add_argument("--strict", action="store_true", help="refuse (exit 2) when recordings/epochs leak across folds")
    p.add_argument("--out", required=True, type=Path, help="folder for results.json, report.md, folds.png")
    p.add_argument("--export", type=Path, default=None, help="also train the best student on all data, export here")
    p.add_argument("--name", default=None, help="model name in the exported card (default: the file's stem)")
    p.set_defaults(func=cmd_crossval)


# ----------------------------------------------------------------------------------------------- distil options


def add_distil_options(p: argparse.ArgumentParser) -> None:
    """Options ``distil`` gains for real recordings (issue 11)."""
    p.add_argument(
        "--tmax", type=float, default=None, help="epoch end (s after the marker); sets --n-times from the rate"
    )
    p.add_argument("--channels", default=None, help="comma-separated channel subset (default: every EEG channel)")
    p.add_argument("--event-fields", nargs="+", default=None, metavar="FIELD",
                   help="EEGLAB: append these event fields to markers (square -> square/position=1); the first is "
                        "the label unless --label-regex is given")  # fmt: skip
    p.add_argument("--label-map", default=None, help="marker value to class, e.g. '1=house,2=face'")
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse leaks: recordings/epochs copied across the split, and --split by-trial",
    )
    from .splits import SPLITS

    p.add_argument("--split", choices=SPLITS, default=None,
                   help="the unit train and validation never share; by-trial is leaky (warned, recorded) (default: by-image "
                        "when markers carry image ids, else by-recording with 3+ recordings, else by-block)")  # fmt: skip


def distil_arguments(args: argparse.Namespace, default_label_regex: str) -> dict[str, Any]:
    """Read the recordings and turn the distil options into :func:`training.fit.train_student` arguments.

    Returns ``{"recordings", "label_regex", "n_times", "bandpass", "channels", "class_names", "rule"}``.
    """
    from bci_stream.recordings import read_recording

    recs = [read_recording(p, event_fields=args.event_fields) for p in args.recording]
    sfreq = recs[0].sfreq
    label_regex = args.label_regex
    class_names = None
    if args.label_map:
        rule = LabelRule.parse_mapping(args.label_map)
        assert rule.mapping is not None
        label_regex = rule.cut_regex
        class_names = dict(rule.mapping)
    elif args.event_fields and label_regex == default_label_regex:
        rule = LabelRule(field=args.event_fields[0])
        label_regex = rule.daemon_regex
    else:
        rule = LabelRule(regex=label_regex)
    _check_labels(recs, args.events, label_regex, args.event_fields)
    n_times = window_samples(args.tmin, args.tmax, sfreq) if args.tmax is not None else args.n_times
    explicit = args.bandpass is not None
    bandpass = capped_band(tuple(args.bandpass) if explicit else DEFAULT_BAND, sfreq, explicit=explicit,
                           source=recs[0].source)  # fmt: skip
    channels = args.channels.split(",") if args.channels else None
    return {"recordings": recs, "label_regex": label_regex, "n_times": n_times, "bandpass": bandpass,
            "channels": channels, "class_names": class_names, "rule": rule}  # fmt: skip


def _check_labels(recs: list[Any], events: str, label_regex: str, event_fields: list[str] | None) -> None:
    """Refuse, before any training, a label regex that misses a selected marker, saying what to pass instead."""
    ev, lab = re.compile(events), re.compile(label_regex)
    for rec in recs:
        bad = next((m.value for m in rec.markers if ev.search(m.value) and not lab.search(m.value)), None)
        if bad is None:
            continue
        hint = ""
        if "/" not in bad and not event_fields and rec.source.lower().endswith(".set"):
            hint = (
                "; plain EEGLAB markers carry their class in an event field: add --event-fields FIELD (e.g. position)"
            )
        elif "/" not in bad:
            hint = "; for classes named by whole marker values use --label-map VALUE=CLASS,..."
        raise RealDataError(
            f"{rec.source}: marker {bad!r} matches --events {events!r} but not --label-regex {label_regex!r}{hint}"
        )


def distil_leak_check(args: argparse.Namespace, recs: list[Any], spec_kwargs: dict[str, Any]) -> tuple[list[str], Any]:
    """Plan distil's split (``--split`` or its default, :func:`training.splits.plan`, as ``bci-train fit``), then
    hash the recordings and the epochs of its train/validation parts; returns (warnings, the plan), and
    :func:`training.fit.train_student` is given that plan, so the split checked is the split trained on."""
    from .fit import cut_epochs, epoch_spec
    from .leaks import check_epoch_split
    from .splits import CLI_OPTION, plan

    input_spec, prep = epoch_spec(recs, channels=spec_kwargs["channels"], sfreq=None, n_times=spec_kwargs["n_times"],
                                  tmin=args.tmin, bandpass=spec_kwargs["bandpass"],
                                  notch=args.notch if args.notch and args.notch > 0 else None)  # fmt: skip
    data = cut_epochs(recs, input_spec, prep, events=args.events, label_regex=spec_kwargs["label_regex"],
                      image_regex=args.image_regex or None)  # fmt: skip
    split = plan(data, args.split, image_regex=args.image_regex or None, option=CLI_OPTION, source="bci-train distil",
                 strict=args.strict)  # fmt: skip
    train, val, _ = split.parts(data.labels, val_fraction=args.val_fraction, seed=args.seed)
    warnings = check_epoch_split(recs, data, train, val, strict=args.strict)
    if split.leak:
        warnings.append(f"--split {split.name}: {split.leak}")
    return warnings, split
