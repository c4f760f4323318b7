"""The reference policy of the information-gain reward: an exponential moving average (EMA) of the trained weights.

RLP (Hatamizadeh et al. 2025, arXiv 2510.01265) scores a thought against a slowly moving copy of the policy. A second
model would double the memory of a 14B run, so [`ReferenceEMA`] keeps no model, only a float32 shadow of the
*trainable* parameters, and evaluates the reference by swapping the shadow into the policy's own parameters for one
forward pass:

- full fine-tuning: one float32 copy of the weights, on the CPU by default (`device="cpu"`), not on the accelerator;
- LoRA (peft): only the adapter weights are trainable, so the shadow is an EMA of the adapter alone (megabytes); the
  frozen base is shared;
- DeepSpeed ZeRO-3: each process keeps the EMA of its own shard (`param.ds_tensor`), so the copy is divided by the
  number of processes, like the weights themselves.

While the reference forward runs, the live weights wait in a CPU buffer and are copied back bit for bit afterwards,
so the accelerator never holds a second copy (when the shadow already has the weights' device and dtype, float32
weights on a CPU, the parameters point at it instead, with no copy at all). `decay=1.0` freezes the reference at the weights training started
from.

Update rule, after every optimizer step t: `ref_t = decay * ref_(t-1) + (1 - decay) * theta_t`, `ref_0 = theta_0`.
[`ReferenceEMACallback`] runs it, saves the shadow into every checkpoint (`reference_ema.pt`, or one
`reference_ema-rank{N}.pt` per process under ZeRO-3) and restores it on resume.
"""

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
from transformers import TrainerCallback

from ..atomic_io import write_file_atomically


logger = logging.getLogger(__name__)

REFERENCE_EMA_FILE = "reference_ema.pt"
REFERENCE_DEVICES = ("cpu", "model")


def _local_tensor(parameter: torch.nn.Parameter) -> torch.Tensor:
    """The part of a parameter this process holds: its ZeRO-3 shard when DeepSpeed partitions it, else its data."""
    shard = getattr(parameter, "ds_tensor", None)
    return shard if shard is not None else parameter.data


class ReferenceEMA:
    """A float32 exponential moving average of a model's trainable parameters, swapped in to act as the reference.

    Args:
        model: The policy (unwrapped; a peft model keeps the EMA of its adapter only).
        decay: Weight of the old average per update, in [0, 1]; 1.0 freezes the reference at the starting weights.
        device: `"cpu"` keeps the shadow in host memory (the default: the accelerator holds no copy); `"model"`
            keeps it beside each parameter (faster swaps, one more float32 copy of the trainable weights there).

    Example:
        >>> model = torch.nn.Linear(1, 1, bias=False)
        >>> _ = torch.nn.init.zeros_(model.weight)
        >>> ema = ReferenceEMA(model, decay=0.75)
        >>> _ = torch.nn.init.constant_(model.weight, 4.0)
        >>> ema.update()  # 0.75 * 0 + 0.25 * 4
        >>> with ema.applied():
        ...     model.weight.item()
        1.0
        >>> model.weight.item()
        4.0
    """

    def __init__(self, model: torch.nn.Module, decay: float, device: str = "cpu"):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"The reference EMA decay must be in [0, 1] (1.0 freezes the reference), got {decay}.")
        if device not in REFERENCE_DEVICES:
            raise ValueError(f"The reference EMA device must be one of {REFERENCE_DEVICES}, got {device!r}.")
        self.decay = decay
        self.device = device
        self.parameters = {name: p for name, p in model.named_parameters() if p.requires_grad}
        if not self.parameters:
            raise ValueError("The model has no trainable parameter to keep an EMA reference of.")
        persistent = [name for name, p in self.parameters.items() if getattr(p, "ds_persist", False)]
        if persistent:
            # ZeRO-3 keeps small parameters gathered for good; a forward pass never reads their shard, so the swap
            # into the shard would not reach them.
            raise ValueError(
                f"ZeRO-3 keeps {len(persistent)} parameter(s) (e.g. {persistent[0]}) gathered permanently, which the "
                "reference EMA cannot swap: set `stage3_param_persistence_threshold: 0` in a DeepSpeed config file "
                "(accelerate's `deepspeed_config_file`), or train LoRA adapters."
            )
        self.shadow = {name: self._copy(_local_tensor(p)) for name, p in self.parameters.items()}
        self.num_updates = 0

    def _copy(self, tensor: torch.Tensor) -> torch.Tensor:
        device = "cpu" if self.device == "cpu" else tensor.device
        return tensor.detach().to(device=device, dtype=torch.float32, copy=True)

    @property
    def sharded(self) -> bool:
        """Whether the parameters are ZeRO-3 shards (each process then holds, and saves, a different shadow)."""
        return any(getattr(p, "ds_tensor", None) is not None for p in self.parameters.values())

    def memory_bytes(self) -> int:
        """Bytes held by the shadow on this process."""
        return sum(s.numel() * s.element_size() for s in self.shadow.values())

    @torch.no_grad()
    def update(self) -> None:
        """One EMA step towards the current weights: `shadow = decay * shadow + (1 - decay) * weights`."""
        if self.decay == 1.0:
            self.num_updates += 1
            return
        for name, parameter in self.parameters.items():
            shadow = self.shadow[name]
            shadow.mul_(self.decay).add_(
                _local_tensor(parameter).detach().to(shadow.device, torch.float32), alpha=1.0 - self.decay
            )
        self.num_updates += 1

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the model computes with the reference weights; the live weights come back bit for bit."""
        backups, swapped = {}, {}
        with torch.no_grad():
            for name, parameter in self.parameters.items():
                local, shadow = _local_tensor(parameter), self.shadow[name]
                unsharded = getattr(parameter, "ds_tensor", None) is None
                if unsharded and (local.device, local.dtype) == (shadow.device, shadow.dtype):
                    # Same device and dtype (float32 weights on the CPU): point the parameter at the shadow, no copy.
                    swapped[name] = parameter.data
                    parameter.data = shadow
                else:
                    backups[name] = local.detach().to("cpu", copy=True)
                    local.copy_(shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, data in swapped.items():
                    self.parameters[name].data = data
                for name, backup in backups.items():
                    _local_tensor(self.parameters[name]).copy_(backup)

    def state_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "shadow": {name: s.detach().cpu() for name, s in self.shadow.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a saved shadow; it must hold the same parameters, with the same shapes."""
        saved = state["shadow"]
        if set(saved) != set(self.shadow):
            missing, extra = sorted(set(self.shadow) - set(saved)), sorted(set(saved) - set(self.shadow))
            raise ValueError(
                f"The saved reference EMA does not match the model's trainable parameters (missing {missing[:3]}, "
                f"unexpected {extra[:3]}): was the checkpoint written by another model or adapter configuration?"
            )
        for name, tensor in saved.items():
            if tensor.shape != self.shadow[name].shape:
                raise ValueError(
                    f"The saved reference EMA of {name} has shape {tuple(tensor.shape)}, the model's "
                    f"{tuple(self.shadow[name].shape)} (another number of ZeRO-3 processes?)."
                )
            self.shadow[name].copy_(tensor)
        if state["decay"] != self.decay:
            logger.warning(
                "The reference EMA was saved with decay %s; it goes on with %s.", state["decay"], self.decay
            )
        self.num_updates = int(state["num_updates"])


def reference_ema_filename(sharded: bool, process_index: int) -> str:
    """`reference_ema.pt`, or `reference_ema-rank{N}.pt` when each process holds its own ZeRO-3 shard."""
    return f"reference_ema-rank{process_index}.pt" if sharded else REFERENCE_EMA_FILE


class ReferenceEMACallback(TrainerCallback):
    """Creates, updates, saves and restores a [`ReferenceEMA`] during `Trainer.train`.

    Args:
        make_reference: Builds the `ReferenceEMA` from the prepared model (called at `on_train_begin`, after
            DeepSpeed has partitioned the weights, or at first use).
        process_index: This process's index (for ZeRO-3 shard files).

    The reference is restored from `resume_from` when set (RPTTrainer sets it to the checkpoint it resumes from),
    else, when training starts at a step above 0, from `output_dir/checkpoint-{global_step}`.
    """

    def __init__(self, make_reference: Callable[[], ReferenceEMA], process_index: int = 0):
        self.make_reference = make_reference
        self.process_index = process_index
        self.reference: ReferenceEMA | None = None
        self.resume_from: str | None = None

    def get(self) -> ReferenceEMA:
        if self.reference is None:
            self.reference = self.make_reference()
        return self.reference

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.reference = self.make_reference()  # from the weights training starts (or resumes) from
        if state.global_step > 0:
            folder = self.resume_from or os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            self.load(folder)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.get().update()

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        reference = self.get()
        if not reference.sharded and not state.is_world_process_zero:
            return
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        self.save(folder)

    def save(self, folder: str) -> str:
        reference = self.get()
        path = os.path.join(folder, reference_ema_filename(reference.sharded, self.process_index))
        os.makedirs(folder, exist_ok=True)
        state = reference.state_dict()
        write_file_atomically(path, lambda handle: torch.save(state, handle))
        return path

    def load(self, folder: str) -> None:
        reference = self.get()
        path = os.path.join(folder, reference_ema_filename(reference.sharded, self.process_index))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Resuming an information-gain run needs its reference EMA, but {path} is missing (a checkpoint "
                "written without it, or cut short). Resume from an earlier checkpoint, or start afresh."
            )
        reference.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        logger.info("Restored the reference EMA (%d updates) from %s.", reference.num_updates, path)
