"""Score the G completions of a group with one forward pass of their shared prompt.

RPT prompts are long document contexts and its completions short, and GRPOTrainer scores each of a group's G rows
over `prompt + completion`: the same prompt runs forward and backward G times. Here the rows of a scoring batch that
carry the same prompt are found by value (no layout is assumed), each distinct prompt runs forward once, with
gradient, into a key/value cache; the cache is indexed out to the rows of its group, and the completions run forward
on it. Attention over the cached prompt is the same computation as attention over the prompt recomputed in the row,
so the completions' log-probabilities, entropies and gradients are today's within float rounding, and gradients reach
the prompt's forward through the cached keys and values (PrefixGrouper, arXiv 2506.05433, for GRPO in general).

[`SharedPrefixScoringMixin`] changes two hooks. `GRPOTrainer._get_per_token_logps_and_entropies`, through which
GRPOTrainer scores the policy (loss and old policy) and the reference model: the completions are still scored by
TRL's fused LM head (`fused_lm_head=True`), so temperature, soft-capping, entropy and the CPU completion-only
projection of `rpt_trl.trainer.cpu_lm_head` stay TRL's own. The last prompt token runs with the completion, since
its hidden state scores the first completion token; the rest of the prompt is the cached prefix. And
`GRPOTrainer._prepare_inputs`, whose shuffle of the generation batch is made to move whole groups, so that a
micro-batch holds groups to share rather than scattered rows.

What it needs, checked by [`check_shared_prefix_model`] before training: a decoder whose forward takes a key/value
cache (`cache`, or `past_key_values` in older transformers) that holds only keys and values of full or sliding-window
attention (Gemma 3's mix included: its sliding layers keep the last window of the prompt, as in generation). Under
gradient checkpointing the caches here give the same answer when a layer is replayed in the backward, so the
checkpointed layers are allowed to keep them (transformers drops a cache in a checkpointed layer otherwise); only
non-reentrant checkpointing carries gradient through them, and the reentrant kind is refused. A batch with nothing to
share (every prompt distinct, one-token prompts, prompts not left-padded), MoE load-balancing loss and multimodal
inputs are scored by TRL's own path.
"""

import contextlib
import functools
import inspect
import logging
from collections.abc import Iterator
from typing import Any

import torch
import trl.trainer.grpo_trainer as grpo_module
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer
from transformers.modeling_layers import GradientCheckpointingLayer


logger = logging.getLogger(__name__)

# The cache layers that are plain key/value stores, indexed by row and read back exactly (full and sliding-window
# attention); recurrent states (Mamba, linear attention) and quantised or static caches are not.
SUPPORTED_LAYERS = (DynamicLayer, DynamicSlidingWindowLayer)


def group_rows_by_prompt(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Find the rows that carry the same prompt (same tokens and same padding).

    Args:
        prompt_ids: `(rows, prompt_length)` token ids.
        prompt_mask: `(rows, prompt_length)`, 1 on tokens, 0 on padding.

    Returns:
        `(first_rows, row_to_group)`: the first row of each distinct prompt, and for every row the index of its prompt
        in `first_rows`.

    Example:
        >>> ids = torch.tensor([[5, 6], [7, 8], [5, 6]])
        >>> group_rows_by_prompt(ids, torch.ones_like(ids))
        (tensor([0, 1]), tensor([0, 1, 0]))
    """
    # Token ids are non-negative, so -1 marks padding and two rows match only if their padding matches too.
    keyed = prompt_ids.masked_fill(prompt_mask == 0, -1)
    _, row_to_group = torch.unique(keyed, dim=0, return_inverse=True)
    rows = torch.arange(keyed.size(0), device=keyed.device)
    first_rows = torch.full((int(row_to_group.max()) + 1,), keyed.size(0), device=keyed.device)
    first_rows = first_rows.scatter_reduce(0, row_to_group, rows, reduce="amin")
    # Number the groups in order of their first row, so that the result reads like the batch.
    order = torch.argsort(first_rows)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    return first_rows[order], rank[row_to_group]


def shared_prefix_per_token_logps(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    compute_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Per-token log-probabilities (and entropies) of the completions, each distinct prompt run forward once.

    The model must carry TRL's fused LM head (`trl.trainer.utils.add_fused_lm_head`), as GRPOTrainer's models do.

    Args:
        model: The causal LM (wrapped or not) that GRPOTrainer scores with.
        input_ids: `(rows, prompt_length + logits_to_keep)`, left-padded prompts followed by completions.
        attention_mask: The matching mask.
        logits_to_keep: The completion length.
        compute_entropy: Also return the completions' entropies (the model's fused head must compute them).

    Returns:
        `(log_probs, entropies)`, each `(rows, logits_to_keep)` (`entropies` None unless asked), as
        `GRPOTrainer._get_per_token_logps_and_entropies` returns them; or None when the batch has nothing to share
        (every prompt distinct, prompts of one token, or a prompt whose last column is padding), for the caller to
        score it the usual way.
    """
    prompt_ids, prompt_mask = input_ids[:, :-logits_to_keep], attention_mask[:, :-logits_to_keep]
    if prompt_ids.size(1) < 2 or not bool(prompt_mask[:, -1].all()):
        return None
    # Columns that are padding in every prompt carry nothing: they are dropped. Positions keep counting them, as
    # the model counts them today, so that absolute position embeddings see the same positions too.
    first_column = int(prompt_mask.any(dim=0).int().argmax())
    if first_column == prompt_ids.size(1) - 1:  # one-token prompts: no prefix before the last token
        return None
    first_rows, row_to_group = group_rows_by_prompt(prompt_ids, prompt_mask)
    if first_rows.numel() == input_ids.size(0):
        return None
    positions = torch.arange(input_ids.size(1), device=input_ids.device).unsqueeze(0)
    prefix = slice(first_column, prompt_ids.size(1) - 1)
    base = _base_model(model)
    config, cache_keyword = base.config.get_text_config(decoder=True), _cache_keyword(base)
    with _cache_kept_under_checkpointing(model):
        recorded = _record_prompts(
            model, config, cache_keyword, prompt_ids[first_rows, prefix], prompt_mask[first_rows, prefix],
            positions[:, prefix],
        )  # fmt: skip
        # The last prompt token runs with its completion: its hidden state scores the first completion token.
        tail_ids = input_ids[:, -logits_to_keep - 1 :]
        labels = tail_ids.masked_fill(attention_mask[:, -logits_to_keep - 1 :] == 0, -100)
        labels[:, 0] = -100
        outputs = model(
            input_ids=tail_ids,
            attention_mask=attention_mask[:, first_column:],
            position_ids=positions[:, -logits_to_keep - 1 :],
            labels=labels,
            fused_lm_head=True,
            **{cache_keyword: _prefix_cache(recorded, row_to_group, config)},
        )
    entropies = outputs.entropy if compute_entropy else None
    return outputs.log_probs, entropies


# The caches below stay correct when gradient checkpointing replays a layer in the backward: a replay calls `update`
# again with the same states, so `update` must give the same answer twice and never grow the cache.


class _PromptRecorderLayer(DynamicLayer):
    """Keeps the keys and values of the prompt forward, which starts empty (a replay writes the same states)."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.keys, self.values = key_states, value_states
        return key_states, value_states


class _ReadOnlyPrefix:
    """Attends over each row's cached prompt followed by the new states, and stores nothing.

    `keys` and `values` hold one entry per distinct prompt; `rows` picks each row's. Picking them here, one layer at
    a time, keeps a single layer's per-row copy of the prompt states alive, not every layer's.
    """

    rows: torch.Tensor

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        keys, values = _rows_of(self.keys, self.rows), _rows_of(self.values, self.rows)
        return torch.cat([keys, key_states], dim=-2), torch.cat([values, value_states], dim=-2)


def _rows_of(states: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """`states[rows]`, through a product with the rows' one-hot matrix: the same values (each row picks one prompt
    times 1 plus the others times 0), and a backward that sums each prompt's rows in a fixed order. Indexing's
    backward accumulates repeated indices in parallel on a CPU, in an order that differs between runs, so two runs
    from the same seed ended with different weights."""
    one_hot = torch.nn.functional.one_hot(rows, states.size(0)).to(states.dtype)
    return (one_hot @ states.reshape(states.size(0), -1)).view(len(rows), *states.shape[1:])


class _PrefixLayer(_ReadOnlyPrefix, DynamicLayer):
    pass


class _SlidingPrefixLayer(_ReadOnlyPrefix, DynamicSlidingWindowLayer):
    pass


def _record_prompts(
    model: Any,
    config: Any,
    cache_keyword: str,
    prefix_ids: torch.Tensor,
    prefix_mask: torch.Tensor,
    positions: torch.Tensor,
) -> Any:
    """Run each distinct prompt (but its last token) forward once, with gradient; return its keys and values."""
    recorder = DynamicCache(config=config)
    unsupported = sorted({type(layer).__name__ for layer in recorder.layers if type(layer) not in SUPPORTED_LAYERS})
    if unsupported or not recorder.layers:
        raise ValueError(f"shared_prefix_loss: cache layers {unsupported or 'unknown'} cannot be shared by row.")
    recorder.layers = [_PromptRecorderLayer() for _ in recorder.layers]
    # `logits_to_keep=1`: the prefix's logits are not needed; one position is the least the head computes.
    model(
        input_ids=prefix_ids, attention_mask=prefix_mask, position_ids=positions, logits_to_keep=1,
        **{cache_keyword: recorder},
    )  # fmt: skip
    if any(layer.get_seq_length() != prefix_ids.size(1) for layer in recorder.layers):
        raise RuntimeError(
            f"shared_prefix_loss: the model did not fill the key/value cache for the prompt (its forward ignores "
            f"`{cache_keyword}`); set shared_prefix_loss=False."
        )
    return recorder


def _prefix_cache(recorded: Any, row_to_group: torch.Tensor, config: Any) -> Any:
    """The cache the completions read: each row's prompt keys and values (the last window of them in a
    sliding-window layer, as transformers keeps it), from the distinct prompts' forward."""
    cache = DynamicCache(config=config)
    for index, (kind, prompt) in enumerate(zip(cache.layers, recorded.layers)):
        keys, values = prompt.keys, prompt.values
        if isinstance(kind, DynamicSlidingWindowLayer):
            layer = _SlidingPrefixLayer(sliding_window=kind.sliding_window)
            layer.cumulative_length = keys.size(-2)
            kept = max(keys.size(-2) - (kind.sliding_window - 1), 0)
            keys, values = keys[..., kept:, :], values[..., kept:, :]
        else:
            layer = _PrefixLayer()
        layer.lazy_initialization(keys, values)
        layer.keys, layer.values, layer.rows = keys, values, row_to_group
        cache.layers[index] = layer
    return cache


@contextlib.contextmanager
def _cache_kept_under_checkpointing(model: Any) -> Iterator[None]:
    """Let checkpointed layers keep the cache, which transformers drops in them unless a layer says it is safe.

    The caches above are safe to replay. A reentrant checkpoint is not: it runs the layer without gradient, so the
    cached keys and values would carry none back to the prompt.
    """
    layers = [
        module
        for module in model.modules()
        if isinstance(module, GradientCheckpointingLayer) and module.gradient_checkpointing
    ]
    for layer in layers:
        check_checkpointing(True, getattr(layer._gradient_checkpointing_func, "keywords", {}))
    changed = [layer for layer in layers if not layer._can_checkpoint_with_cache]
    for layer in changed:
        layer._can_checkpoint_with_cache = True
    try:
        yield
    finally:
        for layer in changed:
            del layer._can_checkpoint_with_cache  # back to the class's own value


def check_checkpointing(enabled: bool, checkpoint_kwargs: dict[str, Any] | None) -> None:
    """Refuse reentrant gradient checkpointing, which runs a layer without gradient, so that the cached prompt keys
    and values would carry no gradient back to the prompt.

    Args:
        enabled: Whether gradient checkpointing is on.
        checkpoint_kwargs: The keyword arguments of `torch.utils.checkpoint.checkpoint` (`None`: transformers'
            default, non-reentrant).

    Raises:
        ValueError: If checkpointing is on and `use_reentrant` is not `False` (torch's own default is reentrant).
    """
    if enabled and checkpoint_kwargs is not None and checkpoint_kwargs.get("use_reentrant") is not False:
        raise ValueError(
            "shared_prefix_loss needs non-reentrant gradient checkpointing (a reentrant checkpoint carries no "
            "gradient through the cached prompt): set gradient_checkpointing_kwargs={'use_reentrant': False} "
            "(transformers' default), gradient_checkpointing=False, or shared_prefix_loss=False."
        )


def check_checkpointing_arguments(args: Any) -> None:
    """[`check_checkpointing`] on training arguments, under either of transformers' names for the setting:
    `activation_checkpointing` and `activation_checkpointing_kwargs` in recent releases, whose deprecated aliases are
    `gradient_checkpointing` and `gradient_checkpointing_kwargs`, the only names in older ones (transformers 5.17,
    which vLLM 0.31 pins). Both kwargs are checked: GRPOTrainer writes the old name after the arguments are built.

    Args:
        args: A `TrainingArguments` (an `RPTConfig`).

    Raises:
        ValueError: As [`check_checkpointing`].
    """
    enabled = bool(getattr(args, "activation_checkpointing", None) or getattr(args, "gradient_checkpointing", None))
    for name in ("activation_checkpointing_kwargs", "gradient_checkpointing_kwargs"):
        check_checkpointing(enabled, getattr(args, name, None))


def check_peft_under_zero3(args: Any, uses_peft: bool) -> None:
    """Refuse, before any model loads, PEFT under DeepSpeed ZeRO-3 with gradient checkpointing: GRPOTrainer (TRL 1.16)
    makes that checkpointing reentrant, which [`check_checkpointing`] refuses, but only after the model (and vLLM)
    have loaded.

    Args:
        args: A `TrainingArguments` (an `RPTConfig`).
        uses_peft: Whether the trainer gets a `peft_config` or a PEFT model.

    Raises:
        ValueError: For that combination, with the settings that avoid it.
    """
    plugin = getattr(args, "deepspeed_plugin", None)
    checkpointing = getattr(args, "activation_checkpointing", None) or getattr(args, "gradient_checkpointing", None)
    if uses_peft and checkpointing and plugin is not None and plugin.zero_stage == 3:
        raise ValueError(
            "shared_prefix_loss cannot run with PEFT under DeepSpeed ZeRO-3 and gradient checkpointing: TRL makes that "
            "checkpointing reentrant, which carries no gradient through the shared prompt; set "
            "gradient_checkpointing=False, or shared_prefix_loss=False."
        )


# The keyword under which a decoder's forward takes its key/value cache: `cache` in recent transformers,
# `past_key_values` in older releases (transformers 5.17, which vLLM 0.31 pins).
CACHE_KEYWORDS = ("cache", "past_key_values")


def _cache_keyword(base: Any) -> str:
    parameters = inspect.signature(type(base).forward).parameters
    keyword = next((keyword for keyword in CACHE_KEYWORDS if keyword in parameters), None)
    if keyword is None:
        raise ValueError(
            f"shared_prefix_loss: {type(base).__name__}.forward takes no key/value cache (no `cache` or "
            "`past_key_values`), so the prompt's keys and values cannot be reused; set shared_prefix_loss=False."
        )
    return keyword


def _base_model(model: Any) -> Any:
    """The `PreTrainedModel` inside DistributedDataParallel, a DeepSpeed engine and a PEFT model."""
    while hasattr(model, "module"):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def check_shared_prefix_model(model: Any) -> None:
    """Refuse, with the fix, a model that the shared-prefix scoring cannot score exactly.

    Args:
        model: The policy (a `PreTrainedModel` or a PEFT model around one).

    Raises:
        ValueError: If its forward takes no key/value cache, if its cache holds more than full and sliding-window
            keys and values, or if its attention is bidirectional.
    """
    base = _base_model(model)
    config = base.config.get_text_config(decoder=True)
    _cache_keyword(base)
    layers = DynamicCache(config=config).layers
    unsupported = sorted({type(layer).__name__ for layer in layers if type(layer) not in SUPPORTED_LAYERS})
    if unsupported:
        raise ValueError(
            f"shared_prefix_loss: {type(base).__name__} keeps {unsupported} in its cache (not only keys and values of "
            "full or sliding-window attention), which cannot be shared by row; set shared_prefix_loss=False."
        )
    if getattr(config, "use_bidirectional_attention", False):
        raise ValueError(
            f"shared_prefix_loss: {type(base).__name__} attends bidirectionally, so a prompt's keys and values depend "
            "on its completion; set shared_prefix_loss=False."
        )


def shared_prefix_refusal(check: Any, *args: Any) -> str | None:
    """Why `check(*args)` refuses the shared-prefix loss, or `None` when it accepts it. With
    `shared_prefix_loss=None` (the default) a refusal turns the shared prefix off instead of stopping the run: the
    loss is the same either way, only slower.

    Args:
        check: One of this module's checks ([`check_checkpointing_arguments`], [`check_peft_under_zero3`],
            [`check_shared_prefix_model`]).
        *args: Its arguments.
    """
    try:
        check(*args)
    except ValueError as refusal:
        return str(refusal)
    return None


def shuffle_keeping_prompts_together(batch: dict[str, Any]) -> dict[str, Any]:
    """Shuffle a generation batch's rows as TRL's `shuffle_sequence_dict` does, but by prompt: the groups come in a
    random order and the rows of a group stay together, so that a micro-batch holds whole groups to share.

    Args:
        batch: The generation batch (`prompt_ids`, `prompt_mask` and the other per-row values), as GRPOTrainer
            buffers it.

    Returns:
        The batch with every per-row value permuted the same way.
    """
    first_rows, row_to_group = group_rows_by_prompt(batch["prompt_ids"], batch["prompt_mask"])
    groups = first_rows.numel()
    # A random rank for each group (drawn from torch's global generator, as TRL's own shuffle draws), rows by rank.
    group_rank = torch.empty(groups, dtype=torch.long)
    group_rank[torch.randperm(groups)] = torch.arange(groups)
    permutation = torch.argsort(group_rank[row_to_group.cpu()], stable=True)

    def permute(value: Any) -> Any:
        if value is None or (isinstance(value, torch.Tensor) and value.ndim == 0):
            return value
        if isinstance(value, torch.Tensor):
            return value[permutation.to(value.device)]
        return [value[i] for i in permutation]

    return {key: permute(value) for key, value in batch.items()}


@contextlib.contextmanager
def _micro_batches_of_whole_groups() -> Iterator[None]:
    """Within this context, GRPOTrainer shuffles its generation batch by group (see
    `shuffle_keeping_prompts_together`); TRL splits the shuffled batch into micro-batches right after."""
    trl_shuffle = getattr(grpo_module, _TRL_SHUFFLE, None)
    if trl_shuffle is None:
        _log_shuffle_missing()
        yield
        return
    setattr(grpo_module, _TRL_SHUFFLE, shuffle_keeping_prompts_together)
    try:
        yield
    finally:
        setattr(grpo_module, _TRL_SHUFFLE, trl_shuffle)


# The function, in `trl.trainer.grpo_trainer` (TRL 1.16), that `_prepare_inputs` shuffles the generation batch with.
_TRL_SHUFFLE = "shuffle_sequence_dict"


@functools.cache
def _log_shuffle_missing() -> None:
    logger.warning(
        "shared_prefix_loss: this TRL has no trl.trainer.grpo_trainer.%s, so micro-batches are formed as TRL forms "
        "them, and only the rows of a group that land in the same micro-batch share their prompt.",
        _TRL_SHUFFLE,
    )


class SharedPrefixScoringMixin:
    """Score each distinct prompt once per scoring batch in a `GRPOTrainer` subclass (see the module docstring).

    Put it before `GRPOTrainer` in the bases, after `CompletionScoringOnCPUMixin` so that the CPU completion-only
    projection applies to the completions scored here. Active when `args.shared_prefix_loss` is true; it wraps
    `_get_per_token_logps_and_entropies` without changing its arguments or its result, and `_prepare_inputs` so that
    the generation batch is shuffled by group rather than by row (TRL's micro-batches are then whole groups, as many
    as `per_device_train_batch_size` holds; set it to a multiple of `num_generations` to share every prompt G ways).
    """

    def _prepare_inputs(self, generation_batch: Any) -> Any:
        if not getattr(self.args, "shared_prefix_loss", False):
            return super()._prepare_inputs(generation_batch)
        with _micro_batches_of_whole_groups():
            return super()._prepare_inputs(generation_batch)

    def _get_per_token_logps_and_entropies(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        compute_aux_loss: bool = False,
        **multimodal: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        usual = (
            not getattr(self.args, "shared_prefix_loss", False)
            or compute_aux_loss
            or any(value is not None for value in multimodal.values())
        )
        if usual:
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss,
                **multimodal,
            )  # fmt: skip
        batch_size = batch_size or input_ids.size(0)
        all_logps, all_entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            chunk = slice(start, start + batch_size)
            with self.accelerator.autocast():
                scored = shared_prefix_per_token_logps(
                    model, input_ids[chunk], attention_mask[chunk], logits_to_keep, compute_entropy
                )
            if scored is None:
                logps, entropies, _ = super()._get_per_token_logps_and_entropies(
                    model, input_ids[chunk], attention_mask[chunk], logits_to_keep, compute_entropy=compute_entropy
                )
                scored = (logps, entropies)
            all_logps.append(scored[0])
            all_entropies.append(scored[1])
        entropies = torch.cat(all_entropies) if compute_entropy else None
        return torch.cat(all_logps), entropies, None
