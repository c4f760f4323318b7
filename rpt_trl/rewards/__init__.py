"""Every reward of RPT, each with TRL's reward signature (`fn(completions, <columns>, **kwargs) -> list[float]`), so
that it also works in a plain `GRPOTrainer`.

- [`prefix_match`]: the paper's verifiable reward (prefix match) and the first-token variant (Section 3.2);
- [`model_rewards`]: rewards scored by a model's next-token log-probabilities (dense, conditional dense,
  information gain) and [`reference`], the EMA reference the information gain is measured against;
- [`thought_budget`]: a wrapper that shapes any reward by the length of the thought.
"""

from .model_rewards import (
    MODEL_REWARDS,
    ConditionalDenseReward,
    DenseReward,
    InformationGainReward,
    ModelReward,
    RewardBatch,
)
from .prefix_match import (
    REWARD_FUNCTIONS,
    SCORERS,
    first_token_reward,
    prefix_match_reward,
    score_completions,
    score_first_token,
    score_prefix_match,
    thought_lengths,
    thought_token_counts,
)
from .reference import ReferenceEMA, ReferenceEMACallback
from .thought_budget import ThoughtBudgetReward, with_thought_budget


__all__ = [
    "MODEL_REWARDS",
    "REWARD_FUNCTIONS",
    "SCORERS",
    "ConditionalDenseReward",
    "DenseReward",
    "InformationGainReward",
    "ModelReward",
    "ReferenceEMA",
    "ReferenceEMACallback",
    "RewardBatch",
    "ThoughtBudgetReward",
    "first_token_reward",
    "prefix_match_reward",
    "score_completions",
    "score_first_token",
    "score_prefix_match",
    "thought_lengths",
    "thought_token_counts",
    "with_thought_budget",
]
