r"""Next-token accuracy, as in the paper's Table 1, in two modes.

- **standard**: the model's argmax next token at `position` equals the document's token there. One forward pass per
  document covers all of its positions. This mode needs the source documents (the dataset keeps only a windowed
  context inside a rendered prompt), and the tokenizer the dataset was built with: `position` indexes that
  tokenizer's tokens. Each row is checked against the document (its ground truth must start where token `position`
  starts), so a mismatched document list or tokenizer is an error, not a silent wrong number.
- **reasoning**: the model writes a chain of thought and answers in `\boxed{}`; completions are parsed and scored by
  [`score_completions`], as the training reward scores them. With several samples per position it reports mean
  accuracy and unbiased pass@k.
- **reasoning, information gain** (a model trained with the `information_gain` template and reward, which thinks and
  then lets the document go on, with no box): [`thought_scores`] samples the model's thoughts and scores each by the
  model's probability of the first ground-truth token right after `</think>`, computed as the reward computes its
  policy term. That probability is the expected first-token accuracy of the next token sampled after the thought.

Splits: a row belongs to the paper's nested Easy / Medium / Hard splits as listed in its `difficulty` column (from the
entropy filter), or, without that column, as given by its `entropy` column and the paper's thresholds. With neither,
only the overall accuracy is reported.
"""

import logging
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, LogitsProcessor

from ..data.builder import difficulty_labels, token_spans
from ..results import SPLITS
from ..rewards.prefix_match import score_completions, thought_lengths
from ..trainer.generation import AnswerStopLogitsProcessor
from ..trainer.prefix_cache import MIN_SHARED_PREFIX, SharedPrefixCache, shared_prefix_length  # noqa: F401 (moved)
from ..trainer.sampling import greedy_sampling_call


# Reasoning mode samples at the paper's temperature, as RPT's rollouts do (`RPTConfig.temperature`).
TEMPERATURE = 0.8


logger = logging.getLogger(__name__)

Generator = Callable[[list[Any], int], list[list[str]]]
"""`generate(prompts, num_samples) -> completions`: `num_samples` completion strings for every prompt."""


def row_splits(row: Mapping[str, Any]) -> list[str]:
    """The splits a dataset row belongs to: its `difficulty` labels, else those its `entropy` implies, else none.

    Example:
        >>> row_splits({"difficulty": ["easy", "medium"]}), row_splits({"entropy": 1.2}), row_splits({})
        (['easy', 'medium'], ['easy', 'medium'], [])
    """
    labels = row.get("difficulty")
    if labels is not None:
        unknown = [label for label in labels if label not in SPLITS]
        if unknown:
            raise ValueError(f"difficulty labels must be among {SPLITS}, got {unknown}.")
        return list(labels)
    entropy = row.get("entropy")
    return [] if entropy is None else difficulty_labels(entropy)  # NaN is above no threshold


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased pass@k estimator (Chen et al. 2021): the chance that k of the n samples, drawn without
    replacement, include a correct one, `1 - C(n - c, k) / C(n, k)`.

    Example:
        >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 2), pass_at_k(4, 0, 4)
        (0.25, 0.5, 0.0)
    """
    if not 0 <= num_correct <= num_samples:
        raise ValueError(f"num_correct ({num_correct}) must be between 0 and num_samples ({num_samples}).")
    if not 1 <= k <= num_samples:
        raise ValueError(f"k ({k}) must be between 1 and num_samples ({num_samples}).")
    if num_samples - num_correct < k:
        return 1.0
    # Product form of C(n - c, k) / C(n, k), stable for large n.
    miss = 1.0
    for i in range(num_samples - num_correct + 1, num_samples + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def summarize(
    rows: Sequence[Mapping[str, Any]], scores: Sequence[float], extra: Sequence[Mapping[str, float]] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Mean score overall and per split (and the mean of each `extra` entry): the `overall` and `splits` of a result."""
    members: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        members["all"].append(index)
        for split in row_splits(row):
            members[split].append(index)

    def group(indices: list[int]) -> dict[str, Any]:
        summary: dict[str, Any] = {"accuracy": sum(scores[i] for i in indices) / len(indices), "n": len(indices)}
        for key in extra[0] if extra else ():
            summary[key] = sum(extra[i][key] for i in indices) / len(indices)
        return summary

    if not rows:
        return {"accuracy": None, "n": 0}, {}
    return group(members["all"]), {split: group(members[split]) for split in SPLITS if members[split]}


@torch.no_grad()
def standard_scores(
    model: Any,
    tokenizer: Any,
    examples: Any,
    documents: Sequence[str],
    *,
    prepend_bos: bool = True,
    show_progress: bool = True,
) -> list[float]:
    """Score every row in standard mode: 1.0 when the argmax next token is the document's token at `position`.

    Args:
        model: A causal LM.
        tokenizer: The fast tokenizer the dataset was built with (it must share the model's vocabulary).
        examples: Rows with `document_id`, `position` and `ground_truth` (a dataset from `build_next_token_dataset`).
        documents: The texts the dataset was built from, indexed by `document_id`.
        prepend_bos: Put the tokenizer's BOS token (when it has one) before each document, as the model saw it in
            pre-training; positions shift accordingly.
        show_progress: Show a progress bar over documents.

    Returns:
        One score per row, in the rows' order.
    """
    rows = list(examples)
    by_document: dict[int, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        if not 0 <= row["document_id"] < len(documents):
            raise ValueError(
                f"Row {index} refers to document {row['document_id']}, but {len(documents)} documents were given; "
                "pass the documents the dataset was built from, in the same order."
            )
        by_document[row["document_id"]].append(index)
    bos = [tokenizer.bos_token_id] if prepend_bos and tokenizer.bos_token_id is not None else []
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores = [0.0] * len(rows)
    for document_id, indices in tqdm(by_document.items(), desc="Standard next-token accuracy", unit="doc",
                                     disable=not show_progress):  # fmt: skip
        text = documents[document_id]
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        token_ids = encoded["input_ids"]
        span_starts, _ = token_spans(encoded["offset_mapping"])  # the builder's rule for where token t starts
        last = max(rows[i]["position"] for i in indices)
        if min(rows[i]["position"] for i in indices) + len(bos) < 1:
            raise ValueError(f"Document {document_id}: position 0 has no context; use a tokenizer with a BOS token.")
        if last >= len(token_ids):
            raise ValueError(
                f"Document {document_id} has {len(token_ids)} tokens, but a row predicts position {last}. Standard "
                "mode needs the documents and the tokenizer the dataset was built with."
            )
        for i in indices:
            position, truth = rows[i]["position"], rows[i]["ground_truth"]
            if not text.startswith(truth, span_starts[position]):
                raise ValueError(
                    f"Row {i} (document {document_id}, position {position}): the document's text at that token does "
                    f"not start with the ground truth {truth[:20]!r}. Standard mode needs the documents and the "
                    "tokenizer the dataset was built with."
                )
        # Logits at index j predict the token at index j + 1: the forward pass needs the tokens before `last`, and
        # the head only the rows' positions (full-vocabulary logits for every token would be 2.1 GB per 2k tokens
        # at a 262k vocabulary).
        input_ids = torch.tensor([bos + token_ids[:last]], device=device)
        keep = torch.tensor([rows[i]["position"] + len(bos) - 1 for i in indices], device=device)
        predicted = model(input_ids=input_ids, logits_to_keep=keep).logits[0].argmax(dim=-1).tolist()
        for i, prediction in zip(indices, predicted):
            scores[i] = 1.0 if prediction == token_ids[rows[i]["position"]] else 0.0
    model.train(was_training)
    return scores


def prompt_text(prompt: Any, tokenizer: Any) -> str:
    """A dataset prompt as text: a string as is, a conversation through the tokenizer's chat template."""
    if isinstance(prompt, str):
        return prompt
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            "The dataset has conversational prompts but the tokenizer has no chat template; build the dataset with "
            "prompt_format='text' for a base model."
        )
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


class CompletionEntropy(LogitsProcessor):
    """Measures the policy's mean next-token entropy over the completions a sampler writes: at every generated token
    of every row, up to and including the token that ends it, the entropy (nats) of the model's own distribution at
    `temperature`, before any processor changes it. It is TRL's `entropy` metric (computed at the training
    temperature over the completion tokens), taken on the prompts given rather than on a training batch, so that
    evaluations on the same prompts compare the policy with itself.

    Pass it to [`transformers_generator`] (`entropy=`), which puts it first among the processors; read `mean` after
    the calls, `reset()` before new ones.

    Args:
        temperature: The temperature the distribution is taken at (the training temperature, to compare with TRL's).
        stop_token_ids: The tokens that end a completion (EOS); a row is measured up to and including the first.
    """

    def __init__(self, temperature: float, stop_token_ids: Sequence[int]):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        self.temperature = temperature
        self.stop_token_ids = torch.tensor(sorted(set(stop_token_ids)), dtype=torch.long)
        self.prompt_width = 0
        self._ended: torch.Tensor | None = None  # rows of the current call that have written a stop token
        self.reset()

    def reset(self) -> None:
        self.total, self.tokens = 0.0, 0

    def start(self, prompt_width: int) -> None:
        """Call before each `generate` call: the width of its (padded) prompts, where the completions begin."""
        self.prompt_width, self._ended = prompt_width, None

    @property
    def mean(self) -> float:
        """The mean entropy over every measured token; NaN before any."""
        return self.total / self.tokens if self.tokens else float("nan")

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._ended is None:  # the call's first token: nothing written yet
            self._ended = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        elif input_ids.shape[1] > self.prompt_width:  # the token written last may end its row
            self._ended |= torch.isin(input_ids[:, -1], self.stop_token_ids.to(input_ids.device))
        active = ~self._ended
        if active.any():
            log_probs = torch.log_softmax(scores[active].float() / self.temperature, dim=-1)
            entropy = -(log_probs.exp() * log_probs).nan_to_num().sum(dim=-1)
            self.total += float(entropy.sum())
            self.tokens += int(active.sum())
        return scores


def transformers_generator(
    model: Any,
    tokenizer: Any,
    *,
    max_new_tokens: int = 1024,
    temperature: float = TEMPERATURE,
    batch_size: int = 8,
    seed: int = 0,
    stop_after_answer: bool = True,
    prefix_cache: bool = True,
    inverse_cdf: bool = True,
    entropy: CompletionEntropy | None = None,
    show_progress: bool = True,
) -> Generator:
    """A batched, seeded sampler with `model.generate` (at the paper's temperature by default).

    Each batch reseeds torch with `seed + batch index`, so a run is reproducible for the same prompts and settings.
    With `inverse_cdf`, on a CPU, it samples by inverse CDF ([`rpt_trl.trainer.sampling`]): the distribution of
    `torch.multinomial`, from one random number per row instead of one per vocabulary entry.
    With `stop_after_answer`, a completion ends as soon as its answer box closes, as in training.

    With `prefix_cache`, when a batch's prompts share a prefix of at least `MIN_SHARED_PREFIX` tokens (a few-shot
    template), its keys and values are computed once and reused by every row; the rows' own tokens follow it, with
    the padding masked out between the two. Greedy outputs are the same as without it; on the demo's 280-token
    few-shot prompts (64 in one batch) it made greedy generation 3.5 times faster on a 2-core CPU
    (`benchmarks/prefix_cache.py`). Pass `prefix_cache=False` for a
    model whose cache is not a `DynamicCache`.
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    @torch.no_grad()
    def generate(prompts: list[Any], num_samples: int) -> list[list[str]]:
        texts = [prompt_text(p, tokenizer) for p in prompts for _ in range(num_samples)]
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        outputs: list[str] = []
        prefixes = SharedPrefixCache(pad_id, MIN_SHARED_PREFIX if prefix_cache else sys.maxsize)
        greedy = None  # on a CPU: a greedy call over the processors' one drawn token
        if inverse_cdf and temperature > 0 and device.type == "cpu":
            config = GenerationConfig(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
            greedy = greedy_sampling_call(model, config)
        if greedy is not None:
            sampling, sampler = {"generation_config": greedy[0]}, greedy[1]
        else:
            sampling = {"do_sample": temperature > 0, "temperature": temperature if temperature > 0 else None,
                        "top_k": 0, "top_p": 1.0}  # fmt: skip
            sampler = []
        starts = range(0, len(texts), batch_size)
        for batch_index, start in enumerate(tqdm(starts, desc="Generating", unit="batch", disable=not show_progress)):
            torch.manual_seed(seed + batch_index)
            token_ids = tokenizer(texts[start : start + batch_size])["input_ids"]
            inputs, width = prefixes.inputs(model, token_ids, device, max_new_tokens)
            processors = []
            if entropy is not None:
                entropy.start(width)
                processors.append(entropy)
            if stop_after_answer:
                processors.append(AnswerStopLogitsProcessor(tokenizer, tokenizer.eos_token_id))
            processors += sampler
            generated = model.generate(
                **inputs,
                **sampling,
                max_new_tokens=max_new_tokens,
                logits_processor=processors,
                pad_token_id=pad_id,
            )
            outputs += tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
        model.train(was_training)
        return [outputs[i : i + num_samples] for i in range(0, len(outputs), num_samples)]

    return generate


def vllm_generator(
    model: Any,
    *,
    max_new_tokens: int = 1024,
    temperature: float = TEMPERATURE,
    seed: int = 0,
    stop_after_answer: bool = True,
    show_progress: bool = True,
    **llm_kwargs: Any,
) -> Generator:
    """A sampler on vLLM, on a GPU or on vLLM's CPU build. Prompts must already be text (see [`prompt_text`]).

    Args:
        model: A model id or path (an engine is started with `llm_kwargs`), or a running `vllm.LLM`.
        max_new_tokens: Completion budget.
        temperature: Sampling temperature; 0 is greedy.
        seed: Seeds each request, so a run is reproducible for the same prompts and settings.
        stop_after_answer: End each completion as soon as its answer box closes, as the transformers sampler does
            (see `rpt_trl.trainer.vllm_engine.AnswerStopLogitsProcessor`).
        show_progress: Show vLLM's progress bar.
        **llm_kwargs: Passed to `vllm.LLM` when `model` is not an engine (e.g. `dtype`, `max_model_len`).
    """
    from vllm import LLM, SamplingParams

    llm = model if isinstance(model, LLM) else LLM(model=model, seed=seed, **llm_kwargs)
    extra = {}
    if stop_after_answer:
        from ..trainer.vllm_engine import answer_stop_sampling_kwargs, check_answer_stop_plugin

        check_answer_stop_plugin()
        extra = answer_stop_sampling_kwargs()

    def generate(prompts: list[Any], num_samples: int) -> list[list[str]]:
        params = SamplingParams(n=num_samples, temperature=temperature, max_tokens=max_new_tokens, seed=seed, **extra)
        requests = llm.generate(prompts, params, use_tqdm=show_progress)
        return [[o.text for o in request.outputs] for request in requests]

    return generate


def vllm_server_generator(
    base_url: str,
    tokenizer: Any,
    *,
    max_new_tokens: int = 1024,
    temperature: float = TEMPERATURE,
    seed: int = 0,
    stop_after_answer: bool = True,
    connection_timeout: float = 240.0,
) -> Generator:
    """A sampler on a running vLLM server (`trl vllm-serve` or `vllm serve`), through TRL's `VLLMClient`.

    Prompts must already be text (see [`prompt_text`]). With `stop_after_answer` the server's environment must have
    rpt-trl installed, so that its engine loads `rpt_trl.trainer.vllm_engine.AnswerStopLogitsProcessor`.

    Args:
        base_url: The server's address, e.g. `http://127.0.0.1:8000`.
        tokenizer: Decodes the returned token ids (special tokens dropped, as the other samplers do).
        connection_timeout: Seconds to wait for the server to answer its health check.
    """
    from trl.generation.vllm_client import VLLMClient

    client = VLLMClient(base_url=base_url, connection_timeout=connection_timeout)
    generation_kwargs: dict[str, Any] = {"seed": seed}
    if stop_after_answer:
        from ..trainer.vllm_engine import answer_stop_sampling_kwargs

        generation_kwargs.update(answer_stop_sampling_kwargs(server=True))

    def generate(prompts: list[Any], num_samples: int) -> list[list[str]]:
        output = client.generate(
            prompts, n=num_samples, temperature=temperature, max_tokens=max_new_tokens, logprobs=None,
            generation_kwargs=generation_kwargs,
        )  # fmt: skip
        texts = tokenizer.batch_decode(output["completion_ids"], skip_special_tokens=True)
        return [texts[i : i + num_samples] for i in range(0, len(texts), num_samples)]

    return generate


def reasoning_scores(
    examples: Any, generate: Generator, *, num_samples: int = 1, require_think_close: bool = True
) -> tuple[list[list[str]], list[list[float]], list[list[str | None]]]:
    """Sample `num_samples` completions per row and score each with the training reward.

    Returns:
        `(completions, rewards, predictions)`, each one list per row with `num_samples` entries.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
    rows = list(examples)
    completions = generate([row["prompt"] for row in rows], num_samples)
    if len(completions) != len(rows) or any(len(c) != num_samples for c in completions):
        raise ValueError(f"The generator must return {num_samples} completions for each of the {len(rows)} prompts.")
    flat = [c for per_row in completions for c in per_row]
    rewards, predictions = score_completions(
        flat,
        [row["ground_truth"] for row in rows for _ in range(num_samples)],
        [row["ground_truth_boundaries"] for row in rows for _ in range(num_samples)],
        require_think_close=require_think_close,
    )

    def per_row(values: list[Any]) -> list[list[Any]]:
        return [values[i : i + num_samples] for i in range(0, len(values), num_samples)]

    return completions, per_row(rewards), per_row(predictions)


def reasoning_summary(
    rows: Sequence[Mapping[str, Any]],
    rewards: Sequence[Sequence[float]],
    predictions: Sequence[Sequence[str | None]],
    *,
    pass_k: Sequence[int] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Overall and per-split mean accuracy, answer rate and pass@k from per-row sample rewards."""
    num_samples = len(rewards[0]) if rewards else 1
    ks = sorted({1, num_samples, *(k for k in pass_k if k <= num_samples)})
    extra = []
    for row_rewards, row_predictions in zip(rewards, predictions):
        correct = int(sum(row_rewards))
        entry = {f"pass@{k}": pass_at_k(num_samples, correct, k) for k in ks}
        entry["answer_rate"] = sum(p is not None for p in row_predictions) / num_samples
        extra.append(entry)
    scores = [sum(r) / len(r) for r in rewards]
    overall, splits = summarize(rows, scores, extra)
    overall["samples_per_item"] = num_samples
    return overall, splits


def thought_scores(
    examples: Any, generate: Generator, model: Any, tokenizer: Any, *, num_samples: int = 1, batch_size: int = 8
) -> tuple[list[list[str]], list[list[float]], list[list[float]]]:
    """Sample `num_samples` thoughts per row and score each by `model`'s probability of the first ground-truth token
    after it (the thought closed by `</think>`; anything after `</think>` is ignored, as the information-gain reward
    ignores it).

    Args:
        examples: Rows with `prompt` (built with the `information_gain` template: the context, then `<think>`),
            `ground_truth` and `ground_truth_boundaries`.
        generate: Samples the thoughts (a [`transformers_generator`] of `model`).
        model: The model whose probabilities are read.
        tokenizer: Its tokenizer.
        num_samples: Thoughts per row.
        batch_size: Sequences per forward pass.

    Returns:
        `(completions, probabilities, gains)`, one list per row with `num_samples` entries: p(first ground-truth
        token | prompt, thought), and the information gain log p(... | prompt, thought) - log p(... | context alone)
        in nats, the same model reading both.
    """
    from ..rewards.model_rewards import ModelReward, thought_prefix

    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
    rows = list(examples)
    completions = generate([row["prompt"] for row in rows], num_samples)
    if len(completions) != len(rows) or any(len(c) != num_samples for c in completions):
        raise ValueError(f"The generator must return {num_samples} completions for each of the {len(rows)} prompts.")
    scorer = ModelReward(model, tokenizer, batch_size=batch_size)
    columns = [[row[key] for row in rows] for key in ("prompt", "ground_truth", "ground_truth_boundaries")]
    sampled = [[value for value in column for _ in range(num_samples)] for column in columns]  # one per thought
    thoughts = [thought_prefix(completion) for per_row in completions for completion in per_row]
    with_thought = scorer.first_token_log_probs(sampled[0], thoughts, *sampled[1:])
    alone = scorer.first_token_log_probs(columns[0], [""] * len(rows), *columns[1:], without_thought_opener=True)
    alone = alone.repeat_interleave(num_samples)
    probabilities, gains = with_thought.exp().tolist(), (with_thought - alone).tolist()

    def per_row(values: list[float]) -> list[list[float]]:
        return [values[i : i + num_samples] for i in range(0, len(values), num_samples)]

    return completions, per_row(probabilities), per_row(gains)


def thought_summary(
    rows: Sequence[Mapping[str, Any]], probabilities: Sequence[Sequence[float]], gains: Sequence[Sequence[float]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Overall and per-split mean probability of the first ground-truth token after the thought (as `accuracy`, the
    expected first-token accuracy) and mean information gain (`info_gain`, nats), from [`thought_scores`]."""
    extra = [{"info_gain": sum(row) / len(row)} for row in gains]
    overall, splits = summarize(rows, [sum(row) / len(row) for row in probabilities], extra)
    overall["samples_per_item"] = len(probabilities[0]) if probabilities else 1
    return overall, splits


def mean_reasoning_length(completions: Sequence[Sequence[str]], tokenizer: Any | None = None) -> float:
    """Mean length of the thoughts (text before `</think>`), in tokens of `tokenizer` or else in characters."""
    flat = [c for per_row in completions for c in per_row]
    if not flat:
        return 0.0
    lengths = thought_lengths(flat, tokenizer)
    return sum(lengths) / len(lengths)
