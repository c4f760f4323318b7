r"""Reasoning-pattern counts in chains of thought (paper, Section 4.6 and Figure 6).

The paper compares how often RPT and a plain reasoning model use families of reasoning moves, found by keywords. It
does not publish its keyword lists; `REASONING_PATTERNS` below is this project's, and the one place they are kept.
A keyword matches case-insensitively on word boundaries; the rate is matches per 1,000 reasoning tokens (tokens of
the text before `</think>`, counted with the model's tokenizer, or whitespace-separated words without one).
"""

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..parsing import split_thought
from ..plotting import pyplot
from ..rewards.prefix_match import thought_token_counts


REASONING_PATTERNS: dict[str, tuple[str, ...]] = {
    "hypothesis": ("suppose", "assume", "assuming", "perhaps", "maybe", "possibly", "what if", "might be",
                   "could be", "likely", "probably", "guess"),
    "deduction": ("therefore", "thus", "hence", "so the", "it follows", "implies", "which means", "because",
                  "since", "consequently", "as a result"),
    "reflection": ("wait", "hmm", "actually", "on second thought", "reconsider", "let me think", "however",
                   "but then", "rethink"),
    "verification": ("check", "verify", "confirm", "double-check", "make sure", "is consistent", "indeed",
                     "correct"),
    "decomposition": ("first", "second", "then", "next", "finally", "step", "break down", "part of"),
    "analogy": ("similar to", "like the", "just as", "analogous", "same as", "resembles", "pattern"),
    "alternatives": ("alternatively", "another option", "or maybe", "other possibility", "candidates", "instead",
                     "either"),
}  # fmt: skip


def _compile(patterns: Mapping[str, Sequence[str]]) -> dict[str, re.Pattern]:
    return {
        family: re.compile(r"\b(?:" + "|".join(re.escape(k) for k in sorted(keywords, key=len, reverse=True)) + r")\b",
                           re.IGNORECASE)
        for family, keywords in patterns.items()
    }  # fmt: skip


def count_patterns(
    completions: Sequence[Any],
    *,
    tokenizer: Any | None = None,
    patterns: Mapping[str, Sequence[str]] = REASONING_PATTERNS,
) -> dict[str, Any]:
    """Count each keyword family in the thoughts of `completions`.

    Returns:
        `{"counts": {family: matches}, "per_1k_tokens": {family: rate}, "reasoning_tokens": int,
        "completions": int}`.

    Example:
        >>> stats = count_patterns(["Wait, maybe it is x. Let me check. </think> \\boxed{ x}"])
        >>> stats["counts"]["reflection"], stats["counts"]["hypothesis"], stats["counts"]["verification"]
        (1, 1, 1)
    """
    compiled = _compile(patterns)
    thoughts = [split_thought(c)[0] for c in completions]
    counts = {family: sum(len(regex.findall(t)) for t in thoughts) for family, regex in compiled.items()}
    if tokenizer is not None:
        tokens = sum(thought_token_counts(completions, tokenizer))
    else:
        tokens = sum(len(t.split()) for t in thoughts)
    rates = {family: 1000.0 * n / tokens if tokens else 0.0 for family, n in counts.items()}
    return {"counts": counts, "per_1k_tokens": rates, "reasoning_tokens": tokens, "completions": len(thoughts)}


def read_completions(path: str | Path) -> list[str]:
    """Completions from a JSONL file written by `next_token_accuracy --save-completions` (its `completion` field)."""
    import json

    completions = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            record = json.loads(line)
            if "completion" not in record:
                raise ValueError(f"{path}:{number}: a record needs a 'completion' field.")
            completions.append(record["completion"])
    return completions


def plot_patterns(stats_by_model: Mapping[str, Mapping[str, Any]], path: str | Path) -> None:
    """Save a grouped bar chart (PNG) of the per-1,000-token rates, one bar per model in every family."""
    plt = pyplot()

    families = list(next(iter(stats_by_model.values()))["per_1k_tokens"])
    width = 0.8 / len(stats_by_model)
    figure, axis = plt.subplots(figsize=(8, 3.6))
    for index, (model, stats) in enumerate(stats_by_model.items()):
        xs = [f + (index - (len(stats_by_model) - 1) / 2) * width for f in range(len(families))]
        axis.bar(xs, [stats["per_1k_tokens"][f] for f in families], width=width, label=model)
    axis.set_xticks(range(len(families)), families, rotation=20)
    axis.set(ylabel="per 1,000 reasoning tokens", title="Reasoning patterns")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
