r"""Zero-shot multiple choice in reasoning mode (paper, Section 4.5): MMLU-Pro and SuperGPQA.

The model reads a question with lettered options, reasons, and gives the letter in `\boxed{}`. The letter is taken
from the last complete `\boxed{}` (after `</think>` when the completion has one; [`extract_prediction`] with
`require_think_close=False`) and normalised by [`extract_choice`].

Rows are read in either benchmark's format (or any format with the same fields):

- MMLU-Pro (`TIGER-Lab/MMLU-Pro`): `question`, `options` (up to 10), `answer` (a letter) and/or `answer_index`,
  `category`;
- SuperGPQA (`m-a-p/SuperGPQA`): `question`, `options`, `answer_letter` (`answer` holds the option text),
  `discipline` / `field` / `subfield`.
"""

import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

from ..parsing import extract_prediction


LETTERS = string.ascii_uppercase

MULTIPLE_CHOICE_TEMPLATE = (
    "Answer the following multiple choice question. Think step by step, then give the letter of the correct option "
    "in \\boxed{}, e.g. \\boxed{C}.\n\n"
    "Question: {question}\n"
    "Options:\n"
    "{options}\n"
)
"""This project's prompt (the paper does not print its own); `{question}` and `{options}` are filled in."""

# `\text{C}`, `\textbf{C}`, `\mathrm{C}` wrappers around the letter.
_WRAPPER = re.compile(r"^\\(?:text|textbf|mathrm|mathbf)\{(.*)\}$", re.DOTALL)
# A letter alone, or followed by a separator and the option text: "C", "(C)", "[c]", "C.", "C) text", "C: text".
_LETTER = re.compile(r"^[\(\[]?([A-Za-z])(?:[\)\]]|(?=[\.\:\s,])|$)")


def extract_choice(completion: Any, num_options: int | None = None) -> str | None:
    r"""The option letter in the last `\boxed{}` of a completion, upper case, or `None`.

    Args:
        completion: A completion string (or a TRL conversational completion).
        num_options: If given, letters past the last option (e.g. `"K"` with 10 options) give `None`.

    Example:
        >>> [extract_choice(c) for c in ["\\boxed{c}", "\\boxed{(C)}", "\\boxed{C. 42 m}", "\\boxed{A} or \\boxed{B}"]]
        ['C', 'C', 'C', 'B']
        >>> extract_choice("no box") is None, extract_choice("\\boxed{Apple}") is None
        (True, True)
    """
    content = extract_prediction(completion, require_think_close=False)
    if content is None:
        return None
    content = content.strip()
    while (wrapped := _WRAPPER.match(content)) is not None:
        content = wrapped.group(1).strip()
    match = _LETTER.match(content)
    if match is None:
        return None
    letter = match.group(1).upper()
    if num_options is not None and LETTERS.index(letter) >= num_options:
        return None
    return letter


def normalize_row(row: Mapping[str, Any], *, category_column: str | None = None) -> dict[str, Any]:
    """One question in a common form: `question`, `options`, `answer` (a letter) and `category`.

    Raises:
        ValueError: If the row lacks a question, options, or a gold letter.
    """
    question, options = row.get("question"), row.get("options")
    if not isinstance(question, str) or not isinstance(options, Sequence) or isinstance(options, str) or not options:
        raise ValueError(
            f"A multiple-choice row needs 'question' (text) and 'options' (a list), got keys {list(row)}."
        )
    if len(options) > len(LETTERS):
        raise ValueError(f"At most {len(LETTERS)} options are supported, got {len(options)}.")
    letter = row.get("answer_letter")
    if letter is None and isinstance(row.get("answer"), str) and re.fullmatch(r"[A-Za-z]", row["answer"].strip()):
        letter = row["answer"].strip()
    if letter is None and isinstance(row.get("answer_index"), int):
        letter = LETTERS[row["answer_index"]]
    if not isinstance(letter, str) or letter.upper() not in LETTERS[: len(options)]:
        raise ValueError(
            f"Row {question[:40]!r}: no gold letter among {len(options)} options "
            "(expected 'answer_letter', a letter in 'answer', or 'answer_index')."
        )
    columns = [category_column] if category_column else ["category", "discipline", "field", "subject"]
    category = next((str(row[c]) for c in columns if row.get(c) is not None), "all")
    return {"question": question, "options": list(options), "answer": letter.upper(), "category": category}


def render_question(row: Mapping[str, Any], template: str = MULTIPLE_CHOICE_TEMPLATE) -> str:
    """Fill the template with a normalised row's question and its lettered options."""
    options = "\n".join(f"{LETTERS[i]}. {option}" for i, option in enumerate(row["options"]))
    return template.replace("{question}", row["question"]).replace("{options}", options)


def score_choices(
    rows: Sequence[Mapping[str, Any]], completions: Sequence[Sequence[str]]
) -> tuple[list[float], list[list[str | None]]]:
    """Per row: the fraction of its completions whose letter is the gold one, and the letters found."""
    scores, letters = [], []
    for row, per_row in zip(rows, completions):
        found = [extract_choice(c, len(row["options"])) for c in per_row]
        letters.append(found)
        scores.append(sum(letter == row["answer"] for letter in found) / len(found))
    return scores, letters


def summarize_choices(
    rows: Sequence[Mapping[str, Any]], scores: Sequence[float], letters: Sequence[Sequence[str | None]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Overall and per-category accuracy and answer rate."""

    def group(indices: list[int]) -> dict[str, Any]:
        answered = [sum(x is not None for x in letters[i]) / len(letters[i]) for i in indices]
        return {
            "accuracy": sum(scores[i] for i in indices) / len(indices),
            "n": len(indices),
            "answer_rate": sum(answered) / len(indices),
        }

    if not rows:
        return {"accuracy": None, "n": 0}, {}
    by_category: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_category.setdefault(row["category"], []).append(index)
    return group(list(range(len(rows)))), {c: group(by_category[c]) for c in sorted(by_category)}
