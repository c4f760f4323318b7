"""The paper's comparison baseline: continued next-token training (cross-entropy) at RPT's compute.

RPT is compared with the same model trained by plain next-token prediction on the same documents, with the same
number of optimizer steps and the same number of training tokens. RPT's tokens are its `rpt/trained_tokens` metric
(each prompt once per group, each completion token once, dropped groups of dynamic sampling not counted); the
baseline's are the tokens of its training blocks, which TRL records in `trainer_state.json` (`num_input_tokens_seen`).

The baseline is TRL's `SFTTrainer` on fixed-length blocks of the documents (BOS + document + EOS, concatenated in a
seeded order and cycled when the budget asks for more tokens than the documents hold), so that its token count is
exact: `optimizer_steps * blocks_per_step * block_size`.

Example:
    >>> budget = matched_budget(tokens_seen=46_000, optimizer_steps=10, block_size=128)
    >>> budget.blocks_per_step, budget.total_tokens
    (36, 46080)
"""

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .presets import RUN_PRESET


@dataclass(frozen=True)
class MatchedBudget:
    """How much next-token training matches an RPT run.

    Attributes:
        optimizer_steps: The RPT run's optimizer steps.
        block_size: Tokens per training block.
        blocks_per_step: Blocks per optimizer step (a multiple of `micro_batch_size`).
        micro_batch_size: Blocks per forward pass (the rest is gradient accumulation).
        reference_tokens: The RPT run's training tokens.
    """

    optimizer_steps: int
    block_size: int
    blocks_per_step: int
    micro_batch_size: int
    reference_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.optimizer_steps * self.blocks_per_step * self.block_size

    @property
    def gradient_accumulation_steps(self) -> int:
        return self.blocks_per_step // self.micro_batch_size

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total_tokens": self.total_tokens}


def matched_budget(
    tokens_seen: int, optimizer_steps: int, *, block_size: int = 128, micro_batch_size: int = 4
) -> MatchedBudget:
    """The next-token budget closest to `tokens_seen` tokens in `optimizer_steps` steps.

    Blocks per step is the multiple of `micro_batch_size` nearest to `tokens_seen / (optimizer_steps * block_size)`
    (at least one micro-batch), so the two runs differ by less than half a micro-batch of tokens per step.
    """
    for name, value in (("optimizer_steps", optimizer_steps), ("block_size", block_size),
                        ("micro_batch_size", micro_batch_size), ("tokens_seen", tokens_seen)):  # fmt: skip
        if value < 1:
            raise ValueError(f"{name} must be positive, got {value}.")
    per_step = tokens_seen / (optimizer_steps * block_size)
    micro_batches = max(1, round(per_step / micro_batch_size))
    return MatchedBudget(optimizer_steps, block_size, micro_batches * micro_batch_size, micro_batch_size, tokens_seen)


def encode_documents(documents: Sequence[str], tokenizer: Any) -> list[list[int]]:
    """The token ids of each non-empty document, with BOS (when the tokenizer has one) and EOS: the baseline's text."""
    return [
        ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else [])
        + tokenizer(text, add_special_tokens=False)["input_ids"]
        + [tokenizer.eos_token_id]
        for text in documents
        if text
    ]


def next_token_blocks(encoded: Sequence[Sequence[int]], budget: MatchedBudget, *, seed: int = 0) -> Any:
    """The baseline's training data: `optimizer_steps * blocks_per_step` blocks of `block_size` tokens.

    The documents (from [`encode_documents`]) are concatenated in a seeded order and cut into blocks; when the budget
    needs more tokens than the documents hold, the stream repeats in a new seeded order (another epoch).
    """
    import datasets

    if not encoded:
        raise ValueError("The next-token baseline needs at least one non-empty document.")
    needed = budget.total_tokens
    rng = random.Random(seed)
    stream: list[int] = []
    while len(stream) < needed:
        order = list(range(len(encoded)))
        rng.shuffle(order)
        for index in order:
            stream += encoded[index]
    blocks = [stream[i : i + budget.block_size] for i in range(0, needed, budget.block_size)]
    return datasets.Dataset.from_dict({"input_ids": blocks})


def epochs_of(encoded: Sequence[Sequence[int]], budget: MatchedBudget) -> float:
    """How many passes over the documents (from [`encode_documents`]) the budget makes."""
    total = sum(len(ids) for ids in encoded)
    return budget.total_tokens / total if total else math.inf


def train_next_token_baseline(
    model: Any,
    tokenizer: Any,
    encoded: Sequence[Sequence[int]],
    budget: MatchedBudget,
    *,
    output_dir: str,
    learning_rate: float,
    seed: int = 0,
    callbacks: list[Any] | None = None,
    fused_lm_head: bool = True,
    **config: Any,
) -> Any:
    """Train `model` by next-token prediction on the documents with TRL's `SFTTrainer`, at `budget`.

    Args:
        model: The model to train (the same start as the RPT run).
        tokenizer: Its tokenizer.
        encoded: The RPT run's training documents (not the held-out ones), from [`encode_documents`].
        budget: From [`matched_budget`].
        output_dir: Where the trainer writes; `trainer_state.json` (with the tokens seen) is saved there.
        learning_rate: The optimizer's learning rate (use the RPT run's to compare methods, not step sizes).
        seed: Seed of the block order and of the trainer.
        callbacks: Trainer callbacks.
        fused_lm_head: The loss through TRL's fused LM head, which never holds a block's full-vocabulary logits (and
            logs entropy and token accuracy). False: the model's own cross-entropy, the same loss from the full
            logits. On a CPU TRL's head projects in float32 whatever the autocast, so with bf16 mixed precision the
            model's own loss is the faster one where the logits fit in memory (Gemma 3 270M, 3 steps of 12 blocks
            of 64 tokens in one pass each, on 2 cores in bf16: 19.0 s against 35.9 s through the fused head in
            micro-batches of 2; `benchmarks/cpu_bf16.py`).
        **config: More `SFTConfig` fields (e.g. `use_cpu=True, bf16=False` on a CPU).

    Returns:
        The trained `SFTTrainer` (its model is `trainer.model`).
    """
    from trl import SFTConfig, SFTTrainer

    from ..host_memory import ReleaseFreedMemory, freed_memory_kept

    dataset = next_token_blocks(encoded, budget, seed=seed)
    args = SFTConfig(
        output_dir=output_dir,
        max_steps=budget.optimizer_steps,
        per_device_train_batch_size=budget.micro_batch_size,
        gradient_accumulation_steps=budget.gradient_accumulation_steps,
        learning_rate=learning_rate,
        max_length=budget.block_size,
        packing=False,
        include_num_input_tokens_seen=True,
        seed=seed,
        data_seed=seed,
        **{**RUN_PRESET, **config},
    )
    if freed_memory_kept():
        callbacks = [*(callbacks or []), ReleaseFreedMemory()]
    trainer_class = SFTTrainer if fused_lm_head else _model_loss_trainer()
    trainer = trainer_class(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks
    )
    trainer.train()
    trainer.save_state()
    return trainer


def _model_loss_trainer() -> type:
    """`SFTTrainer` with the model's own loss (`transformers.Trainer.compute_loss`: the cross-entropy of the shifted
    labels, normalised by the tokens of the whole step) in place of TRL's fused LM head."""
    from transformers import Trainer
    from trl import SFTTrainer

    class ModelLossSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return Trainer.compute_loss(
                self, model, {**inputs, "use_cache": False}, return_outputs=return_outputs,
                num_items_in_batch=num_items_in_batch,
            )  # fmt: skip

    return ModelLossSFTTrainer
