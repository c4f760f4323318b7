r"""Next-token rewards, in TRL's reward-function convention.

Every reward here is called as `fn(completions, ground_truth, ground_truth_boundaries, **kwargs)` and returns one
float per completion, so it works unchanged in a plain `trl.GRPOTrainer` whose dataset has the columns
`ground_truth` (the text from the predicted position on) and `ground_truth_boundaries` (the cumulative UTF-8 byte
lengths of its tokens), as built by [`build_next_token_dataset`].

Scoring is split from parsing: [`extract_prediction`] turns a completion into a string, then a pure scorer
compares bytes. Evaluation imports the same functions, so training and evaluation score identically.
"""

from collections.abc import Callable, Sequence
from typing import Any

from .parsing import THINK_CLOSE, completion_text, extract_prediction


def score_prefix_match(prediction: str | None, ground_truth: str, ground_truth_boundaries: Sequence[int]) -> float:
    r"""The RPT reward (paper, Section 3.2): 1 if the prediction is a byte prefix of the ground truth ending on a
    token boundary, else 0.

    With `y = prediction.encode()` and `g = ground_truth.encode()`, the reward is 1.0 if and only if
    `y == g[:len(y)]` and `len(y)` is in `ground_truth_boundaries`. An empty or missing prediction scores 0.0.

    Args:
        prediction: The parsed answer, or `None` when the completion had no answer.
        ground_truth: The real continuation from the predicted position on.
        ground_truth_boundaries: Cumulative byte lengths of the ground-truth tokens, increasing.

    Example:
        >>> score_prefix_match(" size", " size of the", [5, 8, 12])
        1.0
        >>> score_prefix_match(" si", " size of the", [5, 8, 12])  # stops inside a token
        0.0
    """
    if not prediction:
        return 0.0
    predicted = prediction.encode("utf-8")
    if len(predicted) not in ground_truth_boundaries:
        return 0.0
    return 1.0 if ground_truth.encode("utf-8").startswith(predicted) else 0.0


def score_first_token(prediction: str | None, ground_truth: str, ground_truth_boundaries: Sequence[int]) -> float:
    r"""The paper's first-token variant: 1 only if the prediction is exactly the first ground-truth token.

    A first token that ends inside a UTF-8 character is unreachable by any text answer; the dataset builder leaves
    such boundaries out, so the first boundary is then the first token together with the token(s) completing its
    character.

    Example:
        >>> score_first_token(" size", " size of the", [5, 8, 12]), score_first_token(" size of", " size of the", [5, 8])
        (1.0, 0.0)
    """
    if not prediction or not ground_truth_boundaries:
        return 0.0
    first = ground_truth.encode("utf-8")[: ground_truth_boundaries[0]]
    return 1.0 if prediction.encode("utf-8") == first else 0.0


def _check_columns(
    completions: Sequence[Any], ground_truth: Sequence[str], ground_truth_boundaries: Sequence[Sequence[int]]
) -> None:
    if not (len(completions) == len(ground_truth) == len(ground_truth_boundaries)):
        raise ValueError(
            f"Got {len(completions)} completions, {len(ground_truth)} ground truths and "
            f"{len(ground_truth_boundaries)} boundary lists; they must be equally long (one per completion)."
        )
    for index, (truth, boundaries) in enumerate(zip(ground_truth, ground_truth_boundaries)):
        # A text of n characters has at least n bytes: encode only when the cheap bound does not settle it.
        if boundaries and boundaries[-1] > len(truth) and boundaries[-1] > len(truth.encode("utf-8")):
            raise ValueError(
                f"ground_truth_boundaries[{index}] ends at byte {boundaries[-1]}, past the end of its ground truth "
                f"({len(truth.encode('utf-8'))} bytes). Build the columns with `rpt_trl.build_next_token_dataset`."
            )


def _log_answers(
    completions: Sequence[Any],
    predictions: list[str | None],
    rewards: list[float],
    *,
    metric_prefix: str,
    log_extra: Callable | None,
    log_metric: Callable | None,
    reasoning_tokenizer: Any | None,
) -> None:
    if log_extra is not None:
        log_extra("prediction", predictions)
    if log_metric is None or not completions:
        return
    log_metric(f"rpt/{metric_prefix}_accuracy", sum(rewards) / len(rewards))
    log_metric("rpt/answer_rate", sum(p is not None for p in predictions) / len(predictions))
    thoughts = [completion_text(c).split(THINK_CLOSE, 1)[0] for c in completions]
    if reasoning_tokenizer is not None:
        lengths = [len(ids) for ids in reasoning_tokenizer(thoughts, add_special_tokens=False)["input_ids"]]
        log_metric("rpt/reasoning_tokens", sum(lengths) / len(lengths))
    else:
        log_metric("rpt/reasoning_chars", sum(len(t) for t in thoughts) / len(thoughts))


def _reward(
    scorer: Callable[[str | None, str, Sequence[int]], float],
    metric_prefix: str,
    completions: Sequence[Any],
    ground_truth: Sequence[str],
    ground_truth_boundaries: Sequence[Sequence[int]],
    *,
    require_think_close: bool,
    reasoning_tokenizer: Any | None,
    log_extra: Callable | None,
    log_metric: Callable | None,
) -> list[float]:
    _check_columns(completions, ground_truth, ground_truth_boundaries)
    predictions = [extract_prediction(c, require_think_close=require_think_close) for c in completions]
    rewards = [scorer(p, g, b) for p, g, b in zip(predictions, ground_truth, ground_truth_boundaries)]
    _log_answers(
        completions,
        predictions,
        rewards,
        metric_prefix=metric_prefix,
        log_extra=log_extra,
        log_metric=log_metric,
        reasoning_tokenizer=reasoning_tokenizer,
    )
    return rewards


def prefix_match_reward(
    completions: Sequence[Any],
    ground_truth: Sequence[str],
    ground_truth_boundaries: Sequence[Sequence[int]],
    *,
    require_think_close: bool = True,
    reasoning_tokenizer: Any | None = None,
    log_extra: Callable | None = None,
    log_metric: Callable | None = None,
    **kwargs: Any,
) -> list[float]:
    r"""The RPT reward for a batch of completions (paper, Section 3.2): prefix matching with token boundaries.

    Args:
        completions: Completions, strings or TRL conversational completions.
        ground_truth: Dataset column: the text from the predicted position on.
        ground_truth_boundaries: Dataset column: cumulative UTF-8 byte lengths of the ground-truth tokens.
        require_think_close: Only answers after `</think>` count (see [`extract_prediction`]). Bind another value
            with `functools.partial`.
        reasoning_tokenizer: If given, the logged reasoning length is in tokens of this tokenizer, else in
            characters.
        log_extra: Passed by TRL; receives the parsed predictions for the completions table.
        log_metric: Passed by TRL; receives `rpt/next_token_accuracy`, `rpt/answer_rate` and the reasoning length.
        **kwargs: Other dataset columns and TRL arguments, ignored.

    Returns:
        One reward per completion, 1.0 or 0.0.

    Example:
        >>> prefix_match_reward(
        ...     ["<think>…</think> \\boxed{ size}", "</think> \\boxed{ si}", "no box"],
        ...     ground_truth=[" size of"] * 3,
        ...     ground_truth_boundaries=[[5, 8]] * 3,
        ... )
        [1.0, 0.0, 0.0]
    """
    return _reward(
        score_prefix_match,
        "next_token",
        completions,
        ground_truth,
        ground_truth_boundaries,
        require_think_close=require_think_close,
        reasoning_tokenizer=reasoning_tokenizer,
        log_extra=log_extra,
        log_metric=log_metric,
    )


def first_token_reward(
    completions: Sequence[Any],
    ground_truth: Sequence[str],
    ground_truth_boundaries: Sequence[Sequence[int]],
    *,
    require_think_close: bool = True,
    reasoning_tokenizer: Any | None = None,
    log_extra: Callable | None = None,
    log_metric: Callable | None = None,
    **kwargs: Any,
) -> list[float]:
    r"""The paper's first-token variant: 1 only when the answer is exactly the first ground-truth token.

    Same arguments as [`prefix_match_reward`]; it logs `rpt/first_token_accuracy`.
    """
    return _reward(
        score_first_token,
        "first_token",
        completions,
        ground_truth,
        ground_truth_boundaries,
        require_think_close=require_think_close,
        reasoning_tokenizer=reasoning_tokenizer,
        log_extra=log_extra,
        log_metric=log_metric,
    )


REWARD_FUNCTIONS: dict[str, Callable[..., list[float]]] = {
    "prefix_match": prefix_match_reward,
    "first_token": first_token_reward,
}
