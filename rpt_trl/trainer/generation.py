r"""Stop a completion as soon as its answer is complete.

A model that keeps writing after `\boxed{...}` wastes generation time, which dominates an RPT step on small
hardware. [`AnswerStopLogitsProcessor`] feeds each sequence's new tokens to its own [`AnswerBoxTracker`] and, once
the tracker sees a closed answer box (what [`extract_prediction`] would find in the completion so far), forces the EOS
token. The tracker keeps an incremental parse state, so a completion costs time linear in its length, however many
closing braces it holds. Ending with a real EOS (rather than a stopping criterion that pads) keeps
TRL's completion mask correct: everything after the first EOS is masked.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from transformers import LogitsProcessor

from ..parsing import AnswerBoxTracker


class AnswerStopLogitsProcessor(LogitsProcessor):
    """Force EOS in every sequence whose completion already holds a complete answer.

    Args:
        tokenizer: Decodes the newly generated tokens.
        eos_token_id: The token to force.
        require_think_close: Passed to [`AnswerBoxTracker`].

    The first call sees the prompt only; the processor records its length and decodes only generated tokens.
    It decodes one token per sequence and step and feeds it to that sequence's tracker.
    """

    def __init__(self, tokenizer: Any, eos_token_id: int, *, require_think_close: bool = True):
        self.tokenizer = tokenizer
        self.eos_token_id = eos_token_id
        self.require_think_close = require_think_close
        self._prompt_length: int | None = None
        self._trackers: list[AnswerBoxTracker] = []
        self._done: list[bool] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._prompt_length is None:
            self._prompt_length = input_ids.shape[1]
            self._trackers = [
                AnswerBoxTracker(require_think_close=self.require_think_close) for _ in range(input_ids.shape[0])
            ]
            self._done = [False] * input_ids.shape[0]
            return scores
        newest = input_ids[:, -1].tolist()
        for row, token_id in enumerate(newest):
            if self._done[row]:
                continue
            piece = self.tokenizer.decode([token_id], skip_special_tokens=False)
            # Once forced, a sequence only repeats EOS, so its verdict stays, whatever `require_think_close` says.
            self._done[row] = self._trackers[row].feed(piece)
        if any(self._done):
            done = torch.tensor(self._done, device=scores.device)
            forced = torch.full_like(scores[0], float("-inf"))
            forced[self.eos_token_id] = 0.0
            scores = torch.where(done.unsqueeze(1), forced.unsqueeze(0), scores)
        return scores


def install_answer_stop(model: Any, tokenizer: Any, *, require_think_close: bool = True) -> None:
    """Make `model.generate` end each completion with EOS once its answer box closes.

    GRPOTrainer calls `generate(**inputs, generation_config=...)` and offers no hook for logits processors, so this
    wraps the instance's `generate` to add a fresh [`AnswerStopLogitsProcessor`] to every call. A wrapped PEFT model
    forwards the processor to its base model.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("stop_after_answer needs a tokenizer with an eos_token_id.")
    original_generate = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        processors = list(kwargs.pop("logits_processor", None) or [])
        processors.append(
            AnswerStopLogitsProcessor(tokenizer, tokenizer.eos_token_id, require_think_close=require_think_close)
        )
        return original_generate(*args, logits_processor=processors, **kwargs)

    model.generate = generate


def install_generation_autocast(model: Any, autocast: Callable[[], AbstractContextManager]) -> None:
    """Make `model.generate` run inside one `autocast()` context.

    With mixed precision, Accelerate wraps each call of the model's `forward` in its own autocast context, and on
    leaving that context torch drops the half-precision copies of the weights it made. Generation calls `forward`
    once per new token, so every token would cast every weight again. Inside one outer context the casts are made
    once per `generate` call and the per-call contexts nest in it: the rollouts are computed in the same precision
    as before, only without the repeated casts. Install it last, so that it wraps the other generation hooks too
    (the prefix cache runs its own forward pass).
    """
    original_generate = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        with autocast():
            return original_generate(*args, **kwargs)

    model.generate = generate
