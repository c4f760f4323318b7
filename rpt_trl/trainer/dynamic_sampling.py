"""Dynamic sampling (paper, Section 4.1; from DAPO): train only on groups whose rollouts earned different rewards.

A group of `num_generations` rollouts that all earned the same reward has advantage zero everywhere: with `beta=0`
it moves no parameter, yet it takes a slot of the batch. Once training reaches
`RPTConfig.dynamic_sampling_start_step`, [`DynamicSamplingMixin`] therefore

1. generates and scores the generation batch as `GRPOTrainer` does;
2. keeps the groups whose rewards differ ("informative") and drops the uniform ones;
3. while some process still has fewer informative groups than the batch holds (or than
   `dynamic_sampling_min_groups`, when set), draws fresh prompts from the train
   dataset (as many as the batch holds, on every process, so that the collective operations of generation and
   scoring stay in step), generates and scores them, and keeps their informative groups; at most
   `dynamic_sampling_max_refills` such rounds per generation batch;
4. returns a batch of exactly the configured size: the first informative groups, and, when the cap (or the
   group target) stopped the refills early, uniform groups in the remaining slots (they carry no advantage; a
   warning says how many when the cap stopped them).

Why this shape: `GRPOTrainer._prepare_inputs` calls `_generate_and_score_completions` once per generation batch,
splits its output into `steps_per_generation` slices and buffers them. Keeping the output's size fixed leaves that
buffering, the loss normalisation and the optimizer schedule untouched, so the override is one method (plus a
one-line hook on `_calculate_rewards` to read each group's rewards, which the output dict does not carry).

What it needs: each process's generation batch must hold whole groups (`per_device_train_batch_size *
steps_per_generation` a multiple of `num_generations`), and refills index the train dataset, so it must be a
map-style dataset. Advantages are those GRPO computed for the round a group was generated in; with
`scale_rewards="batch"` the batch std of that round therefore includes the dropped groups. Reward metrics
(`reward`, `rpt/*`, completions) are logged for every generated round, dropped groups included. Refill prompts are
drawn from the train dataset, uniformly (with band sampling, from the learnable band), seeded by (seed, process,
step, round): independent of the main sampler's order (a prompt can come twice in an epoch).

Metrics (train): `rpt/trained_tokens` (always: the tokens of the batch trained on, each prompt once per group),
`dynamic_sampling/dropped_fraction` (uniform groups / generated groups, over all processes and
rounds), `dynamic_sampling/refill_rounds`, `dynamic_sampling/uniform_fraction_kept` (share of the final batch that is
uniform padding, because the cap or the group target stopped the refills).
"""

import logging
from typing import Any

import torch
import torch.nn.functional as F


logger = logging.getLogger(__name__)

# Keys of `_generate_and_score_completions`'s output that this module knows how to merge, with the side and value
# they are padded with (None: one value per rollout, concatenated as they are).
_MERGEABLE = {
    "prompt_ids": ("left", "pad"),
    "prompt_mask": ("left", 0),
    "completion_ids": ("right", "pad"),
    "completion_mask": ("right", 0),
    "tool_mask": ("right", 1),
    "old_per_token_logps": ("right", 0.0),
    "sampling_per_token_logps": ("right", 0.0),
    "ref_per_token_logps": ("right", 0.0),
    "importance_sampling_ratio": ("right", 0.0),
    "advantages": (None, None),
    # the mixed objective's context tokens (rpt_trl.trainer.mixed_objective)
    "ntp_input_ids": ("right", "pad"),
    "ntp_attention_mask": ("right", 0),
}


def uniform_groups(rewards_per_func: torch.Tensor, reward_weights: torch.Tensor, num_generations: int) -> torch.Tensor:
    """Which groups of rollouts all earned the same reward.

    Args:
        rewards_per_func: `(num_rollouts, num_reward_funcs)` rewards, NaN where a function did not score a rollout.
        reward_weights: `(num_reward_funcs,)` weights, as GRPO combines the functions.
        num_generations: Rollouts per group (consecutive rows).

    Returns:
        A bool tensor with one entry per group: `True` when its scored rollouts share one reward (or none is scored).

    Example:
        >>> uniform_groups(torch.tensor([[1.0], [1.0], [0.0], [1.0]]), torch.tensor([1.0]), 2).tolist()
        [True, False]
    """
    unscored = torch.isnan(rewards_per_func).all(dim=1)
    rewards = (rewards_per_func * reward_weights.to(rewards_per_func.device)).nansum(dim=1)
    grouped = rewards.view(-1, num_generations)
    grouped_unscored = unscored.view(-1, num_generations)
    highest = grouped.masked_fill(grouped_unscored, -torch.inf).max(dim=1).values
    lowest = grouped.masked_fill(grouped_unscored, torch.inf).min(dim=1).values
    # A group with no scored rollout has highest=-inf < lowest=+inf: it carries no signal either.
    return (highest <= lowest) | torch.isclose(highest, lowest, rtol=0.0, atol=1e-6)


def check_rollout_fields(output: dict[str, Any]) -> None:
    """Raise when `_generate_and_score_completions`'s output has a field this module cannot merge, or lacks one it
    needs: the output is TRL's private format, so a TRL upgrade (or multimodal / tool inputs) can change it."""
    unknown = [key for key in output if key != "num_items_in_batch" and key not in _MERGEABLE]
    if unknown:
        raise ValueError(
            f"Dynamic sampling cannot merge the rollout field(s) {unknown} (multimodal or tool inputs, or a TRL "
            "version this project was not tested with); set dynamic_sampling=False in RPTConfig."
        )
    missing = [key for key in ("advantages", "completion_ids", "completion_mask") if key not in output]
    if missing:
        raise ValueError(
            f"GRPOTrainer's rollout output lacks {missing}, which dynamic sampling needs (a TRL version this project "
            "was not tested with); set dynamic_sampling=False in RPTConfig."
        )


def merge_rollouts(batches: list[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """Concatenate the rollouts of several `_generate_and_score_completions` outputs into one output.

    Prompts are left-padded and completions right-padded to the widest batch, as GRPOTrainer pads them.
    `num_items_in_batch` is left for the caller to recompute.

    Args:
        batches: Outputs restricted to the rows to keep (see [`select_rows`]).
        pad_token_id: The tokenizer's pad token id.
    """
    check_rollout_fields(batches[0])
    merged = {}
    for key in batches[0]:
        if key == "num_items_in_batch":
            continue
        side, value = _MERGEABLE[key]
        tensors = [batch[key] for batch in batches]
        if side is not None:
            width = max(t.shape[1] for t in tensors)
            fill = pad_token_id if value == "pad" else value
            tensors = [
                F.pad(t, (width - t.shape[1], 0) if side == "left" else (0, width - t.shape[1]), value=fill)
                for t in tensors
            ]
        merged[key] = torch.cat(tensors, dim=0)
    return merged


def select_rows(batch: dict[str, Any], rows: torch.Tensor) -> dict[str, Any]:
    """The rollouts `rows` of one output (fields with one entry per rollout; scalars are dropped)."""
    return {
        key: value[rows]
        for key, value in batch.items()
        if isinstance(value, torch.Tensor) and value.ndim > 0 and key != "num_items_in_batch"
    }


def check_dynamic_sampling(args: Any, train_dataset: Any) -> None:
    """Raise, before any model is loaded, when the configuration or the train dataset cannot support dynamic
    sampling (the trainer calls this first thing)."""
    if not args.dynamic_sampling:
        return
    if 0 < args.max_steps <= args.dynamic_sampling_start_step:
        return  # the run ends before dynamic sampling starts: nothing to refuse
    local_generation_batch = args.per_device_train_batch_size * args.steps_per_generation
    if local_generation_batch % args.num_generations:
        raise ValueError(
            f"Dynamic sampling needs whole groups on each process, but per_device_train_batch_size * "
            f"steps_per_generation = {local_generation_batch} is not a multiple of num_generations "
            f"({args.num_generations}). Make it one, or set dynamic_sampling=False."
        )
    if train_dataset is not None and not (hasattr(train_dataset, "__getitem__") and hasattr(train_dataset, "__len__")):
        raise ValueError(
            "Dynamic sampling refills the batch by indexing the train dataset, which needs a map-style dataset "
            f"(got {type(train_dataset).__name__}). Pass a datasets.Dataset, or set dynamic_sampling=False."
        )


class DynamicSamplingMixin:
    """Adds dynamic sampling to a `trl.GRPOTrainer` subclass, configured by the `dynamic_sampling*` fields of
    [`RPTConfig`]. Place it before `GRPOTrainer` in the bases. See the module docstring for the design."""

    def _check_dynamic_sampling(self) -> None:
        check_dynamic_sampling(self.args, self.train_dataset)

    def _dynamic_sampling_active(self) -> bool:
        return (
            self.args.dynamic_sampling
            and self.model.training
            and self.state.global_step >= self.args.dynamic_sampling_start_step
        )

    def _check_rollouts(self, output: dict[str, Any]) -> None:
        check_rollout_fields(output)
        rewards = getattr(self, "_last_rewards_per_func", None)
        if not isinstance(rewards, torch.Tensor) or rewards.ndim != 2 or rewards.shape[1] != len(self.reward_funcs):
            raise ValueError(
                "Dynamic sampling reads each group's rewards from GRPOTrainer._calculate_rewards, which this TRL "
                "version did not call as expected; set dynamic_sampling=False in RPTConfig."
            )
        self._rollouts_checked = True

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # The output of _generate_and_score_completions carries advantages, not rewards: keep the gathered rewards.
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if not self._dynamic_sampling_active():
            output = super()._generate_and_score_completions(inputs)
            if self.args.dynamic_sampling and self.model.training and not getattr(self, "_rollouts_checked", False):
                # Check TRL's private output on the first training step, not when sampling starts (step 500 in the
                # 14B recipe, hours into a run).
                self._check_rollouts(output)
            if self.model.training:
                self._log_trained_tokens(output)
            return output

        num_groups = len(inputs) // self.num_generations
        kept, uniform, counts = self._generate_until_groups_differ(inputs, num_groups)
        return self._merge_groups(kept, uniform, num_groups, counts)

    def _generate_until_groups_differ(
        self, inputs: list[dict[str, Any]], num_groups: int
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        """Generate, then refill with fresh prompts, until every process has `num_groups` groups with differing
        rewards (or `dynamic_sampling_min_groups`) or the refill cap is reached: the kept and the uniform groups' rows, in generation order, and the
        counts the metrics need."""
        num_generations = self.num_generations
        process = self.accelerator.process_index
        kept, uniform = [], []  # (output, rows) pairs, in generation order
        generated_groups = dropped_groups = refill_rounds = 0
        wanted = min(num_groups, self.args.dynamic_sampling_min_groups or num_groups)
        batch = inputs
        while True:
            output = super()._generate_and_score_completions(batch)
            is_uniform_all = uniform_groups(self._last_rewards_per_func, self.reward_weights, num_generations)
            dropped_groups += int(is_uniform_all.sum())
            generated_groups += is_uniform_all.numel()
            is_uniform = is_uniform_all[process * num_groups : (process + 1) * num_groups].cpu()
            for group, flat in enumerate(is_uniform.tolist()):
                rows = torch.arange(group * num_generations, (group + 1) * num_generations)
                (uniform if flat else kept).append(select_rows(output, rows.to(output["advantages"].device)))
            # One gather a round: every process's kept groups, from which all decide alike.
            kept_counts = self.accelerator.gather(torch.tensor(len(kept), device=self.accelerator.device))
            fewest = min(int(kept_counts.min().item()), num_groups)
            if fewest >= wanted:
                break
            if refill_rounds == self.args.dynamic_sampling_max_refills:
                if self.accelerator.is_main_process:
                    self._warn_refill_cap(fewest, num_groups)
                break
            refill_rounds += 1
            batch = self._refill_prompts(num_groups, refill_rounds)
        counts = {
            "generated_groups": generated_groups,
            "dropped_groups": dropped_groups,
            "refill_rounds": refill_rounds,
            "padded_groups": (num_groups - kept_counts.clamp(max=num_groups)).sum().item(),  # each pads its missing
        }
        return kept, uniform, counts

    def _warn_refill_cap(self, kept_groups: int, num_groups: int) -> None:
        logger.warning(
            "Dynamic sampling stopped refilling at the cap (dynamic_sampling_max_refills=%d) at step %d: "
            "%d of %d groups have differing rewards (on the process with the fewest); the other %d slots hold uniform "
            "groups, which carry no advantage. Raise dynamic_sampling_max_refills, or train on harder "
            "(entropy-filtered) positions.",
            self.args.dynamic_sampling_max_refills,
            self.state.global_step,
            kept_groups,
            num_groups,
            num_groups - kept_groups,
        )

    def _merge_groups(
        self, kept: list[dict[str, Any]], uniform: list[dict[str, Any]], num_groups: int, counts: dict[str, Any]
    ) -> dict[str, Any]:
        """One batch of `num_groups` groups: the kept ones first, padded with uniform ones; logs the metrics."""
        kept_groups = len(kept)
        padding = uniform[: max(num_groups - kept_groups, 0)]
        merged = merge_rollouts(kept[:num_groups] + padding, self._tokenizer.pad_token_id)
        trained = torch.tensor(
            [True] * len(kept[:num_groups]) + [False] * len(padding), device=self.accelerator.device
        )
        self._trained_groups_with_signal = self.accelerator.gather(trained)  # for rpt/signal_share/trained
        loss_mask = merged["completion_mask"] * merged.get("tool_mask", 1)
        merged["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()

        metrics = self._metrics["train"]
        metrics["dynamic_sampling/dropped_fraction"].append(counts["dropped_groups"] / counts["generated_groups"])
        metrics["dynamic_sampling/refill_rounds"].append(float(counts["refill_rounds"]))
        metrics["dynamic_sampling/uniform_fraction_kept"].append(
            counts["padded_groups"] / (num_groups * self.accelerator.num_processes)
        )
        self._log_trained_tokens(merged)
        return merged

    def _log_trained_tokens(self, output: dict[str, Any]) -> None:
        """Log `rpt/trained_tokens`: the tokens of the batch the policy trains on, over all processes, each prompt
        counted once per group (its completions share it) and each completion token once, plus the mixed objective's
        context tokens (once per group). Dropped groups of dynamic sampling are not counted. (TRL's `num_tokens` counts every generated round, each prompt once per completion.)
        """
        prompt_tokens = output["prompt_mask"].sum() / self.num_generations
        if "ntp_attention_mask" in output:  # the mixed objective's context tokens, once per group
            prompt_tokens = prompt_tokens + output["ntp_attention_mask"].sum()
        tokens = self.accelerator.gather(prompt_tokens + output["completion_mask"].sum()).sum().item()
        self._metrics["train"]["rpt/trained_tokens"].append(float(tokens))

    def _refill_weights(self, num_groups: int) -> torch.Tensor | None:
        """Drawing weights of the train dataset's rows for a refill round of `num_groups`; `None`: uniform. The
        trainer that composes the mixins gives the band sampler's."""
        return None

    def _refill_prompts(self, num_groups: int, refill_round: int) -> list[dict[str, Any]]:
        """`num_groups` fresh prompts from the train dataset, each repeated `num_generations` times: distinct, drawn by
        `_refill_weights()` when it gives weights (the learnable band's), else uniformly.

        A uniform draw depends only on (seed, process, step, round), not on state kept between steps, so a run
        resumed from a checkpoint refills exactly as the uninterrupted run would have; the band's weights are not
        checkpointed.
        """
        seed = (self.args.seed * 1_000_003 + self.accelerator.process_index) * 1_000_033 + self.state.global_step
        generator = torch.Generator().manual_seed((seed * 1_009 + refill_round) % 2**63)
        size = len(self.train_dataset)
        weights = self._refill_weights(num_groups)
        if weights is not None and int((weights > 0).sum()) >= num_groups:  # e.g. the learnable band's
            indices = torch.multinomial(weights, num_groups, generator=generator).tolist()
        else:
            indices = torch.randperm(size, generator=generator)[:num_groups].tolist()
        while len(indices) < num_groups:  # a dataset smaller than the batch: draw with replacement
            indices += torch.randint(size, (num_groups - len(indices),), generator=generator).tolist()
        rows = [self.train_dataset[index] for index in indices]
        return [row for row in rows for _ in range(self.num_generations)]
