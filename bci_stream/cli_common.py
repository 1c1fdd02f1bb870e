"""The one CLI style of ``bci-stream`` and ``bci-train``: shared ``-v/-q``, help that shows defaults, deprecations.

- the main file of a command is positional (``bci-stream bench MODEL``, ``bci-train evaluate RUN``), configs come
  with ``--config``;
- every subcommand takes the same ``-v/--verbose`` (debug logging) and ``-q/--quiet`` (warnings only)
  as the program itself (:func:`verbosity_parser`);
- help texts show the defaults (:class:`HelpFormatter`);
- an old spelling keeps working for one release and says so (:func:`warn_deprecated`, a :class:`FutureWarning`,
  which Python shows by default).
"""

from __future__ import annotations

import argparse
import copy
import logging
import warnings
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """The one help style: every option has a one-line help, and the formatter appends ``(default: X)`` once.

    Help texts never state a default the formatter prints. A default of None, False or SUPPRESS, and a flag's
    (``-v``, ``--json``), prints nothing ("(default: None)" says nothing): where None stands for something (a
    config value, "all", "never"), the help says so itself, as ``(default: ...)``. Zero is a real default and
    shown (``0 in (None, False)`` is true, so the test is by identity). A list default prints as it is typed:
    ``(default: 2.0 50.0)``. Units go into the help text (s, Hz, µV, samples).
    """

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and _shows_default(action) and action.option_strings:
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        if isinstance(action.default, (list, tuple)) and _shows_default(action):
            action = copy.copy(action)
            action.default = " ".join(map(str, action.default))
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if not _shows_default(action):
            return action.help
        return super()._get_help_string(action)


def _shows_default(action: argparse.Action) -> bool:
    """False for None/False/SUPPRESS defaults and for flags (``-v``, ``--json``: no value, nothing to show)."""
    if action.nargs == 0 or action.default is None or action.default is False:
        return False
    return action.default != argparse.SUPPRESS


def verbosity_parser(top: bool = False) -> argparse.ArgumentParser:
    """A parent parser with ``-v/--verbose`` and ``-q/--quiet`` (``dest="verbose"``: -1 quiet, 0 info, ≥ 1 debug).

    ``top=True`` for the program's own parser (default 0); subcommands get ``top=False`` (no default, so a flag
    given before the subcommand is not reset by the subcommand's parser).
    """
    p = argparse.ArgumentParser(add_help=False)
    default = 0 if top else argparse.SUPPRESS
    p.add_argument("-v", "--verbose", action="count", default=default, help="debug logging")
    p.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbose", default=default,
                   help="warnings only")  # fmt: skip
    return p


class SubcommandParser(argparse.ArgumentParser):
    """The parser of every subcommand (``add_subparsers(parser_class=SubcommandParser)``): the shared ``-v/-q`` and
    help that shows defaults; its own subcommands (``bci-train valence fit``) get the same."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs["parents"] = [*kwargs.get("parents", []), verbosity_parser()]
        super().__init__(*args, **kwargs)


def setup_logging(verbose: int) -> None:
    """Logging level from ``-v/-q``: -1 warnings, 0 info, ≥ 1 debug (as ``bci-stream`` always had it)."""
    level = logging.WARNING if verbose < 0 else logging.INFO if verbose == 0 else logging.DEBUG
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S")


def warn_deprecated(old: str, new: str) -> None:
    """Say that the spelling ``old`` goes away in the next release and ``new`` replaces it."""
    warnings.warn(f"'{old}' is deprecated and will be removed in the next release; use '{new}'", FutureWarning,
                  stacklevel=3)  # fmt: skip


__all__ = ["HelpFormatter", "SubcommandParser", "setup_logging", "verbosity_parser", "warn_deprecated"]
