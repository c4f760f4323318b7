"""Configuration of [`RPTTrainer`]: a `GRPOConfig` with the paper's defaults and the RPT task's own fields."""

from dataclasses import dataclass, field

from trl import GRPOConfig

from .rewards import REWARD_FUNCTIONS
from .templates import resolve_template


@dataclass
class RPTConfig(GRPOConfig):
    r"""Configuration class for [`RPTTrainer`], Reinforcement Pre-Training (Dong et al. 2025, arXiv 2506.08007).

    Everything in `trl.GRPOConfig` applies. Only the RPT-specific fields are listed here.

    > Parameters that control the task

    prompt_template (`str`, *optional*, defaults to `"v0"`):
        Template name (`"v0"`, the paper's; `"few_shot"`, this project's) or a string containing `{context}`.
    prompt_format (`str`, *optional*, defaults to `"conversational"`):
        `"conversational"` for chat models, `"text"` for base models.
    require_think_close (`bool`, *optional*, defaults to `True`):
        Only a `\boxed{}` after `</think>` counts as the answer.
    reward (`str`, *optional*, defaults to `"prefix_match"`):
        Default reward when no `reward_funcs` are given: `"prefix_match"` (the paper's) or `"first_token"`.
    stop_after_answer (`bool`, *optional*, defaults to `False`):
        End a completion (with EOS) as soon as its answer box closes. Saves generation time for models that keep
        writing. Works with transformers generation and with vLLM (colocate, and server mode when the server has
        rpt-trl installed), through `rpt_trl.vllm_engine.AnswerStopLogitsProcessor`.

    > Parameters that control how raw documents become examples

    text_column (`list[str]`, *optional*, defaults to `["text"]`):
        Column(s) of a raw document dataset, joined with a blank line.
    position_stride (`int`, *optional*, defaults to `1`):
        Use every n-th token position of each document.
    min_context_tokens (`int`, *optional*, defaults to `16`):
        Positions with fewer tokens of context are not used.
    max_context_tokens (`int`, *optional*, defaults to `3840`):
        Left-truncate the context to this many tokens; leaves room for the template in the paper's 4,096-token
        prompt.
    max_ground_truth_tokens (`int`, *optional*, defaults to `16`):
        Tokens of continuation kept as ground truth, so multi-token answers can be scored.
    skip_unanswerable_positions (`bool`, *optional*, defaults to `True`):
        Skip positions whose continuation cannot be written inside `\boxed{}` (unbalanced braces).

    > Parameters that control pushing checkpoints to the Hub

    push_checkpoint_revisions (`bool`, *optional*, defaults to `False`):
        With `push_to_hub=True`, also push every saved checkpoint (weights, optimizer, RNG and trainer state) to its
        own branch `step-{global_step:06d}` of the Hub repository, in the background, so a run can be resumed from
        it elsewhere. Combine with `hub_strategy="end"` so that `main` only receives the final model.
    hub_push_retries (`int`, *optional*, defaults to `3`):
        Tries per checkpoint push; after the last one the failure is logged and training goes on.

    > Parameters that control dynamic sampling (paper, Section 4.1; see `rpt_trl.dynamic_sampling`)

    dynamic_sampling (`bool`, *optional*, defaults to `True`):
        From `dynamic_sampling_start_step` on, drop the groups whose rollouts all earned the same reward and refill
        the batch with fresh prompts.
    dynamic_sampling_start_step (`int`, *optional*, defaults to `500`):
        First optimizer step with dynamic sampling (the paper's 500).
    dynamic_sampling_max_refills (`int`, *optional*, defaults to `4`):
        Most refill rounds per generation batch; when reached, uniform groups fill the remaining slots and a warning
        is logged.

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

    prompt_template: str = field(
        default="v0",
        metadata={"help": "Template name ('v0', 'few_shot') or a string containing '{context}'."},
    )
    prompt_format: str = field(
        default="conversational",
        metadata={
            "help": "'conversational' for chat models, 'text' for base models.",
            "choices": ["conversational", "text"],
        },
    )
    require_think_close: bool = field(
        default=True,
        metadata={"help": "Only a \\boxed{} after </think> counts as the answer."},
    )
    reward: str = field(
        default="prefix_match",
        metadata={
            "help": "Default reward: 'prefix_match' (the paper's) or 'first_token'.",
            "choices": list(REWARD_FUNCTIONS),
        },
    )
    stop_after_answer: bool = field(
        default=False,
        metadata={
            "help": "End a completion with EOS as soon as its answer box closes (transformers or vLLM generation)."
        },
    )
    text_column: list[str] = field(
        default_factory=lambda: ["text"],
        metadata={"help": "Column(s) of a raw document dataset, joined with a blank line."},
    )
    position_stride: int = field(
        default=1,
        metadata={"help": "Use every n-th token position of each raw document."},
    )
    min_context_tokens: int = field(
        default=16,
        metadata={"help": "Positions with fewer tokens of context are not used."},
    )
    max_context_tokens: int = field(
        default=3840,
        metadata={"help": "Left-truncate the context to this many tokens."},
    )
    max_ground_truth_tokens: int = field(
        default=16,
        metadata={"help": "Tokens of continuation kept as ground truth."},
    )
    skip_unanswerable_positions: bool = field(
        default=True,
        metadata={"help": "Skip positions whose continuation cannot be written inside \\boxed{}."},
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

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.text_column, str):
            self.text_column = [self.text_column]
        try:
            resolve_template(self.prompt_template)
        except ValueError as error:
            raise ValueError(f"prompt_template: {error}") from None
        if self.prompt_format not in ("conversational", "text"):
            raise ValueError(
                f"prompt_format must be 'conversational' (chat models) or 'text' (base models), got {self.prompt_format!r}."
            )
        if self.reward not in REWARD_FUNCTIONS:
            raise ValueError(f"reward must be one of {list(REWARD_FUNCTIONS)}, got {self.reward!r}.")
        if not self.text_column:
            raise ValueError("text_column must name at least one column, e.g. text_column=['problem', 'solution'].")
        if self.position_stride < 1:
            raise ValueError(
                f"position_stride must be at least 1 (1 uses every position), got {self.position_stride}."
            )
        if self.min_context_tokens < 1:
            raise ValueError(f"min_context_tokens must be at least 1, got {self.min_context_tokens}.")
        if self.max_context_tokens < self.min_context_tokens:
            raise ValueError(
                f"max_context_tokens ({self.max_context_tokens}) must be at least min_context_tokens "
                f"({self.min_context_tokens}); raise max_context_tokens or lower min_context_tokens."
            )
        if self.max_ground_truth_tokens < 1:
            raise ValueError(
                f"max_ground_truth_tokens must be at least 1 (the answer is at least one token), "
                f"got {self.max_ground_truth_tokens}."
            )
        if self.push_checkpoint_revisions and not self.push_to_hub:
            raise ValueError(
                "push_checkpoint_revisions=True pushes to the run's Hub repository: set push_to_hub=True (and "
                "hub_model_id='org/name'), or set push_checkpoint_revisions=False."
            )
        if self.hub_push_retries < 1:
            raise ValueError(f"hub_push_retries must be at least 1, got {self.hub_push_retries}.")
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
