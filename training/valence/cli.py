"""``bci-train valence …``: synthesise data, fit, evaluate (KD vs no-KD, TRS and LOSO), export ONNX.

Entry point :func:`main` (``argv`` without the program name). Subcommands::

    bci-train valence synth     --config X --out DIR                  synthetic trials, per-trial .npz format
    bci-train valence fit       --config X DATA --out model.pt [--no-kd]   one student on all trials
    bci-train valence evaluate  --config X DATA --report report.md    10-fold trial shuffle + LOSO, KD vs no-KD
    bci-train valence export    --config X (--checkpoint model.pt | DATA) --out model.onnx

DATA is one of ``--data DIR`` (per-trial .npz files), ``--deap sNN.dat …`` or ``--synth`` (generated in
memory from the config's ``[synth]`` table). ``--config`` names a TOML file with the tables ``[synth]``,
``[features]``, ``[fit]``, ``[evaluate]`` and ``[export]`` (see ``configs/train-valence-synth.toml``), validated by
:class:`ValenceConfig` (unknown keys refused, :mod:`training.config`); flags override it. The spelling before the
one CLI style, ``bci-train valence --config X [--threads N] export ...``, still works for one release (a warning).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bci_stream.cli_common import HelpFormatter, SubcommandParser, setup_logging, verbosity_parser, warn_deprecated
from bci_stream.errors import BciStreamError

from ..errors import SettingError
from .data import (
    DEAP_CHANNELS,
    SynthConfig,
    ValenceDataError,
    ValenceTrial,
    load_deap,
    make_sequences,
    read_trial_folder,
    synth_sequences,
    synth_trial,
    write_trial_folder,
)

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger("training.valence")


def load_config(path: str | Path | None) -> Config:
    """Read and validate a valence config (:func:`training.valence.config.load_config`; None: the defaults)."""
    from .config import load_config as load

    return load(path)


# --------------------------------------------------------------------------------------------------- data


def _add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--data", type=Path, help="folder of per-trial .npz files (training.valence.data format)")
    g.add_argument("--deap", type=Path, nargs="+", help="DEAP sNN.dat files (valence as a constant per trial)")
    g.add_argument("--synth", action="store_true", help="synthesise the data in memory from the [synth] table")
    p.add_argument("--channels", help="comma-separated EEG channels to use (default: all EEG channels of the data)")


def _load_trials(args: argparse.Namespace, config: Config) -> tuple[list[ValenceTrial], str]:
    if args.deap:
        trials = [t for f in args.deap for t in load_deap(f)]
        return trials, f"DEAP ({', '.join(f.name for f in args.deap)}), valence constant per trial"
    trials = read_trial_folder(args.data)
    return trials, f"per-trial npz from {args.data} ({len(trials)} trials)"


def _channels(args: argparse.Namespace, trials: list[ValenceTrial]) -> list[str]:
    if args.channels:
        return [c.strip() for c in args.channels.split(",") if c.strip()]
    if getattr(args, "deap", None):
        return list(DEAP_CHANNELS)
    first = trials[0].recording
    names = [n for n, k in zip(first.ch_names, first.ch_types, strict=True) if k == "eeg"]
    for t in trials[1:]:
        if not set(names) <= set(t.recording.ch_names):
            raise ValenceDataError(
                f"{t.recording.source} lacks channels of {first.source}; pass --channels to choose common ones"
            )
    return names


def _sequences(args: argparse.Namespace, config: Config):  # -> (seqs, setup, description, EEG rate)
    t0 = time.perf_counter()
    if args.synth:  # one trial in memory at a time
        s = config.synth
        channels = [c.strip() for c in args.channels.split(",")] if args.channels else s.channel_names()
        setup = config.feature_setup(channels)
        seqs = synth_sequences(s, setup)
        desc = (
            f"synthetic: {s.subjects} subjects x {s.trials} trials x {s.seconds:g} s at {s.sfreq:g} Hz, "
            f"{s.channels} channels, label noise {s.label_noise:g}, seed {s.seed}"
        )
        log.info("features of %d trials in %.1f s", len(seqs), time.perf_counter() - t0)
        return seqs, setup, desc, s.sfreq
    trials, desc = _load_trials(args, config)
    setup = config.feature_setup(_channels(args, trials))
    seqs = make_sequences(trials, setup)
    log.info(
        "features of %d trials in %.1f s (%d features per step)",
        len(seqs),
        time.perf_counter() - t0,
        seqs[0].X.shape[1],
    )
    return seqs, setup, desc, trials[0].recording.sfreq


def _fit_config(args: argparse.Namespace, config: Config):
    from .fit import FitConfig

    fc = FitConfig.from_dict(config.fit)
    changes: dict[str, Any] = {}
    if getattr(args, "steps", None):
        changes["steps"] = args.steps
    if getattr(args, "seed", None) is not None:
        changes["seed"] = args.seed
    if getattr(args, "kd_weight", None) is not None:
        changes["kd_weight"] = args.kd_weight
    if getattr(args, "no_kd", False):
        changes["kd_weight"] = 0.0
    return fc.with_(**changes)


# ---------------------------------------------------------------------------------------------- commands


def cmd_synth(args: argparse.Namespace, config: Config) -> int:
    overrides = {k: getattr(args, k) for k in ("subjects", "trials", "seconds", "sfreq", "channels", "seed")}
    s = SynthConfig(**{**asdict(config.synth), **{k: v for k, v in overrides.items() if v is not None}})
    n = 0
    for subject in range(1, s.subjects + 1):  # one trial in memory at a time
        for k in range(1, s.trials + 1):
            write_trial_folder([synth_trial(s, subject, k)], args.out)
            n += 1
    log.info("wrote %d trial files to %s", n, args.out)
    return 0


def _train(args: argparse.Namespace, config: Config):
    from .fit import train_valence

    seqs, setup, desc, sfreq = _sequences(args, config)
    fc = _fit_config(args, config)
    if fc.kd_weight > 0 and any(s.teacher is None for s in seqs):
        raise ValenceDataError("the data has no teacher features; train without a teacher (--no-kd)")
    log.info("training on %d trials (%s), λ = %g, %d steps", len(seqs), desc, fc.kd_weight, fc.steps)
    trained = train_valence(seqs, fc, setup=setup)
    teacher = (
        "none (kd_weight 0)"
        if fc.kd_weight == 0
        else "synthetic teacher features (stand-in for a face-video CNN + TCN; training.valence.data)"
        if args.synth
        else "per-step teacher features from the data files"
    )
    trained.info.update(
        {
            "data": desc,
            "teacher": teacher,
            "eeg_sfreq": sfreq,
            "n_trials": len(seqs),
        }
    )
    log.info("trained in %.1f s", trained.seconds)
    return trained


def cmd_fit(args: argparse.Namespace, config: Config) -> int:
    from .fit import save_checkpoint

    trained = _train(args, config)
    save_checkpoint(trained, args.out)
    log.info("wrote %s", args.out)
    return 0


def cmd_evaluate(args: argparse.Namespace, config: Config) -> int:
    from .evaluate import SCHEMES, markdown_report, run_evaluation, summarize

    seqs, setup, desc, sfreq = _sequences(args, config)
    base = _fit_config(args, config)
    kd = base.kd_weight if base.kd_weight > 0 else 1.0
    conditions = {"kd": base.with_(kd_weight=kd), "no-kd": base.with_(kd_weight=0.0)}
    if any(s.teacher is None for s in seqs):
        log.warning("the data has no teacher features: evaluating the no-teacher student only")
        conditions = {"no-kd": conditions["no-kd"]}
    ev = config.evaluate
    schemes = args.schemes.split(",") if args.schemes else list(ev.get("schemes", SCHEMES))
    n_folds = args.folds or int(ev.get("folds", 10))
    seed = int(ev.get("seed", 0))
    t0 = time.perf_counter()
    runs = run_evaluation(seqs, conditions, schemes=schemes, n_folds=n_folds, seed=seed)
    seconds = time.perf_counter() - t0
    meta = {
        "data": desc,
        "EEG rate": f"{sfreq:g} Hz",
        "features": (
            f"{len(setup.channels)} channels x {len(setup.spec.bands)} bands relative power, window "
            f"{setup.spec.window:g} s, hop {setup.spec.hop:g} s, Welch segment {setup.spec.segment:g} s, "
            f"causal band-pass {list(setup.preprocessing.bandpass or [])}, {setup.spec.reference} reference"
        ),
        "student": f"causal TCN {list(base.channels)}, kernel {base.kernel_size}, dilations {list(base.dilations)}, "
        f"dropout {base.dropout:g}; {base.steps} Adam steps (lr {base.lr:g}), batch {base.batch_size} crops of "
        f"{base.crop} steps, seed {base.seed}",
        "command": args.command_line,
        "CV wall time": f"{seconds:.0f} s (all folds, both conditions)",
    }
    report = markdown_report(runs, title="Valence: KD vs no-KD", meta=meta)
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(report)
    log.info("wrote %s", args.report)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "runs": [summarize(r) for r in runs]}, indent=1))
    print(report)
    return 0


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    from .export import export_valence
    from .fit import load_checkpoint

    if args.checkpoint:
        trained = load_checkpoint(args.checkpoint)
    elif args.data or args.deap or args.synth:
        trained = _train(args, config)
    else:
        raise SettingError("export needs --checkpoint, or data to train on (--data, --deap or --synth)")
    if args.metrics:
        trained.info["metrics"] = _metrics_summary(json.loads(Path(args.metrics).read_text()))
    ex = config.export
    out = args.out or ex.get("out")
    if not out:
        raise SettingError("export needs --out (or out in the [export] table)")
    card = export_valence(
        trained,
        out,
        name=args.name or ex.get("name", "valence"),
        version=args.version or ex.get("version", "1.0.0"),
        context=args.context or ex.get("context"),
    )
    log.info("wrote %s: %s", out, card.name)
    return 0


def _metrics_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of an ``evaluate --json`` file, for the card's provenance."""
    out: dict[str, Any] = {"evaluated_on": report.get("meta", {}).get("data", "")}
    for run in report.get("runs", []):
        entry: dict[str, Any] = {}
        for name, cond in run["conditions"].items():
            entry[f"{name}_overall_ccc"] = round(cond["overall"]["ccc"], 4)
            entry[f"{name}_fold_ccc_mean"] = round(cond["fold_ccc_mean"], 4)
        if "kd_vs_no_kd" in run:
            entry["wilcoxon_p_folds"] = run["kd_vs_no_kd"]["folds"]["p"]
        out[run["scheme"]] = entry
    return out


def _subcommands(vp: argparse.ArgumentParser) -> None:
    """The valence subcommands under ``vp`` (``bci-train valence`` or this module's own parser)."""
    # the spelling before the one CLI style: bci-train valence --config X --threads N export ... (one release)
    vp.add_argument("--config", dest="legacy_config", type=Path, default=None, help=argparse.SUPPRESS)
    vp.add_argument("--threads", dest="legacy_threads", type=int, default=None, help=argparse.SUPPRESS)
    vp.set_defaults(func=run_valence)
    sub = vp.add_subparsers(dest="valence_command", required=True, parser_class=SubcommandParser)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--config", type=Path, default=None, help="TOML with [synth] [features] [fit] [evaluate] [export]"
        )
        q.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")

    p = sub.add_parser("synth", help="write synthetic trials (.npz per trial)")
    common(p)
    p.add_argument("--out", type=Path, required=True, help="folder of per-trial .npz files")
    p.add_argument("--subjects", type=int, help="number of subjects (overrides [synth] subjects)")
    p.add_argument("--trials", type=int, help="trials per subject (overrides [synth] trials)")
    p.add_argument("--seconds", type=float, help="trial length in s (overrides [synth] seconds)")
    p.add_argument("--sfreq", type=float, help="sampling rate in Hz (overrides [synth] sfreq)")
    p.add_argument("--channels", choices=["deap", "biosemi32"], help="channel set (overrides [synth] channels)")
    p.add_argument("--seed", type=int, help="seed of the synthetic data (overrides [synth] seed)")
    p.set_defaults(valence_func=cmd_synth)

    def fit_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--steps", type=int, help="optimiser steps (overrides [fit] steps)")
        q.add_argument("--seed", type=int, help="training seed (overrides [fit] seed)")
        g = q.add_mutually_exclusive_group()
        g.add_argument("--kd-weight", type=float, help="λ of the L1 distillation term (overrides [fit] kd_weight)")
        g.add_argument("--no-kd", action="store_true", help="λ = 0: no teacher")

    p = sub.add_parser("fit", help="train one student on all trials, save a checkpoint")
    common(p)
    _add_data_args(p)
    fit_args(p)
    p.add_argument("--out", type=Path, required=True, help="checkpoint (.pt)")
    p.set_defaults(valence_func=cmd_fit)

    p = sub.add_parser("evaluate", help="KD vs no-KD under trial-shuffle k-fold and LOSO; Markdown report")
    common(p)
    _add_data_args(p)
    fit_args(p)
    p.add_argument("--schemes", help="comma-separated: trs,loso (default: [evaluate] schemes, else both)")
    p.add_argument("--folds", type=int, help="folds of the trial shuffle (default: [evaluate] folds, else 10)")
    p.add_argument("--report", type=Path, required=True, help="Markdown report")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.set_defaults(valence_func=cmd_evaluate)

    p = sub.add_parser("export", help="ONNX + model card (trains first unless --checkpoint)")
    common(p)
    p.add_argument("--checkpoint", type=Path, help="a checkpoint of 'valence fit' (else train first)")
    _add_data_args(p, required=False)
    fit_args(p)
    p.add_argument("--out", type=Path, help="output .onnx (default: [export] out)")
    p.add_argument("--name", help="model name in the card (default: [export] name, else valence)")
    p.add_argument("--version", help="model version (default: [export] version, else 1.0.0)")
    p.add_argument("--context", type=int, help="steps of context in the card (default: [export] context, else 16)")
    p.add_argument("--metrics", type=Path, help="an `evaluate --json` file: its headline numbers go into the card")
    p.set_defaults(valence_func=cmd_export)


def add_valence_parser(sub: Any) -> argparse.ArgumentParser:
    """``bci-train valence`` as a subcommand of ``bci-train`` (``sub``: its subparsers)."""
    vp = sub.add_parser("valence", help="valence students (band power, TCN, visual KD): bci-train valence --help",
                        description=__doc__.split("\n")[0])  # fmt: skip
    _subcommands(vp)
    return vp


def build_parser() -> argparse.ArgumentParser:
    """This module's own parser (``python -m training.valence.cli``), the same as ``bci-train valence``."""
    parser = argparse.ArgumentParser(prog="bci-train valence", description=__doc__.split("\n")[0],
                                     parents=[verbosity_parser(top=True)], formatter_class=HelpFormatter)  # fmt: skip
    _subcommands(parser)
    return parser


def run_valence(args: argparse.Namespace) -> int:
    """Resolve the config (and the old spelling), set torch's threads, run the valence subcommand."""
    if args.legacy_config is not None or args.legacy_threads is not None:
        warn_deprecated(f"bci-train valence --config X {args.valence_command}",
                        f"bci-train valence {args.valence_command} --config X")  # fmt: skip
    config_path = args.config or args.legacy_config
    threads = args.threads or args.legacy_threads
    if threads:
        import torch

        torch.set_num_threads(threads)
    if not getattr(args, "command_line", None):
        args.command_line = "bci-train valence " + args.valence_command
    return int(args.valence_func(args, load_config(config_path)))


def main(argv: list[str] | None = None) -> int:
    """``bci-train valence`` on its own; returns the exit status (2: a :class:`BciStreamError`); a bug raises."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = " ".join(["bci-train valence", *argv])
    setup_logging(args.verbose)
    try:
        return run_valence(args)
    except BciStreamError as exc:  # a user can fix it: one line; anything else is a bug and keeps its traceback
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
