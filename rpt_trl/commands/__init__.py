"""The `rpt-trl` subcommands: one module each, with `make_parser(subparsers)` and `main(args)`."""

import importlib
from types import ModuleType


# In the order `rpt-trl --help` lists them. Each module imports its heavy dependencies inside `main`, so that
# building the parser stays cheap.
COMMANDS = ("demo", "ablate", "prepare", "train", "evaluate")


def get_commands() -> list[ModuleType]:
    """The command modules, in the order of [`COMMANDS`]."""
    return [importlib.import_module(f".{name}", __name__) for name in COMMANDS]
