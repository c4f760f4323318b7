"""One measure of RPT's learning signal, logged every step, and a callback that warns when the signal fades.

A group of rollouts teaches GRPO something only when its rewards differ: a group whose rollouts all earn the same
reward has zero advantage everywhere. The **signal share** is the share of groups whose rewards differ
([`groups_with_signal`] is its one definition), measured

- on the groups generated (`rpt/signal_share/generated`: every round of dynamic sampling, dropped groups included),
- on the groups trained (`rpt/signal_share/trained`: the batch the optimizer step uses; with dynamic sampling, the
  kept groups and the uniform groups that pad the batch when the refill cap is reached).

Beside it, `rpt/distinct_answers` is the mean number of distinct boxed answers per group (a group that always boxes
the same answer is collapsed, whatever its reward). The rest of the picture is logged already and not duplicated:
the policy's token entropy (TRL's `entropy`), the answer rate (`rpt/answer_rate`) and the thought length
(`rpt/reasoning_tokens`), both from the RPT rewards.

All are computed on the rewards and answers of all processes (TRL gathers the rewards; this module gathers the
answers), so a group split across processes is measured whole. TRL's own `frac_reward_zero_std` is not used: with
`scale_rewards="batch"` it tests the batch's standard deviation, not each group's.
"""

import logging
from collections.abc import Sequence
from typing import Any

import torch
from accelerate.utils import gather_object
from transformers import TrainerCallback

from ..parsing import extract_prediction
from .dynamic_sampling import uniform_groups


logger = logging.getLogger(__name__)

SIGNAL_GENERATED = "rpt/signal_share/generated"
SIGNAL_TRAINED = "rpt/signal_share/trained"
DISTINCT_ANSWERS = "rpt/distinct_answers"
# The learning-signal picture of one step, as `{name: logged key}` for `TrainingStepLog` (the demo and the ablation).
SIGNAL_LOG_FIELDS = {
    "signal_share": SIGNAL_GENERATED,
    "trained_signal_share": SIGNAL_TRAINED,
    "distinct_answers": DISTINCT_ANSWERS,
    "entropy": "entropy",
    "answer_rate": "rpt/answer_rate",
    "thought_tokens": "rpt/reasoning_tokens",
}


def groups_with_signal(
    rewards_per_func: torch.Tensor, reward_weights: torch.Tensor, num_generations: int
) -> torch.Tensor:
    """Which groups of rollouts have differing rewards (the one definition of a learning signal in this project).

    Args:
        rewards_per_func: `(num_rollouts, num_reward_funcs)` rewards of all processes, NaN where a function did not
            score a rollout; groups are `num_generations` consecutive rows.
        reward_weights: `(num_reward_funcs,)` weights, as GRPO combines the functions.
        num_generations: Rollouts per group.

    Returns:
        A bool tensor, one entry per group.

    Example:
        >>> groups_with_signal(torch.tensor([[1.0], [1.0], [0.0], [1.0]]), torch.tensor([1.0]), 2).tolist()
        [False, True]
    """
    return ~uniform_groups(rewards_per_func, reward_weights, num_generations)


def signal_share(has_signal: torch.Tensor) -> float:
    """The share of groups with a signal, from [`groups_with_signal`]'s flags (NaN for no group)."""
    return has_signal.float().mean().item() if has_signal.numel() else float("nan")


def distinct_answers_per_group(predictions: Sequence[str | None], num_generations: int) -> float:
    """Mean number of distinct answers per group; a rollout with no answer (`None`) adds none.

    Example:
        >>> distinct_answers_per_group([" a", " a", " b", None], 2)
        1.0
    """
    if len(predictions) % num_generations:
        raise ValueError(f"{len(predictions)} predictions do not make whole groups of {num_generations}.")
    groups = [predictions[i : i + num_generations] for i in range(0, len(predictions), num_generations)]
    return sum(len({p for p in group if p is not None}) for group in groups) / len(groups)


class LearningSignalMixin:
    """Logs the signal share (generated and trained) and the distinct answers per group of a `GRPOTrainer`
    subclass. Place it before `DynamicSamplingMixin` in the bases: dynamic sampling reports the groups it trains on
    in `_trained_groups_with_signal`."""

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._generated_groups_with_signal, self._trained_groups_with_signal = [], None
        output = super()._generate_and_score_completions(inputs)
        if not self.model.training:  # evaluation trains nothing
            return output
        trained = self._trained_groups_with_signal
        if trained is None and len(self._generated_groups_with_signal) == 1:  # no selection: trained as generated
            trained = self._generated_groups_with_signal[0]
        if trained is not None:
            self._metrics["train"][SIGNAL_TRAINED].append(signal_share(trained))
        return output

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        # TRL has gathered the rewards of all processes, in process order: whole groups, even when split.
        has_signal = groups_with_signal(rewards_per_func, self.reward_weights, group_size)
        self._generated_groups_with_signal.append(has_signal)
        self._metrics[mode][SIGNAL_GENERATED].append(signal_share(has_signal))
        require_think_close = getattr(self.args, "require_think_close", True)
        local = [extract_prediction(c, require_think_close=require_think_close) for c in completions]
        self._metrics[mode][DISTINCT_ANSWERS].append(distinct_answers_per_group(gather_object(local), group_size))
        return rewards_per_func


class LearningSignalWarning(TrainerCallback):
    """Warn once when the generated groups' signal share stays below `threshold` for `patience` optimizer steps.

    A run whose groups all earn one reward trains nothing; this says so while the run is going, with what to try.
    Steps are counted from the logs: a log at step s below the threshold covers the steps since the previous log.

    Args:
        threshold: Warn when `rpt/signal_share/generated` is below this.
        patience: ... for this many consecutive optimizer steps.

    Example:
        >>> trainer.add_callback(LearningSignalWarning(threshold=0.1, patience=10))  # doctest: +SKIP
    """

    def __init__(self, threshold: float, patience: int):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"signal_warning_threshold must be in (0, 1], got {threshold}.")
        if patience < 1:
            raise ValueError(f"signal_warning_steps must be at least 1, got {patience}.")
        self.threshold, self.patience = threshold, patience
        self.steps_below = self.last_step = 0
        self.warned = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        share = (logs or {}).get(SIGNAL_GENERATED)
        if share is None or self.warned:
            return
        steps = state.global_step - self.last_step
        self.last_step = state.global_step
        self.steps_below = self.steps_below + steps if share < self.threshold else 0
        if self.steps_below >= self.patience:
            self.warned = True
            logger.warning(
                "Learning signal lost: fewer than %.0f%% of the generated groups had differing rewards for %d steps "
                "(%.0f%% at step %d), so most steps train nothing. Try: a higher temperature; a lower learning rate "
                "(or warmup); beta > 0 (a KL to the reference) or TRL's entropy controls (entropy_coef, "
                "use_adaptive_entropy); positions in the learnable band (band_sampling=True); the mixed objective "
                "(next_token_loss_coef > 0).",
                100 * self.threshold,
                self.steps_below,
                100 * share,
                state.global_step,
            )
