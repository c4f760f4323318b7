"""The one check of next-token example columns, run before any model loads (training, evaluation, ablation).

A reward reads `ground_truth` as text and `ground_truth_boundaries` as the byte offsets where its tokens end. A column
of another type fails only inside the first reward call, after the model loaded (`'>' not supported between 'str'
and 'int'`), and an empty boundary list scores 0 for every answer without a word. [`check_next_token_columns`] names
the column and the first bad row instead.
"""

from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

import datasets


RPT_COLUMNS = ("prompt", "ground_truth", "ground_truth_boundaries")
# Rows of an IterableDataset that are checked: it cannot be scanned whole without reading it all.
ITERABLE_ROWS_CHECKED = 64

_FIX = "Build the columns with `rpt_trl.build_next_token_dataset` or `rpt-trl prepare`."


def row_problem(row: Mapping[str, Any]) -> tuple[str, str] | None:
    """`(column, what is wrong)` for the first bad next-token column of one row, or `None` when it is usable.

    Example:
        >>> row_problem({"prompt": "p", "ground_truth": " cat", "ground_truth_boundaries": []})
        ('ground_truth_boundaries', 'is empty, so no answer can ever score')
        >>> row_problem({"prompt": "p", "ground_truth": 7, "ground_truth_boundaries": [1]})
        ('ground_truth', 'must be text, got int 7')
    """
    prompt = row.get("prompt")
    if not isinstance(prompt, str) and not (
        isinstance(prompt, list) and prompt and all(isinstance(m, Mapping) and "content" in m for m in prompt)
    ):
        return "prompt", f"must be text or a list of messages with 'content', got {_describe(prompt)}"
    truth = row.get("ground_truth")
    if not isinstance(truth, str):
        return "ground_truth", f"must be text, got {_describe(truth)}"
    boundaries = row.get("ground_truth_boundaries")
    if isinstance(boundaries, str | bytes | Mapping) or not isinstance(boundaries, Iterable):
        return "ground_truth_boundaries", f"must be a list of byte offsets (integers), got {_describe(boundaries)}"
    boundaries = list(boundaries)
    not_integers = [b for b in boundaries if isinstance(b, bool) or not isinstance(b, int)]
    if not_integers:
        return "ground_truth_boundaries", f"must hold byte offsets (integers), got {_describe(not_integers[0])}"
    if not boundaries:
        return "ground_truth_boundaries", "is empty, so no answer can ever score"
    return None


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def check_next_token_columns(dataset: Any, name: str = "dataset") -> None:
    """Refuse next-token examples that a reward cannot score: a missing column, a column of the wrong type, or an
    empty `ground_truth_boundaries`, with one line naming the dataset, the row and the column.

    A `datasets.Dataset` is checked whole, with Arrow (its column types, then the first bad row); an
    `IterableDataset`, its first `ITERABLE_ROWS_CHECKED` rows; a list of row dicts, every row.

    Args:
        dataset: The examples.
        name: How the message names them (`"train_dataset"`, `"--dataset"`).

    Raises:
        ValueError: For the first problem found.

    Example:
        >>> rows = [{"prompt": "p", "ground_truth": " a", "ground_truth_boundaries": [2]},
        ...         {"prompt": "p", "ground_truth": " b", "ground_truth_boundaries": []}]
        >>> check_next_token_columns(rows, "train_dataset")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: train_dataset, row 1: column 'ground_truth_boundaries' is empty, so no answer can ever score. ...
    """
    if isinstance(dataset, datasets.Dataset):
        columns = dataset.column_names
        _check_present(columns, name)
        index = _first_bad_row(dataset)
        rows = [] if index is None else [(index, dataset[index])]
    else:
        indexed = enumerate(islice(dataset, ITERABLE_ROWS_CHECKED) if _is_iterable_dataset(dataset) else dataset)
        rows = list(indexed)
        if not rows:
            return
        _check_present(list(rows[0][1]), name)
    for index, row in rows:
        problem = row_problem(row)
        if problem is not None:
            column, what = problem
            raise ValueError(f"{name}, row {index}: column {column!r} {what}. {_FIX}")


def _is_iterable_dataset(dataset: Any) -> bool:
    return isinstance(dataset, datasets.IterableDataset)


def _check_present(columns: list[str] | None, name: str) -> None:
    missing = [c for c in RPT_COLUMNS if c not in (columns or [])]
    if missing:
        raise ValueError(
            f"{name} lacks the column(s) {missing} that the RPT reward needs (it has {columns}). Build next-token "
            "examples with `rpt_trl.build_next_token_dataset(documents, tokenizer, text_column=...)`, or pass raw "
            "documents whose text column(s) are named in `RPTConfig.text_column`."
        )


def _first_bad_row(dataset: datasets.Dataset) -> int | None:
    """The index of the first row whose columns a reward cannot use, found with Arrow, or `None`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = dataset.select_columns(list(RPT_COLUMNS)).with_format("arrow")[:]
    candidates = []
    truth = table.column("ground_truth")
    if pa.types.is_string(truth.type) or pa.types.is_large_string(truth.type):
        candidates.append(_first_true(pc.is_null(truth)))
    else:
        candidates.append(0 if len(truth) else None)
    boundaries = table.column("ground_truth_boundaries")
    kind = boundaries.type
    is_list = pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    if is_list and (pa.types.is_integer(kind.value_type) or pa.types.is_null(kind.value_type)):
        candidates.append(_first_true(pc.equal(pc.fill_null(pc.list_value_length(boundaries), 0), 0)))
    else:  # strings, floats, or no list at all: every row is wrong; the first row with a value says how
        candidates.append(0 if len(boundaries) else None)
    prompt = table.column("prompt")
    if not (pa.types.is_string(prompt.type) or pa.types.is_large_string(prompt.type) or pa.types.is_list(prompt.type)):
        candidates.append(0 if len(prompt) else None)
    else:
        candidates.append(_first_true(pc.is_null(prompt)))
    found = [index for index in candidates if index is not None]
    return min(found) if found else None


def _first_true(mask: Any) -> int | None:
    import pyarrow.compute as pc

    index = pc.index(mask, True).as_py()
    return None if index < 0 else index
