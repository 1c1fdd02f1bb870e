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
