r"""The mixed objective: GRPO plus λ × next-token cross-entropy on the training documents (RMT's dual loss, arXiv
2509.24375; ReFINE uses GRPO plus a next-token loss too), in the same optimizer step.

**Which tokens**: the positions' contexts, i.e. the document text inside each prompt, without the template's tokens
(the instruction, the quotes, a few-shot preamble): the context is recovered from the prompt by cutting the
template's text before and after its `{context}` placeholder, and tokenised on its own, as pre-training reads a
document (with the tokenizer's special tokens, e.g. BOS). Why these: they are exactly the text the RL step is about,
they need no second data stream (prepared datasets keep no documents), and the template's tokens are left out so
that the model is not trained to predict its own instructions. Each context is counted once per group: only the
first rollout of each group carries it (its `num_generations` rollouts share one prompt).

**The hook**: `compute_loss`, TRL's public override point, adds the term to GRPO's loss; the tokens travel with the
rollouts as two more batch fields (`ntp_input_ids`, `ntp_attention_mask`, attached where the rollouts are generated,
so that dynamic sampling keeps those of the groups it keeps). With `next_token_loss_coef=0` neither is touched: the
loss and the gradients are GRPO's, bit for bit.

**Scale**: the term is the mean cross-entropy over the micro-batch's context tokens, divided by the gradient
accumulation steps, as TRL scales its entropy bonus, so λ does not depend on how GRPO normalises its own loss.

**Where it runs**: the term is a forward of the policy (`model`, as `compute_loss` receives it), so with LoRA it
trains the adapter. Under DeepSpeed ZeRO-3 every process must run the same number of forwards (parameters are
gathered collectively): every micro-batch runs exactly one next-token forward on every process, on a masked dummy row
when it holds no context. Metrics: `rpt/next_token_loss` (the mean cross-entropy), and the context tokens are
counted in `rpt/trained_tokens`.
"""

import logging
from typing import Any

import torch
import torch.nn.functional as F

from ..data.templates import template_context


logger = logging.getLogger(__name__)

NTP_FIELDS = ("ntp_input_ids", "ntp_attention_mask")


def context_of_prompt(prompt: Any, template: str) -> str:
    """The context a prompt was built from with `template` (a name or a string with `{context}`).

    Args:
        prompt: A text prompt, or a conversational one (its last user message is the rendered template).
        template: The `prompt_template` the dataset was built with.

    Example:
        >>> context_of_prompt('Text: "the cat"\\nNext?', 'Text: "{context}"\\nNext?')
        'the cat'
    """
    if not isinstance(prompt, str):
        prompt = [m for m in prompt if m.get("role") == "user"][-1]["content"]
    context = template_context(prompt, template)
    if context is None:
        raise ValueError(
            f"next_token_loss_coef > 0 reads each prompt's context through prompt_template={template!r}, but the "
            f"prompt {prompt[:60]!r}... was not built with it; set prompt_template to the dataset's template."
        )
    return context


def context_tokens(
    prompts: list[Any], tokenizer: Any, template: str, first_rollouts: list[bool], device: torch.device
) -> dict[str, torch.Tensor]:
    """`ntp_input_ids` / `ntp_attention_mask` (right-padded): each prompt's context tokens on the rows marked in
    `first_rollouts` (one per group), an empty mask on the others."""
    rows = [
        tokenizer(context_of_prompt(prompt, template))["input_ids"] if first else []
        for prompt, first in zip(prompts, first_rollouts)
    ]
    width = max(1, max(len(ids) for ids in rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, tokens in enumerate(rows):
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask[row, : len(tokens)] = 1
    return {"ntp_input_ids": ids.to(device), "ntp_attention_mask": mask.to(device)}


def next_token_loss_sum(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[Any, Any]:
    """Summed next-token cross-entropy over the masked tokens that have a masked predecessor, and their count.

    Rows with no token are skipped; when every row is empty, one row still runs (with zero weight), so that every
    process runs one forward per call (ZeRO-3).
    """
    rows = attention_mask.any(dim=1)
    if not rows.any():
        rows[0] = True
    input_ids, attention_mask = input_ids[rows], attention_mask[rows]
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    targets = input_ids[:, 1:]
    weights = (attention_mask[:, 1:] * attention_mask[:, :-1]).float()
    losses = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    return (losses * weights.reshape(-1)).sum(), weights.sum()


class MixedObjectiveMixin:
    """Adds `args.next_token_loss_coef` × next-token cross-entropy on the contexts to a `GRPOTrainer` subclass's
    loss (see the module docstring). Place it after `DynamicSamplingMixin` and before `GRPOTrainer` in the bases, so
    that every generated round carries its context tokens."""

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if self.args.next_token_loss_coef > 0 and self.model.training:
            # Rows are consecutive rollouts of each group over all processes; mark each group's first one.
            offset = self.accelerator.process_index * len(inputs)
            first = [(offset + row) % self.num_generations == 0 for row in range(len(inputs))]
            prompts = [example["prompt"] for example in inputs]
            device = output["completion_ids"].device
            output.update(context_tokens(prompts, self._tokenizer, self.args.prompt_template, first, device))
        return output

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        if self.args.next_token_loss_coef == 0 or "ntp_input_ids" not in inputs:
            return loss
        total, count = next_token_loss_sum(model, inputs["ntp_input_ids"], inputs["ntp_attention_mask"])
        mean = total / count.clamp(min=1.0)
        mode = "train" if self.model.training else "eval"
        totals = self.accelerator.gather(torch.stack([total.detach(), count]).unsqueeze(0)).sum(dim=0)
        if totals[1] > 0:  # the mean over all processes' context tokens of this micro-batch
            self._metrics[mode]["rpt/next_token_loss"].append((totals[0] / totals[1]).item())
        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1
        return loss + self.args.next_token_loss_coef * mean / accumulation
