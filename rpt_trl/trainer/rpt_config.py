"""Configuration of [`RPTTrainer`]: a `GRPOConfig` with the paper's defaults and the RPT task's own fields."""

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig

from ..data.builder import NextTokenSettings
from ..data.prompt_settings import check_reward_template
from ..numeric_fields import check_numeric_fields
from ..rewards.model_rewards import MODEL_REWARDS
from ..rewards.prefix_match import REWARD_FUNCTIONS
from ..rewards.reference import REFERENCE_DEVICES
from ..rewards.thought_budget import PENALTIES, check_thought_budget
from .sampler import CURRICULA
from .shared_prefix import check_checkpointing_arguments


logger = logging.getLogger(__name__)

REWARDS = [*REWARD_FUNCTIONS, *MODEL_REWARDS]


@dataclass
class RPTConfig(GRPOConfig, NextTokenSettings):
    r"""Configuration class for [`RPTTrainer`], Reinforcement Pre-Training (Dong et al. 2025, arXiv 2506.08007).

    Everything in `trl.GRPOConfig` applies. Only the RPT-specific fields are listed here.

    > Parameters that control the task

    require_think_close (`bool`, *optional*, defaults to `True`):
        Only a `\boxed{}` after `</think>` counts as the answer.
    reward (`str`, *optional*, defaults to `"prefix_match"`):
        Default reward when no `reward_funcs` are given: `"prefix_match"` (the paper's), `"first_token"`, or a reward
        that reads the policy's probabilities (`rpt_trl.rewards.model_rewards`): `"dense"` and `"conditional_dense"` (paper,
        Appendix A) or `"information_gain"` (after RLP, arXiv 2510.01265; use it with
        `prompt_template="information_gain"`).
    reference_ema_decay (`float`, *optional*, defaults to `0.999`):
        With `reward="information_gain"`: decay per optimizer step of the reference, an exponential moving average
        of the policy's trainable weights (the adapter only with LoRA); `1.0` freezes it at the starting weights.
    reference_ema_device (`str`, *optional*, defaults to `"cpu"`):
        Where that average lives: `"cpu"` (host memory; the accelerator holds no second copy) or `"model"` (beside
        the weights: faster, one more float32 copy of the trainable weights on the accelerator).
    stop_after_answer (`bool`, *optional*, defaults to `False`):
        End a completion (with EOS) as soon as its answer box closes. Saves generation time for models that keep
        writing. Works with transformers generation (`model.generate`; not its continuous batching, which is
        refused) and with vLLM (colocate, and server mode when the server has rpt-trl installed), through
        `rpt_trl.trainer.vllm_engine.AnswerStopLogitsProcessor`.
    rollout_prefix_cache (`bool`, *optional*, defaults to `True`):
        With transformers generation (`model.generate`), compute the batch's shared prompt prefix (the few-shot
        template) once and reuse its keys and values in every rollout, and in every refill round of a step while the
        weights are unchanged; and the rest of each prompt once for its group's rollouts rather than once per rollout
        (see `rpt_trl.trainer.prefix_cache`). The completions are the same as without it, under the same seed. vLLM
        caches prefixes itself; this flag does not affect it.
    inverse_cdf_sampling (`bool`, *optional*, defaults to `True`):
        With transformers generation on a CPU, draw each rollout token with one random number per row from the
        cumulative probabilities (`rpt_trl.trainer.sampling`) instead of `torch.multinomial`, which draws one per
        vocabulary entry: the same distribution (temperature, `top_k`, `top_p`, `min_p` as `generate` applies them)
        from another random stream. At Gemma 3's 262k-token vocabulary, `torch.multinomial` took 0.36 s a decoding
        step for 64 rows on 2 cores.

    > Parameters that control the reasoning-length budget (RMT, arXiv 2509.24375; see `rpt_trl.rewards.thought_budget`)

    thought_budget (`int` or `None`, *optional*, defaults to `None`):
        Thought budget in tokens of the policy's tokenizer: a positive reward (a correct answer) whose thought is
        longer is lowered, for every reward variant. `None`: no budget.
    thought_budget_penalty (`str`, *optional*, defaults to `"linear"`):
        `"linear"`: the reward falls by `1 / thought_budget_width` of itself per token over the budget, down to 0;
        `"step"`: any thought over the budget earns 0.
    thought_budget_width (`int` or `None`, *optional*, defaults to `None`):
        Linear penalty: tokens over the budget at which the reward reaches 0 (`None`: the budget itself).

    > Parameters that control how the loss is computed

    shared_prefix_loss (`bool` or `None`, *optional*, defaults to `None`):
        Score the completions of a group on one forward pass of their shared prompt, whose keys and values all G
        completions read (see `rpt_trl.trainer.shared_prefix`): the same log-probabilities and gradients, the prompt
        computed once per group instead of G times. `None`: on wherever it can run, otherwise off with a log line
        saying why (reentrant gradient checkpointing, PEFT under ZeRO-3 with checkpointing, a model whose cache
        cannot be shared by row). `True`: on, and those cases are refused with the fix. `False`: off.

    > Parameters that control the order of training positions

    curriculum (`str` or `None`, *optional*, defaults to `None`):
        `"entropy"`: visit training positions from the lowest to the highest value of the dataset's `entropy` column
        (RMT's easy-to-hard curriculum), instead of shuffling; see
        `rpt_trl.trainer.sampler.EntropyCurriculumRepeatSampler` for seeds, epochs, processes and resume.

    > Parameters that watch and keep the learning signal (see `rpt_trl.trainer.signal`)

    signal_warning_threshold (`float` or `None`, *optional*, defaults to `0.1`):
        Warn once, with what to try, when the share of generated groups whose rewards differ
        (`rpt/signal_share/generated`) stays below this for `signal_warning_steps` steps. `None`: no warning.
    signal_warning_steps (`int`, *optional*, defaults to `10`):
        Consecutive optimizer steps below the threshold before the warning.
    next_token_loss_coef (`float`, *optional*, defaults to `0.0`):
        λ of the mixed objective (RMT's dual loss, arXiv 2509.24375): adds λ × the next-token cross-entropy on the
        positions' contexts (the document text inside each prompt, without the template's tokens) to the GRPO loss,
        in the same optimizer step. `0.0`: the GRPO loss alone. See `rpt_trl.trainer.mixed_objective`.
    band_sampling (`bool`, *optional*, defaults to `False`):
        Train on positions whose estimated pass rate for the current policy is neither near 0 nor near 1, estimated
        from the pass rates already observed (see `rpt_trl.trainer.band_sampling`).
    band_low / band_high (`float`, *optional*, defaults to `0.1` / `0.9`):
        The learnable band of estimated pass rates.
    band_decay (`float`, *optional*, defaults to `0.98`):
        Weight kept by past observations at each generation batch, so the estimate follows the policy.
    band_probe (`bool`, *optional*, defaults to `True`):
        Estimate the pass rate of positions not yet observed by the policy's probability of their first ground-truth
        token right after the context (one forward pass, no generation), calibrated to the pass rates observed.
        Needs `ground_truth` columns and prompts that follow `prompt_template`; without them, unseen positions are
        estimated at 0.5.
    band_probe_reads (`str` or `None`, *optional*, defaults to `None`):
        Where the probe reads the first ground-truth token. `"answer"`: after the whole prompt and the one thought
        all the template's worked examples write (`rpt_trl.data.templates.template_worked_answer`), where a rollout
        that writes that thought starts its answer. `"context"`: right after the bare context, as in standard mode.
        `None`: `"answer"` where the template has such a thought (`copy_word`, the demo's), else `"context"`. On the demo's corpus and template
        with Gemma 3 270M, the answer probe correlated with the pass rate of 8 rollouts at Pearson 0.90, the
        context probe at 0.56.
    band_probe_steps (`int`, *optional*, defaults to `5`):
        Optimizer steps between two probes, so that the estimate follows the policy.
    band_probe_positions (`int`, *optional*, defaults to `1024`):
        Positions probed each time, drawn at random (all of them when fewer); one forward pass per 32.

    > Parameters that control how documents become examples

    Every field of [`NextTokenSettings`] (`prompt_template`, `prompt_format`, `text_column`, `position_stride`,
    `min_context_tokens`, `max_context_tokens`, `max_ground_truth_tokens`, `skip_unanswerable_positions`,
    `position_filter`, `min_entropy`), with its defaults. `RPTTrainer` uses them to build examples from a raw document dataset, and the
    training script filters a prepared dataset's `entropy` column by `min_entropy`.

    > Parameters that control pushing checkpoints to the Hub

    push_checkpoint_revisions (`bool`, *optional*, defaults to `False`):
        With `push_to_hub=True`, also push every saved checkpoint (weights, optimizer, RNG and trainer state) to its
        own branch `step-{global_step:06d}` of the Hub repository, in the background, so a run can be resumed from
        it elsewhere. Combine with `hub_strategy="end"` so that `main` only receives the final model.
    hub_push_retries (`int`, *optional*, defaults to `3`):
        Tries per checkpoint push; after the last one the failure is logged and training goes on.

    > Parameters that control dynamic sampling (paper, Section 4.1; see `rpt_trl.trainer.dynamic_sampling`)

    dynamic_sampling (`bool`, *optional*, defaults to `True`):
        From `dynamic_sampling_start_step` on, drop the groups whose rollouts all earned the same reward and refill
        the batch with fresh prompts.
    dynamic_sampling_start_step (`int`, *optional*, defaults to `500`):
        First optimizer step with dynamic sampling (the paper's 500).
    dynamic_sampling_max_refills (`int`, *optional*, defaults to `4`):
        Most refill rounds per generation batch; when reached, uniform groups fill the remaining slots and a warning
        is logged.
    dynamic_sampling_min_groups (`int` or `None`, *optional*, defaults to `None`):
        Refill only while fewer than this many groups per process have differing rewards (the other slots take
        uniform groups, which carry no advantage). `None`: all of them, as DAPO does. With few groups a step, `1`
        pays for a refill round only on a step that would otherwise train on nothing.

    > Defaults taken from the paper (Section 4.1), different from `GRPOConfig`

    - `temperature`: `0.8` instead of `1.0`.
    - `max_completion_length`: `8192` instead of `512`.
    - `weight_decay`: `0.01` instead of `0.0`.
    - `learning_rate` `1e-6`, `num_generations` `8`, `beta` `0.0` and `epsilon` `0.2` are GRPOConfig's defaults
      and the paper's values.
    """

    temperature: float = field(
        default=0.8,
        metadata={"help": "Sampling temperature (the paper uses 0.8)."},
    )
    max_completion_length: int | None = field(
        default=8192,
        metadata={"help": "Maximum completion length in tokens (the paper uses 8,192)."},
    )
    weight_decay: float = field(
        default=0.01,
        metadata={"help": "AdamW weight decay (the paper uses 0.01)."},
    )

    require_think_close: bool = field(
        default=True,
        metadata={"help": "Only a \\boxed{} after </think> counts as the answer."},
    )
    reward: str = field(
        default="prefix_match",
        metadata={
            "help": "Default reward: 'prefix_match' (the paper's), 'first_token', 'dense', 'conditional_dense' or "
            "'information_gain'.",
            "choices": REWARDS,
        },
    )
    reference_ema_decay: float = field(
        default=0.999,
        metadata={
            "help": "information_gain: EMA decay per optimizer step of the reference weights (1.0 keeps them frozen)."
        },
    )
    reference_ema_device: str = field(
        default="cpu",
        metadata={
            "help": "information_gain: where the reference EMA lives, 'cpu' or 'model' (beside the weights).",
            "choices": list(REFERENCE_DEVICES),
        },
    )
    stop_after_answer: bool = field(
        default=False,
        metadata={
            "help": "End a completion with EOS as soon as its answer box closes (transformers generate or vLLM)."
        },
    )
    rollout_prefix_cache: bool = field(
        default=True,
        metadata={
            "help": "With transformers generation, compute the rollouts' shared prompt prefix once per step and "
            "each distinct prompt once per batch, and reuse their key/value cache (same completions, less prefill)."
        },
    )

    inverse_cdf_sampling: bool = field(
        default=True,
        metadata={
            "help": "With transformers generation on a CPU, sample each token by inverse CDF (one random number per "
            "row) instead of torch.multinomial (one per vocabulary entry): same distribution, faster."
        },
    )

    shared_prefix_loss: bool | None = field(
        default=None,
        metadata={
            "help": "Run each group's prompt forward once, its keys and values shared by the G completions. None: on "
            "where the model and setup allow it, else off with a log line; True: on, or refused; False: off."
        },
    )
    push_checkpoint_revisions: bool = field(
        default=False,
        metadata={"help": "With push_to_hub, push each checkpoint to its own branch step-NNNNNN in the background."},
    )
    hub_push_retries: int = field(
        default=3,
        metadata={"help": "Tries per checkpoint push; a push that still fails is logged and training goes on."},
    )
    dynamic_sampling: bool = field(
        default=True,
        metadata={"help": "Drop groups whose rollouts all earned the same reward and refill the batch."},
    )
    dynamic_sampling_start_step: int = field(
        default=500,
        metadata={"help": "First optimizer step with dynamic sampling (the paper's 500)."},
    )
    dynamic_sampling_max_refills: int = field(
        default=4,
        metadata={"help": "Most refill rounds per generation batch before uniform groups fill the remaining slots."},
    )
    dynamic_sampling_min_groups: int | None = field(
        default=None,
        metadata={"help": "Refill only while fewer than this many groups per process have differing rewards (None: "
                          "all of them)."},
    )  # fmt: skip
    thought_budget: int | None = field(
        default=None,
        metadata={
            "help": "Thought budget in tokens: positive rewards of longer thoughts are lowered (None: no budget)."
        },
    )
    thought_budget_penalty: str = field(
        default="linear",
        metadata={
            "help": "How rewards over the budget fall: 'linear' (to 0 over thought_budget_width) or 'step'.",
            "choices": list(PENALTIES),
        },
    )
    thought_budget_width: int | None = field(
        default=None,
        metadata={"help": "Linear penalty: tokens over the budget at which the reward reaches 0 (None: the budget)."},
    )
    curriculum: str | None = field(
        default=None,
        metadata={"help": "'entropy': train from the lowest to the highest 'entropy' column value, no shuffling."},
    )
    signal_warning_threshold: float | None = field(
        default=0.1,
        metadata={"help": "Warn when the share of groups with differing rewards stays below this (None: never)."},
    )
    signal_warning_steps: int = field(
        default=10,
        metadata={"help": "Consecutive steps below signal_warning_threshold before the warning."},
    )
    next_token_loss_coef: float = field(
        default=0.0,
        metadata={"help": "Mixed objective: weight of the next-token cross-entropy on the contexts (0: GRPO only)."},
    )
    band_sampling: bool = field(
        default=False,
        metadata={"help": "Sample positions whose estimated pass rate lies in [band_low, band_high]."},
    )
    band_low: float = field(default=0.1, metadata={"help": "Band sampling: lowest estimated pass rate to train on."})
    band_high: float = field(default=0.9, metadata={"help": "Band sampling: highest estimated pass rate to train on."})
    band_decay: float = field(
        default=0.98,
        metadata={"help": "Band sampling: weight kept by past observations at each generation batch."},
    )
    band_probe: bool = field(
        default=True,
        metadata={"help": "Band sampling: estimate unseen positions by the policy's probability of their first "
                          "ground-truth token (one forward pass of the context)."},
    )  # fmt: skip
    band_probe_reads: str | None = field(
        default=None,
        metadata={"help": "Band sampling: where the probe reads the first ground-truth token: 'answer' (after the "
                          "prompt and the template's worked thought), 'context' (after the bare context), or None "
                          "('answer' where the template's examples share one thought).", "choices": ["answer", "context"]},
    )  # fmt: skip
    band_probe_steps: int = field(
        default=5, metadata={"help": "Band sampling: optimizer steps between two probes of the policy."}
    )
    band_probe_positions: int = field(
        default=1024, metadata={"help": "Band sampling: positions probed each time, drawn at random (all when fewer)."}
    )

    def __post_init__(self):
        # Before GRPOConfig's own checks, which would take `True` for 1 or fail on a fraction with a bare TypeError.
        check_numeric_fields(self)
        # GRPOConfig divides by num_generations in its own __post_init__: check it first, for a message, not a
        # ZeroDivisionError.
        if self.num_generations is not None and self.num_generations < 2:
            raise ValueError(
                f"num_generations must be at least 2 (GRPO compares the rollouts of a group), got {self.num_generations}."
            )
        super().__post_init__()
        self.check_next_token_settings()  # TrainingArguments.__post_init__ does not chain to the settings' own
        self._check_sampling_and_optimisation()
        self._check_reward_fields()
        self._check_hub_fields()
        self._check_dynamic_sampling_fields()
        self._check_thought_budget_fields()
        if self.curriculum is not None and self.curriculum not in CURRICULA:
            raise ValueError(f"curriculum must be None or one of {list(CURRICULA)}, got {self.curriculum!r}.")
        self._check_signal_fields()
        self._check_generation_hooks()

    def _check_reward_fields(self) -> None:
        """Refuse a reward, or an information-gain reference, that cannot work; warn about a costly KL term."""
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {self.reward!r}.")
        if not 0.0 <= self.reference_ema_decay <= 1.0:
            raise ValueError(
                f"reference_ema_decay must be in [0, 1] (1.0 freezes the reference), got {self.reference_ema_decay}."
            )
        if self.reward == "information_gain" and self.beta > 0:
            logger.warning(
                "beta=%s with reward='information_gain': TRL loads a second, frozen copy of the model for the KL "
                "penalty, besides the reward's EMA reference (which needs no second model). Set beta=0.0 (the "
                "paper's) unless you want that KL term and its memory.",
                self.beta,
            )
        if self.reference_ema_device not in REFERENCE_DEVICES:
            raise ValueError(
                f"reference_ema_device must be one of {list(REFERENCE_DEVICES)}, got {self.reference_ema_device!r}."
            )
        if self.reward == "information_gain":  # other rewards are checked by the trainer, which knows reward_funcs
            check_reward_template(self.reward, self.prompt_template)

    def _check_hub_fields(self) -> None:
        """Refuse checkpoint revisions that have no Hub repository to go to, or no try to push them."""
        if self.push_checkpoint_revisions and not self.push_to_hub:
            raise ValueError(
                "push_checkpoint_revisions=True pushes to the run's Hub repository: set push_to_hub=True (and "
                "hub_model_id='org/name'), or set push_checkpoint_revisions=False."
            )
        if self.hub_push_retries < 1:
            raise ValueError(f"hub_push_retries must be at least 1, got {self.hub_push_retries}.")

    def _check_dynamic_sampling_fields(self) -> None:
        """Refuse a dynamic-sampling start or refill count below 0, or a group target below 1."""
        if self.dynamic_sampling_start_step < 0:
            raise ValueError(
                f"dynamic_sampling_start_step must be at least 0 (0 starts at once), got "
                f"{self.dynamic_sampling_start_step}; set dynamic_sampling=False to turn it off."
            )
        if self.dynamic_sampling_max_refills < 0:
            raise ValueError(
                f"dynamic_sampling_max_refills must be at least 0 (0 only drops, never refills), got "
                f"{self.dynamic_sampling_max_refills}."
            )
        if self.dynamic_sampling_min_groups is not None and self.dynamic_sampling_min_groups < 1:
            raise ValueError(
                f"dynamic_sampling_min_groups must be at least 1 or None (all groups), got "
                f"{self.dynamic_sampling_min_groups}."
            )

    def _check_thought_budget_fields(self) -> None:
        """Refuse thought-budget settings that cannot work, or that shape a budget which is off."""
        if self.thought_budget is not None:
            check_thought_budget(self.thought_budget, self.thought_budget_penalty, self.thought_budget_width)
        elif self.thought_budget_width is not None or self.thought_budget_penalty not in PENALTIES:
            raise ValueError(
                f"thought_budget_width / thought_budget_penalty shape the thought budget, which is off "
                f"(thought_budget=None): set thought_budget=<tokens>, or leave them at their defaults "
                f"(penalty one of {list(PENALTIES)}, width None)."
            )

    def _check_generation_hooks(self) -> None:
        """Refuse the loss and generation hooks that cannot work with the checkpointing or generation chosen."""
        if self.shared_prefix_loss:  # None is settled by the trainer, once the model is known
            check_checkpointing_arguments(self)
        if self.stop_after_answer and (self.use_transformers_continuous_batching or self.use_transformers_paged):
            # That path calls `model.generate_batch`, not `model.generate`, which the answer stop wraps.
            raise ValueError(
                "stop_after_answer cannot stop transformers' continuous batching "
                "(use_transformers_continuous_batching / use_transformers_paged): set one of them to False."
            )

    def _check_signal_fields(self) -> None:
        """Refuse learning-signal settings that cannot work, before any model loads."""
        if self.signal_warning_threshold is not None and not 0.0 < self.signal_warning_threshold <= 1.0:
            raise ValueError(
                f"signal_warning_threshold must be in (0, 1] or None (no warning), got {self.signal_warning_threshold}."
            )
        if self.signal_warning_steps < 1:
            raise ValueError(f"signal_warning_steps must be at least 1, got {self.signal_warning_steps}.")
        if self.next_token_loss_coef < 0:
            raise ValueError(
                f"next_token_loss_coef must be >= 0 (0 turns the mixed objective off), got {self.next_token_loss_coef}."
            )
        if not 0.0 <= self.band_low < self.band_high <= 1.0:
            raise ValueError(
                f"band_low and band_high must satisfy 0 <= band_low < band_high <= 1, got {self.band_low} and "
                f"{self.band_high}."
            )
        if self.band_probe_reads not in (None, "answer", "context"):
            raise ValueError(f"band_probe_reads must be 'answer', 'context' or None, got {self.band_probe_reads!r}.")
        if self.band_probe_steps < 1 or self.band_probe_positions < 1:
            raise ValueError(
                f"band_probe_steps and band_probe_positions must be at least 1, got {self.band_probe_steps} and "
                f"{self.band_probe_positions}."
            )
        if not 0.0 < self.band_decay <= 1.0:
            raise ValueError(f"band_decay must be in (0, 1] (1 never forgets), got {self.band_decay}.")

    def _check_sampling_and_optimisation(self) -> None:
        """Refuse the GRPO values that cannot train, before any model loads."""
        if self.temperature <= 0:
            raise ValueError(
                f"temperature must be > 0, got {self.temperature}: GRPO samples several different rollouts per prompt. "
                "The paper uses 0.8; for nearly greedy rollouts use a small value such as 0.1."
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (1 keeps every token), got {self.top_p}.")
        if self.top_k < 0:
            raise ValueError(f"top_k must be 0 (no top-k filter) or more, got {self.top_k}.")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1] (or None: no min-p filter), got {self.min_p}.")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0 (1.0: no penalty), got {self.repetition_penalty}.")
        if self.max_completion_length is not None and self.max_completion_length < 1:
            raise ValueError(
                f"max_completion_length must be at least 1 token (the paper uses 8,192), got "
                f"{self.max_completion_length}."
            )
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.learning_rate < 0:
            raise ValueError(f"learning_rate must be >= 0 (the paper uses 1e-6), got {self.learning_rate}.")

    # The run uses `hub_token` from this object, but `Trainer` pickles the whole object into every checkpoint's
    # `training_args.bin` (and the checkpoint pusher uploads it): leave the token out of the pickled state. Copies
    # stay in memory, so they keep it.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if state.get("hub_token") is not None:
            state["hub_token"] = None
        if "_deferred_save_total_limit" in state:  # RPTTrainer._save_checkpoint holds the limit back while it saves
            state["save_total_limit"] = state.pop("_deferred_save_total_limit")
        return state

    def __copy__(self) -> "RPTConfig":
        duplicate = self.__class__.__new__(self.__class__)
        duplicate.__dict__.update(self.__dict__)
        return duplicate

    def __deepcopy__(self, memo: dict[int, Any]) -> "RPTConfig":
        duplicate = self.__class__.__new__(self.__class__)
        memo[id(self)] = duplicate
        duplicate.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return duplicate
