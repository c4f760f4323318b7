"""Flag conventions shared by the commands, the evaluation entry points and the benchmarks."""

import argparse
import warnings
from collections.abc import Sequence
from typing import Any


class DeprecatedFlag(argparse.Action):
    """An old flag that still works: it warns, then stores its value where its replacement would.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> _ = parser.add_argument("--output_dir", "--output-dir")
        >>> _ = parser.add_argument("--workdir", dest="output_dir", action=DeprecatedFlag, replacement="--output_dir")
    """

    def __init__(self, option_strings: Sequence[str], dest: str, replacement: str, **kwargs: Any):
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)
        self.replacement = replacement

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string=None
    ):
        # FutureWarning, not DeprecationWarning: Python shows it to the user of a command by default.
        warnings.warn(f"{option_string} is deprecated; use {self.replacement}.", FutureWarning, stacklevel=2)
        setattr(namespace, self.dest, values)
