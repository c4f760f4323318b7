"""The `rpt-trl` command line: builds the top parser from the command modules of `rpt_trl.commands` and dispatches."""

import argparse
import sys

from .commands import get_commands


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rpt-trl", description="Reinforcement Pre-Training with TRL.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in get_commands():
        command.make_parser(subparsers).set_defaults(main=command.main)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = make_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "takes_dataclass_flags", False):
        parser.parse_args(argv)  # the argparse commands refuse unknown flags with argparse's own message
    # The commands parsed by TrlParser (`train`, `prepare`) read the flags after their name themselves, as TRL's CLI.
    args.argv, args.command_argv = argv, argv[argv.index(args.command) + 1 :]
    args.main(args)


if __name__ == "__main__":
    main()
