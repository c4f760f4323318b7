"""Positions in the learnable band: train on the positions whose pass rate for the current policy is neither near 0
nor near 1, where a group of rollouts is likely to hold both right and wrong answers (a learning signal).

**Estimate** ([`PassRateTracker`]): each position's pass rate is a Beta posterior over the pass rates the trainer has
already observed for it (its rewards, clipped to [0, 1]: the share of right answers under `prefix_match`), with a
Beta(1, 1) prior, so an unseen position is estimated at 0.5 and is tried. Observations fade by `band_decay` per
generation batch, so the estimate follows the policy, and a position left out of the band drifts back to the prior and
is tried again. Nothing is computed beyond the rewards GRPO computes anyway.

**Sampling** ([`BandRepeatSampler`]): GRPO's `RepeatSampler`, whose batches are drawn one at a time, when the
dataloader asks for them, from the positions whose estimate lies in `[band_low, band_high]` (unique within a batch,
with replacement across batches, so a learnable position comes back); out of the band a position keeps a small
weight (`OUT_OF_BAND_WEIGHT`), so that its estimate is checked now and then.

- **Several processes**: every process iterates the same global order (as with `RepeatSampler`), so the draw must
  be the same everywhere: it is seeded by (seed, epoch, batch), and the tracker holds the same state on every process,
  because it is updated with the rewards and position ids of *all* processes (gathered) at the same points.
- **Dynamic sampling**: the refill rounds' rewards are observed too; refills still draw uniformly (the band sampler
  leaves fewer uniform groups to replace).
- **Entropy curriculum**: the candidates of batch k are the positions the curriculum has reached by then (the
  `(k + 1) * batch_size` lowest-entropy ones), and the band chooses among them.
- **Resume**: the tracker is not saved with the checkpoint; a resumed run starts from the prior again.
"""

import logging
from collections.abc import Sequence
from typing import Any

import datasets
import torch
from accelerate.utils import gather_object
from trl.trainer.utils import RepeatSampler


logger = logging.getLogger(__name__)

INDEX_COLUMN = "band_index"
OUT_OF_BAND_WEIGHT = 0.02


class PassRateTracker:
    """Decayed pass-rate observations per position, with a Beta prior.

    Args:
        size: Number of positions.
        decay: Weight kept by past observations at each [`decay`] call.
        prior: `(a, b)` of the Beta prior: an unseen position is estimated at `a / (a + b)`.

    Example:
        >>> tracker = PassRateTracker(3)
        >>> tracker.observe([0, 0], [1.0, 0.75])
        >>> [round(p, 2) for p in tracker.estimates().tolist()]
        [0.75, 0.5, 0.5]
    """

    def __init__(self, size: int, decay: float = 0.98, prior: tuple[float, float] = (0.5, 0.5)):
        self.decay_factor, self.prior = decay, prior
        self.passes = torch.zeros(size, dtype=torch.float64)
        self.trials = torch.zeros(size, dtype=torch.float64)

    def observe(
        self, positions: Sequence[int], pass_rates: Sequence[float], trials: Sequence[float] | None = None
    ) -> None:
        """Add one observed pass rate per position, worth `trials` rollouts each (1 when `None`)."""
        index = torch.as_tensor(list(positions), dtype=torch.long)
        rates = torch.as_tensor(list(pass_rates), dtype=torch.float64).clamp(0.0, 1.0)
        weights = torch.ones_like(rates) if trials is None else torch.as_tensor(list(trials), dtype=torch.float64)
        self.passes.index_add_(0, index, rates * weights)
        self.trials.index_add_(0, index, weights)

    def decay(self) -> None:
        self.passes *= self.decay_factor
        self.trials *= self.decay_factor

    def estimates(self) -> torch.Tensor:
        a, b = self.prior
        return (self.passes + a) / (self.trials + a + b)


class BandRepeatSampler(RepeatSampler):
    """`trl`'s `RepeatSampler` that draws each batch of positions from the learnable band of `tracker`'s estimates
    (see the module docstring). `order` (dataset indices, easiest first) restricts batch k to the first
    `(k + 1) * batch_size` of them: the entropy curriculum."""

    def __init__(
        self,
        data_source: Any,
        mini_repeat_count: int,
        tracker: PassRateTracker,
        band: tuple[float, float],
        batch_size: int = 1,
        repeat_count: int = 1,
        seed: int | None = None,
        order: Sequence[int] | None = None,
    ):
        super().__init__(data_source, mini_repeat_count, batch_size, repeat_count, shuffle=False, seed=seed)
        self.tracker, self.band, self.order = tracker, band, None if order is None else list(order)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def weights(self, batch_number: int) -> torch.Tensor:
        """The drawing weight of every position for batch `batch_number`."""
        estimates = self.tracker.estimates()
        low, high = self.band
        in_band = (estimates > low) & (estimates < high)
        weights = torch.where(in_band, 1.0, OUT_OF_BAND_WEIGHT).to(torch.float64)
        if self.order is not None:  # the curriculum: only the positions it has reached
            reached = torch.zeros_like(weights, dtype=torch.bool)
            reached[self.order[: (batch_number + 1) * self.batch_size]] = True
            weights = weights * reached
        return weights

    def draw(self, batch_number: int) -> list[int]:
        """The `batch_size` distinct positions of batch `batch_number` (a function of seed, epoch and state)."""
        seed = ((self.seed or 0) * 1_000_003 + self.epoch) * 1_000_033 + batch_number
        generator = torch.Generator().manual_seed(seed % 2**63)
        return torch.multinomial(self.weights(batch_number), self.batch_size, generator=generator).tolist()

    def __iter__(self):
        # Batches are drawn when the dataloader asks for them, so each uses the observations made so far.
        for batch_number in range(self.num_samples // self.batch_size):
            chunk = self.draw(batch_number)
            for _ in range(self.repeat_count):
                for index in chunk:
                    for _ in range(self.mini_repeat_count):
                        yield index


def with_band_index(dataset: Any) -> Any:
    """The train dataset with a `band_index` column (each row's index), which the tracker's observations name."""
    if not isinstance(dataset, datasets.Dataset):
        raise ValueError(
            f"band_sampling draws positions by index, which needs a map-style datasets.Dataset (got "
            f"{type(dataset).__name__}); load it without streaming, or set band_sampling=False."
        )
    if INDEX_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(INDEX_COLUMN)
    return dataset.add_column(INDEX_COLUMN, list(range(len(dataset))))


class BandSamplingMixin:
    """Feeds the pass rates GRPO observes into `self.band_tracker` (created by the trainer when
    `args.band_sampling`), over all processes. Place it before `GRPOTrainer` in the bases."""

    band_tracker: PassRateTracker | None = None

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if self.band_tracker is not None and self.model.training:
            self.band_tracker.decay()  # once per generation batch, on every process alike
        return super()._generate_and_score_completions(inputs)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.band_tracker is None or not self.model.training:
            return rewards_per_func
        positions = gather_object([row[INDEX_COLUMN] for row in inputs])  # the order of the gathered rewards
        rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device)).nansum(dim=1)
        scored = ~torch.isnan(rewards_per_func).all(dim=1)
        group = self.num_generations
        scored_groups = scored.view(-1, group).cpu().double()
        counts = scored_groups.sum(dim=1)
        passes = (rewards.clamp(0.0, 1.0).view(-1, group).cpu().double() * scored_groups).sum(dim=1)
        observed = (counts > 0).nonzero().flatten().tolist()  # a group with no scored rollout says nothing
        self.band_tracker.observe(
            [positions[g * group] for g in observed], (passes / counts.clamp(min=1))[observed], counts[observed]
        )
        return rewards_per_func
