"""`rpt-trl train`: the RPT training script ([`rpt_trl.trainer.train`]), as `recipes/rpt_14b.py` runs it."""

import argparse
from typing import Any


def make_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `rpt-trl train`; its flags are the training script's (`rpt-trl train --help`)."""
    parser = subparsers.add_parser(
        "train", add_help=False, help="Train with RPT from a recipe YAML (--config) and flags, as recipes/rpt_14b.py."
    )
    parser.set_defaults(takes_dataclass_flags=True)
    return parser


def main(args: argparse.Namespace) -> None:
    """Run `rpt-trl train` from the flags after the command name (`args.command_argv`)."""
    from ..trainer.train import check_inputs, parse_args
    from ..trainer.train import main as train

    # A ValueError, TypeError or FileNotFoundError (a bad flag, YAML value, column or path) becomes one line in
    # `rpt_trl.cli.main`, as for every command.
    script_args, training_args, model_args = parse_args(args.command_argv)
    check_inputs(model_args)
    train(script_args, training_args, model_args)
