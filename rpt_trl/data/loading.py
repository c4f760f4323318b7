"""One document loader for `rpt-trl prepare`, `rpt-trl train` and evaluation: what each kind of input means.

A source is, in this order:

- a folder written by `save_to_disk`: a `DatasetDict` when it holds `dataset_dict.json`, a `Dataset` when it holds
  `state.json` (the files `datasets.load_from_disk` itself reads);
- a folder of files: every `.jsonl`, `.json`, `.parquet`, `.csv` and `.txt` file under it, sorted by path; other
  files are skipped, counted and logged;
- one or more files of those types;
- otherwise a Hub dataset id (refused at once in offline mode).

What a file holds: `.jsonl` one JSON object per line (blank lines skipped); `.json` a list of objects; `.parquet` and
`.csv` one row per document; a `.txt` file is **one document**, in a column `text` (a document has paragraphs, so
lines are not documents). Files are read here rather than by `datasets`' builders so that every error names its
file and line: invalid UTF-8, invalid JSON, a file that lacks a required column, and a column whose values have
different types in different rows (pyarrow's own message names none of them).
"""

import csv
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from ..hub import hub_is_offline


logger = logging.getLogger(__name__)

FILE_EXTENSIONS = (".jsonl", ".json", ".parquet", ".csv", ".txt")


class DatasetSourceNotFoundError(FileNotFoundError, ValueError):
    """The source is no local path, and no Hub dataset can be reached for it (offline mode)."""


def saved_dataset_kind(path: str | os.PathLike) -> str | None:
    """`"DatasetDict"` or `"Dataset"` when `path` is a folder written by `save_to_disk`, else `None`.

    Args:
        path: Any path.
    """
    folder = Path(path)
    if (folder / "dataset_dict.json").is_file():
        return "DatasetDict"
    if (folder / "state.json").is_file():
        return "Dataset"
    return None


HELD_OUT_SPLITS = ("eval", "test", "validation")  # evaluation's default split, in this order of preference


def choose_split(split_names: Sequence[str], split: str | None, source: str, *, held_out: bool = False) -> str:
    """The name of the split to read: `split` when given, else the only split, else the first of
    `HELD_OUT_SPLITS` present (`held_out=True`, evaluation) or `train` (training); an error lists the splits.

    Example:
        >>> choose_split(["train", "eval"], None, "data", held_out=True), choose_split(["train", "eval"], None, "data")
        ('eval', 'train')
    """
    names = list(split_names)
    if split is None:
        if len(names) == 1:
            return names[0]
        preferred = HELD_OUT_SPLITS if held_out else ("train",)
        split = next((name for name in preferred if name in names), None)
        if split is None:
            wanted = " / ".join(preferred)
            raise ValueError(f"{source} has no {wanted} split; its splits are {names}. Pass the split (--split).")
    if split not in names:
        raise ValueError(f"{source} has no split {split!r}; its splits are {names}. Pass the split.")
    return split


def load_documents(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    split: str | None = None,
    config: str | None = None,
    columns: Sequence[str] = (),
) -> datasets.Dataset:
    """Load a dataset from the Hub, a saved dataset folder, a folder of files, or jsonl / json / parquet / csv / txt
    files (see the module docstring for what each means).

    Args:
        source: A Hub dataset id (`KbsdJames/Omni-MATH`), a folder written by `save_to_disk`, a folder of files, or
            one or more file paths.
        split: Which split of a Hub dataset or saved `DatasetDict`; by default the only one, else `train`.
        config: Configuration name of a Hub dataset.
        columns: Columns every file (and the result) must have, e.g. the text columns; checked file by file.

    Returns:
        The rows as a `datasets.Dataset`.

    Raises:
        ValueError: With the file and line of bad UTF-8 or JSON, of a missing column or of a mixed-type column;
            for a missing split or column.
        DatasetSourceNotFoundError: (a `FileNotFoundError` and a `ValueError`) for a path that does not exist, when
            the Hub is offline.

    Example:
        >>> load_documents("corpus/", columns=["text"])  # doctest: +SKIP
    """
    return load_split(source, split=split, config=config, columns=columns)[0]


def load_split(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    split: str | None = None,
    config: str | None = None,
    columns: Sequence[str] = (),
    held_out: bool = False,
) -> tuple[datasets.Dataset, str | None]:
    """[`load_documents`], also naming the split it read (`None` for files and a saved `Dataset`, which have none).

    With `held_out=True` (evaluation) and no `split`, a `DatasetDict` gives its held-out split: the first of `eval`,
    `test`, `validation` it has (its only split when it has one), never `train` silently.
    """
    sources = [os.fspath(source)] if isinstance(source, str | os.PathLike) else [os.fspath(s) for s in source]
    if not sources:
        raise ValueError("No dataset given.")
    if len(sources) == 1 and os.path.isdir(sources[0]):
        folder = Path(sources[0])
        kind = saved_dataset_kind(folder)
        if kind == "DatasetDict":
            loaded = _load_from_disk(folder)
            name = choose_split(list(loaded), split, str(folder), held_out=held_out)
            return _check_columns(loaded[name], columns, str(folder)), name
        if kind is not None:
            return _check_columns(_load_from_disk(folder), columns, str(folder)), None
        files = _files_in(folder)
    elif all(os.path.isfile(s) for s in sources):
        files = [Path(s) for s in sources]
        unsupported = [str(f) for f in files if f.suffix.lower() not in FILE_EXTENSIONS]
        if unsupported:
            raise ValueError(f"Unsupported file type(s) {unsupported}; use {', '.join(FILE_EXTENSIONS)}.")
    elif len(sources) == 1 and not os.path.exists(sources[0]):
        dataset, name = _load_from_hub(sources[0], split, config, held_out=held_out)
        return _check_columns(dataset, columns, sources[0]), name
    else:
        missing = [s for s in sources if not os.path.isfile(s)]
        raise ValueError(f"Not files: {missing}. Pass one Hub id, one folder, or existing files.")
    return _rows_to_dataset(files, columns), None


def _load_from_disk(folder: Path) -> Any:
    """`datasets.load_from_disk`, with a saved dataset (or split) without rows refused in one line: `datasets` writes
    it, but reading it back fails with a bare IndexError (it finds no Arrow file to concatenate)."""
    try:
        return datasets.load_from_disk(str(folder))
    except IndexError:
        raise ValueError(
            f"{folder} is a saved dataset without rows (or with an empty split): nothing to read."
        ) from None


def _files_in(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    kept = [p for p in files if p.suffix.lower() in FILE_EXTENSIONS]
    skipped = [str(p.relative_to(folder)) for p in files if p.suffix.lower() not in FILE_EXTENSIONS]
    if skipped:
        logger.warning(
            "%s: skipped %d file(s) that are not %s: %s",
            folder,
            len(skipped),
            "/".join(FILE_EXTENSIONS),
            ", ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else ""),
        )
    if not kept:
        raise ValueError(f"{folder} holds no saved dataset and no {', '.join(FILE_EXTENSIONS)} files.")
    return kept


def _load_from_hub(
    repo_id: str, split: str | None, config: str | None, *, held_out: bool = False
) -> tuple[datasets.Dataset, str | None]:
    if hub_is_offline():
        raise DatasetSourceNotFoundError(
            f"{repo_id!r} is not a local path, and the Hub is offline (HF_HUB_OFFLINE=1): pass local files or a folder."
        )
    loaded = datasets.load_dataset(repo_id, name=config, split=split)
    if not isinstance(loaded, datasets.DatasetDict):
        return loaded, split
    name = choose_split(list(loaded), None, repo_id, held_out=held_out)
    return loaded[name], name


def _check_columns(dataset: Any, columns: Sequence[str], source: str) -> Any:
    missing = [column for column in columns if column not in (dataset.column_names or [])]
    if missing:
        raise ValueError(f"{source} has no column(s) {missing}; its columns are {dataset.column_names}.")
    return dataset


def _decode_lines(path: Path) -> list[str]:
    """The file's lines, or a ValueError naming the file and the line where it stops being UTF-8."""
    lines = []
    with open(path, "rb") as file:
        for number, raw in enumerate(file, 1):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"{path}, line {number}: invalid UTF-8 at byte {error.start} of the line ({error.reason})."
                ) from None
    return lines


def _read_file(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """The rows of one file, each with where it comes from (`"line 3"`, `"row 3"`, `"item 3"`)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return [(f"row {number}", row) for number, row in enumerate(pq.read_table(path).to_pylist(), 1)]
    lines = _decode_lines(path)
    if suffix == ".txt":
        return [("the whole file", {"text": "".join(lines)})]
    if suffix == ".csv":
        reader = csv.DictReader(lines)
        rows = []
        try:  # the header is line 1; a quoted field may span lines, so count the reader's own line numbers
            for row in reader:
                if None in row:  # DictReader files surplus fields under the key None
                    raise ValueError(f"{path}, line {reader.line_num}: more fields than the header has columns.")
                rows.append((f"line {reader.line_num}", row))
        except csv.Error as error:
            raise ValueError(f"{path}, line {reader.line_num}: not valid CSV ({error}).") from None
        return rows
    if suffix == ".jsonl":
        rows = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not valid JSON ({error.msg}).") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}.")
            rows.append((f"line {number}", row))
        return rows
    try:
        rows = json.loads("".join(lines))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}, line {error.lineno}: not valid JSON ({error.msg}).") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"{path}: expected a JSON list of objects (one per document).")
    return [(f"item {number}", row) for number, row in enumerate(rows, 1)]


def _rows_to_dataset(files: list[Path], columns: Sequence[str]) -> datasets.Dataset:
    rows, origins = [], []
    for path in files:
        file_rows = _read_file(path)
        for where, row in file_rows:
            missing = [column for column in columns if column not in row]
            if missing:  # checked per file: a file of other columns must not turn into "empty" documents
                raise ValueError(
                    f"{path}, {where}: no column(s) {missing} (it has {sorted(row)}); every file must have them."
                )
        rows.extend(row for _, row in file_rows)
        origins.extend(f"{path}, {where}" for where, _ in file_rows)
    if not rows:
        raise ValueError(f"No documents in {[str(f) for f in files]}.")
    names = list(dict.fromkeys(name for row in rows for name in row))  # every file's columns, in first-seen order
    table = {}
    for name in names:
        values = [row.get(name) for row in rows]
        _check_one_type(name, values, origins, text=name in columns)
        table[name] = values
    return datasets.Dataset.from_dict(table)


def _check_one_type(name: str, values: list[Any], origins: list[str], *, text: bool) -> None:
    """Raise, naming file, line and column, where a column's values stop having one Arrow type."""
    import pyarrow as pa

    if text:
        for value, origin in zip(values, origins, strict=True):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{origin}: column {name!r} must hold text, got {type(value).__name__} {value!r}.")
        return
    try:
        pa.array(values)
        return
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        pass
    # The shortest failing prefix ends at the first row whose type disagrees with the rows before it.
    low, high = 1, len(values)
    while low < high:
        middle = (low + high) // 2
        try:
            pa.array(values[:middle])
            low = middle + 1
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            high = middle
    culprit = low - 1
    first = next(i for i, value in enumerate(values) if value is not None)
    raise ValueError(
        f"{origins[culprit]}: column {name!r} holds {type(values[culprit]).__name__} {values[culprit]!r}, but "
        f"{origins[first]} holds {type(values[first]).__name__} {values[first]!r}; a column must have one type in "
        "every file and row. Fix the data, or drop that column."
    )
