"""How this process's C allocator returns freed memory, for training and evaluation on a CPU.

glibc's `malloc` serves every block above its mmap threshold (at most 32 MiB) with a fresh `mmap`, and unmaps it when
it is freed. A training step on a CPU allocates and frees many such blocks: the vocabulary's logits, activations,
gradients, the weights' bf16 copies. The kernel then maps and zeroes each of their pages again at every step, one
page fault per 4 KiB. [`keep_freed_memory`] asks `malloc` to serve those blocks from its heap and to keep what is
freed there for the next allocation; [`ReleaseFreedMemory`] hands the heap's free pages back to the system every few
optimizer steps and at the end of training, which bounds what the heap's fragmentation holds.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys

from transformers import TrainerCallback


logger = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4

TRIM_THRESHOLD_BYTES = 2**31 - 1
"""Free memory at the heap's top is returned to the system above this (the largest value `mallopt` takes)."""
TOP_PAD_BYTES = 256 << 20
"""Each growth of the heap asks for this much more, so that a step's allocations do not grow it one by one."""
RELEASE_EVERY_STEPS = 4
"""[`ReleaseFreedMemory`]'s default period, in optimizer steps."""

OPT_OUT_ENV_VAR = "RPT_TRL_KEEP_FREED_MEMORY"
"""Set to 0 to leave `malloc` as it is."""
USER_TUNABLES = ("GLIBC_TUNABLES", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                 "MALLOC_TOP_PAD_")  # fmt: skip
"""Environment variables through which a user tunes glibc's malloc; when one is set, their choice stands."""

_kept = False


def keep_freed_memory() -> bool:
    """Make glibc's `malloc` keep freed memory for reuse instead of unmapping it (see the module docstring).

    It applies to the whole process from the call on; pair it with [`ReleaseFreedMemory`] in every trainer. The
    `rpt-trl` commands call it on a machine without CUDA, and `RPTTrainer` then adds the callback itself. It does
    nothing, and returns False, where the C library is not glibc, where `RPT_TRL_KEEP_FREED_MEMORY=0`, or where one of
    [`USER_TUNABLES`] is set.

    Returns:
        Whether the setting is in effect.

    Example:
        >>> from rpt_trl.host_memory import keep_freed_memory
        >>> keep_freed_memory()  # doctest: +SKIP
        True
    """
    global _kept
    if _kept:
        return True
    if os.environ.get(OPT_OUT_ENV_VAR, "1") == "0" or not sys.platform.startswith("linux") or not _glibc():
        return False
    chosen = [name for name in USER_TUNABLES if name in os.environ]
    if chosen:
        logger.info("malloc left as configured by %s", ", ".join(chosen))
        return False
    mallopt = _libc().mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES), (M_TOP_PAD, TOP_PAD_BYTES))
    _kept = all([mallopt(option, value) == 1 for option, value in settings])
    if not _kept:
        logger.warning("glibc's mallopt refused a setting; freed memory may still be unmapped")
    return _kept


def freed_memory_kept() -> bool:
    """Whether [`keep_freed_memory`] is in effect in this process."""
    return _kept


def release_freed_memory() -> None:
    """Hand the free pages of `malloc`'s heap back to the system (`malloc_trim`), where freed memory is kept."""
    if _kept:
        _libc().malloc_trim(0)


class ReleaseFreedMemory(TrainerCallback):
    """Releases the heap's free pages every `every_steps` optimizer steps and at the end of training, where
    [`keep_freed_memory`] is in effect (otherwise it does nothing). Between releases the steps reuse freed memory."""

    def __init__(self, every_steps: int = RELEASE_EVERY_STEPS):
        if every_steps < 1:
            raise ValueError(f"every_steps must be at least 1, got {every_steps}")
        self.every_steps = every_steps

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every_steps == 0:
            release_freed_memory()

    def on_train_end(self, args, state, control, **kwargs):
        release_freed_memory()


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library this process runs on (one handle, loaded once)."""
    return ctypes.CDLL(None)


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError, AttributeError):
        return False
