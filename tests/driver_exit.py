"""How the multi-process test drivers end, once every rank has written its record."""

import os
import sys


def exit_without_teardown() -> None:
    """Leave without the interpreter's teardown: there, the background threads of gloo and DeepSpeed abort a rank now
    and then on a loaded machine ("terminate called without an active exception", SIGABRT), after the run and its
    record are complete, which fails the test on the exit code alone."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
