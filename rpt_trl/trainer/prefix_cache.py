"""Compute the prompts' shared prefix once per batch, and reuse its keys and values in every row.

RPT prompts share a long prefix (a few-shot template), so a batch of rollouts prefills the same tokens once per row.
[`SharedPrefixCache`] prefills the prefix once, then lays out each row as the prefix, masked padding, and the row's
own tokens right-aligned, so that every row ends where generation starts and its positions are those of the plain
left-padded prompt. When rows repeat a prompt (GRPO's G rollouts of each), each distinct prompt's own tokens but its
last are prefilled once on top of the prefix, and that cache is indexed out to the rows, so that `generate` runs only
each row's last prompt token before decoding. Evaluation's sampler uses it per call; [`install_prefix_cache`] makes a
training model's `generate` use it, keeping the prefix while the weights stay the same (all the refill rounds of a
step).
"""

import copy
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch


MIN_SHARED_PREFIX = 32
"""A batch reuses one key/value cache of its prompts' shared prefix (e.g. a few-shot template) when it is this long."""


def shared_prefix_length(token_ids: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix that every sequence shares, leaving each at least one token of its own.

    Example:
        >>> shared_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]])
        2
    """
    if not token_ids:
        return 0
    limit = min(len(ids) for ids in token_ids) - 1
    first = token_ids[0]
    length = 0
    while length < limit and all(ids[length] == first[length] for ids in token_ids):
        length += 1
    return length


def distinct_rows(token_ids: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """The first row of each distinct token sequence, and for every row the index of its sequence among them.

    Example:
        >>> distinct_rows([[5, 6], [7], [5, 6], [7]])
        ([0, 1], [0, 1, 0, 1])
    """
    group_of: dict[tuple[int, ...], int] = {}
    first_rows, row_to_group = [], []
    for row, ids in enumerate(token_ids):
        group = group_of.setdefault(tuple(ids), len(first_rows))
        if group == len(first_rows):
            first_rows.append(row)
        row_to_group.append(group)
    return first_rows, row_to_group


def pad_after_prefix(token_ids: Sequence[Sequence[int]], prefix: int, pad_id: int) -> tuple[Any, Any]:
    """`input_ids` and `attention_mask` with the shared prefix first and each prompt's own tokens right-aligned after
    it (the padding sits between the two, masked out), so that every row ends where generation starts. With
    `prefix=0` this is plain left padding."""
    width = max(len(ids) for ids in token_ids) - prefix
    input_ids = torch.full((len(token_ids), prefix + width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(token_ids):
        own = len(ids) - prefix
        input_ids[row, :prefix] = torch.tensor(ids[:prefix])
        input_ids[row, prefix + width - own :] = torch.tensor(ids[prefix:])
        attention_mask[row, :prefix] = 1
        attention_mask[row, prefix + width - own :] = 1
    return input_ids, attention_mask


def weights_version(model: Any) -> tuple:
    """Changes whenever a parameter is modified in place (an optimizer step, `load_state_dict`) or replaced."""
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


class SharedPrefixCache:
    """The key/value cache of the last shared prefix a model computed, for the batches that share it.

    Args:
        pad_id: The token that fills the gap between the prefix and each row's own tokens (masked out).
        min_prefix: The shortest shared prefix worth a cache; shorter ones give plain left-padded inputs.
        step: The optimizer step the weights are at (a trainer's `state.global_step`), when there is one.
        dedupe_prompts: Prefill the own tokens of a prompt that several rows repeat once, not once per row.

    The cache is kept while [`weights_version`] and `step()` are unchanged, and recomputed after any change to the
    weights. The step also covers weights that change without a visible in-place update (ZeRO-3 gathers them anew).
    """

    def __init__(
        self,
        pad_id: int,
        min_prefix: int = MIN_SHARED_PREFIX,
        step: Callable[[], int] | None = None,
        dedupe_prompts: bool = True,
    ):
        self.pad_id = pad_id
        self.min_prefix = min_prefix
        self.step = step
        self.dedupe_prompts = dedupe_prompts
        self._key: tuple[int, ...] = ()
        self._version: tuple | None = None
        self._cache: Any = None
        self.prefills = 0  # how many times a prefix was computed (for tests and benchmarks)
        self.prompt_prefill_rows = 0  # how many distinct prompts were prefilled after the prefix, all batches together

    def inputs(
        self, model: Any, token_ids: list[list[int]], device: Any, new_tokens: int = 0
    ) -> tuple[dict[str, Any], int]:
        """The inputs of `generate` for one batch of prompts that will grow by up to `new_tokens`, and where its
        completions start."""
        prefix = self._prefix_for(model, token_ids, device, new_tokens)
        input_ids, attention_mask = pad_after_prefix(token_ids, prefix, self.pad_id)
        inputs = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
        if prefix:
            inputs[cache_argument(model)] = self._rows_cache(model, token_ids, inputs, prefix)
        return inputs, input_ids.shape[1]

    @torch.no_grad()
    def last_logits(self, model: Any, token_ids: list[list[int]], device: Any) -> torch.Tensor:
        """Each row's next-token logits after all its tokens (one forward pass, no generation), with the shared
        prefix computed once: what a probe of many prompts that share a template needs."""
        prefix = self._prefix_for(model, token_ids, device)
        input_ids, mask = pad_after_prefix(token_ids, prefix, self.pad_id)
        cache = self._prefix_rows(len(token_ids)) if prefix else None
        return _forward_after_prefix(model, input_ids.to(device), mask.to(device), prefix, cache)[:, -1].float()

    def _prefix_rows(self, rows: int) -> Any:
        """A copy of the kept prefix's cache, one row per batch row."""
        cache = copy.deepcopy(self._cache)
        cache.batch_repeat_interleave(rows)
        return cache

    def _rows_cache(self, model: Any, token_ids: list[list[int]], inputs: dict[str, Any], prefix: int) -> Any:
        """Every row's cache: the prefix, and when rows repeat a prompt (a group's rollouts), that prompt's own tokens
        but the last, computed once per distinct prompt rather than once per row. Without repeats `generate` prefills
        the own tokens itself, as it did before."""
        first_rows, row_to_group = distinct_rows(token_ids)
        last = inputs["input_ids"].shape[1] - 1  # left to `generate`, which needs its logits
        if not self.dedupe_prompts or len(first_rows) == len(token_ids) or last == prefix:
            return self._prefix_rows(len(token_ids))
        cache = self._prefix_rows(len(first_rows))
        input_ids, mask = inputs["input_ids"][first_rows, :last], inputs["attention_mask"][first_rows, :last]
        with torch.no_grad():  # the prompts' own logits are not needed, only the cache they fill
            _forward_after_prefix(model, input_ids, mask, prefix, cache)
        self.prompt_prefill_rows += len(first_rows)
        cache.batch_select_indices(torch.tensor(row_to_group, device=input_ids.device))
        return cache

    def _reuse(self, shared_tokens: list[int]) -> bool:
        """Whether the kept prefix serves a batch with these shared tokens, shortening it when the batch shares less
        of it: the refill rounds of a step share the template, not always the few tokens after it."""
        common = 0
        for kept, token in zip(self._key, shared_tokens):
            if kept != token:
                break
            common += 1
        if common == len(self._key):
            return bool(common)
        if common < self.min_prefix:
            return False
        shortened = copy.deepcopy(self._cache)
        try:
            shortened.crop(common - len(self._key))  # transformers 5 counts the tokens to remove
        except RuntimeError:  # a sliding-window layer past its window cannot be shortened: compute the prefix anew
            return False
        self._key, self._cache = self._key[:common], shortened
        return True

    def _prefix_for(self, model: Any, token_ids: list[list[int]], device: Any, new_tokens: int = 0) -> int:
        """The length of the cached prefix this batch uses (0 for none), computing it when needed."""
        from transformers import DynamicCache

        shared = shared_prefix_length(token_ids)
        if shared < self.min_prefix or not window_allows_gap(model, token_ids, new_tokens):
            return 0
        version = (weights_version(model), self.step() if self.step is not None else None)
        if version == self._version and self._reuse(token_ids[0][:shared]):
            return len(self._key)
        self._key, self._version = tuple(token_ids[0][:shared]), version
        self._cache = DynamicCache(config=model.config)
        with torch.no_grad():
            model(input_ids=torch.tensor([list(self._key)], device=device), use_cache=True,
                  **{cache_argument(model): self._cache})  # fmt: skip
        self.prefills += 1
        return shared


def _forward_after_prefix(model: Any, input_ids: Any, mask: Any, prefix: int, cache: Any) -> Any:
    """The last column's logits of a forward pass over the columns after `prefix` (whose keys and values `cache`
    holds, `None` when `prefix` is 0), at the positions `generate` gives them: the masked gap not counted, so that
    each row's own tokens sit where a single prefill would put them. `cache` is filled with those columns."""
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    cache_kwargs = {} if cache is None else {cache_argument(model): cache, "use_cache": True}
    return model(input_ids=input_ids[:, prefix:], attention_mask=mask, position_ids=positions[:, prefix:],
                 logits_to_keep=1, **cache_kwargs).logits  # fmt: skip


def window_allows_gap(model: Any, token_ids: Sequence[Sequence[int]], new_tokens: int) -> bool:
    """Whether rows laid out with a masked gap after the prefix see what they would see left-padded.

    A sliding-window layer (Gemma 3's) looks back a fixed number of columns, the masked gap included. Once the batch
    and its new tokens outgrow the window, a row whose own tokens sit after a gap would see less of its prompt than
    left-padded, so the prefix is then not shared (unless every row has the same length: no gap)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    window = getattr(config, "sliding_window", None)
    if not window or "sliding_attention" not in (getattr(config, "layer_types", None) or []):
        return True
    lengths = {len(ids) for ids in token_ids}
    return len(lengths) == 1 or max(lengths) + new_tokens <= window


def cache_argument(model: Any) -> str:
    """Newer transformers name the key/value cache `cache` (and warn on `past_key_values`); older ones only know the
    latter."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def install_prefix_cache(
    model: Any,
    pad_id: int,
    *,
    min_prefix: int = MIN_SHARED_PREFIX,
    step: Callable[[], int] | None = None,
    dedupe_prompts: bool = True,
) -> SharedPrefixCache:
    """Make `model.generate(input_ids=..., attention_mask=...)` on left-padded prompts prefill their shared prefix
    once, keeping it while the weights are unchanged (the refill rounds of a step share it), and the rest of each
    distinct prompt once per batch (see [`SharedPrefixCache`]).

    GRPOTrainer calls `generate(**inputs, generation_config=...)` and reads the completions after the prompt's
    width, so the wrapper returns the caller's prompt columns followed by the generated tokens, as plain generation
    does. Batches it cannot serve (no shared prefix, extra inputs, a configured cache or none, dict outputs, a model
    with dropout in training mode, whose prefix would share one dropout draw) go to the plain `generate`.

    Returns:
        The [`SharedPrefixCache`] the wrapper keeps.
    """
    original_generate = model.generate
    prefix_cache = SharedPrefixCache(pad_id, min_prefix, step, dedupe_prompts)

    def generate(*args: Any, **kwargs: Any) -> Any:
        if args or not _servable(model, kwargs):
            return original_generate(*args, **kwargs)
        input_ids, attention_mask = kwargs.pop("input_ids"), kwargs.pop("attention_mask")
        token_ids = [ids[mask.bool()].tolist() for ids, mask in zip(input_ids.cpu(), attention_mask.cpu())]
        config = kwargs.get("generation_config") or model.generation_config
        new_tokens = kwargs.get("max_new_tokens") or config.max_new_tokens or config.max_length
        inputs, width = prefix_cache.inputs(model, token_ids, input_ids.device, new_tokens)
        generated = original_generate(**inputs, **kwargs)
        return torch.cat([input_ids, generated[:, width:]], dim=1)

    model.generate = generate
    return prefix_cache


def _servable(model: Any, kwargs: dict[str, Any]) -> bool:
    if "input_ids" not in kwargs or "attention_mask" not in kwargs:
        return False
    extra_inputs = [key for key, value in kwargs.items() if isinstance(value, torch.Tensor) or "cache" in key]
    if set(extra_inputs) - {"input_ids", "attention_mask"}:  # images, token types, a cache of the caller's
        return False
    config = kwargs.get("generation_config")
    if config is not None and (config.cache_implementation is not None or config.return_dict_in_generate):
        return False
    if kwargs.get("use_cache", True) is False or (config is not None and config.use_cache is False):
        return False
    return not (model.training and _has_dropout(model))


def _has_dropout(model: Any) -> bool:
    config = getattr(model, "config", None)
    rates = [getattr(config, name, 0.0) or 0.0 for name in ("attention_dropout", "hidden_dropout", "dropout")]
    modules = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    return any(rate > 0 for rate in rates + modules)
