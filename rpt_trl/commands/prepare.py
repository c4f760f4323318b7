"""`rpt-trl prepare`: score a corpus with a proxy model and write entropy-filtered RPT train / eval splits."""

import argparse
import logging
import shlex
from typing import Any


def make_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `rpt-trl prepare`; its flags are parsed by [`make_prepare_parser`] (`rpt-trl prepare --help`)."""
    parser = subparsers.add_parser(
        "prepare",
        add_help=False,
        help="Score a corpus with a proxy model and write entropy-filtered RPT train / eval splits (and push them).",
    )
    parser.set_defaults(takes_dataclass_flags=True)
    return parser


def make_prepare_parser() -> Any:
    """The parser of `rpt-trl prepare`: [`PrepareArguments`] and [`NextTokenSettings`], snake_case flags as TRL's."""
    from trl import TrlParser

    from ..data.builder import NextTokenSettings
    from ..data.prepare import PrepareArguments

    return TrlParser((PrepareArguments, NextTokenSettings), prog="rpt-trl prepare")


def main(args: argparse.Namespace) -> None:
    """Run `rpt-trl prepare` from the flags after the command name (`args.command_argv`)."""
    from ..data.prepare import run_prepare
    from ..hub import HubAccessError, public_command

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        arguments, settings = make_prepare_parser().parse_args_and_config(args.command_argv)
        command = shlex.join(["rpt-trl", *public_command(["prepare", *args.command_argv])])
        run_prepare(arguments, settings, command=command)
    except (ValueError, TypeError, HubAccessError) as error:  # bad input: say what and where, no traceback
        raise SystemExit(f"rpt-trl prepare: error: {error}") from None
