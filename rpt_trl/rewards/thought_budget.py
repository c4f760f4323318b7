r"""A reasoning-length budget: reward shaping that lowers the reward of answers whose thought is too long.

In the spirit of RMT (Reinforcement Mid-Training, arXiv 2509.24375, Section 3.1), which caps the reasoning of
next-token RL with a token budget and rewards staying within it. RMT's budget decays with the training step and its
length reward is a separate term; here the budget is fixed (`RPTConfig.thought_budget`) and the shaping multiplies
the task reward, so that it applies unchanged to every reward variant:

    shaped = reward * f(n)   if reward > 0,   else reward   (n: thought length in tokens, B: the budget)

    step:    f(n) = 1 if n <= B, else 0
    linear:  f(n) = 1 if n <= B, else max(0, 1 - (n - B) / W)     (W: `thought_budget_width`, default B)

For the 0/1 rewards (`prefix_match`, `first_token`) a positive reward is a correct answer, so exactly the correct
answers over budget lose reward. A reward is never raised: zero and negative rewards (a wrong answer, a negative
information gain) are left as they are. The thought is the text before the first `</think>` (`split_thought`), counted
in tokens of the policy's tokenizer from the completion ids TRL passes to every reward (`thought_token_counts`).
"""

from collections.abc import Callable, Sequence
from typing import Any

import torch
from trl.trainer.utils import get_callable_name, is_async_callable

from .prefix_match import thought_token_counts


PENALTIES = ("linear", "step")


def thought_budget_factors(
    thought_tokens: Sequence[int], budget: int, penalty: str = "linear", width: int | None = None
) -> list[float]:
    """The factor `f(n)` each reward is multiplied by (see the module docstring).

    Args:
        thought_tokens: Thought length of each completion, in tokens.
        budget: Thoughts of at most this many tokens keep their full reward.
        penalty: `"linear"` (the factor falls by `1 / width` per token over the budget, to 0) or `"step"` (0 as soon
            as the thought is over budget).
        width: Linear penalty only: how many tokens over the budget bring the factor to 0 (default: `budget`).

    Example:
        >>> thought_budget_factors([3, 4, 5, 6, 8], budget=4, penalty="linear")
        [1.0, 1.0, 0.75, 0.5, 0.0]
        >>> thought_budget_factors([4, 5], budget=4, penalty="step")
        [1.0, 0.0]
    """
    check_thought_budget(budget, penalty, width)
    width = budget if width is None else width
    if penalty == "step":
        return [1.0 if n <= budget else 0.0 for n in thought_tokens]
    return [1.0 if n <= budget else max(0.0, 1.0 - (n - budget) / width) for n in thought_tokens]


def check_thought_budget(budget: int, penalty: str, width: int | None) -> None:
    """Raise `ValueError` saying how to fix a budget, penalty or width that cannot shape a reward."""
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(
            f"thought_budget must be a whole number of tokens >= 1 (or None for no budget), got {budget!r}."
        )
    if penalty not in PENALTIES:
        raise ValueError(f"thought_budget_penalty must be one of {PENALTIES}, got {penalty!r}.")
    if width is not None and penalty != "linear":
        raise ValueError(
            f"thought_budget_width={width} only shapes the linear penalty; leave it unset with penalty={penalty!r}."
        )
    if width is not None and (not isinstance(width, int) or width < 1):
        raise ValueError(f"thought_budget_width must be a whole number of tokens >= 1, got {width!r}.")


class ThoughtBudgetReward:
    """A TRL reward function wrapped with the reasoning-length budget (see the module docstring).

    It is called like the reward it wraps (`fn(prompts=, completions=, completion_ids=, **columns)`), so it also works
    in a plain `trl.GRPOTrainer`; `RPTTrainer` wraps its rewards in it when `RPTConfig.thought_budget` is set. Other
    attributes are those of the wrapped reward (a reward that the trainer binds to its model is still bound), and TRL
    logs it under the wrapped reward's name.

    Metrics (through TRL's `log_metric`): `rpt/over_budget_fraction` (completions whose thought exceeds the budget)
    and `rpt/budget_penalty` (mean reward taken away per completion).

    Args:
        reward_func: A synchronous TRL reward function.
        budget: Thought budget in tokens.
        penalty: `"linear"` or `"step"`.
        width: Linear penalty: tokens over budget at which the factor reaches 0 (default: `budget`).
        tokenizer: The policy's tokenizer; `RPTTrainer` sets it when it loads the tokenizer itself.

    Example:
        >>> shaped = ThoughtBudgetReward(prefix_match_reward, budget=512, tokenizer=tokenizer)  # doctest: +SKIP
        >>> GRPOTrainer(model, reward_funcs=[shaped], ...)  # doctest: +SKIP
    """

    def __init__(
        self,
        reward_func: Callable[..., list[float | None]],
        *,
        budget: int,
        penalty: str = "linear",
        width: int | None = None,
        tokenizer: Any | None = None,
    ):
        check_thought_budget(budget, penalty, width)
        if is_async_callable(reward_func):
            raise ValueError(
                f"The reward {get_callable_name(reward_func)!r} is async; the thought budget wraps synchronous "
                "rewards only. Set thought_budget=None, or shape it inside your own async reward."
            )
        self.reward_func = reward_func
        self.budget, self.penalty, self.width, self.tokenizer = budget, penalty, width, tokenizer
        self.__name__ = get_callable_name(reward_func)

    # Attributes are the wrapped reward's (`bind`, `keywords`, ...), so that a wrapped reward is used as the reward
    # itself; code that recognises a reward by its class looks through the wrapper with [`unwrapped_reward`].
    def __getattr__(self, name: str) -> Any:
        if name == "reward_func":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.reward_func, name)

    def __reduce__(self) -> tuple:  # pickle as a wrapper, whatever the wrapped reward forwards
        options = {"budget": self.budget, "penalty": self.penalty, "width": self.width, "tokenizer": self.tokenizer}
        return _rebuild_thought_budget_reward, (self.reward_func, options)

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        rewards = self.reward_func(completions=completions, **kwargs)
        if self.tokenizer is None:
            raise ValueError(
                "The thought budget counts tokens with the policy's tokenizer: pass tokenizer= to ThoughtBudgetReward."
            )
        counts = thought_token_counts(completions, self.tokenizer, kwargs.get("completion_ids"))
        factors = thought_budget_factors(counts, self.budget, self.penalty, self.width)
        shaped = [r if r is None or r <= 0 else r * f for r, f in zip(rewards, factors)]
        log_metric = kwargs.get("log_metric")
        if log_metric is not None and completions:
            log_metric("rpt/over_budget_fraction", sum(n > self.budget for n in counts) / len(counts))
            removed = [r - s for r, s in zip(rewards, shaped) if r is not None]
            log_metric("rpt/budget_penalty", sum(removed) / len(removed) if removed else 0.0)
        return shaped


def _rebuild_thought_budget_reward(reward_func: Callable, options: dict[str, Any]) -> ThoughtBudgetReward:
    return ThoughtBudgetReward(reward_func, **options)


def with_thought_budget(reward_funcs: Any, args: Any, tokenizer: Any | None) -> list[Any]:
    """`reward_funcs` (one or a list, as `GRPOTrainer` takes them) with each wrapped in [`ThoughtBudgetReward`] as
    `args.thought_budget*` say; unchanged when `args.thought_budget` is `None`.

    Raises:
        ValueError: When a reward is a reward model (a model or a model id), whose score the budget cannot reach.
    """
    funcs = list(reward_funcs) if isinstance(reward_funcs, list | tuple) else [reward_funcs]
    if args.thought_budget is None:
        return funcs
    wrapped = []
    for func in funcs:
        if isinstance(func, str | torch.nn.Module) or not callable(func):
            raise ValueError(
                f"thought_budget shapes reward functions, not reward models ({type(func).__name__}); wrap the model's "
                "score in a reward function, or set thought_budget=None."
            )
        wrapped.append(
            ThoughtBudgetReward(
                func,
                budget=args.thought_budget,
                penalty=args.thought_budget_penalty,
                width=args.thought_budget_width,
                tokenizer=tokenizer,
            )
        )
    return wrapped


def unwrapped_reward(reward: Any) -> Any:
    """The reward under any [`ThoughtBudgetReward`] wrappers (the reward itself when it is not wrapped).

    Example:
        >>> from rpt_trl.rewards import prefix_match_reward
        >>> unwrapped_reward(ThoughtBudgetReward(prefix_match_reward, budget=8)) is prefix_match_reward
        True
    """
    while isinstance(reward, ThoughtBudgetReward):
        reward = reward.reward_func
    return reward
