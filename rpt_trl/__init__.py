"""rpt-trl: Reinforcement Pre-Training (Dong et al. 2025, arXiv 2506.08007) as a TRL extension.

The public API is importable from here; each name loads its module on first use, as `trl` does, so that
`import rpt_trl` stays cheap.
"""

import importlib
from typing import TYPE_CHECKING, Any

from . import _deprecation


__version__ = "0.1.0"
_deprecation.install()  # the old module paths (`rpt_trl.model_rewards`, ...) import their new modules, with a warning

_IMPORT_STRUCTURE = {
    "experiments.ablation": ["run_ablation"],
    "results": ["DIFFICULTY_THRESHOLDS"],
    "data.builder": [
        "NextTokenDatasetStats",
        "NextTokenSettings",
        "build_next_token_dataset",
        "difficulty_labels",
    ],
    "data.entropy": ["align_token_values", "compute_token_entropy", "document_entropy"],
    "data.loading": ["load_documents"],
    "rewards.thought_budget": ["ThoughtBudgetReward"],
    "parsing": ["can_be_boxed", "extract_prediction", "split_thought"],
    "rewards.model_rewards": ["MODEL_REWARDS", "ConditionalDenseReward", "DenseReward", "InformationGainReward"],
    "data.prepare": ["prepare_rpt_dataset", "push_prepared_dataset", "save_prepared_dataset"],
    "rewards.prefix_match": [
        "first_token_reward",
        "prefix_match_reward",
        "score_completions",
        "score_first_token",
        "score_prefix_match",
    ],
    "trainer.rpt_config": ["RPTConfig"],
    "trainer.rpt_trainer": ["RPTTrainer"],
    "data.templates": ["TEMPLATES", "render_prompt"],
}
_MODULE_OF = {name: module for module, names in _IMPORT_STRUCTURE.items() for name in names}
__all__ = sorted(_MODULE_OF)

if TYPE_CHECKING:
    from .data.builder import (
        NextTokenDatasetStats,
        NextTokenSettings,
        build_next_token_dataset,
        difficulty_labels,
    )
    from .data.entropy import align_token_values, compute_token_entropy, document_entropy
    from .data.loading import load_documents
    from .data.prepare import prepare_rpt_dataset, push_prepared_dataset, save_prepared_dataset
    from .data.templates import TEMPLATES, render_prompt
    from .experiments.ablation import run_ablation
    from .parsing import can_be_boxed, extract_prediction, split_thought
    from .results import DIFFICULTY_THRESHOLDS
    from .rewards.model_rewards import MODEL_REWARDS, ConditionalDenseReward, DenseReward, InformationGainReward
    from .rewards.prefix_match import (
        first_token_reward,
        prefix_match_reward,
        score_completions,
        score_first_token,
        score_prefix_match,
    )
    from .rewards.thought_budget import ThoughtBudgetReward
    from .trainer.rpt_config import RPTConfig
    from .trainer.rpt_trainer import RPTTrainer


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
