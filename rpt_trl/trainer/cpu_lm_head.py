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

    # A module attribute, swapped for the duration of one scoring call: the trainer scores from one thread per
    # process, and TRL's own kernels import their copy of the function, so only the fused head's `compact` sees it.
    setattr(trl_utils, _COMPACT_DECISION, compact_on_cpu_too)
    try:
        yield
    finally:
        setattr(trl_utils, _COMPACT_DECISION, trl_decision)


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
