"""One CLI style for `bci-stream` and `bci-train`: -v/-q on every subcommand, help with defaults, the old spellings
still work for one release and warn."""

from __future__ import annotations

import argparse
import json

import pytest

from bci_stream.cli import build_parser as stream_parser
from bci_stream.cli import main as stream_main
from bci_stream.cli_common import HelpFormatter
from training.cli import build_parser as train_parser
from training.cli import main as train_main
from training.valence.cli import build_parser as valence_parser

from .test_loop import RUN, VALENCE


def _subparsers(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from _subparsers(sub, f"{prefix}{name} ")


@pytest.mark.parametrize("parser", [stream_parser, train_parser], ids=["bci-stream", "bci-train"])
def test_every_subcommand_has_the_same_verbosity_flags_and_shows_defaults(parser):
    subs = dict(_subparsers(parser()))
    assert subs
    for name, sub in subs.items():
        flags = {s for a in sub._actions for s in a.option_strings}
        assert {"-v", "--verbose", "-q", "--quiet"} <= flags, name
        assert sub.formatter_class is HelpFormatter, name


def _options(parser: argparse.ArgumentParser, name: str):
    """(where, action) for every option and positional of ``parser`` and its subcommands, but -h and hidden ones."""
    for where, p in [(name, parser), *((f"{name} {sub}", s) for sub, s in _subparsers(parser))]:
        for action in p._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if action.help == argparse.SUPPRESS:  # a deprecated spelling, hidden on purpose (warns when used)
                continue
            yield f"{where} {'/'.join(action.option_strings) or action.dest}", p, action


PARSERS = [("bci-stream", stream_parser), ("bci-train", train_parser), ("bci-train valence", valence_parser)]


@pytest.mark.parametrize(("name", "parser"), PARSERS, ids=[n for n, _ in PARSERS])
def test_every_option_has_one_help_line_that_shows_its_default_once(name, parser):
    """Every option says what it is; the default appears once: from HelpFormatter, never repeated in the help.

    Defaults of None/False and flags show nothing (no "(default: None)"); 0 is a real default and shown; lists
    print as typed ("(default: 2.0 50.0)", not "[2.0, 50.0]").
    """
    top = parser()
    problems = []
    for where, p, action in _options(top, name):
        assert p.formatter_class is HelpFormatter, where
        if not (action.help or "").strip():
            problems.append(f"{where}: no help")
            continue
        text = " ".join(p._get_formatter()._format_action(action).split())  # as --help prints it, unwrapped
        if text.lower().count("default") > 1 or text.count("(default") > 1:
            problems.append(f"{where}: default said twice: {text!r}")
        for noise in ("(default: None)", "(default: False)", "(default: True)"):
            if noise in text:
                problems.append(f"{where}: {noise!r} in {text!r}")
        if isinstance(action.default, list | tuple) and repr(action.default) in text:
            problems.append(f"{where}: a list default printed as a Python list: {text!r}")
    assert not problems, "\n".join(problems)
    for _, sub in [(name, top), *_subparsers(top)]:
        sub.format_help()  # every help string formats (no stray %)


def test_zero_defaults_are_shown_and_list_defaults_read_as_typed():
    subs = dict(_subparsers(stream_parser()))
    listen = " ".join(subs["listen"].format_help().split())
    assert "stop after N messages (0: never) (default: 0)" in listen
    assert "(default: 0.0)" in listen  # --timeout
    assert "(default: prediction drop valence status)" in listen
    bench = " ".join(subs["bench"].format_help().split())
    assert "(default: 2.0 50.0)" in bench and "(default: 1 8 32)" in bench
    replay = " ".join(subs["replay"].format_help().split())
    assert "(default 1)" not in replay and replay.count("(default: 1.0)") == 1


def test_verbosity_before_or_after_the_subcommand():
    p = train_parser()
    assert p.parse_args(["-q", "models"]).verbose == -1
    assert p.parse_args(["models", "-q"]).verbose == -1
    assert p.parse_args(["models", "-v"]).verbose == 1
    assert p.parse_args(["models"]).verbose == 0
    assert stream_parser().parse_args(["-q", "inspect"]).verbose == -1


def test_help_shows_defaults():
    text = train_parser()._subparsers._group_actions[0].choices["distil"].format_help()  # type: ignore[union-attr]
    assert "(default: 6)" in text and "(default: 0.001)" in text
    text = stream_parser()._subparsers._group_actions[0].choices["bench"].format_help()  # type: ignore[union-attr]
    assert "(default: exported/cogninet-synth.onnx)" in text and "(default: 100)" in text


def test_bench_takes_the_model_positionally_and_the_old_flag_warns(tmp_path, capsys):
    missing = tmp_path / "missing.onnx"  # refused before any timing: no benchmark runs here
    assert stream_main(["bench", str(missing)]) == 2
    assert "missing.onnx" in capsys.readouterr().err
    with pytest.warns(FutureWarning, match=r"bci-stream bench M"):
        assert stream_main(["bench", "--model", str(missing)]) == 2
    assert "missing.onnx" in capsys.readouterr().err
    assert stream_parser().parse_args(["bench"]).model.name == "cogninet-synth.onnx"  # the shipped model


def test_fit_takes_config_with_a_flag_and_the_positional_warns(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(RUN.replace("subjects = [1, 2], ", ""))
    with pytest.warns(FutureWarning, match=r"bci-train fit --config CONFIG"):
        assert train_main(["fit", str(cfg), "--out", str(tmp_path / "old"), "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["finished"] is True
    assert train_main(["fit"]) == 2 and "--config" in capsys.readouterr().err


def test_valence_config_after_the_subcommand_and_the_old_order_warns(tmp_path):
    cfg = tmp_path / "valence.toml"
    cfg.write_text(VALENCE)
    new = ["valence", "fit", "--config", str(cfg), "--threads", "1", "--synth", "--out", str(tmp_path / "a.pt")]
    assert train_main(new) == 0
    old = ["valence", "--config", str(cfg), "--threads", "1", "fit", "--synth", "--out", str(tmp_path / "b.pt")]
    with pytest.warns(FutureWarning, match=r"bci-train valence fit --config X"):
        assert train_main(old) == 0
    assert (tmp_path / "a.pt").read_bytes() != b"" and (tmp_path / "b.pt").is_file()
