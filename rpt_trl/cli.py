"""The `rpt-trl` command line: builds the top parser from the command modules of `rpt_trl.commands` and dispatches."""

import argparse
import sys

from .commands import get_commands


# The errors the commands raise for bad input, each with a message that names the flag, file, column or row; any
# other exception is a bug and keeps its traceback.
USER_INPUT_ERRORS = (ValueError, TypeError, FileNotFoundError)


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
    if not _has_cuda():  # training and evaluation run on the CPU: freed memory is kept for the next step
        from .host_memory import keep_freed_memory

        keep_freed_memory()
    try:
        args.main(args)
    except USER_INPUT_ERRORS as error:  # explained by their message: one line, no traceback
        raise SystemExit(error_line(args.command, error)) from None


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def error_line(command: str, error: BaseException) -> str:
    """`rpt-trl <command>: error: <message>` on one line, as argparse reports a bad flag."""
    message = " ".join(str(error).split())
    return f"rpt-trl {command}: error: {message}"


if __name__ == "__main__":
    main()
