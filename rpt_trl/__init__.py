"""rpt-trl: Reinforcement Pre-Training (Dong et al. 2025, arXiv 2506.08007) as a TRL extension."""

__version__ = "0.1.0"

from .data import (
    DIFFICULTY_THRESHOLDS,
    NextTokenDatasetStats,
    NextTokenSettings,
    build_next_token_dataset,
    difficulty_labels,
)
from .entropy import align_token_values, compute_token_entropy, document_entropy
from .loading import load_documents
from .parsing import can_be_boxed, extract_prediction, split_thought
from .prepare import prepare_rpt_dataset, push_prepared_dataset, save_prepared_dataset
from .rewards import (
    first_token_reward,
    prefix_match_reward,
    score_completions,
    score_first_token,
    score_prefix_match,
)
from .rpt_config import RPTConfig
from .rpt_trainer import RPTTrainer
from .templates import TEMPLATES, render_prompt


__all__ = [
    "DIFFICULTY_THRESHOLDS",
    "NextTokenDatasetStats",
    "NextTokenSettings",
    "RPTConfig",
    "RPTTrainer",
    "TEMPLATES",
    "align_token_values",
    "build_next_token_dataset",
    "can_be_boxed",
    "compute_token_entropy",
    "difficulty_labels",
    "document_entropy",
    "extract_prediction",
    "first_token_reward",
    "load_documents",
    "prefix_match_reward",
    "prepare_rpt_dataset",
    "push_prepared_dataset",
    "render_prompt",
    "save_prepared_dataset",
    "score_completions",
    "score_first_token",
    "score_prefix_match",
    "split_thought",
]
