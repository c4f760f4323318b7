"""Draw the next token with one random number per row, not one per vocabulary entry.

`model.generate(do_sample=True)` draws each next token with `torch.multinomial`, which on a CPU draws one
exponential number per row and vocabulary entry. At Gemma 3's 262,144 tokens that is 0.36 s a decoding step for 64
rows on 2 cores, as long as the rest of the step: about 30% of the demo's evaluation and of a rollout batch's
generation. [`sample_next_tokens`] draws one uniform number per row and finds it in the row's cumulative
probabilities, found in two searches of short sums (which block of `SAMPLING_BLOCK` tokens, then which token in it;
the blocks' sums taken in float32 and cumulated in float64), so that no rounding of a 262k-term running sum shifts
mass between tokens. It samples the same distribution as `torch.multinomial`,
with its own random stream (seeded by torch's generator as usual).

[`install_inverse_cdf_sampling`] makes a CPU model's `generate` use it: a sampling call becomes a greedy one whose
logits processors end with the usual warpers (temperature, top-k, top-p, min-p, in `transformers`' order) and
[`InverseCDFSampler`], which leaves only the drawn token a finite score. The warpers' settings are the call's,
completed as `generate` completes them (the model's generation config, then transformers' defaults). Calls it cannot
serve (beams, several sequences per prompt, returned scores, other warpers or a watermark, a GPU) go to the plain
`generate`.
"""

import copy
import math
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


SAMPLING_BLOCK = 1024
# The sampling settings a greedy call must not carry; the warpers below stand in for the ones it supports.
_WARPER_FIELDS = ("temperature", "top_k", "top_p", "min_p")
_UNSUPPORTED = ("typical_p", "epsilon_cutoff", "eta_cutoff", "top_h", "watermarking_config")
_CALL_SETTINGS = ("do_sample", "num_beams", "num_return_sequences", "output_scores", "output_logits",
                  "return_dict_in_generate", "assistant_model", "prompt_lookup_num_tokens", *_WARPER_FIELDS,
                  *_UNSUPPORTED)  # fmt: skip


def sample_next_tokens(scores: torch.Tensor, generator: torch.Generator | None = None) -> torch.LongTensor:
    """One token per row of `scores` (logits, `-inf` for excluded tokens), drawn from `softmax(scores)`.

    Example:
        >>> scores = torch.tensor([[0.0, float("-inf"), 0.0], [float("-inf"), 5.0, float("-inf")]])
        >>> sample_next_tokens(scores)[1].item()
        1
    """
    scores = scores.float()
    weights = (scores - scores.max(dim=-1, keepdim=True).values).exp_()  # softmax, unnormalized
    rows, vocab = weights.shape
    blocks = math.ceil(vocab / SAMPLING_BLOCK)
    if vocab % SAMPLING_BLOCK:
        weights = torch.nn.functional.pad(weights, (0, blocks * SAMPLING_BLOCK - vocab))
    padded = weights.view(rows, blocks, SAMPLING_BLOCK)
    block_cdf = padded.sum(dim=-1).to(torch.float64).cumsum(dim=-1)
    total = block_cdf[:, -1:]
    if not bool((total > 0).all()):  # NaN too: every token excluded, or a non-finite logit
        raise ValueError("A row of scores has no token with a positive, finite probability to sample.")
    uniform = torch.rand(rows, 1, dtype=torch.float64, device=weights.device, generator=generator)
    # Strictly below the total, so that the first block (and token) whose cumulative mass exceeds it holds mass.
    target = torch.minimum(uniform * total, total * (1 - 1e-12))
    block = torch.searchsorted(block_cdf, target, right=True).clamp_(max=blocks - 1)
    before = torch.where(block > 0, block_cdf.gather(1, (block - 1).clamp(min=0)), 0.0)
    inner_cdf = padded.gather(1, block.unsqueeze(-1).expand(rows, 1, SAMPLING_BLOCK)).squeeze(1)
    inner_cdf = inner_cdf.to(torch.float64).cumsum(dim=-1)
    rest = torch.minimum(target - before, inner_cdf[:, -1:] * (1 - 1e-12))
    offset = torch.searchsorted(inner_cdf, rest, right=True).clamp_(max=SAMPLING_BLOCK - 1)
    return (block * SAMPLING_BLOCK + offset).squeeze(1)


class InverseCDFSampler(LogitsProcessor):
    """The last logits processor of a greedy `generate` call that samples: it draws each row's token from the
    processed scores ([`sample_next_tokens`]) and leaves it the only finite score, which greedy decoding then picks."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        chosen = sample_next_tokens(scores)
        drawn = torch.full_like(scores, float("-inf"))
        return drawn.scatter_(1, chosen.unsqueeze(1), 0.0)


def sampling_processors(
    temperature: float | None = None, top_k: int | None = None, top_p: float | None = None, min_p: float | None = None
) -> list[LogitsProcessor]:
    """The warpers `generate(do_sample=True)` applies for these settings, in its order, then [`InverseCDFSampler`]:
    pass them as `logits_processor` to a greedy `generate` call to sample."""
    warpers: list[LogitsProcessor] = []
    if temperature is not None and temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k is not None and top_k != 0:
        warpers.append(TopKLogitsWarper(top_k=top_k))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=top_p))
    if min_p is not None:
        warpers.append(MinPLogitsWarper(min_p=min_p))
    return [*warpers, InverseCDFSampler()]


def as_greedy_call(config: GenerationConfig) -> tuple[GenerationConfig, list[LogitsProcessor]] | None:
    """A sampling `config` as a greedy config and the processors that sample ([`sampling_processors`]); `None` when
    it is not a plain one-sequence sampling call or sets a warper this module does not replace."""
    processors = _processors_of(config)
    return None if processors is None else (_greedy(config), processors)


def _processors_of(config: GenerationConfig) -> list[LogitsProcessor] | None:
    """[`sampling_processors`] for `config`'s warpers; `None` where [`as_greedy_call`] gives none."""
    if not config.do_sample or (config.num_beams or 1) > 1 or (config.num_return_sequences or 1) > 1:
        return None
    if config.output_scores or config.output_logits or config.return_dict_in_generate:
        return None  # the caller reads the scores, which would be the sampler's
    if any(getattr(config, name, None) not in (None, 1.0, 0.0) for name in _UNSUPPORTED):
        return None
    return sampling_processors(*(getattr(config, name) for name in _WARPER_FIELDS))


def _greedy(config: GenerationConfig) -> GenerationConfig:
    """`config` without sampling: `do_sample` off and the warpers unset."""
    greedy = copy.deepcopy(config)
    greedy.do_sample = False
    for name in _WARPER_FIELDS:
        setattr(greedy, name, None)
    return greedy


def resolved_config(model: Any, config: GenerationConfig) -> GenerationConfig | None:
    """`config` with the values `generate` takes where it leaves them unset: the model's own generation config, then
    transformers' defaults (`top_k` 50 among them); `None` on a transformers without those defaults."""
    resolved = copy.deepcopy(config)
    own = getattr(model, "generation_config", None) or GenerationConfig()
    defaults = getattr(own, "_get_default_generation_params", None)
    if defaults is None:
        return None
    resolved.update(**own.to_dict(), defaults_only=True, allow_custom_entries=True)
    resolved.update(**defaults(), defaults_only=True)
    return resolved


def greedy_sampling_call(
    model: Any, config: GenerationConfig
) -> tuple[GenerationConfig, list[LogitsProcessor]] | None:
    """[`as_greedy_call`] of `config`, its warpers read from `config` as `model.generate` would complete it
    ([`resolved_config`]); the greedy config is `config`'s own, which `generate` completes as usual."""
    resolved = resolved_config(model, config)
    processors = None if resolved is None else _processors_of(resolved)
    return None if processors is None else (_greedy(config), processors)


def install_inverse_cdf_sampling(model: Any) -> None:
    """Make `model.generate(..., generation_config=config)` with a sampling `config` sample through
    [`InverseCDFSampler`] when its inputs are on a CPU (see the module docstring); any other call is unchanged.

    Install it before a wrapper that appends its own logits processors (the answer stop), so that the sampler comes
    last among them."""
    original_generate = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        config = kwargs.get("generation_config")
        inputs = kwargs.get("input_ids")
        if (
            args or config is None or inputs is None or inputs.device.type != "cpu"
            or any(name in kwargs for name in _CALL_SETTINGS)
        ):  # fmt: skip
            return original_generate(*args, **kwargs)
        greedy = greedy_sampling_call(model, config)
        if greedy is None:
            return original_generate(*args, **kwargs)
        kwargs["generation_config"], sampler = greedy
        kwargs["logits_processor"] = [*(kwargs.get("logits_processor") or []), *sampler]
        return original_generate(**kwargs)

    model.generate = generate
