"""Score only the completion positions on a CPU, as TRL already does on CUDA and XPU.

GRPOTrainer (TRL 1.16) computes per-token log-probabilities through the fused LM head of
`trl.trainer.utils.add_fused_lm_head`. Whether that head projects only the positions that have a label (the
completion) or every position of the sequence (prompt included, over the whole vocabulary, zeroed afterwards) is
decided by one call, `_use_triton(hidden_states.device)`, which is true only on CUDA/XPU with Triton. TRL keeps
every position elsewhere so that the tile shapes stay fixed on compiling backends such as Neuron; a CPU gains nothing
from fixed shapes (with `torch_compile=True` it takes the same path as CUDA does), and scoring the prompt only costs
time. With Gemma 3 270M (262k vocabulary) on the demo's ~263-token
prompts and ~24-token completions, 62% of a training step was the backward through prompt logits that the loss
never reads; scoring only the completion gave the same log-probabilities and gradients and ran forward plus
backward 3.29x faster (issue 11).

[`CompletionScoringOnCPUMixin`] makes that one decision answer "compact" for CPU tensors while GRPOTrainer scores
a batch. It patches the decision rather than copying `_get_per_token_logps_and_entropies` or the fused forward, so
every other line of TRL's scoring, including the kernel and its backward, stays TRL's own. The patch is applied
only to the TRL versions whose code was read (`TRL_VERSIONS_CHECKED`); on any other the trainer logs once why and
scores as TRL does.
"""

import contextlib
import functools
import logging
from collections.abc import Iterator
from typing import Any

import torch
import trl
import trl.trainer.utils as trl_utils
from packaging.specifiers import SpecifierSet
from packaging.version import Version


logger = logging.getLogger(__name__)

# The versions whose `add_fused_lm_head` was read: there `_use_triton`, looked up in `trl.trainer.utils` at call
# time, decides only whether the head projects the labelled positions alone (`compact`), and the compact path runs
# on a CPU with the kernel's torch fallback. A later version may move or rename that decision; it is then left alone.
TRL_VERSIONS_CHECKED = SpecifierSet(">=1.16.0,<1.17")
# The name, in `trl.trainer.utils`, of the decision that this module widens to CPU tensors.
_COMPACT_DECISION = "_use_triton"
# The name, in `trl.trainer.utils`, of the chunked log-probability function that the fused head calls.
_KERNEL = "_ChunkedLogProbFunction"
# The most logits (tokens x vocabulary) scored at once under a CPU autocast (`autocast_head_scores`): 512 MiB in
# float32, 512 tokens of a 262k vocabulary; more go through TRL's chunked function.
MAX_LOGITS = 2**27


def completion_scoring_applies(trl_version: str | None = None) -> bool:
    """Whether the CPU completion-only scoring applies to this TRL (the installed one when `trl_version` is None).

    Logs once per version, at info level, why it does not apply.

    Args:
        trl_version: A TRL version string; defaults to `trl.__version__`.

    Example:
        >>> completion_scoring_applies("1.16.0"), completion_scoring_applies("1.17.0")
        (True, False)
    """
    return _applies(trl_version or trl.__version__)


@functools.cache
def _applies(trl_version: str) -> bool:
    if Version(trl_version) not in TRL_VERSIONS_CHECKED:
        logger.info(
            "TRL %s: GRPOTrainer scores every position (prompt included) on a CPU, as TRL does; rpt_trl scores only "
            "the completion positions for TRL %s, whose code it was checked against.",
            trl_version,
            TRL_VERSIONS_CHECKED,
        )
        return False
    if not callable(getattr(trl_utils, _COMPACT_DECISION, None)):
        logger.info(
            "TRL %s has no trl.trainer.utils.%s: GRPOTrainer scores every position on a CPU, as TRL does.",
            trl_version,
            _COMPACT_DECISION,
        )
        return False
    return True


@contextlib.contextmanager
def completion_positions_only_on_cpu() -> Iterator[None]:
    """Within this context, TRL's fused LM head projects only the labelled positions of CPU tensors.

    On CUDA/XPU the decision is TRL's own (unchanged); on a TRL version outside `TRL_VERSIONS_CHECKED` the context
    does nothing. Nesting is safe: each exit restores what its entry found.
    """
    if not completion_scoring_applies():
        yield
        return
    trl_decision = getattr(trl_utils, _COMPACT_DECISION)

    def compact_on_cpu_too(device: torch.device) -> bool:
        return device.type == "cpu" or trl_decision(device)

    # Module attributes, swapped for the duration of one scoring call: the trainer scores from one thread per
    # process, and TRL's own kernels import their copy of the decision, so only the fused head's `compact` sees it.
    trl_kernel = getattr(trl_utils, _KERNEL, None)
    setattr(trl_utils, _COMPACT_DECISION, compact_on_cpu_too)
    if trl_kernel is not None:
        setattr(trl_utils, _KERNEL, _AutocastHeadOnCPU(trl_kernel))
    try:
        yield
    finally:
        setattr(trl_utils, _COMPACT_DECISION, trl_decision)
        if trl_kernel is not None:
            setattr(trl_utils, _KERNEL, trl_kernel)


class _AutocastHeadOnCPU:
    """Stands in for TRL's chunked log-probability function while GRPOTrainer scores: under a CPU autocast, with
    logits that fit in `MAX_LOGITS` elements, the head is scored by [`autocast_head_scores`]; elsewhere by TRL."""

    def __init__(self, trl_kernel: Any):
        self.trl_kernel = trl_kernel

    def apply(self, hidden, weight, bias, targets, temperature, chunk_size, softcap=None, logit_scale=1.0,
              outputs=("entropy",)):  # fmt: skip
        if (
            hidden.device.type == "cpu"
            and torch.is_autocast_enabled("cpu")
            and hidden.shape[0] * weight.shape[0] <= MAX_LOGITS
        ):
            return autocast_head_scores(hidden, weight, bias, targets, temperature, softcap, logit_scale, outputs)
        return self.trl_kernel.apply(
            hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale, outputs
        )


def autocast_head_scores(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    temperature: float,
    softcap: float | None = None,
    logit_scale: float = 1.0,
    outputs: tuple[str, ...] = ("entropy",),
) -> tuple[Any, Any, Any, Any, Any]:
    """What TRL's chunked log-probability function returns, from the whole head at once, as autocast computes it.

    Returns `(log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1)` of each row's target under the head's
    logits (scaled by `logit_scale`, soft-capped at `softcap`, divided by `temperature`); those not named in
    `outputs` (besides the log-probabilities) are None, and only the first two carry gradients.

    TRL's function splits the vocabulary into chunks and recomputes each chunk's logits in the backward pass. Its
    CPU path multiplies in float32 whatever the autocast: it adds up the chunks' gradients in float32, because
    rounding each chunk's product to bf16 before the sum biases training. Here the head is one product, so there is
    no sum of rounded parts: the logits are the autocast's (bf16 on a CPU, as in TRL's forward), the softmax is
    taken in float32, and the backward is autocast's for one linear layer, as for every other layer of the model.
    On a 262k vocabulary and 384 tokens (the demo's step), the head's forward and backward took 3.8 s against 6.1 s
    through TRL's function under the same autocast, on a 2-core CPU with AVX512-BF16 (measured once). It holds the
    logits, so the caller bounds their size (`MAX_LOGITS`).
    """
    logits = torch.nn.functional.linear(hidden, weight, bias)
    z = logits.float() * logit_scale
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    z = z / temperature
    log_z = torch.logsumexp(z, dim=-1)
    log_probs = z.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z
    entropy = log_sum_sq_probs = mean_logits = is_top1 = None
    if "entropy" in outputs:
        entropy = log_z - (torch.softmax(z, dim=-1) * z).sum(-1)
    with torch.no_grad():
        if "log_sum_sq_probs" in outputs:
            log_sum_sq_probs = torch.logsumexp(2 * z, dim=-1) - 2 * log_z
        if "mean_logits" in outputs:
            mean_logits = z.mean(-1)
        if "is_top1" in outputs:
            is_top1 = z.argmax(-1) == targets  # the first maximum, as TRL counts a tie
    return log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1


class CompletionScoringOnCPUMixin:
    """Score only the completion positions on a CPU in a `GRPOTrainer` subclass (see the module docstring).

    Put it before `GRPOTrainer` in the bases. It wraps TRL's `_get_per_token_logps_and_entropies`, the one method
    through which GRPOTrainer scores the policy, the old policy and the reference model, without changing its
    arguments or its result (the completion's log-probabilities and entropies are the same; the prompt's, which
    TRL's method drops anyway, are no longer computed).
    """

    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any) -> Any:
        with completion_positions_only_on_cpu():
            return super()._get_per_token_logps_and_entropies(*args, **kwargs)
