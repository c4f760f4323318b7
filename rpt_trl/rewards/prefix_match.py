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

from ..parsing import THINK_CLOSE, completion_text, extract_prediction, split_thought
from .thought_tokens import ThinkTags, find_think_tags, thought_tokens_in_ids, token_bytes


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


SCORERS: dict[str, Callable[[str | None, str, Sequence[int]], float]] = {
    "prefix_match": score_prefix_match,
    "first_token": score_first_token,
}


# What TRL logs each scorer's mean reward as.
_ACCURACY_METRICS = {"prefix_match": "rpt/next_token_accuracy", "first_token": "rpt/first_token_accuracy"}


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


def score_completions(
    completions: Sequence[Any],
    ground_truth: Sequence[str],
    ground_truth_boundaries: Sequence[Sequence[int]],
    *,
    scorer: str = "prefix_match",
    require_think_close: bool = True,
    think_closes: Sequence[int] | None = None,
) -> tuple[list[float], list[str | None]]:
    r"""Parse and score a batch of completions: the one scoring path of training, evaluation and the demo.

    Args:
        completions: Completions, strings or TRL conversational completions.
        ground_truth: The text from each predicted position on.
        ground_truth_boundaries: Cumulative UTF-8 byte lengths of each ground truth's tokens.
        scorer: `"prefix_match"` (the paper's reward, [`score_prefix_match`]) or `"first_token"`
            ([`score_first_token`]).
        require_think_close: Only answers after `</think>` count (see [`extract_prediction`]).
        think_closes: Where each completion's first `</think>` starts (-1: nowhere), when the caller has searched
            ([`think_close_positions`]); searched for when `None`.

    Returns:
        `(rewards, predictions)`: one reward (1.0 or 0.0) and one parsed prediction (`None` when there is no answer)
        per completion.

    Example:
        >>> score_completions(["</think> \\boxed{ size}", "no box"], [" size of"] * 2, [[5, 8]] * 2)
        ([1.0, 0.0], [' size', None])
    """
    if scorer not in SCORERS:
        raise ValueError(f"scorer must be one of {list(SCORERS)}, got {scorer!r}.")
    _check_columns(completions, ground_truth, ground_truth_boundaries)
    score = SCORERS[scorer]
    if think_closes is None:
        think_closes = think_close_positions(completions)
    predictions = [
        extract_prediction(c, require_think_close=require_think_close, think_close=think_close)
        for c, think_close in zip(completions, think_closes)
    ]
    rewards = [score(p, g, b) for p, g, b in zip(predictions, ground_truth, ground_truth_boundaries)]
    return rewards, predictions


def think_close_positions(completions: Sequence[Any]) -> list[int]:
    """Where each completion's first `</think>` starts in its text, -1 where it has none.

    A reward that parses the answer and counts the thought searches each (long) thought once, and passes these on.

    Example:
        >>> think_close_positions(["a</think>b</think>", "no tag"])
        [1, -1]
    """
    return [completion_text(c).find(THINK_CLOSE) for c in completions]


def thought_token_counts(
    completions: Sequence[Any],
    tokenizer: Any,
    completion_ids: Sequence[Sequence[int]] | None = None,
    think_closes: Sequence[int] | ThinkTags | None = None,
) -> list[int]:
    """Length in tokens of each completion's thought (see [`split_thought`]).

    With `completion_ids` (TRL passes them to every reward), the thought is counted in the ids, not by tokenising it
    again: on the training hot path a second tokenisation cost 100 times the reward itself. The thought's tokens are
    the ids up to the one holding the start of `</think>`, and that one too when it also holds the thought's last
    characters (Gemma's `.</`); see [`rpt_trl.rewards.thought_tokens`]. A completion whose text is not its ids' decoding
    around `</think>` falls back to tokenising its thought.

    Args:
        completions: Completions, strings or TRL conversational completions.
        tokenizer: The policy's tokenizer.
        completion_ids: The completions' token ids, one list per completion (trailing EOS and padding are not
            counted).
        think_closes: As for [`score_completions`]; or the completions' [`ThinkTags`], which also measure the
            answer part that the count reads ([`find_think_tags`]).
    """
    if completion_ids is None:
        thoughts = [split_thought(c)[0] for c in completions]
        return [len(ids) for ids in tokenizer(thoughts, add_special_tokens=False)["input_ids"]] if thoughts else []
    if len(completion_ids) != len(completions):
        raise ValueError(f"Got {len(completion_ids)} completion_ids for {len(completions)} completions.")
    trailing = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    if not isinstance(think_closes, ThinkTags):
        think_closes = find_think_tags(completions, think_closes)
    counts = thought_tokens_in_ids(think_closes, completion_ids, token_bytes(tokenizer), trailing)
    if None not in counts:
        return counts
    retokenise = [index for index, count in enumerate(counts) if count is None]
    recounted = thought_token_counts([completions[i] for i in retokenise], tokenizer)
    for index, count in zip(retokenise, recounted):
        counts[index] = count
    return counts


def thought_lengths(
    completions: Sequence[Any],
    tokenizer: Any | None = None,
    completion_ids: Sequence[Sequence[int]] | None = None,
    think_closes: Sequence[int] | ThinkTags | None = None,
) -> list[int]:
    """Each completion's thought length: in tokens of `tokenizer` (see [`thought_token_counts`]), else in characters."""
    if tokenizer is None:
        return [len(split_thought(c)[0]) for c in completions]
    return thought_token_counts(completions, tokenizer, completion_ids, think_closes)


def _log_answers(
    completions: Sequence[Any],
    predictions: list[str | None],
    rewards: list[float],
    *,
    metric: str,
    completion_ids: Sequence[Sequence[int]] | None,
    log_extra: Callable | None,
    log_metric: Callable | None,
    reasoning_tokenizer: Any | None,
    think_closes: Sequence[int] | ThinkTags | None = None,
) -> None:
    if log_extra is not None:
        log_extra("prediction", predictions)
    if log_metric is None or not completions:
        return
    log_metric(metric, sum(rewards) / len(rewards))
    log_metric("rpt/answer_rate", (len(predictions) - predictions.count(None)) / len(predictions))
    lengths = thought_lengths(completions, reasoning_tokenizer, completion_ids, think_closes)
    unit = "tokens" if reasoning_tokenizer is not None else "chars"
    log_metric(f"rpt/reasoning_{unit}", sum(lengths) / len(lengths))


def _reward(
    scorer: str,
    completions: Sequence[Any],
    ground_truth: Sequence[str],
    ground_truth_boundaries: Sequence[Sequence[int]],
    *,
    completion_ids: Sequence[Sequence[int]] | None = None,
    require_think_close: bool = True,
    reasoning_tokenizer: Any | None = None,
    log_extra: Callable | None = None,
    log_metric: Callable | None = None,
    **kwargs: Any,
) -> list[float]:
    # One search of each thought for `</think>`, for the answer and the count. Where the count reads the ids, the same
    # pass measures the answer part for it, while each text is at hand (the count then reads no text).
    if log_metric is not None and reasoning_tokenizer is not None and completion_ids is not None:
        think_closes: list[int] | ThinkTags = find_think_tags(completions)
    else:
        think_closes = think_close_positions(completions)
    rewards, predictions = score_completions(
        completions,
        ground_truth,
        ground_truth_boundaries,
        scorer=scorer,
        require_think_close=require_think_close,
        think_closes=think_closes.closes if isinstance(think_closes, ThinkTags) else think_closes,
    )
    _log_answers(
        completions,
        predictions,
        rewards,
        metric=_ACCURACY_METRICS[scorer],
        completion_ids=completion_ids,
        log_extra=log_extra,
        log_metric=log_metric,
        reasoning_tokenizer=reasoning_tokenizer,
        think_closes=think_closes,
    )
    return rewards


def prefix_match_reward(
    completions: Sequence[Any],
    ground_truth: Sequence[str],
    ground_truth_boundaries: Sequence[Sequence[int]],
    **kwargs: Any,
) -> list[float]:
    r"""The RPT reward for a batch of completions (paper, Section 3.2): prefix matching with token boundaries.

    A TRL reward around [`score_completions`], which also logs to TRL.

    Args:
        completions: Completions, strings or TRL conversational completions.
        ground_truth: Dataset column: the text from the predicted position on.
        ground_truth_boundaries: Dataset column: cumulative UTF-8 byte lengths of the ground-truth tokens.
        **kwargs: Keyword arguments:

            - `require_think_close` (default `True`): only answers after `</think>` count (see
              [`extract_prediction`]). Bind another value with `functools.partial`.
            - `reasoning_tokenizer`: if given, the logged reasoning length is in tokens of this tokenizer, else in
              characters.
            - `completion_ids`: passed by TRL; the reasoning length in tokens is read from them (see
              [`thought_token_counts`]).
            - `log_extra`: passed by TRL; receives the parsed predictions for the completions table.
            - `log_metric`: passed by TRL; receives `rpt/next_token_accuracy`, `rpt/answer_rate` and the
              reasoning length.
            - other dataset columns and TRL arguments are ignored.

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
    return _reward("prefix_match", completions, ground_truth, ground_truth_boundaries, **kwargs)


def first_token_reward(
    completions: Sequence[Any],
    ground_truth: Sequence[str],
    ground_truth_boundaries: Sequence[Sequence[int]],
    **kwargs: Any,
) -> list[float]:
    r"""The paper's first-token variant: 1 only when the answer is exactly the first ground-truth token.

    Same arguments as [`prefix_match_reward`]; it logs `rpt/first_token_accuracy`.
    """
    return _reward("first_token", completions, ground_truth, ground_truth_boundaries, **kwargs)


REWARD_FUNCTIONS: dict[str, Callable[..., list[float]]] = {
    "prefix_match": prefix_match_reward,
    "first_token": first_token_reward,
}
"""The TRL rewards by name: `RPTConfig.reward` picks one. Same names as [`SCORERS`]."""
