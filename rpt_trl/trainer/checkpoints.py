"""Resuming a run: find the last complete checkpoint (local, or a Hub revision pushed by `CheckpointRevisionPusher`).

The data order of the epoch resumed in is replayed by `rpt_trl.trainer.sampler.EpochReplayRepeatSampler`.

A process killed while it writes `checkpoint-N` leaves a folder that `transformers.trainer_utils.get_last_checkpoint`
still picks, so `train(resume_from_checkpoint=True)` crashes on the missing `trainer_state.json` (or on a truncated
weights file) although an older complete checkpoint is there. [`last_complete_checkpoint`] skips such folders with a
warning.

A checkpoint also holds files that callbacks write after the Trainer's own (the information-gain reference,
`reference_ema.pt`), and the Trainer deletes the checkpoints over `save_total_limit` before those callbacks run.
[`CheckpointCompletion`] therefore writes `rpt_checkpoint.json`, the list of every file of the checkpoint and its
size, as the checkpoint's last file, and only then deletes older checkpoints. A checkpoint whose
`trainer_state.json` names that callback is complete only with that list, and every file in it whole.
"""

import json
import logging
import os
import re
import struct
import zipfile
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import rotate_checkpoints

from ..atomic_io import write_file_atomically


logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"
WEIGHTS = ("model.safetensors", "adapter_model.safetensors")
SHARDED_WEIGHTS = ("model.safetensors.index.json",)
# Checkpoints that DeepSpeed or FSDP write in their own layouts: only the trainer state is checked.
COMPLETE_MARKER = "rpt_checkpoint.json"
FOREIGN_WEIGHTS = re.compile(r"^(global_step\d+|pytorch_model_fsdp.*|model\.bin|pytorch_model.*\.bin)$")


def checkpoint_problems(checkpoint_dir: str, *, require_optimizer: bool = True) -> list[str]:
    """What makes `checkpoint_dir` unusable for resuming; an empty list when it looks complete.

    Checks that `trainer_state.json` parses, that the weights exist and each safetensors file is as long as its
    header says (a truncated write fails this), and, with `require_optimizer`, that `optimizer.pt` is a complete
    torch archive. Folders in DeepSpeed / FSDP layouts are only checked for the trainer state.

    Args:
        checkpoint_dir: A `checkpoint-N` folder written by the Trainer.
        require_optimizer: Whether the optimizer state must be there (not with `save_only_model=True`).

    Example:
        >>> checkpoint_problems("missing-dir")
        ['missing-dir is not a directory']
    """
    if not os.path.isdir(checkpoint_dir):
        return [f"{checkpoint_dir} is not a directory"]
    files = set(os.listdir(checkpoint_dir))
    problems = []
    if TRAINER_STATE not in files:
        problems.append(f"no {TRAINER_STATE}")
    else:
        try:
            with open(os.path.join(checkpoint_dir, TRAINER_STATE)) as handle:
                json.load(handle)
        except (OSError, ValueError) as error:
            problems.append(f"{TRAINER_STATE} does not parse ({error})")

    weights = [name for name in WEIGHTS if name in files]
    for index_name in (name for name in SHARDED_WEIGHTS if name in files):
        try:
            with open(os.path.join(checkpoint_dir, index_name)) as handle:
                shards = sorted(set(json.load(handle)["weight_map"].values()))
        except (OSError, ValueError, KeyError) as error:
            problems.append(f"{index_name} does not parse ({error})")
            continue
        problems += [f"shard {shard} listed in {index_name} is missing" for shard in shards if shard not in files]
        weights += [shard for shard in shards if shard in files]
    if not weights and not any(FOREIGN_WEIGHTS.match(name) for name in files):
        problems.append(f"no model weights ({' or '.join(WEIGHTS + SHARDED_WEIGHTS)})")
    for name in weights:
        problem = _safetensors_problem(os.path.join(checkpoint_dir, name))
        if problem:
            problems.append(f"{name} {problem}")

    problems += _marker_problems(checkpoint_dir, files)
    if require_optimizer and not any(FOREIGN_WEIGHTS.match(name) for name in files) and "optimizer.pt" not in files:
        problems.append("no optimizer.pt")
    # Every torch archive that resuming loads (optimizer, scheduler, scaler, each process's RNG state) must be whole:
    # a truncated one loses the zip directory at its end.
    for name in sorted(name for name in files if name.endswith((".pt", ".pth"))):
        if not zipfile.is_zipfile(os.path.join(checkpoint_dir, name)):
            problems.append(f"{name} is truncated or not a torch archive")
    return problems


def last_complete_checkpoint(output_dir: str, *, require_optimizer: bool = True) -> str | None:
    """The highest-step `checkpoint-N` folder of `output_dir` that [`checkpoint_problems`] finds complete.

    Each newer folder that is skipped is reported with a warning that says what is wrong with it.

    Args:
        output_dir: The run's output directory.
        require_optimizer: Passed to [`checkpoint_problems`].

    Returns:
        The path, or `None` when `output_dir` has no complete checkpoint.
    """
    if not os.path.isdir(output_dir):
        return None
    steps = sorted(
        (int(match.group(1)), name)
        for name in os.listdir(output_dir)
        if (match := CHECKPOINT_PATTERN.match(name)) and os.path.isdir(os.path.join(output_dir, name))
    )
    for _, name in reversed(steps):
        path = os.path.join(output_dir, name)
        problems = checkpoint_problems(path, require_optimizer=require_optimizer)
        if not problems:
            return path
        logger.warning(
            "Skipping incomplete checkpoint %s (%s): it was probably being written when the run died.",
            path,
            "; ".join(problems),
        )
    return None


def _marker_problems(checkpoint_dir: str, files: set[str]) -> list[str]:
    """Problems against `rpt_checkpoint.json`: required when the trainer state names [`CheckpointCompletion`]."""
    if COMPLETE_MARKER not in files:
        if _marked_by_its_run(checkpoint_dir):
            return [f"no {COMPLETE_MARKER} (written last, once every file of the checkpoint is on disk)"]
        return []
    try:
        with open(os.path.join(checkpoint_dir, COMPLETE_MARKER)) as handle:
            listed = json.load(handle)["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return [f"{COMPLETE_MARKER} does not parse ({error})"]
    problems = []
    for name, size in sorted(listed.items()):
        path = os.path.join(checkpoint_dir, name)
        if not os.path.isfile(path):
            problems.append(f"{name}, listed in {COMPLETE_MARKER}, is missing")
        elif os.path.getsize(path) != size:
            problems.append(f"{name} has {os.path.getsize(path)} of its {size} bytes")
    return problems


def _marked_by_its_run(checkpoint_dir: str) -> bool:
    try:
        with open(os.path.join(checkpoint_dir, TRAINER_STATE)) as handle:
            return CheckpointCompletion.__name__ in (json.load(handle).get("stateful_callbacks") or {})
    except (OSError, ValueError, AttributeError):
        return False  # reported by the trainer-state check


def mark_checkpoint_complete(checkpoint_dir: str) -> None:
    """Write `rpt_checkpoint.json`: every file under `checkpoint_dir` (relative path -> size in bytes)."""
    listed = {}
    for root, _, names in os.walk(checkpoint_dir):
        for name in names:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, checkpoint_dir)
            if relative != COMPLETE_MARKER and not name.startswith("."):  # not a writer's temporary
                listed[relative.replace(os.sep, "/")] = os.path.getsize(path)
    text = json.dumps({"files": dict(sorted(listed.items()))}, indent=1).encode()
    write_file_atomically(os.path.join(checkpoint_dir, COMPLETE_MARKER), lambda handle: handle.write(text))


class CheckpointCompletion(TrainerCallback, ExportableState):
    """Mark each checkpoint whole once every callback has written its files, then delete the ones over the limit.

    [`RPTTrainer`] keeps it after every other callback that writes into a checkpoint (and before the Hub pusher, so
    that what is pushed is whole), and defers the Trainer's own deletion of old checkpoints to it. As an
    `ExportableState`, it is named in every `trainer_state.json` it belongs to, which is how
    [`checkpoint_problems`] knows that such a checkpoint needs `rpt_checkpoint.json`.
    """

    def state(self) -> dict[str, Any]:
        return {"args": {}, "attributes": {}}

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every process has written its own files (each ZeRO-3 shard's reference EMA)
        if not args.should_save:
            return
        checkpoint_dir = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(checkpoint_dir):
            mark_checkpoint_complete(checkpoint_dir)
            rotate_checkpoints(
                output_dir=args.output_dir,
                save_total_limit=args.save_total_limit,
                best_model_checkpoint=state.best_model_checkpoint,
                use_mtime=True,
            )


def _safetensors_problem(path: str) -> str | None:
    # Layout: 8-byte little-endian header length, a JSON header with each tensor's data_offsets, then the data.
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            (header_length,) = struct.unpack("<Q", handle.read(8))
            if header_length > size - 8:
                return f"is truncated (header of {header_length} bytes in a {size}-byte file)"
            header = json.loads(handle.read(header_length))
    except (OSError, ValueError, struct.error) as error:
        return f"cannot be read ({error})"
    data_end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if size < 8 + header_length + data_end:
        return f"is truncated ({size} of {8 + header_length + data_end} bytes)"
    if size > 8 + header_length + data_end:  # safetensors refuses to load such a file
        return f"has {size - 8 - header_length - data_end} trailing bytes after its data"
    return None


def resolve_resume_checkpoint(resume_from_checkpoint: str | bool | None, args: Any) -> str | None:
    """The local checkpoint folder that `Trainer.train(resume_from_checkpoint=...)` should load.

    Args:
        resume_from_checkpoint: `None` / `False` (start afresh), `True` or the strings `"true"` / `"last"` (the last
            complete checkpoint of `args.output_dir`), a local folder, or a Hub revision `"org/name@revision"`
            (downloaded first).
        args: The trainer's `TrainingArguments`.

    Raises:
        ValueError: When no complete checkpoint is found, or the folder named is incomplete.
    """
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if isinstance(resume_from_checkpoint, str) and not os.path.exists(resume_from_checkpoint):
        # Command lines pass strings: `--resume_from_checkpoint true` means the last complete checkpoint.
        if resume_from_checkpoint.strip().lower() in ("true", "last"):
            resume_from_checkpoint = True
    require_optimizer = not args.save_only_model
    if resume_from_checkpoint is True:
        checkpoint = last_complete_checkpoint(args.output_dir, require_optimizer=require_optimizer)
        if checkpoint is None:
            raise ValueError(
                f"resume_from_checkpoint=True, but {args.output_dir} has no complete checkpoint-N folder (see the "
                "warnings above for the incomplete ones). Start without resume_from_checkpoint, or name a checkpoint."
            )
        logger.info("Resuming from %s, the last complete checkpoint.", checkpoint)
        return checkpoint
    if not os.path.exists(resume_from_checkpoint):
        from ..hub import download_checkpoint, parse_hub_reference

        reference = parse_hub_reference(resume_from_checkpoint)
        if reference is None:
            raise ValueError(
                f"resume_from_checkpoint={resume_from_checkpoint!r} is neither a local folder nor a Hub checkpoint "
                "revision written as 'org/name@revision' (e.g. 'org/name@step-000500')."
            )
        with args.main_process_first(local=True, desc="checkpoint download"):
            resume_from_checkpoint = download_checkpoint(*reference, local_root=args.output_dir)
    problems = checkpoint_problems(resume_from_checkpoint, require_optimizer=require_optimizer)
    if problems:
        raise ValueError(
            f"Cannot resume from {resume_from_checkpoint}: {'; '.join(problems)}. Pass resume_from_checkpoint=True "
            "to use the last complete checkpoint instead."
        )
    logger.info("Resuming from %s.", resume_from_checkpoint)
    return resume_from_checkpoint
