"""Next-token accuracy on an eval split every N training steps, logged with the training metrics."""

import logging
from typing import Any

import torch
from transformers import TrainerCallback

from .next_token import CompletionEntropy, reasoning_scores, reasoning_summary, transformers_generator


logger = logging.getLogger(__name__)


class NextTokenAccuracyCallback(TrainerCallback):
    """Evaluate reasoning-mode next-token accuracy every `eval_steps` steps and log it through the trainer.

    Logged keys (as `trainer.log` logs the other metrics, so they reach `log_history` and every reporting backend):
    `eval_rpt/next_token_accuracy`, `eval_rpt/answer_rate`, `eval_rpt/pass@k` with several samples, and
    `eval_rpt/next_token_accuracy_<split>` for the Easy / Medium / Hard splits the data labels, and
    `eval_rpt/entropy`: the policy's mean token entropy over the completions it samples, at the trainer's training
    temperature ([`CompletionEntropy`]). TRL's `entropy` is taken on each step's own positions, which change from
    step to step; this one is taken on the same positions and the same random draws at every evaluation, so that a
    fall in it is the policy's, not the batch's.

    The completions are sampled with the trainer's model and tokenizer, parsed and scored exactly as in training.
    Generation runs on the main process only (it does not support DeepSpeed ZeRO-3, where every rank must take
    part in generation).

    Args:
        trainer: The `RPTTrainer` (or `GRPOTrainer`) to evaluate and log through.
        eval_dataset: Next-token examples (`prompt`, `ground_truth`, `ground_truth_boundaries`, optionally
            `difficulty` or `entropy`).
        eval_steps: Evaluate when the global step is a multiple of this.
        num_samples: Completions per position (mean accuracy and pass@k).
        max_new_tokens: Defaults to the trainer's `max_completion_length`.
        temperature: Defaults to the trainer's `temperature`.
        batch_size: Prompts per generation batch.
        seed: Seed of the sampler (the same at every evaluation, so steps are compared on equal draws).
        eval_on_start: Also evaluate before the first step (step 0), the start of a learning curve.
        eval_on_end: Also evaluate after the last step (`max_steps`) when it is not a multiple of `eval_steps`, so
            that a curve ends where training does.

    Every evaluation is also kept in `history`: `{"step", "position_scores", **metrics}`, one score per position
    (the mean reward of its samples), from which a learning curve takes its intervals.

    Example:
        >>> trainer = RPTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)  # doctest: +SKIP
        >>> trainer.add_callback(NextTokenAccuracyCallback(trainer, held_out, eval_steps=50))  # doctest: +SKIP
    """

    def __init__(
        self,
        trainer: Any,
        eval_dataset: Any,
        *,
        eval_steps: int,
        num_samples: int = 1,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        batch_size: int = 8,
        seed: int = 0,
        eval_on_start: bool = False,
        eval_on_end: bool = False,
    ):
        if eval_steps < 1:
            raise ValueError(f"eval_steps must be at least 1, got {eval_steps}.")
        self.trainer = trainer
        self.eval_rows = list(eval_dataset)  # materialised once, not at every evaluation
        self.eval_steps = eval_steps
        self.num_samples = num_samples
        self.max_new_tokens = max_new_tokens or trainer.args.max_completion_length
        self.temperature = trainer.args.temperature if temperature is None else temperature
        self.batch_size = batch_size
        self.seed = seed
        self.require_think_close = getattr(trainer.args, "require_think_close", True)
        self.eval_on_start = eval_on_start
        self.eval_on_end = eval_on_end
        self.history: list[dict[str, Any]] = []

    def evaluate(self, model: Any, step: int | None = None) -> dict[str, float]:
        """Score the eval split with `model`, return the metrics to log and keep them in `history` (under `step`).

        The sampler reseeds torch's generator; it runs on a fork of it, so training draws the same random numbers with
        or without evaluations (and a process that evaluates stays in step with the others). It runs in the trainer's
        precision: under its mixed precision when that is on."""
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        # In the trainer's precision (its mixed precision, when on), in one context: the weights are cast once.
        with torch.random.fork_rng(devices=devices), self.trainer.accelerator.autocast():
            return self._evaluate(model, step)

    def _evaluate(self, model: Any, step: int | None) -> dict[str, float]:
        tokenizer = self.trainer.processing_class
        entropy = CompletionEntropy(self.trainer.args.temperature, stop_tokens(model, tokenizer))
        generate = transformers_generator(
            model,
            tokenizer,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            batch_size=self.batch_size,
            seed=self.seed,
            inverse_cdf=getattr(self.trainer.args, "inverse_cdf_sampling", True),
            entropy=entropy,
            show_progress=False,
        )
        rows = self.eval_rows
        _, rewards, predictions = reasoning_scores(
            rows, generate, num_samples=self.num_samples, require_think_close=self.require_think_close
        )
        overall, splits = reasoning_summary(rows, rewards, predictions)
        metrics = {"eval_rpt/next_token_accuracy": overall["accuracy"], "eval_rpt/answer_rate": overall["answer_rate"],
                   "eval_rpt/entropy": entropy.mean}  # fmt: skip
        if self.num_samples > 1:
            metrics[f"eval_rpt/pass@{self.num_samples}"] = overall[f"pass@{self.num_samples}"]
        for split, summary in splits.items():
            metrics[f"eval_rpt/next_token_accuracy_{split}"] = summary["accuracy"]
        scores = [sum(r) / len(r) for r in rewards]
        self.history.append({"step": step, "position_scores": scores, **metrics})
        return metrics

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.eval_on_start and self.trainer.accelerator.is_main_process:
            metrics = self.evaluate(self.trainer.accelerator.unwrap_model(self.trainer.model), step=state.global_step)
            logger.info("Step %d next-token evaluation: %s", state.global_step, metrics)
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs):
        due = state.global_step % self.eval_steps == 0 or (self.eval_on_end and state.global_step == state.max_steps)
        if not due or not self.trainer.accelerator.is_main_process:
            return control
        metrics = self.evaluate(self.trainer.accelerator.unwrap_model(self.trainer.model), step=state.global_step)
        logger.info("Step %d next-token evaluation: %s", state.global_step, metrics)
        # GRPOTrainer.log merges (and clears) the metrics of the model's current mode. In eval mode it merges the
        # eval metrics, which are empty between evaluations, so the training metrics of this step stay untouched.
        # Trainer.log also resets `should_log`, which the flow callback may have just set for this step's own log.
        was_training, should_log = self.trainer.model.training, control.should_log
        self.trainer.model.eval()
        self.trainer.log(metrics)
        self.trainer.model.train(was_training)
        control.should_log = should_log
        return control


def stop_tokens(model: Any, tokenizer: Any) -> list[int]:
    """The tokens that end a completion: the tokenizer's EOS and the model's generation config's."""
    config = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if config is None else [config] if isinstance(config, int) else list(config)
    return ids + ([] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id])
