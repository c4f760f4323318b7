"""No forward and backward for a trained batch that carries no signal.

From the second step of the demo on, every trained batch held only groups with uniform rewards: all advantages zero.
Every GRPO loss type in TRL 1.16 is the advantage times a factor (the clipped ratio, its soft or truncated variants)
times masks, so with `beta = 0`, no entropy bonus and no router auxiliary loss, that batch's loss is exactly 0 and so
is its gradient. The forward and the backward then compute zeros.

[`EmptyBatchSkipMixin`] returns that zero loss without running the model. The optimizer and the scheduler still
step as Trainer schedules them: the trainable parameters get zero gradients (where they have none yet), so AdamW
counts the step, decays its moments and applies weight decay exactly as it does after a backward of zeros.

Where skipping is not safe it does not skip:
- under DeepSpeed and FSDP the engine owns the gradients (and DeepSpeed steps the optimizer inside `backward`);
- LOMO optimizers update the weights inside `backward`;
- with several processes, DDP's gradient all-reduce needs every rank in the backward, so the batch is skipped only
  when every rank's batch is without signal (one gather of a flag per micro-batch); and the last micro-batch of an
  accumulation window is not skipped when an earlier one ran a backward, because DDP averages the gradients that
  the window accumulated without synchronising in that last backward.
"""

import logging
from typing import Any

import torch
from accelerate.utils import DistributedType
from transformers.training_args import OptimizerNames


logger = logging.getLogger(__name__)

SKIPPED_METRIC = "rpt/skipped_backward"
_LOMO_OPTIMIZERS = (OptimizerNames.LOMO, OptimizerNames.ADALOMO)
_ENGINES_OWNING_GRADIENTS = (DistributedType.DEEPSPEED, DistributedType.FSDP)


def loss_is_advantage_only(trainer: Any) -> bool:
    """Whether every term of `trainer`'s training loss is proportional to the advantages.

    True for a `GRPOTrainer` with `beta = 0`, no entropy bonus, no router auxiliary loss and no next-token term
    (`next_token_loss_coef = 0`), under an engine where a step without backward is still an optimizer step (not
    DeepSpeed, FSDP or a LOMO optimizer).
    """
    return (
        trainer.beta == 0.0
        and not getattr(trainer.args, "next_token_loss_coef", 0.0)
        and not trainer._entropy_bonus_enabled
        and not trainer.aux_loss_enabled
        and trainer.accelerator.distributed_type not in _ENGINES_OWNING_GRADIENTS
        and trainer.args.optim not in _LOMO_OPTIMIZERS
    )


def zero_missing_gradients(model: torch.nn.Module) -> None:
    """Give every trainable parameter without a gradient a zero one, as a backward of a zero loss would."""
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)


class EmptyBatchSkipMixin:
    """Skip the loss forward and backward of a training batch whose advantages are all zero (see the module docstring).

    Put it before `GRPOTrainer` in the bases. It overrides `compute_loss`, the one call between TRL's batch
    preparation (generation, rewards, advantages) and Trainer's backward, and logs `rpt/skipped_backward`, the share
    of micro-batches skipped. Set `skip_batches_without_signal = False` on the trainer to always compute the loss.
    """

    skip_batches_without_signal: bool = True
    _backward_since_sync: bool = False  # a micro-batch of this accumulation window ran its backward

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not (self.model.training and self.skip_batches_without_signal and loss_is_advantage_only(self)):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        skip = self._no_signal_on_any_rank(inputs["advantages"])
        sync = self.accelerator.sync_gradients
        if skip and sync and self._backward_since_sync and self.accelerator.num_processes > 1:
            skip = False  # this backward is where DDP averages the window's unsynchronised gradients
        self._backward_since_sync = not sync and (self._backward_since_sync or not skip)
        self._metrics["train"][SKIPPED_METRIC].append(float(skip))
        if not skip:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        zero_missing_gradients(model)
        # A leaf: Trainer's backward of it is a no-op on the model, and `loss.detach()` is the 0 it logs.
        return torch.zeros((), device=inputs["advantages"].device, requires_grad=True)

    def _no_signal_on_any_rank(self, advantages: torch.Tensor) -> bool:
        no_signal = torch.tensor([float(bool((advantages == 0).all()))], device=advantages.device)
        if self.accelerator.num_processes > 1:  # every rank reaches this gather: the condition above is config-only
            no_signal = self.accelerator.gather(no_signal)
        return bool(no_signal.all())
