"""Evaluation: next-token accuracy (standard and reasoning mode), zero-shot multiple choice, scaling-curve fits,
reasoning-pattern counts, and the results schema the model card renders.

Scoring is imported from the training code (`extract_prediction`, `prefix_match_reward`), so training and evaluation
score identically. Command-line entry points live in the repository's `evaluation/` folder and in `rpt-trl evaluate`.
"""

from ..results import next_token_table, results_markdown, save_result, validate_result, zero_shot_table
from .callback import NextTokenAccuracyCallback
from .multiple_choice import extract_choice, normalize_row, render_question
from .next_token import (
    CompletionEntropy,
    pass_at_k,
    reasoning_scores,
    reasoning_summary,
    row_splits,
    standard_scores,
    summarize,
    thought_scores,
    thought_summary,
    transformers_generator,
)
from .reasoning_patterns import REASONING_PATTERNS, count_patterns
from .scaling import PowerLawFit, ScalingFitError, compute_from_trainer_state, fit_power_law


__all__ = [
    "REASONING_PATTERNS",
    "CompletionEntropy",
    "NextTokenAccuracyCallback",
    "PowerLawFit",
    "ScalingFitError",
    "compute_from_trainer_state",
    "count_patterns",
    "extract_choice",
    "fit_power_law",
    "next_token_table",
    "normalize_row",
    "pass_at_k",
    "reasoning_scores",
    "reasoning_summary",
    "render_question",
    "results_markdown",
    "row_splits",
    "save_result",
    "standard_scores",
    "summarize",
    "thought_scores",
    "thought_summary",
    "transformers_generator",
    "validate_result",
    "zero_shot_table",
]
