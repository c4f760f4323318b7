"""Positions in the learnable band: train on the positions whose pass rate for the current policy is neither near 0
nor near 1, where a group of rollouts is likely to hold both right and wrong answers (a learning signal).

**Estimate** ([`PassRateTracker`]): each position's pass rate is a Beta posterior over the pass rates the trainer has
already observed for it (its rewards, clipped to [0, 1]: the share of right answers under `prefix_match`).
Observations fade by `band_decay` per generation batch, so the estimate follows the policy, and a position left out
of the band drifts back to its prior and is tried again.

**Prior** ([`FirstTokenProbe`], `band_probe`): the policy's probability of the position's first ground-truth token,
teacher forced, one forward pass per position and no generation. By default (`band_probe_reads`) it is read where the
answer starts: after the whole prompt and the thought and box that all the template's worked examples write (`Copy the
word that fits.</think> \boxed{` for the demo's), as a rollout that writes that thought reads it; the prompts' shared
template is computed once per probe (on one process, or several that do not gather weights). On the demo's corpus and
template with Gemma 3 270M, at temperature 1.0, it correlated with the pass rate of 8 rollouts at Pearson 0.90 on 64
positions (the 17 positions it put at 0.05 or more held all 17 groups with differing rewards); read after the bare
context, as in standard mode, it correlated at 0.56. It is refreshed every `band_probe_steps` optimizer steps on
`band_probe_positions` positions drawn at random (all when fewer), so it follows the policy too. Without the probe (or
where a prompt does not follow the template), the prior is Beta(0.5, 0.5): an unseen position is estimated at 0.5 and
is tried.

**Sampling** ([`BandRepeatSampler`]): GRPO's `RepeatSampler`, whose batches are drawn one at a time, when the
dataloader asks for them, from the positions whose estimate lies in `[band_low, band_high]` (unique within a batch,
with replacement across batches, so a learnable position comes back). The positions out of the band share
`OUT_OF_BAND_SHARE` of the draws, so that their estimates are checked now and then; a share, not a weight per
position, since most positions of a large dataset lie out of the band (or are not probed yet), and per-position
weights let them outdraw the band: with 0.02 each, the demo's 602 positions drew about a quarter of their groups from
out of the band.

- **Several processes**: every process iterates the same global order (as with `RepeatSampler`), so the draw must
  be the same everywhere: it is seeded by (seed, epoch, batch), and the tracker holds the same state on every process,
  because it is updated with the rewards and position ids of *all* processes (gathered) at the same points.
- **Dynamic sampling**: the refill rounds draw from the band too (the weights of the batch drawn last, less the
  positions already generated at that step, on any process, while enough others have weight), and their rewards are
  observed. Drawn uniformly, as before, a refill mostly found more uniform groups: on the base Gemma 3
  270M, 14 of 64 of the demo's positions gave a group of 8 with differing rewards.
- **Entropy curriculum**: the candidates of batch k are the positions the curriculum has reached by then (the
  `(k + 1) * batch_size` lowest-entropy ones), and the band chooses among them.
- **Resume**: the tracker is not saved with the checkpoint; a resumed run probes again and starts from the prior.
"""

import logging
import math
import sys
from collections.abc import Sequence
from typing import Any

import datasets
import torch
from accelerate.utils import gather_object
from tqdm.auto import tqdm
from transformers import TrainerCallback
from trl.trainer.utils import RepeatSampler

from ..data.prompt_settings import prompt_text
from ..data.templates import template_context, template_worked_answer
from .prefix_cache import MIN_SHARED_PREFIX, SharedPrefixCache


logger = logging.getLogger(__name__)

INDEX_COLUMN = "band_index"
OUT_OF_BAND_SHARE = 0.05
CALIBRATION_POSITIONS = 4  # observed probed positions before the probe's exponent is fitted


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
        self.probe = torch.full((size,), math.nan, dtype=torch.float64)
        self.exponent = 1.0

    def set_probe(self, positions: Sequence[int], probabilities: Sequence[float]) -> None:
        """The probe's probabilities for `positions` (see [`FirstTokenProbe`]): the prior means of their pass rates,
        once calibrated ([`calibrate`]), with the prior's weight (`a + b` trials)."""
        index = torch.as_tensor(list(positions), dtype=torch.long)
        self.probe[index] = torch.as_tensor(list(probabilities), dtype=torch.float64).clamp(0.0, 1.0)
        self.calibrate()

    def calibrate(self) -> float:
        """Fit the exponent k of `pass rate = probe ** k` to the pass rates observed at probed positions (least
        squares, weighted by trials, over a grid from 0.2 to 10); 1 until CALIBRATION_POSITIONS are observed.

        Refitted whenever the probe or the observations change ([`set_probe`], [`observe`]); [`decay`] scales every
        weight alike, which leaves the fit as it was, so reading the estimates never refits.

        A probe read in standard mode is optimistic for a template that reasons first: on the demo corpus the
        pass rate of 8 samples was close to the probe cubed."""
        seen = (self.trials > 0) & ~torch.isnan(self.probe)
        if int(seen.sum()) < CALIBRATION_POSITIONS:
            return self.exponent
        observed, probe, weight = self.passes[seen] / self.trials[seen], self.probe[seen], self.trials[seen]
        exponents = torch.logspace(math.log10(0.2), 1.0, 48, dtype=torch.float64)
        errors = ((probe[None, :] ** exponents[:, None] - observed[None, :]) ** 2 * weight[None, :]).sum(dim=1)
        self.exponent = float(exponents[int(errors.argmin())])
        return self.exponent

    def prior_means(self) -> torch.Tensor:
        """The calibrated probe where a position was probed; elsewhere the Beta prior's mean, or, once any position is
        probed, NaN: a position neither probed nor observed is then left out of the band."""
        a, b = self.prior
        probed = ~torch.isnan(self.probe)
        if not probed.any():
            return torch.full_like(self.probe, a / (a + b))
        means = self.probe**self.exponent
        observed_mean = (self.passes.sum() / self.trials.sum()).item() if self.trials.sum() > 0 else math.nan
        # Observed but never probed (a position drawn while out of the band): its observations speak for it.
        return torch.where(probed, means, torch.where(self.trials > 0, observed_mean, math.nan))

    def observe(
        self, positions: Sequence[int], pass_rates: Sequence[float], trials: Sequence[float] | None = None
    ) -> None:
        """Add one observed pass rate per position, worth `trials` rollouts each (1 when `None`)."""
        index = torch.as_tensor(list(positions), dtype=torch.long)
        rates = torch.as_tensor(list(pass_rates), dtype=torch.float64).clamp(0.0, 1.0)
        weights = torch.ones_like(rates) if trials is None else torch.as_tensor(list(trials), dtype=torch.float64)
        self.passes.index_add_(0, index, rates * weights)
        self.trials.index_add_(0, index, weights)
        self.calibrate()

    def decay(self) -> None:
        self.passes *= self.decay_factor
        self.trials *= self.decay_factor

    def estimates(self) -> torch.Tensor:
        weight = sum(self.prior)
        return (self.passes + weight * self.prior_means()) / (self.trials + weight)


def position_contexts(dataset: Any, template: str) -> list[str | None]:
    """Each position's context, cut out of its prompt by `template` (a name or a string); `None` where the prompt
    does not follow the template."""
    texts = (prompt_text(prompt) for prompt in dataset["prompt"])
    return [None if text is None else template_context(text, template) for text in texts]


class FirstTokenProbe:
    """The policy's probability of each position's first ground-truth token, teacher forced: the band's prior
    estimate of a position's pass rate (see the module docstring).

    Args:
        dataset: The training positions, with `prompt`, `ground_truth` and `ground_truth_boundaries`.
        tokenizer: The policy's tokenizer.
        template: The template the prompts were built with (a name or a string).
        batch_size: Positions per forward pass.
        reads: `"context"`: the token read right after the bare context, as in standard mode. `"answer"`: the token
            read where the answer starts, after the whole prompt and the template's own worked thought
            ([`template_worked_answer`]), as a rollout that writes that thought reads it.
    """

    def __init__(self, dataset: Any, tokenizer: Any, template: str, batch_size: int = 32, reads: str = "context"):
        self.tokenizer, self.batch_size = tokenizer, batch_size
        contexts = position_contexts(dataset, template)
        if reads == "answer":
            answer = template_worked_answer(template)
            if answer is None:
                raise ValueError("band_probe_reads='answer' needs a template whose worked examples share one "
                                 "thought and whose prompts end inside <think>; use band_probe_reads='context'.")  # fmt: skip
            prompts = (prompt_text(prompt) for prompt in dataset["prompt"])
            self.texts = [None if c is None else prompt + answer for c, prompt in zip(contexts, prompts)]
        elif reads == "context":
            self.texts = contexts
        else:
            raise ValueError(f"band_probe_reads must be 'answer' or 'context', got {reads!r}.")
        self.truths = list(zip(dataset["ground_truth"], dataset["ground_truth_boundaries"]))
        self.known = [index for index, text in enumerate(self.texts) if text is not None]
        self._encoded: dict[int, tuple[list[int], int] | None] = {}  # tokenised when first probed

    def encoded(self, index: int) -> tuple[list[int], int] | None:
        if index not in self._encoded:
            self._encoded[index] = self._encode(self.texts[index], *self.truths[index])
        return self._encoded[index]

    def _encode(self, text: str, truth: str, boundaries: Sequence[int]) -> tuple[list[int], int] | None:
        """The text's ids and the first ground-truth token's id, where the tokenizer splits their concatenation at
        the text's end (it does where the builder cut the document); `None` otherwise."""
        first = truth.encode("utf-8")[: boundaries[0]].decode("utf-8", errors="ignore") if boundaries else ""
        if not first:
            return None
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        joined = self.tokenizer(text + first, add_special_tokens=False)["input_ids"]
        if len(joined) <= len(ids) or joined[: len(ids)] != ids:
            return None
        bos = [] if self.tokenizer.bos_token_id is None else [self.tokenizer.bos_token_id]
        return bos + ids, joined[len(ids)]

    @torch.no_grad()
    def __call__(
        self, model: Any, positions: Sequence[int], *, show_progress: bool = False, share_prefix: bool = True
    ) -> list[float]:
        """The probability of each of `positions`' first ground-truth token under `model` (all must be `known`); NaN
        where the tokenizer does not split the text from that token.

        With `share_prefix`, a prefix the rows share (the template) runs once, as one more forward pass where a batch
        has one. Whether it does depends on the rows, so processes whose weights are gathered in every forward pass
        (ZeRO-3, FSDP) must pass `share_prefix=False`: each call then runs exactly `ceil(len(positions) /
        batch_size)` forward passes, and processes that probe equally many positions run equally many."""
        device = next(model.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        prefix_cache = SharedPrefixCache(pad, MIN_SHARED_PREFIX if share_prefix else sys.maxsize)
        probabilities = []
        batches = range(0, len(positions), self.batch_size)
        for start in tqdm(batches, desc="Probing pass rates", disable=not show_progress, leave=False):
            encoded = [self.encoded(index) for index in positions[start : start + self.batch_size]]
            stand_in = next((item for item in encoded if item), ([pad], 0))  # keeps the forward pass; its value is NaN
            items = [item or stand_in for item in encoded]
            logits = prefix_cache.last_logits(model, [ids for ids, _ in items], device)
            targets = torch.as_tensor([target for _, target in items], device=logits.device)
            values = torch.softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1).tolist()
            probabilities += [value if item else math.nan for value, item in zip(values, encoded)]
        return probabilities


def _sharded(trainer: Any) -> bool:
    """Whether the trainer's weights are gathered in every forward pass (ZeRO-3 or FSDP), so that all processes must
    run the same number of them."""
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return bool(getattr(trainer, "is_fsdp_enabled", False)) or (plugin is not None and plugin.zero_stage == 3)


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
        self.last_batch_number = 0  # the batch drawn last: dynamic sampling's refills draw as it did

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def weights(self, batch_number: int) -> torch.Tensor:
        """The drawing weight of every position for batch `batch_number`: the positions in the band share
        `1 - OUT_OF_BAND_SHARE` of it evenly, the others `OUT_OF_BAND_SHARE` (all of it while none is in the band)."""
        estimates = self.tracker.estimates()
        low, high = self.band
        reached = torch.ones_like(estimates, dtype=torch.bool)
        if self.order is not None:  # the curriculum: only the positions it has reached
            reached = torch.zeros_like(reached)
            reached[self.order[: (batch_number + 1) * self.batch_size]] = True
        in_band = (estimates > low) & (estimates < high) & reached
        out_of_band = reached & ~in_band
        if not in_band.any() or not out_of_band.any():
            return reached.to(torch.float64)
        inside = (1.0 - OUT_OF_BAND_SHARE) / int(in_band.sum())
        return torch.where(in_band, inside, OUT_OF_BAND_SHARE / int(out_of_band.sum())) * reached

    def draw(self, batch_number: int) -> list[int]:
        """The `batch_size` distinct positions of batch `batch_number` (a function of seed, epoch and state)."""
        self.last_batch_number = batch_number
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


class BandProbeCallback(TrainerCallback):
    """Probes the band's prior before the first batch is drawn (the sampler draws lazily, after `on_train_begin`)."""

    def __init__(self, trainer: Any):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer.refresh_band_probe()


class BandSamplingMixin:
    """Feeds the pass rates GRPO observes into `self.band_tracker` (created by the trainer when
    `args.band_sampling`), over all processes, and refreshes its probe (`self.band_probe`, when `args.band_probe`).
    Place it before `GRPOTrainer` in the bases."""

    band_tracker: PassRateTracker | None = None
    band_probe: FirstTokenProbe | None = None
    _band_probed_at: int | None = None
    _band_generated: tuple[int, set[int]] = (-1, set())  # (step, the positions generated at it, all processes)

    def band_positions_generated(self) -> set[int]:
        """The positions generated at this optimizer step so far, on every process (dynamic sampling's refills skip
        them)."""
        step, positions = self._band_generated
        return positions if step == self.state.global_step else set()

    def refresh_band_probe(self) -> None:
        """Probe `band_probe_positions` positions, drawn afresh (the same on every process), once every
        `band_probe_steps` optimizer steps; each process probes its share and all share the results."""
        step = self.state.global_step
        if self.band_probe is None or not self.band_probe.known:
            return
        if self._band_probed_at is not None and step - self._band_probed_at < self.args.band_probe_steps:
            return
        self._band_probed_at = step
        known = self.band_probe.known
        generator = torch.Generator().manual_seed((self.args.seed * 1_000_003 + step) % 2**63)
        chosen = [known[i] for i in torch.randperm(len(known), generator=generator)[: self.args.band_probe_positions]]
        share = math.ceil(len(chosen) / self.accelerator.num_processes)
        mine = chosen[self.accelerator.process_index * share :][:share]
        padded = mine + [chosen[0]] * (share - len(mine))  # every process runs as many forward passes
        training = self.model.training
        self.model.eval()
        try:
            with self.accelerator.autocast():  # the training's precision, the weights cast once for the whole probe
                probabilities = self.band_probe(
                    self.model, padded, show_progress=self.accelerator.is_main_process, share_prefix=not _sharded(self)
                )
        finally:
            self.model.train(training)
        probed = [
            pair for pair in gather_object(list(zip(mine, probabilities[: len(mine)]))) if not math.isnan(pair[1])
        ]
        self.band_tracker.set_probe([index for index, _ in probed], [value for _, value in probed])

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if self.band_tracker is not None and self.model.training:
            self.band_tracker.decay()  # once per generation batch, on every process alike
            self.refresh_band_probe()  # for the batches drawn from now on
        return super()._generate_and_score_completions(inputs)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.band_tracker is None or not self.model.training:
            return rewards_per_func
        positions = gather_object([row[INDEX_COLUMN] for row in inputs])  # the order of the gathered rewards
        self._band_generated = (self.state.global_step, self.band_positions_generated() | set(positions))
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
