r"""Rewards that read the policy's probabilities: the paper's dense variants and an RLP-style information gain.

The prefix-matching reward of [`rpt_trl.rewards`] is 0 until a rollout guesses the exact token. These rewards give a
graded signal, from the probability that the policy itself puts on the first ground-truth token:

- [`DenseReward`] (`"dense"`, paper Appendix A): 1 when the answer is correct (prefix matching), 0 when the rollout
  boxes no answer, otherwise p_θ(first ground-truth token | prompt, completion up to its answer box).
- [`ConditionalDenseReward`] (`"conditional_dense"`, paper Appendix A): the dense reward in the groups (the
  `num_generations` rollouts of one prompt) where at least one rollout is correct; 0 in the other groups.
- [`InformationGainReward`] (`"information_gain"`, after RLP, Hatamizadeh et al. 2025, arXiv 2510.01265):
  log p_θ(first ground-truth token | prompt, thought) − log p_ref(first ground-truth token | prompt), where p_ref is an
  exponential moving average of the policy (see [`rpt_trl.rewards.reference`]). No box is needed.

They are callables with TRL's reward signature, `reward(prompts=..., completions=..., completion_ids=...,
ground_truth=..., ground_truth_boundaries=..., log_metric=..., ...)`, that need the trainer's model: `RPTTrainer` binds
them at initialisation; with a plain `trl.GRPOTrainer`, call `reward.bind(trainer)` once the trainer is built.

How the probabilities are computed: the scored sequences (prompt tokens as TRL tokenises them, then the completion's
text up to the answer position, re-tokenised) run through the decoder in batches, and the output head is applied to
the last hidden state of each sequence only, in chunks, keeping the target's logit and the logsumexp: full-vocabulary
logits never exist for more than `position_chunk_size` sequences at once (the chunking of
[`rpt_trl.data.entropy`]). Every process scores all of its completions, so under ZeRO-3 every process runs the same
number of forward passes.

The answer position (`dense`), defined for every completion (the probability there is logged for all of them, and
is the reward of the boxed wrong answers only):

- with a complete `\boxed{}` answer after `</think>` (the one [`extract_prediction`] parses): just after its
  `\boxed{`;
- with `</think>` but no complete box after it: after `</think>`, with ` \boxed{` appended;
- without `</think>` (a thought cut by `max_completion_length`): after the whole completion, with
  `</think> \boxed{` appended.

The first ground-truth token is the text of the first boundary (`ground_truth` up to `ground_truth_boundaries[0]`
bytes), tokenised by the policy's tokenizer after a newline (see [`first_token_ids`]); its first token is scored.
"""

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from trl.models.utils import disable_gradient_checkpointing

from ..parsing import BOX_OPEN, THINK_CLOSE, completion_text, prediction_span, split_thought
from .head_scorer import LOGITS_PER_CHUNK, HeadScorer
from .prefix_match import _log_answers, score_completions, thought_lengths
from .reference import ReferenceEMA, ReferenceEMACallback


logger = logging.getLogger(__name__)

THINK_OPEN = "<think>"
_ANCHOR = "\n"
ANSWER_OPENER = " " + BOX_OPEN
"""Appended after `</think>` when a completion has no answer box: the paper's format `</think> \\boxed{`."""


def answer_prefix(completion: Any, *, require_think_close: bool = True) -> str:
    r"""The completion's text up to its answer position, where the dense reward scores the first ground-truth token.

    Example:
        >>> answer_prefix("<think>hm</think> It is \\boxed{ size}.")
        '<think>hm</think> It is \\boxed{'
        >>> answer_prefix("<think>hm</think> no box"), answer_prefix("<think>cut sh")
        ('<think>hm</think> \\boxed{', '<think>cut sh</think> \\boxed{')
    """
    text = completion_text(completion)
    span = prediction_span(text, require_think_close=require_think_close)
    if span is not None:
        return text[: span[0]]
    think_close = text.find(THINK_CLOSE)
    if think_close >= 0:
        return text[: think_close + len(THINK_CLOSE)] + ANSWER_OPENER
    return text + THINK_CLOSE + ANSWER_OPENER


def thought_prefix(completion: Any) -> str:
    """The completion's thought closed by `</think>`: where the information-gain reward scores the next token.

    Example:
        >>> thought_prefix("<think>a noun</think> anything after"), thought_prefix("<think>cut sh")
        ('<think>a noun</think>', '<think>cut sh</think>')
    """
    return split_thought(completion)[0] + THINK_CLOSE


def strip_thought_opener(prompt_text: str) -> str:
    """The prompt without a trailing `<think>` (and the whitespace around it): the context the reference reads."""
    stripped = prompt_text.rstrip()
    return stripped[: -len(THINK_OPEN)] if stripped.endswith(THINK_OPEN) else prompt_text


def first_token_ids(
    tokenizer: Any, ground_truth: Sequence[str], ground_truth_boundaries: Sequence[Sequence[int]]
) -> list[int]:
    """The id of each ground truth's first token: the text of its first boundary, tokenised after a newline.

    The newline stands for the preceding context: tokenised alone, a SentencePiece tokenizer that adds a dummy prefix
    would turn `"e"` into `"▁", "e"`; after `"\\n"` it gives the token the document has. When the newline merges with
    the text (no clean split), the text is tokenised alone.
    """
    texts = []
    for truth, boundaries in zip(ground_truth, ground_truth_boundaries):
        if not boundaries:
            raise ValueError(f"A ground truth has no token boundary ({truth[:40]!r}); it has nothing to score.")
        texts.append(truth.encode("utf-8")[: boundaries[0]].decode("utf-8"))
    if not texts:
        return []
    anchor = tokenizer(_ANCHOR, add_special_tokens=False)["input_ids"]
    anchored = tokenizer([_ANCHOR + text for text in texts], add_special_tokens=False)["input_ids"]
    alone = tokenizer(texts, add_special_tokens=False)["input_ids"]
    ids = []
    for text, with_anchor, without in zip(texts, anchored, alone):
        if len(with_anchor) > len(anchor) and with_anchor[: len(anchor)] == anchor:
            ids.append(with_anchor[len(anchor)])
        elif without:
            ids.append(without[0])
        else:
            raise ValueError(f"The tokenizer turns the first ground-truth token {text!r} into no token.")
    return ids


def next_token_log_probs(
    model: Any,
    rows: Sequence[Sequence[int]],
    target_ids: Sequence[int],
    *,
    batch_size: int = 8,
    position_chunk_size: int | None = None,
) -> torch.Tensor:
    """log p(target | row) for each row of token ids, under `model` (a causal LM), as a float32 CPU tensor.

    The decoder runs on batches of `batch_size` right-padded rows; the output head runs on chunks of
    `position_chunk_size` last hidden states, and only the target's logit and the logsumexp of each are kept.

    Args:
        model: A causal language model whose logits are its output head applied to its decoder's last hidden state
            (plus Gemma's final softcap), like the entropy scorer's.
        rows: Token ids of each scored sequence; the next token after the last one is scored.
        target_ids: The token to score after each row.
        batch_size: Rows per decoder pass.
        position_chunk_size: Rows per output-head chunk; defaults to as many as 2**28 logits allow.
    """
    if len(rows) != len(target_ids):
        raise ValueError(f"Got {len(rows)} rows and {len(target_ids)} targets.")
    if any(len(row) == 0 for row in rows):
        raise ValueError("An empty sequence has no position to score the next token at.")
    if not rows:
        return torch.empty(0)
    head = HeadScorer(model, top_k=None, position_chunk_size=1)
    # Not the head's weight shape: under ZeRO-3 that is an empty placeholder outside a forward pass.
    vocabulary = getattr(head.head, "out_features", None) or model.config.get_text_config().vocab_size
    chunk_size = position_chunk_size or max(1, LOGITS_PER_CHUNK // vocabulary)
    last_hidden = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            hidden = head.hidden_states(batch)
            ends = torch.tensor([len(row) - 1 for row in batch], device=hidden.device)
            last_hidden.append(hidden[torch.arange(len(batch), device=hidden.device), ends])
        last_hidden = torch.cat(last_hidden)
        targets = torch.as_tensor(list(target_ids), device=last_hidden.device)
        values = torch.empty(len(rows), dtype=torch.float32)
        for start in range(0, len(rows), chunk_size):
            logits = head.logits(last_hidden[start : start + chunk_size])
            chosen = logits.gather(1, targets[start : start + chunk_size, None]).squeeze(1)
            values[start : start + len(chosen)] = (chosen - torch.logsumexp(logits, dim=-1)).cpu()
    return values


@dataclass(frozen=True)
class RewardBatch:
    """One call of a model reward: the dataset columns and TRL's logging hooks it was called with."""

    prompts: Sequence[Any]
    completions: Sequence[Any]
    ground_truth: Sequence[str]
    ground_truth_boundaries: Sequence[Sequence[int]]
    completion_ids: Sequence[Sequence[int]] | None = None
    log_extra: Callable | None = None
    log_metric: Callable | None = None


class ModelReward:
    """Base of the rewards that need the policy. A TRL reward callable; bind it to the trainer that trains the model.

    Args:
        model: The policy, for use outside a trainer (tests, evaluation); with a trainer, use [`bind`].
        processing_class: The policy's tokenizer; taken from the trainer by [`bind`] when `None`.
        require_think_close: Only a `\\boxed{}` after `</think>` counts as the answer (as in prefix matching).
        batch_size: Sequences per decoder pass; `bind` takes the trainer's `per_device_train_batch_size`.
        position_chunk_size: Sequences per output-head chunk (see [`next_token_log_probs`]).
        chat_template_kwargs: Passed to the chat template of conversational prompts; `bind` takes the trainer's.
    """

    name = "model_reward"

    def __init__(
        self,
        model: Any = None,
        processing_class: Any = None,
        *,
        require_think_close: bool = True,
        batch_size: int | None = None,
        position_chunk_size: int | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
    ):
        self.__name__ = self.name  # TRL names the reward's metrics (`rewards/<name>/mean`) after it
        self.model = model
        self.processing_class = processing_class
        self.require_think_close = require_think_close
        self.batch_size = batch_size
        self.position_chunk_size = position_chunk_size
        self.chat_template_kwargs = chat_template_kwargs
        self.trainer: Any = None

    def bind(self, trainer: Any) -> "ModelReward":
        """Score with `trainer`'s model (as it trains) and tokenizer. Returns the reward itself."""
        self.trainer = trainer
        if self.processing_class is None:
            self.processing_class = getattr(trainer, "_tokenizer", None) or trainer.processing_class
        if self.batch_size is None:
            self.batch_size = trainer.args.per_device_train_batch_size
        if self.chat_template_kwargs is None:
            self.chat_template_kwargs = getattr(trainer, "chat_template_kwargs", None)
        return self

    @property
    def policy(self) -> Any:
        if self.trainer is not None:
            return self.trainer.accelerator.unwrap_model(self.trainer.model)
        if self.model is None:
            raise ValueError(
                f"The {self.name} reward needs the policy: call `reward.bind(trainer)` once the GRPOTrainer is built "
                "(RPTTrainer does it), or pass `model=` and `processing_class=`."
            )
        return self.model

    @property
    def tokenizer(self) -> Any:
        if self.processing_class is None:
            raise ValueError(f"The {self.name} reward needs the tokenizer: bind it to a trainer or pass it.")
        return getattr(self.processing_class, "tokenizer", self.processing_class)

    def _prompt_texts(self, prompts: Sequence[Any]) -> tuple[list[str], bool]:
        """Each prompt as the text the policy reads, and whether that text already holds the special tokens."""
        if prompts and not isinstance(prompts[0], str):  # conversational: rendered as GRPOTrainer renders it
            texts = [
                self.tokenizer.apply_chat_template(
                    prompt, tokenize=False, add_generation_prompt=True, **(self.chat_template_kwargs or {})
                )
                for prompt in prompts
            ]
            return texts, True
        return list(prompts), False

    def _rows(self, prompt_texts: Sequence[str], templated: bool, suffixes: Sequence[str]) -> list[list[int]]:
        """Prompt tokens (as GRPOTrainer tokenises prompts), then each suffix tokenised on its own."""
        prompt_ids = self.tokenizer(list(prompt_texts), add_special_tokens=not templated)["input_ids"]
        suffix_ids = self.tokenizer(list(suffixes), add_special_tokens=False)["input_ids"] if suffixes else []
        return [list(p) + list(s) for p, s in zip(prompt_ids, suffix_ids)]

    def first_token_log_probs(
        self,
        prompts: Sequence[Any],
        suffixes: Sequence[str],
        ground_truth: Sequence[str],
        ground_truth_boundaries: Sequence[Sequence[int]],
        *,
        without_thought_opener: bool = False,
    ) -> torch.Tensor:
        """log p(first ground-truth token | prompt, suffix) under the policy, one per row.

        Args:
            prompts: The prompts, text or conversational (rendered as GRPOTrainer renders them).
            suffixes: Text after each prompt (a completion's thought closed by `</think>`, or `""`).
            ground_truth: The real continuation of each row.
            ground_truth_boundaries: Its cumulative token byte lengths; the first token is scored.
            without_thought_opener: Drop each prompt's trailing `<think>` first: the context alone, as the
                information-gain reference reads it.
        """
        prompt_texts, templated = self._prompt_texts(prompts)
        if without_thought_opener:
            prompt_texts = [strip_thought_opener(text) for text in prompt_texts]
        targets = first_token_ids(self.tokenizer, ground_truth, ground_truth_boundaries)
        return self._log_probs(self._rows(prompt_texts, templated, suffixes), targets)

    def _log_probs(self, rows: list[list[int]], targets: list[int]) -> torch.Tensor:
        scoring = contextlib.nullcontext()
        if self.trainer is not None:  # as GRPOTrainer scores without gradients: no recomputation to save memory for
            checkpointing_kwargs = self.trainer.args.gradient_checkpointing_kwargs
            scoring = disable_gradient_checkpointing(self.trainer.model, checkpointing_kwargs)
        with scoring:
            return next_token_log_probs(
                self.policy,
                rows,
                targets,
                batch_size=self.batch_size or 8,
                position_chunk_size=self.position_chunk_size,
            )

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        ground_truth: Sequence[str],
        ground_truth_boundaries: Sequence[Sequence[int]],
        completion_ids: Sequence[Sequence[int]] | None = None,
        log_extra: Callable | None = None,
        log_metric: Callable | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """TRL's reward signature (the dataset columns by name, TRL's logging hooks as keywords); see [`score`]."""
        batch = RewardBatch(
            prompts, completions, ground_truth, ground_truth_boundaries, completion_ids, log_extra, log_metric
        )
        return self.score(batch)

    def score(self, batch: RewardBatch) -> list[float]:
        """The rewards of one batch; each reward defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define score(batch).")

    def _reasoning_tokenizer(self) -> Any:
        return self.processing_class


class DenseReward(ModelReward):
    r"""The paper's dense reward (Appendix A): 1 when the answer is correct, 0 when no answer is boxed, else the
    policy's probability of the first ground-truth token at the answer position (see the module docstring).

    reward = 1 if prefix_match(answer) else 0 if no answer else p_θ(g_1 | prompt, completion up to `\boxed{`)

    An unboxed rollout earns 0, not the probability at an appended box: that probability is the same quantity a
    boxed wrong answer earns, so paying it made not answering as good as answering, and a policy stopped boxing
    (the answer rate fell from 0.94 to 0.06 in two steps, see the README). With 0, a rollout without an answer never
    earns more than a boxed wrong one, and boxing always pays at least as much, as under prefix matching.

    Logs `rpt/next_token_accuracy`, `rpt/answer_rate`, the reasoning length and `rpt/dense_probability` (the mean
    probability of the first ground-truth token over all rollouts, correct ones included).

    Example:
        >>> reward = DenseReward(model, tokenizer)  # doctest: +SKIP
        >>> reward(prompts=["the cat says"], completions=["<think>hm</think> \\boxed{ woof}"],
        ...        ground_truth=[" meow"], ground_truth_boundaries=[[5]])  # doctest: +SKIP
        [0.031...]
    """

    name = "dense"

    def probabilities(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        ground_truth: Sequence[str],
        ground_truth_boundaries: Sequence[Sequence[int]],
    ) -> torch.Tensor:
        """p_θ(first ground-truth token | prompt, answer prefix) for each completion, one batched pass."""
        prompt_texts, templated = self._prompt_texts(prompts)
        suffixes = [answer_prefix(c, require_think_close=self.require_think_close) for c in completions]
        rows = self._rows(prompt_texts, templated, suffixes)
        targets = first_token_ids(self.tokenizer, ground_truth, ground_truth_boundaries)
        return self._log_probs(rows, targets).exp()

    def _dense(self, batch: RewardBatch) -> tuple[list[float], list[float], list[float]]:
        correct, predictions = score_completions(
            batch.completions, batch.ground_truth, batch.ground_truth_boundaries,
            require_think_close=self.require_think_close,
        )  # fmt: skip
        probabilities = self.probabilities(
            batch.prompts, batch.completions, batch.ground_truth, batch.ground_truth_boundaries
        ).tolist()
        _log_answers(
            batch.completions,
            predictions,
            correct,
            metric="rpt/next_token_accuracy",
            completion_ids=batch.completion_ids,
            log_extra=batch.log_extra,
            log_metric=batch.log_metric,
            reasoning_tokenizer=self._reasoning_tokenizer(),
        )
        if batch.log_metric is not None and probabilities:
            batch.log_metric("rpt/dense_probability", sum(probabilities) / len(probabilities))
        dense = [
            1.0 if hit == 1.0 else 0.0 if prediction is None else p
            for hit, prediction, p in zip(correct, predictions, probabilities)
        ]
        return dense, correct, probabilities

    def score(self, batch: RewardBatch) -> list[float]:
        dense, _, _ = self._dense(batch)
        return dense


class ConditionalDenseReward(DenseReward):
    """The paper's conditional dense reward (Appendix A): the dense reward in groups where at least one rollout is
    correct, 0 in the other groups.

    A group is `num_generations` consecutive completions of one prompt, counted over the whole generation batch of
    all processes: TRL may split a group across processes (it gathers the rewards before computing advantages), so
    the reward gathers every process's correctness flags first (one `accelerator.gather`, which every process calls
    at the same point of `_calculate_rewards`) and zeroes a group only when none of its rollouts, on any process, is
    correct. Under dynamic sampling the zeroed groups are uniform and get dropped.

    Args:
        num_generations: Rollouts per group when the reward is used outside a trainer; `bind` reads the trainer's
            (`num_generations` in training, `num_generations_eval` in evaluation).
        **kwargs: As [`ModelReward`].

    Logs what [`DenseReward`] logs, and `rpt/groups_with_correct` (share of groups that keep their dense reward).
    """

    name = "conditional_dense"

    def __init__(self, *args: Any, num_generations: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.num_generations = num_generations

    def _group_size(self) -> int:
        if self.trainer is not None:
            training = self.trainer.model.training
            return self.trainer.num_generations if training else self.trainer.num_generations_eval
        if self.num_generations is None:
            raise ValueError("conditional_dense needs the group size: bind it to a trainer or pass num_generations.")
        return self.num_generations

    def groups_with_correct(self, correct: Sequence[float]) -> list[bool]:
        """For each local completion, whether its group (over all processes) has a correct rollout."""
        flags = torch.tensor([1.0 if hit == 1.0 else 0.0 for hit in correct])
        offset = 0
        if self.trainer is not None and self.trainer.accelerator.num_processes > 1:
            accelerator = self.trainer.accelerator
            flags_all = accelerator.gather(flags.to(accelerator.device)).cpu()
            offset = accelerator.process_index * len(correct)
        else:
            flags_all = flags
        size = self._group_size()
        if len(flags_all) % size:
            raise ValueError(
                f"conditional_dense groups {size} consecutive completions, but the batch over all processes holds "
                f"{len(flags_all)}: not whole groups."
            )
        grouped = flags_all.view(-1, size).amax(dim=1) > 0
        self._last_group_share = float(grouped.float().mean()) if len(grouped) else 0.0
        return grouped.repeat_interleave(size)[offset : offset + len(correct)].tolist()

    def score(self, batch: RewardBatch) -> list[float]:
        dense, correct, _ = self._dense(batch)
        keep = self.groups_with_correct(correct)
        if batch.log_metric is not None:
            batch.log_metric("rpt/groups_with_correct", self._last_group_share)
        return [reward if kept else 0.0 for reward, kept in zip(dense, keep)]


class InformationGainReward(ModelReward):
    r"""An information-gain reward after RLP (Hatamizadeh et al. 2025, arXiv 2510.01265): how much the thought raises
    the log-probability of the real next token over a reference that reads no thought.

    reward = log p_θ(g_1 | prompt, thought `</think>`) − log p_ref(g_1 | prompt without its trailing `<think>`)

    The thought is the completion up to its first `</think>` (all of it when there is none, then closed with
    `</think>`); whatever follows `</think>` is ignored, so no box is needed. p_ref is an exponential moving average of
    the policy's trainable weights ([`ReferenceEMA`]: full fine-tuning, an EMA of all weights kept on the CPU; LoRA,
    an EMA of the adapter only), evaluated by swapping it into the policy for one batched pass. Use it with the
    `"information_gain"` prompt template (`{context}<think>`, `prompt_format="text"`), where the reference reads
    exactly the context.

    Args:
        reference_ema_decay: EMA decay per optimizer step, in [0, 1]; 1.0 keeps the reference frozen at the starting
            weights.
        reference_ema_device: `"cpu"` (the shadow in host memory) or `"model"` (beside the weights).
        **kwargs: As [`ModelReward`].

    Logs `rpt/info_gain` (mean reward), `rpt/info_gain/policy_log_prob`, `rpt/info_gain/reference_log_prob` and the
    reasoning length.
    """

    name = "information_gain"

    def __init__(
        self,
        model: Any = None,
        processing_class: Any = None,
        *,
        reference_ema_decay: float = 0.999,
        reference_ema_device: str = "cpu",
        **kwargs: Any,
    ):
        super().__init__(model, processing_class, **kwargs)
        if not 0.0 <= reference_ema_decay <= 1.0:
            raise ValueError(f"reference_ema_decay must be in [0, 1], got {reference_ema_decay}.")
        self.reference_ema_decay = reference_ema_decay
        self.reference_ema_device = reference_ema_device
        self.reference_callback = ReferenceEMACallback(self._make_reference)
        if model is not None:  # outside a trainer the reference starts from the weights it is given now
            self.reference_callback.get()

    def _make_reference(self) -> ReferenceEMA:
        return ReferenceEMA(self.policy, decay=self.reference_ema_decay, device=self.reference_ema_device)

    def bind(self, trainer: Any) -> "InformationGainReward":
        """As [`ModelReward.bind`], and adds the callback that updates, saves and restores the reference EMA."""
        super().bind(trainer)
        self.reference_callback.process_index = trainer.accelerator.process_index
        trainer.add_callback(self.reference_callback)
        return self

    @property
    def reference(self) -> ReferenceEMA:
        return self.reference_callback.get()

    def log_probs(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        ground_truth: Sequence[str],
        ground_truth_boundaries: Sequence[Sequence[int]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(log p_θ with the thought, log p_ref without it)` of the first ground-truth token, per completion."""
        thoughts = [thought_prefix(completion) for completion in completions]
        policy = self.first_token_log_probs(prompts, thoughts, ground_truth, ground_truth_boundaries)
        with self.reference.applied():
            reference = self.first_token_log_probs(
                prompts, [""] * len(prompts), ground_truth, ground_truth_boundaries, without_thought_opener=True
            )
        return policy, reference

    def score(self, batch: RewardBatch) -> list[float]:
        if not (len(batch.prompts) == len(batch.completions) == len(batch.ground_truth)
                == len(batch.ground_truth_boundaries)):  # fmt: skip
            raise ValueError("prompts, completions, ground_truth and ground_truth_boundaries must be equally long.")
        policy, reference = self.log_probs(
            batch.prompts, batch.completions, batch.ground_truth, batch.ground_truth_boundaries
        )
        gains = (policy - reference).tolist()
        log_metric = batch.log_metric
        if log_metric is not None and gains:
            log_metric("rpt/info_gain", sum(gains) / len(gains))
            log_metric("rpt/info_gain/policy_log_prob", float(policy.mean()))
            log_metric("rpt/info_gain/reference_log_prob", float(reference.mean()))
            lengths = thought_lengths(batch.completions, self._reasoning_tokenizer(), batch.completion_ids)
            unit = "tokens" if self._reasoning_tokenizer() is not None else "chars"
            log_metric(f"rpt/reasoning_{unit}", sum(lengths) / len(lengths))
        if batch.log_extra is not None:
            batch.log_extra("info_gain", gains)
        return gains


MODEL_REWARDS: dict[str, type[ModelReward]] = {
    "dense": DenseReward,
    "conditional_dense": ConditionalDenseReward,
    "information_gain": InformationGainReward,
}
"""The rewards that need the policy, by the name `RPTConfig.reward` selects them with."""
