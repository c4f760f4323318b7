"""One check for every path a command writes, run before any work, and one lock held while it writes.

- [`check_output_path`]: the output is not an input and does not contain one (nor the cache folder), it can be
  written, and an existing output may be replaced only when `replaceable` says so (a results file only replaces
  an earlier results file: [`is_results_file`]). It creates nothing.
- [`output_lock`]: a second writer of the same output fails at once, with one line naming it, instead of mixing
  its files with the first one's. The lock is a hidden file beside the output, `.<name>.lock`, removed on release.

Example, as a command that writes a results file uses them:

    >>> import json, os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> dataset, results = os.path.join(folder, "data.jsonl"), os.path.join(folder, "results.json")
    >>> _ = open(dataset, "w").write("{}")
    >>> check_output_path(dataset, [dataset], kind="file", flag="--output")
    Traceback (most recent call last):
    ...
    ValueError: --output ... is the input ...data.jsonl; choose an output outside the inputs.
    >>> check_output_path(results, [dataset], kind="file", flag="--output", replaceable=is_results_file)
    >>> with output_lock(results, flag="--output"):
    ...     _ = open(results, "w").write("{}")
    >>> sorted(os.listdir(folder))
    ['data.jsonl', 'results.json']
"""

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path


KINDS = ("file", "folder")


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _contains(folder: Path, path: Path) -> bool:
    return folder == path or folder in path.parents


def check_output_path(
    output: str | os.PathLike,
    inputs: Iterable[str | os.PathLike | None] = (),
    *,
    kind: str = "file",
    flag: str = "--output",
    replaceable: Callable[[Path], bool] | None = None,
) -> None:
    """Refuse, before any work, an output that would destroy an input, cannot be written, or replaces what it must not.

    Args:
        output: The file or folder the command will write.
        inputs: Paths the command reads (datasets, models, the cache folder); `None` entries and names that are not
            local paths (Hub ids) are skipped.
        kind: `"file"` or `"folder"`: what `output` will be.
        flag: How the message names the output (`"--output"`, `"--output_dir"`).
        replaceable: Called with an existing output; `False` refuses to replace it. `None` lets the caller decide
            (e.g. a folder that is resumed into).

    Raises:
        ValueError: One line naming the flag, the output and the input or the reason.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    target = _resolved(output)
    for source in inputs:
        if source is None or not os.path.exists(os.path.expanduser(os.fspath(source))):
            continue
        source_path = _resolved(source)
        if source_path == target:
            raise ValueError(f"{flag} {output} is the input {source}; choose an output outside the inputs.")
        if _contains(target, source_path):
            raise ValueError(
                f"{flag} {output} contains the input {source}, which writing it would destroy; choose an output "
                "outside the inputs."
            )
    if target.exists():
        if kind == "file" and target.is_dir():
            raise ValueError(f"{flag} {output} is a folder; give a file name.")
        if kind == "folder" and not target.is_dir():
            raise ValueError(f"{flag} {output} is a file; give a folder.")
        if replaceable is not None and not replaceable(target):
            raise ValueError(f"{flag} {output} exists and may not be replaced by this output; choose another name.")
    _check_writable(target, kind, output, flag)


def _check_writable(target: Path, kind: str, output: str | os.PathLike, flag: str) -> None:
    """The output (if it exists) and the folder it is written in must be writable; nothing is created to find out."""
    existing = target
    while not existing.exists():
        existing = existing.parent
    if existing != target and not existing.is_dir():
        raise ValueError(f"{flag} {output} cannot be created: {existing} is a file, not a folder.")
    folder = target.parent if existing == target else existing
    if existing == target and kind == "folder" and target.is_dir():
        folder = target
    if not os.access(folder, os.W_OK | os.X_OK) or (existing == target and not os.access(target, os.W_OK)):
        raise ValueError(f"{flag} {output} is not writable (no write permission on {folder}); choose another place.")


def is_results_file(path: str | os.PathLike) -> bool:
    """Whether `path` is an earlier results file: JSON holding one result, or a list of them, in the results schema
    (`rpt_trl.results.validate_result`). Only such a file may be replaced by a new result."""
    from .results import validate_result

    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
        for result in loaded if isinstance(loaded, list) else [loaded]:
            validate_result(result)
    except (OSError, UnicodeDecodeError, ValueError):  # json.JSONDecodeError is a ValueError
        return False
    return bool(loaded) if isinstance(loaded, list) else True


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of `output`: `.<name>.lock` beside it."""
    target = _resolved(output)
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def output_lock(output: str | os.PathLike, *, flag: str = "--output") -> Iterator[None]:
    """Hold the lock of `output` while the block writes it; a second holder fails at once.

    Args:
        output: The file or folder about to be written.
        flag: How the message names it.

    Raises:
        ValueError: `"<flag> <output> is being written by another process ..."` when the lock is held.
    """
    import fcntl

    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ValueError(
                f"{flag} {output} is being written by another process (it holds {path.name}); wait for it to "
                "finish, or choose another output."
            ) from None
        # The holder before us removes the lock file before it unlocks: a file we locked after that is stale.
        if path.exists() and os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        handle.close()  # closing releases the lock
