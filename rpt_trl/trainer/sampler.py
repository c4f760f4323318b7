"""The training samplers: GRPO's `RepeatSampler`, with each epoch's order replayed exactly when a run resumes, and an
easy-to-hard entropy curriculum.

GRPO's `RepeatSampler` draws each epoch's permutation from one generator seeded once, so an uninterrupted run's
epoch k uses the k-th permutation, while a run resumed in epoch k builds a fresh sampler and uses the first one
(the Trainer skips whole epochs without iterating them). [`EpochReplayRepeatSampler`] makes the permutation a
function of `(seed, epoch)` that equals the uninterrupted run's.

[`EntropyCurriculumRepeatSampler`] (`RPTConfig.curriculum="entropy"`) replaces the shuffle by a fixed order, from the
lowest to the highest `entropy` (RMT, arXiv 2509.24375: easy-to-hard curriculum over token entropy).
"""

import logging
import math
from collections.abc import Sequence
from typing import Any

import datasets
import torch
from trl.trainer.utils import RepeatSampler


logger = logging.getLogger(__name__)

CURRICULA = ("entropy",)


class EpochReplayRepeatSampler(RepeatSampler):
    """`trl`'s `RepeatSampler` whose shuffle for epoch k is the k-th permutation of its seeded generator.

    `set_epoch(k)` (called by the Trainer before each epoch) reseeds the generator and draws k permutations, so an
    uninterrupted run gets the same order as with `RepeatSampler`, and a run resumed in epoch k gets it too.
    """

    def set_epoch(self, epoch: int) -> None:
        if not self.shuffle:
            return
        self.generator.manual_seed(self.seed if self.seed is not None else 0)
        for _ in range(epoch):
            torch.randperm(self.num_samples, generator=self.generator)


def entropy_order(entropy: Sequence[float]) -> list[int]:
    """Dataset indices from the lowest to the highest entropy; ties keep dataset order, unscored (NaN) rows go last.

    Example:
        >>> entropy_order([1.5, 0.2, float("nan"), 0.2, 0.9])
        [1, 3, 4, 0, 2]
    """
    # `sorted` is stable, so equal keys keep dataset order; NaN compares false with everything, so it gets its own key.
    return sorted(range(len(entropy)), key=lambda i: (True, 0.0) if math.isnan(entropy[i]) else (False, entropy[i]))


def check_curriculum(curriculum: str | None, train_dataset: Any) -> None:
    """Raise, before any model loads, when the train dataset cannot be ordered by `curriculum`."""
    if curriculum is None or train_dataset is None:
        return
    if not isinstance(train_dataset, datasets.Dataset):
        raise ValueError(
            f"curriculum={curriculum!r} orders the whole train dataset, which needs a map-style datasets.Dataset "
            f"(got {type(train_dataset).__name__}); load it without streaming, or set curriculum=None."
        )
    if "entropy" not in train_dataset.column_names:
        raise ValueError(
            f"curriculum='entropy' orders positions by the dataset's 'entropy' column, which this train dataset lacks "
            f"(it has {train_dataset.column_names}). Score the positions with `rpt-trl prepare` (or "
            "`build_next_token_dataset(..., token_entropy=...)`), or set curriculum=None."
        )


class EntropyCurriculumRepeatSampler(RepeatSampler):
    """`trl`'s `RepeatSampler` that visits the dataset from the lowest to the highest `entropy`, every epoch.

    - **Shuffling and seeds**: there is none; the order is a function of the entropies alone (ties in dataset order),
      so `seed` and `shuffle_dataset` do not change it (the seed still drives sampling and dropout).
    - **Epochs**: each epoch runs the curriculum again from the easiest position.
    - **Several processes**: like `RepeatSampler`, every process iterates the same global order and the Trainer's
      dataloader gives each its slice of each global batch, so batch k holds the k-th easiest positions overall.
    - **Resume**: the order does not depend on state, so a resumed run skips to the same positions.
    - **Dynamic sampling** refills draw uniformly from the whole train dataset, outside the curriculum.
    """

    def __init__(self, data_source: Any, mini_repeat_count: int, batch_size: int = 1, repeat_count: int = 1):
        super().__init__(data_source, mini_repeat_count, batch_size, repeat_count, shuffle=False)
        entropy = [float("nan") if e is None else float(e) for e in data_source["entropy"]]
        unscored = sum(math.isnan(e) for e in entropy)
        if unscored:
            logger.warning(
                "Entropy curriculum: %d of %d positions have no entropy; they come last.", unscored, len(entropy)
            )
        self.order = entropy_order(entropy)

    def __iter__(self):
        for index in super().__iter__():  # 0, 1, 2, ... grouped and repeated as GRPO needs
            yield self.order[index]
