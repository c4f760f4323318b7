r"""The evaluation results schema: validation, Markdown tables and the bar chart.

The one definition of a result, imported by evaluation (which writes results) and by the model card (which shows
them). Every evaluation run produces one JSON object (the model card takes a list of them):

```
{
  "model": str,                    # Hub id or local path of the evaluated model (optional: absent = this model)
  "dataset": str,                  # Hub id or local path of the evaluation data
  "split": str | None,             # the split of `dataset` that was scored (optional; None: data without splits)
  "mode": "standard" | "reasoning" | "multiple_choice",
  "overall": {"accuracy": float, "n": int, ...},
  "splits": {"easy": {"accuracy": float, "n": int, ...}, "medium": {...}, "hard": {...}},  # optional
  ...                              # extra keys allowed (settings, pass@k, categories, wall time)
}
```

- `accuracy` is a fraction in [0, 1]; `n` counts the scored items (positions or questions), not the samples.
- `splits` holds the paper's nested entropy splits (Table 1: Easy, Medium, Hard = entropy above 0.5, 1.0, 1.5) when
  the data has difficulty labels, and is `{}` otherwise. Multiple-choice runs put per-category accuracy under
  `"categories"`, with the same `{"accuracy", "n"}` entries.
- Reasoning runs with several samples per item add `"pass@k"` entries (`{"pass@1": ..., "pass@8": ...}`) to
  `overall` and to every split.
"""

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .plotting import pyplot


# The nested difficulty splits: a position belongs to each split whose threshold its proxy model's next-token entropy
# exceeds. Defined here, below the data builder that labels positions and beside the results grouped by them.
DIFFICULTY_THRESHOLDS = {"easy": 0.5, "medium": 1.0, "hard": 1.5}
SPLITS = tuple(DIFFICULTY_THRESHOLDS)  # the paper's nested easy / medium / hard, in the dataset builder's order
MODES = ("standard", "reasoning", "multiple_choice")
REQUIRED_KEYS = ("dataset", "mode", "overall")
_TYPES = {"model": str, "dataset": str, "mode": str, "overall": Mapping, "splits": Mapping, "categories": Mapping}


def validate_result(result: Mapping[str, Any], where: str = "An evaluation result") -> None:
    """Raise `ValueError` naming the first way `result` departs from the schema above.

    Args:
        result: One evaluation result.
        where: How the error names the result (e.g. `"eval_results[2]"`).

    Example:
        >>> validate_result({"model": "m", "dataset": "d", "mode": "standard", "overall": {"accuracy": 0.5, "n": 2},
        ...                  "splits": {}})
    """
    if not isinstance(result, Mapping):
        raise ValueError(f"{where} must be a dict in the evaluation results schema, got {type(result).__name__}.")
    missing = [key for key in REQUIRED_KEYS if key not in result]
    if missing:
        raise ValueError(
            f"{where} lacks {missing}; an evaluation result is {{'model', 'dataset', 'mode', 'overall': "
            "{'accuracy', 'n'}, 'splits': {...}}, as written by `rpt-trl evaluate`."
        )
    for key, kind in _TYPES.items():
        if key in result and not isinstance(result[key], kind):
            raise ValueError(f"{where} needs {key!r} of type {kind.__name__}, got {result[key]!r}.")
    if result.get("split") is not None and not isinstance(result["split"], str):
        raise ValueError(f"{where} needs 'split' to be a split name or null, got {result['split']!r}.")
    if result["mode"] not in MODES:
        raise ValueError(f"{where}: mode must be one of {MODES}, got {result['mode']!r}.")
    groups = {"overall": result["overall"], **{f"splits.{k}": v for k, v in (result.get("splits") or {}).items()}}
    groups.update({f"categories.{k}": v for k, v in (result.get("categories") or {}).items()})
    for name, group in groups.items():
        if not isinstance(group, Mapping):
            raise ValueError(f"{where}: {name} must be a dict {{'accuracy', 'n'}}, got {group!r}.")
        accuracy, n = group.get("accuracy"), group.get("n")
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{where}: {name}.n must be a non-negative integer, got {n!r}.")
        if n and not (isinstance(accuracy, int | float) and 0.0 <= accuracy <= 1.0):
            raise ValueError(f"{where}: {name}.accuracy must be a fraction in [0, 1], got {accuracy!r}.")


def result_groups(result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """`("overall", group)`, then `("easy", group)`, ... for the paper's splits that the result has."""
    splits = result.get("splits") or {}
    return [("overall", result["overall"])] + [(split, splits[split]) for split in SPLITS if split in splits]


def load_results(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Read result files (each one object, or a list of objects) and validate every result."""
    results = []
    for path in paths:
        loaded = json.loads(Path(path).read_text())
        for index, result in enumerate(loaded if isinstance(loaded, list) else [loaded]):
            validate_result(result, where=f"{path}, result {index}")
            results.append(result)
    return results


def save_result(result: Mapping[str, Any], path: str | Path) -> None:
    """Validate `result` and write it as indented JSON."""
    validate_result(result)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


def accuracy_cell(group: Mapping[str, Any] | None, *, with_n: bool = False) -> str:
    """The one cell format of every results table: accuracy in percent, `"–"` when nothing was scored.

    Example:
        >>> accuracy_cell({"accuracy": 0.4511, "n": 600}), accuracy_cell({"accuracy": 0.4511, "n": 600}, with_n=True)
        ('45.11', '45.11 (n=600)')
    """
    if not group or not group.get("n") or group.get("accuracy") is None:
        return "–"
    return f"{100 * group['accuracy']:.2f}" + (f" (n={group['n']})" if with_n else "")


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def model_label(result: Mapping[str, Any]) -> str:
    """The name a table shows for a result: its `label` when set, else the last part of the model path."""
    return result.get("label") or str(result["model"]).rstrip("/").split("/")[-1]


def next_token_table(results: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table laid out like the paper's Table 1: one row per model and mode, accuracy (%) per split.

    Example:
        >>> print(next_token_table([{"model": "org/base", "dataset": "d", "mode": "standard",
        ...     "overall": {"accuracy": 0.25, "n": 8}, "splits": {"easy": {"accuracy": 0.5, "n": 4}}}]))
        | model | mode | easy | medium | hard | all | n |
        | --- | --- | --- | --- | --- | --- | --- |
        | base | standard | 50.00 | – | – | 25.00 | 8 |
    """
    rows = []
    for result in results:
        if result["mode"] == "multiple_choice":
            continue
        splits = result.get("splits") or {}
        cells = [model_label(result), result["mode"], *(accuracy_cell(splits.get(s)) for s in SPLITS)]
        rows.append([*cells, accuracy_cell(result["overall"]), str(result["overall"]["n"])])
    return _markdown_table(["model", "mode", *SPLITS, "all", "n"], rows)


def card_table(results: Sequence[Mapping[str, Any]]) -> str:
    """The model card's table: one row per run, with its dataset, and `"45.11 (n=600)"` cells per group.

    Example:
        >>> print(card_table([{"model": "org/rpt", "dataset": "d", "mode": "standard",
        ...     "overall": {"accuracy": 0.25, "n": 8}}]))
        | model | dataset | mode | overall | easy | medium | hard |
        | --- | --- | --- | --- | --- | --- | --- |
        | org/rpt | d | standard | 25.00 (n=8) | – | – | – |
    """
    rows = []
    for result in results:
        splits = result.get("splits") or {}
        cells = [str(result.get("model", "")), str(result["dataset"]), result["mode"]]
        cells += [accuracy_cell(group, with_n=True) for group in (result["overall"], *map(splits.get, SPLITS))]
        rows.append(cells)
    return _markdown_table(["model", "dataset", "mode", "overall", *SPLITS], rows)


def zero_shot_table(results: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of multiple-choice accuracy (%): one row per model, one column per benchmark."""
    chosen = [r for r in results if r["mode"] == "multiple_choice"]
    benchmarks = list(dict.fromkeys(str(r.get("benchmark") or r["dataset"]) for r in chosen))
    rows: dict[str, dict[str, str]] = {}
    for result in chosen:
        benchmark = str(result.get("benchmark") or result["dataset"])
        rows.setdefault(model_label(result), {})[benchmark] = accuracy_cell(result["overall"], with_n=True)
    table = [[model, *(cells.get(b, "–") for b in benchmarks)] for model, cells in rows.items()]
    return _markdown_table(["model", *benchmarks], table)


def scored_on(results: Sequence[Mapping[str, Any]]) -> str:
    """What the results scored, for a table's caption: each distinct dataset with the split it read.

    Example:
        >>> scored_on([{"dataset": "rpt-data", "split": "eval"}, {"dataset": "rpt-data", "split": "eval"}])
        'rpt-data (split eval)'
    """
    names = []
    for result in results:
        split = result.get("split")
        name = f"{result['dataset']} (split {split})" if split else str(result["dataset"])
        if name not in names:
            names.append(name)
    return ", ".join(names)


def results_markdown(results: Sequence[Mapping[str, Any]]) -> str:
    """The Markdown a report or model card shows for a list of results: the Table-1 table and/or the zero-shot one."""
    parts = []
    if any(r["mode"] != "multiple_choice" for r in results):
        scored = scored_on([r for r in results if r["mode"] != "multiple_choice"])
        parts.append(f"Next-token accuracy (%) on {scored}:\n\n" + next_token_table(results))
    if any(r["mode"] == "multiple_choice" for r in results):
        scored = scored_on([r for r in results if r["mode"] == "multiple_choice"])
        parts.append(f"Zero-shot multiple choice, accuracy (%) on {scored}:\n\n" + zero_shot_table(results))
    return "\n\n".join(parts) + "\n"


def plot_results(results: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Save a grouped bar chart (PNG) of accuracy by split (or by category) for each result."""
    plt = pyplot()

    groups: list[str] = []
    for result in results:
        keys = list(result.get("splits") or {}) or list(result.get("categories") or {})
        groups += [k for k in keys if k not in groups]
    groups.append("all")
    width = 0.8 / max(len(results), 1)
    figure, axis = plt.subplots(figsize=(max(5.0, 1.2 * len(groups) * max(len(results), 1) ** 0.5), 3.6))
    for index, result in enumerate(results):
        table = {**(result.get("splits") or {}), **(result.get("categories") or {}), "all": result["overall"]}
        heights = [100 * table[g]["accuracy"] if g in table and table[g].get("n") else math.nan for g in groups]
        xs = [g + (index - (len(results) - 1) / 2) * width for g in range(len(groups))]
        axis.bar(xs, heights, width=width, label=f"{model_label(result)} ({result['mode']})")
    axis.set_xticks(range(len(groups)), groups, rotation=30 if len(groups) > 6 else 0)
    axis.set(ylabel="accuracy (%)", title="Accuracy by split")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
