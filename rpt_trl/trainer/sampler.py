"""The training sampler: GRPO's `RepeatSampler`, with each epoch's order replayed exactly when a run resumes.

GRPO's `RepeatSampler` draws each epoch's permutation from one generator seeded once, so an uninterrupted run's
epoch k uses the k-th permutation, while a run resumed in epoch k builds a fresh sampler and uses the first one
(the Trainer skips whole epochs without iterating them). [`EpochReplayRepeatSampler`] makes the permutation a
function of `(seed, epoch)` that equals the uninterrupted run's.
"""

import torch
from trl.trainer.utils import RepeatSampler


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
