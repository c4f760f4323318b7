"""Run settings and default sizes of the experiments (the demo, the ablation, the tiny world, the baselines), and the
benchmarks and evaluation scripts that reuse them: each written once, here."""

from dataclasses import dataclass
from typing import Any


# A short experiment: every step logged, no checkpoint saved, no tracker reported to.
RUN_PRESET = {"logging_steps": 1, "save_strategy": "no", "report_to": "none"}
# Training on a CPU (the trainers' defaults assume a GPU with bf16).
CPU_DEVICE = {"use_cpu": True, "bf16": False}
# A short experiment on a CPU, quiet: the tiny world's runs and the tests'.
CPU_RUN = {**CPU_DEVICE, "gradient_checkpointing": False, **RUN_PRESET, "disable_tqdm": True}

# The demo corpus: generated documents, the first HELD_OUT_DOCUMENTS of them for evaluation only.
CORPUS_DOCUMENTS = 64
HELD_OUT_DOCUMENTS = 24
# Held-out positions a quick comparison scores (the ablation's variants, `evaluation/prepare_demo.py`); the demo's
# report scores more (`DemoSettings.eval_positions`).
QUICK_EVAL_POSITIONS = 24


def run_settings(on_cpu: bool) -> dict[str, Any]:
    """[`RUN_PRESET`], with [`CPU_DEVICE`] when training on a CPU."""
    return {**(CPU_DEVICE if on_cpu else {}), **RUN_PRESET}


@dataclass(frozen=True)
class DemoSplits:
    """The demo corpus and its next-token positions.

    Attributes:
        corpus: The generated documents; the first `held_out_documents` are for evaluation only.
        train: Training positions (the next token is a word of the context) of the other documents.
        eval: Held-out targeted positions, shuffled, at most `eval_positions`.
        stats: The dataset builder's counts of the positions made and skipped (`filtered_out_positions`: those whose
            next token is not a word of the context).
        all_positions: A seeded sample of all answerable held-out positions (empty unless asked for).
        held_out_documents: How many leading documents are held out.
    """

    corpus: list[str]
    train: Any
    eval: Any
    stats: Any
    all_positions: Any
    held_out_documents: int

    @property
    def train_documents(self) -> list[str]:
        """The documents training may see."""
        return self.corpus[self.held_out_documents :]
