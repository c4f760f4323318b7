"""RPTTrainer: GRPO on next-token reasoning examples, with RPT's defaults, data checks, metrics and model card."""

import functools
import logging
import os
from typing import Any

import datasets
import torch
from accelerate.utils import is_peft_model
from trl import GRPOTrainer
from trl.trainer.utils import get_config_model_id

from ..data.builder import build_next_token_dataset
from ..data.columns import RPT_COLUMNS, check_next_token_columns
from ..data.prompt_settings import check_prompt_settings, check_reward_template
from ..data.templates import template_worked_answer
from ..host_memory import ReleaseFreedMemory, freed_memory_kept
from ..hub import CheckpointRevisionPusher, check_hub_access, public_name
from ..hub.model_card import PAPER, TAGS, TRAINING_CURVES_PNG, plot_training_curves, render_model_card
from ..models import load_training_tokenizer
from ..rewards.model_rewards import MODEL_REWARDS, InformationGainReward, ModelReward
from ..rewards.prefix_match import REWARD_FUNCTIONS
from ..rewards.thought_budget import unwrapped_reward, with_thought_budget
from .band_sampling import (
    BandProbeCallback,
    BandRepeatSampler,
    BandSamplingMixin,
    FirstTokenProbe,
    PassRateTracker,
    with_band_index,
)
from .checkpoints import CheckpointCompletion, resolve_resume_checkpoint
from .cpu_lm_head import CompletionScoringOnCPUMixin
from .dynamic_sampling import DynamicSamplingMixin, check_dynamic_sampling
from .empty_batch import EmptyBatchSkipMixin
from .generation import install_answer_stop, install_generation_autocast
from .mixed_objective import MixedObjectiveMixin
from .prefix_cache import install_prefix_cache
from .rpt_config import RPTConfig
from .sampler import EntropyCurriculumRepeatSampler, EpochReplayRepeatSampler, check_curriculum, entropy_order
from .sampling import install_inverse_cdf_sampling
from .shared_prefix import (
    SharedPrefixScoringMixin,
    check_checkpointing_arguments,
    check_peft_under_zero3,
    check_shared_prefix_model,
    shared_prefix_refusal,
)
from .signal import LearningSignalMixin, LearningSignalWarning


logger = logging.getLogger(__name__)
__all__ = ["RPT_COLUMNS", "RPTTrainer"]


# `CompletionScoringOnCPUMixin` comes before `SharedPrefixScoringMixin`: the shared-prefix scoring runs inside its
# CPU completion-only projection.
class RPTTrainer(
    EmptyBatchSkipMixin,
    CompletionScoringOnCPUMixin,
    SharedPrefixScoringMixin,
    LearningSignalMixin,
    DynamicSamplingMixin,
    MixedObjectiveMixin,
    BandSamplingMixin,
    GRPOTrainer,
):
    """Trainer for Reinforcement Pre-Training (Dong et al. 2025, arXiv 2506.08007).

    A thin `trl.GRPOTrainer`: the policy reads a context, reasons, and answers the next token in `\\boxed{}`;
    the default reward is [`prefix_match_reward`]. On top of GRPO it adds

    - the default reward from `args.reward` (bound to `args.require_think_close`); the rewards that read the policy
      (`rpt_trl.rewards.model_rewards`: `dense`, `conditional_dense`, `information_gain`, given by name or in `reward_funcs`)
      are bound to this trainer, and the information-gain reference is restored with the checkpoint on resume;
    - a check of the dataset's columns, and the building of examples from a raw document dataset (one with the
      `args.text_column` columns and no `prompt`) with [`build_next_token_dataset`] and the config's settings;
    - metrics `rpt/next_token_accuracy`, `rpt/answer_rate` and `rpt/reasoning_tokens` (logged by the reward);
    - the learning signal every step, `rpt/signal_share/generated`, `rpt/signal_share/trained` and
      `rpt/distinct_answers` (see `rpt_trl.trainer.signal`), and a warning when it stays low
      (`args.signal_warning_threshold`);
    - optionally, positions in the learnable band (`args.band_sampling`, see `rpt_trl.trainer.band_sampling`);
    - optionally, the mixed objective: `args.next_token_loss_coef` × next-token cross-entropy on the positions'
      contexts added to the GRPO loss (see `rpt_trl.trainer.mixed_objective`);
    - optionally, EOS as soon as the answer box closes (`args.stop_after_answer`);
    - with transformers generation, the rollouts' shared prompt prefix computed once per step, and each group's
      prompt once for its rollouts (`args.rollout_prefix_cache`, see `rpt_trl.trainer.prefix_cache`);
    - dynamic sampling from `args.dynamic_sampling_start_step` (see `rpt_trl.trainer.dynamic_sampling`);
    - optionally, a reasoning-length budget on every reward (`args.thought_budget`, see `rpt_trl.rewards.thought_budget`;
      metrics `rpt/over_budget_fraction`, `rpt/budget_penalty`) and an easy-to-hard entropy curriculum
      (`args.curriculum="entropy"`, see `rpt_trl.trainer.sampler`);
    - on a CPU, log-probabilities of the completion positions only, as on CUDA (see `rpt_trl.trainer.cpu_lm_head`);
    - optionally, each group's prompt run forward once in the loss (`args.shared_prefix_loss`, see
      `rpt_trl.trainer.shared_prefix`);
    - no loss forward and backward for a batch whose advantages are all zero when nothing else enters the loss
      (optimizer and scheduler still step; metric `rpt/skipped_backward`, see `rpt_trl.trainer.empty_batch`);
    - an RPT model card.

    Args:
        model: Model id, local path or instantiated model, as for `GRPOTrainer`.
        reward_funcs: Reward functions; `None` uses `args.reward`.
        args: An [`RPTConfig`]; `None` uses its defaults with `output_dir="<model name>-RPT"`.
        train_dataset: Next-token examples (columns `prompt`, `ground_truth`, `ground_truth_boundaries`), or raw
            documents.
        eval_dataset: As `train_dataset`, or a dict of them.
        processing_class: The tokenizer. Loaded from the model when `None`.
        **kwargs: Passed to `GRPOTrainer` (callbacks, peft_config, ...).

    Example:
        >>> trainer = RPTTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", args=RPTConfig(output_dir="rpt"),
        ...                      train_dataset=train, processing_class=tokenizer)  # doctest: +SKIP
        >>> trainer.train()  # doctest: +SKIP
    """

    _tag_names = list(TAGS)
    _name = "RPT"
    _paper = PAPER

    def __init__(
        self,
        model: Any,
        reward_funcs: Any = None,
        args: RPTConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        **kwargs: Any,
    ):
        args = _checked_args(model, args)
        chosen_shared_prefix = args.shared_prefix_loss
        uses_peft = kwargs.get("peft_config") is not None or (not isinstance(model, str) and is_peft_model(model))
        if args.shared_prefix_loss:
            check_peft_under_zero3(args, uses_peft)
        elif args.shared_prefix_loss is None:
            _settle_shared_prefix(
                args,
                shared_prefix_refusal(check_checkpointing_arguments, args)
                or shared_prefix_refusal(check_peft_under_zero3, args, uses_peft),
            )
        train_dataset, eval_dataset, processing_class = self._prepared_datasets(
            model, args, reward_funcs, train_dataset, eval_dataset, processing_class
        )
        # The tokenizer before the rewards, once the data is checked (GRPOTrainer would load the same one later), so
        # that the rewards count thought tokens with it.
        processing_class = processing_class or _training_tokenizer(model, args)
        if reward_funcs is None:
            reward_funcs = [_default_reward(args, processing_class)]
        reward_funcs = with_thought_budget(reward_funcs, args, processing_class)

        super().__init__(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            **kwargs,
        )
        if args.shared_prefix_loss is None:  # the model is known now
            _settle_shared_prefix(
                args,
                shared_prefix_refusal(check_checkpointing_arguments, args)
                or shared_prefix_refusal(check_shared_prefix_model, self.model),
                settle_on=True,
            )
        if args.shared_prefix_loss:  # GRPOTrainer may have made checkpointing reentrant (PEFT with ZeRO-3)
            self._check_shared_prefix_loss(args, chosen=chosen_shared_prefix)
        for reward in self.reward_funcs:  # the rewards that read the policy score with this trainer's model
            if isinstance(unwrapped_reward(reward), ModelReward) and reward.trainer is None:
                reward.bind(self)
        self._install_hooks(args)
        self._add_callbacks(args)

    def _prepared_datasets(
        self,
        model: Any,
        args: RPTConfig,
        reward_funcs: Any,
        train_dataset: Any,
        eval_dataset: Any,
        processing_class: Any,
    ) -> tuple[Any, Any, Any]:
        """The datasets built (from raw documents) and checked, all before the model (and vLLM) load; with the
        tokenizer, when building needed it."""
        _check_prompts(args, reward_funcs, train_dataset, eval_dataset)
        if _is_raw(train_dataset, args) or _is_raw(eval_dataset, args):
            processing_class = processing_class or _training_tokenizer(model, args)
            train_dataset = self._build_if_raw(train_dataset, args, processing_class)
            eval_dataset = self._build_if_raw(eval_dataset, args, processing_class)

        for name, dataset in _named_datasets(train_dataset, eval_dataset):
            _check_not_empty(dataset, name)
        check_dynamic_sampling(args, train_dataset)  # before the model (and vLLM) load
        if args.band_sampling:
            train_dataset = with_band_index(train_dataset)
        check_curriculum(args.curriculum, train_dataset)
        if args.use_vllm:
            _prepare_vllm(args)
        if reward_funcs is None or _model_reward_name(reward_funcs) is not None:
            for name, dataset in _named_datasets(train_dataset, eval_dataset):
                check_next_token_columns(dataset, name)  # the RPT rewards' columns, before the model loads
        return train_dataset, eval_dataset, processing_class

    def _check_shared_prefix_loss(self, args: RPTConfig, chosen: bool | None) -> None:
        check_checkpointing_arguments(args)
        check_shared_prefix_model(self.model)
        if args.per_device_train_batch_size % args.num_generations:
            # Advice for a user who turned it on; only a note under the default.
            logger.log(
                logging.WARNING if chosen else logging.INFO,
                "shared_prefix_loss shares a prompt among the rows of one micro-batch: with "
                "per_device_train_batch_size=%d, not a multiple of num_generations=%d, a group's prompt runs once "
                "per micro-batch it spans; a multiple of num_generations runs it once.",
                args.per_device_train_batch_size,
                args.num_generations,
            )

    def _install_hooks(self, args: RPTConfig) -> None:
        """The generation hooks: the forced EOS kept out of training (vLLM), the rollouts' prefix cache, the
        inverse-CDF sampler, the answer stop and mixed precision (transformers generation)."""
        if args.stop_after_answer and args.use_vllm:
            from .vllm_engine import keep_forced_eos_out_of_training

            keep_forced_eos_out_of_training(
                self.vllm_generation, self._tokenizer, require_think_close=args.require_think_close
            )
        if args.rollout_prefix_cache and not args.use_vllm:
            # Before the answer stop, which then wraps it: the stop sees the prompts as generate receives them.
            self.rollout_prefix_cache = install_prefix_cache(
                self.model, self._tokenizer.pad_token_id, step=lambda: self.state.global_step
            )
        if args.inverse_cdf_sampling and not args.use_vllm:
            # Before the answer stop too, which appends its processor: the sampler stays the last one.
            install_inverse_cdf_sampling(self.model)
        if args.stop_after_answer and not args.use_vllm:
            install_answer_stop(self.model, self._tokenizer, require_think_close=args.require_think_close)
        if (args.bf16 or args.fp16) and not args.use_vllm:
            # Last, so that it wraps the other hooks: the rollouts' weights are cast once per call, not per token.
            install_generation_autocast(self.model, self.accelerator.autocast)

    def _add_callbacks(self, args: RPTConfig) -> None:
        """Checkpoint completion, the Hub revision pusher and the learning-signal warning; the band sampler's
        pass-rate tracker; and where the process keeps freed memory (`rpt_trl.host_memory`), its periodic release."""
        self.add_callback(CheckpointCompletion())  # after the callbacks that write into a checkpoint
        if args.push_checkpoint_revisions:
            self.add_callback(
                CheckpointRevisionPusher(self.hub_model_id, token=args.hub_token, retries=args.hub_push_retries)
            )
        if args.band_sampling:
            self.band_tracker = PassRateTracker(len(self.train_dataset), decay=args.band_decay)
            if args.band_probe:
                self.band_probe = _first_token_probe(self.train_dataset, self._tokenizer, args)
                self.add_callback(BandProbeCallback(self))
        if args.signal_warning_threshold is not None:
            self.add_callback(LearningSignalWarning(args.signal_warning_threshold, args.signal_warning_steps))
        if freed_memory_kept():
            self.add_callback(ReleaseFreedMemory())

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> Any:
        """`Trainer.train`, with two more ways to resume.

        Args:
            resume_from_checkpoint: `True` resumes from the last *complete* checkpoint in `args.output_dir`
                (half-written ones are skipped with a warning); `"org/name@step-000500"` downloads that Hub revision
                and resumes from it; a local path resumes from that folder.
            **kwargs: Passed to `Trainer.train`.
        """
        self._complete_checkpoints_last()
        checkpoint = resolve_resume_checkpoint(resume_from_checkpoint, self.args)
        for reward in self.reward_funcs:  # the information-gain reference is restored from the same checkpoint
            if isinstance(unwrapped_reward(reward), InformationGainReward):
                reward.reference_callback.resume_from = checkpoint
        return super().train(resume_from_checkpoint=checkpoint, **kwargs)

    def _complete_checkpoints_last(self) -> None:
        """Move [`CheckpointCompletion`] behind every callback added since, but before the Hub pusher."""
        callbacks = self.callback_handler.callbacks
        completion = next((c for c in callbacks if isinstance(c, CheckpointCompletion)), None)
        if completion is None:
            return
        callbacks.remove(completion)
        pusher = next((i for i, c in enumerate(callbacks) if isinstance(c, CheckpointRevisionPusher)), len(callbacks))
        callbacks.insert(pusher, completion)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        # Trainer deletes the checkpoints over save_total_limit at the end of this call, before the callbacks'
        # on_save write their files (the information-gain reference) into the new one: a kill in between would
        # leave no whole checkpoint. CheckpointCompletion deletes them once the new one is marked whole.
        limit = self.args.save_total_limit
        # A state resumed from an older checkpoint does not name CheckpointCompletion; Trainer expects every
        # stateful callback's entry there.
        self.state.stateful_callbacks.setdefault(CheckpointCompletion.__name__, {})
        self.args.save_total_limit = None
        self.args._deferred_save_total_limit = limit  # what training_args.bin records (RPTConfig.__getstate__)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
            del self.args._deferred_save_total_limit

    def _get_train_sampler(self, dataset: Any = None) -> Any:
        # GRPO's sampler restarts its shuffle when a run resumes in a later epoch; this one replays the epoch's order.
        sampler = super()._get_train_sampler(dataset)
        if self.args.band_sampling:
            curriculum = self.args.curriculum == "entropy"
            self._band_sampler = BandRepeatSampler(
                data_source=sampler.data_source,
                mini_repeat_count=sampler.mini_repeat_count,
                tracker=self.band_tracker,
                band=(self.args.band_low, self.args.band_high),
                batch_size=sampler.batch_size,
                repeat_count=sampler.repeat_count,
                seed=self.args.seed,
                order=entropy_order(_entropies(sampler.data_source)) if curriculum else None,
            )
            return self._band_sampler
        if self.args.curriculum == "entropy":
            return EntropyCurriculumRepeatSampler(
                data_source=sampler.data_source,
                mini_repeat_count=sampler.mini_repeat_count,
                batch_size=sampler.batch_size,
                repeat_count=sampler.repeat_count,
            )
        return EpochReplayRepeatSampler(
            data_source=sampler.data_source,
            mini_repeat_count=sampler.mini_repeat_count,
            batch_size=sampler.batch_size,
            repeat_count=sampler.repeat_count,
            shuffle=sampler.shuffle,
            seed=sampler.seed,
        )

    def _refill_weights(self, num_groups: int) -> torch.Tensor | None:
        """Dynamic sampling's refills draw from the learnable band, as the batch drawn last did, leaving out the
        positions this step has generated while `num_groups` others keep a weight."""
        sampler = getattr(self, "_band_sampler", None)
        if sampler is None:
            return None
        weights = sampler.weights(sampler.last_batch_number)
        fresh = weights.clone()
        fresh[list(self.band_positions_generated())] = 0.0
        return fresh if int((fresh > 0).sum()) >= num_groups else weights

    @staticmethod
    def _build_if_raw(dataset: Any, args: RPTConfig, tokenizer: Any) -> Any:
        if isinstance(dataset, dict):
            return {name: RPTTrainer._build_if_raw(d, args, tokenizer) for name, d in dataset.items()}
        if not _is_raw(dataset, args):
            return dataset
        logger.info("Building next-token examples from raw documents (columns %s).", args.text_column)
        settings = args.next_token_settings()
        if settings.min_entropy is not None:
            # Raw documents carry no proxy entropies: min_entropy filters prepared datasets (`rpt-trl prepare`).
            logger.warning("min_entropy=%s is ignored for raw documents, which have no entropies.", args.min_entropy)
            settings.min_entropy = None
        return build_next_token_dataset(dataset, tokenizer, settings)

    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_name: str | None = None,
        tags: str | list[str] | None = None,
        eval_results: list[dict[str, Any]] | None = None,
        license: str | None = None,
    ) -> None:
        """Write an RPT model card (`README.md`) into `args.output_dir`, with the training curves of this run.

        `trainer.push_to_hub(dataset_name=..., eval_results=..., license=...)` passes these arguments on.

        Args:
            model_name: Name of the model.
            dataset_name: Hub id of the training dataset.
            tags: Extra tags.
            eval_results: Evaluation results in the project's schema (`rpt-trl evaluate` output), shown as a table
                and as `model-index` metadata.
            license: License identifier for the metadata (e.g. `"apache-2.0"`, usually the base model's).
        """
        if not self.is_world_process_zero():
            return
        if dataset_name is not None and public_name(dataset_name) != dataset_name:
            # `datasets:` metadata is a Hub link: a local folder would be a broken link and a machine path.
            logger.info("The training dataset is a local path, not a Hub id: the model card does not name it.")
            dataset_name = None
        curves_png = plot_training_curves(
            self.state.log_history, os.path.join(self.args.output_dir, TRAINING_CURVES_PNG)
        )
        card = render_model_card(
            base_model=_hub_base_model(self.model),
            model_name=model_name or os.path.basename(os.path.normpath(self.args.output_dir)),
            hub_model_id=self.hub_model_id,
            dataset_name=dataset_name,
            tags=[tags] if isinstance(tags, str) else list(tags or []),
            args=self.args,
            eval_results=eval_results,
            license=license,
            log_history=self.state.log_history,
            curves_png=TRAINING_CURVES_PNG if curves_png else None,
        )
        card.save(os.path.join(self.args.output_dir, "README.md"))


def _default_reward(args: RPTConfig, tokenizer: Any) -> Any:
    """The reward `args.reward` names: a function bound to the config, or a model reward that the trainer binds."""
    if args.reward in MODEL_REWARDS:
        options: dict[str, Any] = {"require_think_close": args.require_think_close}
        if args.reward == "information_gain":
            options = {
                "reference_ema_decay": args.reference_ema_decay,
                "reference_ema_device": args.reference_ema_device,
            }
        return MODEL_REWARDS[args.reward](processing_class=tokenizer, **options)
    return functools.partial(
        REWARD_FUNCTIONS[args.reward], require_think_close=args.require_think_close, reasoning_tokenizer=tokenizer
    )


def _check_prompts(args: RPTConfig, reward_funcs: Any, train_dataset: Any, eval_dataset: Any) -> None:
    """Prompts a dataset already has must follow the prompt settings and suit the reward (built ones do)."""
    reward_name = args.reward if reward_funcs is None else _model_reward_name(reward_funcs)
    if reward_name is not None:
        check_reward_template(reward_name, args.prompt_template)
    for name, dataset in _named_datasets(train_dataset, eval_dataset):
        if not _is_raw(dataset, args):
            check_prompt_settings(dataset, args, name, reward=reward_name)


def _model_reward_name(reward_funcs: list[Any]) -> str | None:
    """The name of the first reward in `reward_funcs` that reads the policy, whose prompts can be checked; else None."""
    funcs = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs]
    return next((reward.name for reward in funcs if isinstance(unwrapped_reward(reward), ModelReward)), None)


def _prepare_vllm(args: RPTConfig) -> None:
    """Before TRL builds its vLLM engine: keep CPU weights loadable (colocate) and ask vLLM to stop after answers."""
    from . import vllm_engine

    if args.vllm_mode == "colocate":
        vllm_engine.keep_cpu_weights_loadable()
    if args.stop_after_answer:
        # In server mode the server's environment must have rpt-trl installed too; this checks the trainer's only.
        vllm_engine.check_answer_stop_plugin()
        generation_kwargs = dict(args.generation_kwargs or {})
        stop = vllm_engine.answer_stop_sampling_kwargs(
            require_think_close=args.require_think_close, server=args.vllm_mode == "server"
        )
        for key, values in stop.items():  # merged into any extra arguments the user already passes
            generation_kwargs[key] = {**(generation_kwargs.get(key) or {}), **values}
        args.generation_kwargs = generation_kwargs


def _entropies(dataset: Any) -> list[float]:
    return [float("nan") if e is None else float(e) for e in dataset["entropy"]]


def _hub_base_model(model: Any) -> str | None:
    name = get_config_model_id(model.config)
    return name if name and not os.path.isdir(name) else None


def _column_names(dataset: Any) -> list[str] | None:
    """The dataset's columns; for an `IterableDataset` that does not know them (a generator), its first row's."""
    columns = getattr(dataset, "column_names", None)
    if columns or not isinstance(dataset, datasets.IterableDataset):
        return columns
    first = next(iter(dataset), None)  # a fresh iterator: training still starts at the first row
    return None if first is None else list(first)


def _check_not_empty(dataset: Any, name: str) -> None:
    if isinstance(dataset, datasets.IterableDataset):
        empty = next(iter(dataset), None) is None
    else:
        empty = hasattr(dataset, "__len__") and len(dataset) == 0
    if empty:
        raise ValueError(
            f"{name} has no examples, so training would run 0 steps. If it was built from documents, they may all be "
            "shorter than min_context_tokens, or an entropy threshold may have dropped every position."
        )


def _is_raw(dataset: Any, args: RPTConfig) -> bool:
    if isinstance(dataset, dict):
        return any(_is_raw(d, args) for d in dataset.values())
    columns = _column_names(dataset)
    raw = bool(columns) and "prompt" not in columns and all(c in columns for c in args.text_column)
    if raw and isinstance(dataset, datasets.IterableDataset):
        raise ValueError(
            f"This IterableDataset holds raw documents (columns {columns}); next-token examples are built from a "
            "map-style dataset. Load the documents without streaming (or `datasets.Dataset.from_generator(...)`), "
            "or build the examples first with `rpt_trl.build_next_token_dataset(documents, tokenizer, ...)`."
        )
    return raw


def _named_datasets(train_dataset: Any, eval_dataset: Any) -> list[tuple[str, Any]]:
    named = [("train_dataset", train_dataset)]
    if isinstance(eval_dataset, dict):
        named += [(f"eval_dataset[{key!r}]", d) for key, d in eval_dataset.items()]
    else:
        named.append(("eval_dataset", eval_dataset))
    return [(name, d) for name, d in named if d is not None]


def _training_tokenizer(model: Any, args: RPTConfig) -> Any:
    revision = (args.model_init_kwargs or {}).get("revision")
    return load_training_tokenizer(model, revision=revision, trust_remote_code=args.trust_remote_code)


def _settle_shared_prefix(args: RPTConfig, refusal: str | None, settle_on: bool = False) -> None:
    """Settle `shared_prefix_loss=None`: off with a log line when a check refuses it; on once every check has passed
    (`settle_on`, after the model has loaded)."""
    if refusal is not None:
        logger.info("shared_prefix_loss is off (the default turns it on only where it can run): %s", refusal)
        args.shared_prefix_loss = False
    elif settle_on:
        args.shared_prefix_loss = True


def _checked_args(model: Any, args: RPTConfig | None) -> RPTConfig:
    """The run's config (a default one named after the model when `None`), checked before any model or data work."""
    if args is None:
        model_name = model if isinstance(model, str) else get_config_model_id(model.config)
        args = RPTConfig(output_dir=f"{model_name.rstrip('/').split('/')[-1]}-RPT")
    elif not isinstance(args, RPTConfig):
        raise TypeError(
            f"RPTTrainer needs an RPTConfig, got {type(args).__name__}; build one with RPTConfig(**your_args) "
            "(every GRPOConfig field is accepted)."
        )
    # A missing login must not surface hours later; one process asks the Hub (whoami is rate-limited), and torchrun
    # stops the others when it raises.
    if args.push_to_hub and args.process_index == 0:
        check_hub_access(args.hub_token)
    if isinstance(model, str):  # load weights from safetensors only, unless the user says otherwise
        args.model_init_kwargs = {"use_safetensors": True, **(args.model_init_kwargs or {})}
    return args


def _first_token_probe(dataset: Any, tokenizer: Any, args: RPTConfig) -> FirstTokenProbe | None:
    """Band sampling's probe, or `None` (with a warning) where the positions give it nothing to read."""
    if not {"ground_truth", "ground_truth_boundaries"} <= set(dataset.column_names):
        logger.warning("band_probe needs ground_truth and ground_truth_boundaries columns: unseen positions are "
                       "estimated at 0.5.")  # fmt: skip
        return None
    template, reads = args.prompt_template, args.band_probe_reads
    if reads is None:
        reads = "context" if template_worked_answer(template) is None else "answer"
        logger.info("band_probe reads the first ground-truth token after the %s.",
                    "bare context" if reads == "context" else "prompt and the template's worked thought")  # fmt: skip
    probe = FirstTokenProbe(dataset, tokenizer, template, reads=reads)
    if len(probe.known) < len(dataset):
        logger.warning(
            "band_probe: %d of %d prompts do not follow prompt_template; they are not probed, and enter the band "
            "only once observed.",
            len(dataset) - len(probe.known), len(dataset),
        )  # fmt: skip
    return probe
