"""rpt-trl: Reinforcement Pre-Training (Dong et al. 2025, arXiv 2506.08007) as a TRL extension."""

__version__ = "0.1.0"

from .data import NextTokenDatasetStats, build_next_token_dataset
from .parsing import can_be_boxed, extract_prediction
from .rewards import first_token_reward, prefix_match_reward, score_first_token, score_prefix_match
from .rpt_config import RPTConfig
from .rpt_trainer import RPTTrainer
from .templates import TEMPLATES, render_prompt


__all__ = [
    "NextTokenDatasetStats",
    "RPTConfig",
    "RPTTrainer",
    "TEMPLATES",
    "build_next_token_dataset",
    "can_be_boxed",
    "extract_prediction",
    "first_token_reward",
    "prefix_match_reward",
    "render_prompt",
    "score_first_token",
    "score_prefix_match",
]
