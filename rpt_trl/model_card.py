"""What the RPT model card reports besides the config: evaluation results (a table and `model-index` metadata) and
the training curves (a table and a PNG) taken from `trainer.state.log_history`.

Evaluation results follow the project's schema, one object per evaluation run:
`{"model", "dataset", "mode": "standard" | "reasoning" | "multiple_choice", "overall": {"accuracy", "n"},
"splits": {"easy": {...}, "medium": {...}, "hard": {...}}, ...}` with `accuracy` a fraction in [0, 1].
"""

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

from huggingface_hub import EvalResult

from .data import DIFFICULTY_THRESHOLDS


logger = logging.getLogger(__name__)

SPLITS = tuple(DIFFICULTY_THRESHOLDS)  # the paper's nested easy / medium / hard, in the dataset builder's order
MODES = ("standard", "reasoning", "multiple_choice")
CURVE_COLUMNS = ("reward", "rpt/next_token_accuracy", "rpt/answer_rate", "rpt/reasoning_tokens")
TRAINING_CURVES_PNG = "training_curves.png"


def check_eval_results(eval_results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check that each evaluation result has the schema's keys; returns them as a list.

    Raises:
        ValueError: Naming the result and the key that is missing or malformed.
    """
    if isinstance(eval_results, dict):
        eval_results = [eval_results]
    checked = []
    for index, result in enumerate(eval_results):
        where = f"eval_results[{index}]"
        if not isinstance(result, dict):
            raise ValueError(f"{where} must be a dict in the evaluation results schema, got {type(result).__name__}.")
        missing = [key for key in ("dataset", "mode", "overall") if key not in result]
        if missing:
            raise ValueError(
                f"{where} lacks {missing}; an evaluation result is {{'model', 'dataset', 'mode', 'overall': "
                "{'accuracy', 'n'}, 'splits': {...}}, as written by `rpt-trl evaluate`."
            )
        if result["mode"] not in MODES:
            raise ValueError(f"{where}['mode'] must be one of {list(MODES)}, got {result['mode']!r}.")
        for name, group in _groups(result):
            accuracy = group.get("accuracy") if isinstance(group, dict) else None
            if accuracy is not None and not 0.0 <= accuracy <= 1.0:
                raise ValueError(f"{where}: the {name} accuracy must be a fraction in [0, 1], got {accuracy}.")
        checked.append(result)
    return checked


def eval_table_rows(eval_results: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """One row per evaluation run: dataset, mode and `"45.11 (n=200)"`-style cells for overall and each split."""
    rows = []
    for result in eval_results:
        splits = result.get("splits") or {}
        row = {"model": str(result.get("model", "")), "dataset": str(result["dataset"]), "mode": result["mode"]}
        row["overall"] = _cell(result["overall"])
        row.update({split: _cell(splits.get(split)) for split in SPLITS})
        rows.append(row)
    return rows


def is_this_model(result: dict[str, Any], names: Sequence[str | None]) -> bool:
    """Whether an evaluation result is about the card's model: its `model` is absent, one of `names`, or a local
    path ending in one of them. Other results (a base model, say) are comparisons: shown, not claimed."""
    model = result.get("model")
    names = [name for name in names if name]
    return not model or model in names or os.path.basename(os.path.normpath(str(model))) in names


def model_index_results(eval_results: Sequence[dict[str, Any]], names: Sequence[str | None] = ()) -> list[EvalResult]:
    """`model-index` entries for the card metadata: one accuracy per run and group (overall, easy, medium, hard),
    for the runs that evaluated this model (see [`is_this_model`]; all runs when `names` is empty)."""
    entries = []
    for result in eval_results:
        if names and not is_this_model(result, names):
            continue
        task = "multiple-choice" if result["mode"] == "multiple_choice" else "next-token-prediction"
        for name, group in _groups(result):
            if not isinstance(group, dict) or group.get("accuracy") is None or not group.get("n"):
                continue
            entries.append(
                EvalResult(
                    task_type=task,
                    task_name="Multiple choice" if task == "multiple-choice" else "Next-token prediction",
                    dataset_type=str(result["dataset"]),
                    dataset_name=str(result["dataset"]),
                    metric_type="accuracy",
                    metric_name=f"{name} accuracy ({result['mode']})",
                    metric_value=float(group["accuracy"]),
                )
            )
    return entries


def training_curve_rows(log_history: Sequence[dict[str, Any]], max_rows: int = 20) -> list[dict[str, Any]]:
    """The logged reward metrics per step, thinned evenly to at most `max_rows` rows (always keeping the last)."""
    logged = [entry for entry in log_history if "reward" in entry and "step" in entry]
    if len(logged) > max_rows:
        stride = math.ceil(len(logged) / max_rows)
        logged = logged[::stride][: max_rows - 1] + [logged[-1]]
    rows = []
    for entry in logged:
        row = {"step": entry["step"]}
        row.update({column: _fmt(entry[column]) for column in CURVE_COLUMNS if column in entry})
        rows.append(row)
    return rows


def plot_training_curves(log_history: Sequence[dict[str, Any]], path: str) -> str | None:
    """Plot reward and next-token accuracy per step to `path` (PNG). Returns the path, or `None` with no data."""
    logged = [entry for entry in log_history if "reward" in entry and "step" in entry]
    if not logged:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    steps = [entry["step"] for entry in logged]
    for column, label in (("reward", "reward"), ("rpt/answer_rate", "answer rate")):
        if all(column in entry for entry in logged):
            axis.plot(steps, [entry[column] for entry in logged], label=label, marker="." if len(steps) < 50 else None)
    axis.set_xlabel("step")
    axis.set_ylim(-0.02, 1.02)
    axis.set_title("RPT training")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _groups(result: dict[str, Any]) -> list[tuple[str, Any]]:
    splits = result.get("splits") or {}
    return [("overall", result["overall"])] + [(split, splits[split]) for split in SPLITS if split in splits]


def _cell(group: Any) -> str:
    if not isinstance(group, dict) or group.get("accuracy") is None or not group.get("n"):
        return "–"
    return f"{100 * group['accuracy']:.2f} (n={group['n']})"


def _fmt(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value
