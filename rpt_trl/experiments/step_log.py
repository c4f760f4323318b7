"""One row of chosen training metrics per logged step: the step log of the demo and the ablation."""

from collections.abc import Callable, Mapping
from typing import Any

from transformers import TrainerCallback


class TrainingStepLog(TrainerCallback):
    """Keep a row of chosen metrics for every logged training step (a log with a `reward`), in `rows`.

    Args:
        fields: `{name: metric key}`, or `{name: function of the logged dict}` for a derived value; an absent key
            gives `None`.
        on_row: Called with each new row and the trainer state (e.g. to print progress).

    Example:
        >>> log = TrainingStepLog({"reward": "reward", "signal": lambda logs: 1 - logs["frac_reward_zero_std"]})
    """

    def __init__(
        self,
        fields: Mapping[str, str | Callable[[Mapping[str, Any]], Any]],
        on_row: Callable[[dict[str, Any], Any], None] | None = None,
    ):
        self.fields, self.on_row = dict(fields), on_row
        self.rows: list[dict[str, Any]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "reward" not in logs:
            return
        row = {"step": state.global_step}
        for name, field in self.fields.items():
            row[name] = field(logs) if callable(field) else logs.get(field)
        self.rows.append(row)
        if self.on_row is not None:
            self.on_row(row, state)
