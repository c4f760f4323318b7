"""Writes that a kill cannot leave half done, and the clean-up of what a killed run left behind.

A file or folder is written under a temporary name that ends in the writer's process id, then renamed into place
(a rename within one folder is atomic). A kill leaves at most that temporary; the next run removes the temporaries
of processes that no longer run, and never those of a run still writing beside it.
"""

import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


logger = logging.getLogger(__name__)


def process_is_running(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def temporary_name(path: str | os.PathLike, tag: str) -> Path:
    """`<folder>/.<name>.<tag>-<pid>`: the temporary of `path` owned by this process."""
    path = Path(path)
    return path.parent / f".{path.name}.{tag}-{os.getpid()}"


def stale_temporaries(path: str | os.PathLike, tag: str) -> Iterator[Path]:
    """The temporaries of `path` (see [`temporary_name`]) whose process no longer runs."""
    prefix = f".{Path(path).name}.{tag}-"
    return (
        candidate for candidate in stale_temporaries_in(Path(path).parent, tag) if candidate.name.startswith(prefix)
    )


def stale_temporaries_in(folder: str | os.PathLike, tag: str) -> Iterator[Path]:
    """Every temporary `.<name>.<tag>-<pid>` in `folder` whose process no longer runs."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for candidate in folder.iterdir():
        name, _, pid = candidate.name.rpartition(f".{tag}-")
        if name.startswith(".") and pid.isdigit() and not process_is_running(int(pid)):
            yield candidate


def remove(path: Path) -> None:
    """Remove a file or a folder tree, whichever `path` is."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def write_file_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write` on a temporary file and rename it to `path`: `path` is the old file or the new one, whole.

    Args:
        path: The file to (re)place.
        write: Writes the content into the open binary file it is given.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_temporaries(path, "tmp"):
        logger.info("Removing %s, left by an interrupted run.", stale.name)
        remove(stale)
    temporary = temporary_name(path, "tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
