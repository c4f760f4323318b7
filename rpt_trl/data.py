r"""Documents -> next-token reasoning examples.

Every chosen position t of a document becomes one example (paper, Section 3.1): the context is the text before
token t, the ground truth is the text from token t on. Token boundaries come from the tokenizer's character
offsets on the original text, never from decoding the continuation alone, because

- a SentencePiece tokenizer drops the leading space when it decodes a sequence that starts with "▁size";
- a byte-level BPE token can end in the middle of a UTF-8 character.

Token k is taken to cover the text from the end of token k-1 to its own end, so characters a tokenizer leaves out
of its offsets (spaces, with some pre-tokenizers) belong to the token that follows them. A token whose offsets
start before the end of the previous token begins inside a character: it is not a valid position, and is skipped
and counted. Token ends that fall inside a character are left out of `ground_truth_boundaries`: no text answer
can end there, so prefix matching is unchanged.
"""

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import accumulate
from typing import Any

import datasets
from tqdm.auto import tqdm

from .parsing import can_be_boxed
from .templates import render_prompt, resolve_template


logger = logging.getLogger(__name__)

DOCUMENT_SEPARATOR = "\n\n"
_TOKENIZE_BATCH = 64
# Evaluation difficulty (paper, Section 4.1): positions whose proxy entropy is above each threshold; nested sets.
DIFFICULTY_THRESHOLDS = {"easy": 0.5, "medium": 1.0, "hard": 1.5}


@dataclass
class NextTokenDatasetStats:
    """What [`build_next_token_dataset`] kept and skipped, and why."""

    documents: int = 0
    empty_documents: int = 0
    short_documents: int = 0
    candidate_positions: int = 0
    examples: int = 0
    mid_character_positions: int = 0
    zero_width_positions: int = 0
    unanswerable_positions: int = 0
    low_entropy_positions: int = 0

    @property
    def answerable_fraction(self) -> float:
        """Fraction of aligned positions whose ground truth can be written inside `\\boxed{}`."""
        aligned = self.candidate_positions - self.mid_character_positions - self.zero_width_positions
        return (aligned - self.unanswerable_positions) / aligned if aligned else float("nan")


def difficulty_labels(entropy: float, thresholds: Mapping[str, float] = DIFFICULTY_THRESHOLDS) -> list[str]:
    """The difficulty splits a position belongs to: every split whose threshold its entropy is above.

    >>> difficulty_labels(1.2)
    ['easy', 'medium']
    """
    return [name for name, threshold in thresholds.items() if entropy > threshold]


def document_texts(data: datasets.Dataset | Sequence[str], text_column: str | Sequence[str]) -> list[str | None]:
    """One text (or `None`) per document; raises on anything that is not text, naming the document."""
    if isinstance(data, datasets.Dataset):
        columns = [text_column] if isinstance(text_column, str) else list(text_column)
        missing = [c for c in columns if c not in data.column_names]
        if missing:
            raise ValueError(
                f"text_column names {missing}, which the dataset does not have; its columns are {data.column_names}."
            )
        rows = zip(*(data[c] for c in columns))
    elif isinstance(data, str) or not isinstance(data, Sequence):
        raise TypeError(f"data must be a datasets.Dataset or a list of strings, got {type(data).__name__}.")
    else:
        columns, rows = ["text"], ((text,) for text in data)
    texts = []
    for index, row in enumerate(rows):
        for column, value in zip(columns, row):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"Document {index}: {column!r} is {type(value).__name__}, not text.")
        parts = [value for value in row if value]
        texts.append(DOCUMENT_SEPARATOR.join(parts) if parts else None)
    return texts


def _char_to_byte(text: str) -> Sequence[int]:
    """Byte offset of every character boundary of `text` (length len(text) + 1)."""
    if text.isascii():
        return range(len(text) + 1)
    return list(accumulate((len(ch.encode("utf-8")) for ch in text), initial=0))


def token_spans(offsets: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Where each token's text starts and ends: token k covers the text from the end of token k-1 to its own end.

    Characters a tokenizer leaves out of its offsets (spaces, with some pre-tokenizers) so belong to the token that
    follows them. A running max guards against offsets that step back (overlapping special pieces). Every module that
    maps tokens to text (the dataset builder, entropy alignment, standard-mode evaluation) uses this one rule.

    >>> token_spans([(0, 3), (4, 8), (8, 9)])
    ([0, 3, 8], [3, 8, 9])
    """
    ends = list(accumulate((end for _, end in offsets), max))
    return [0, *ends[:-1]], ends


def _positions_for(
    spec: int | Sequence[Sequence[int]], document_index: int, num_tokens: int, min_context_tokens: int
) -> Sequence[int]:
    if isinstance(spec, int):
        return range(min_context_tokens, num_tokens, spec)
    chosen = spec[document_index]
    out_of_range = [t for t in chosen if not 0 <= t < num_tokens]
    if out_of_range:
        raise ValueError(
            f"positions[{document_index}] has token indices {out_of_range[:5]} outside the document's "
            f"{num_tokens} tokens."
        )
    return [t for t in chosen if t >= min_context_tokens]


def _ends_on_token_boundary(k: int, ends: Sequence[int], starts_inside_char: Sequence[bool]) -> bool:
    """Whether the character where token k's offsets end is also where some token ends in bytes.

    Token k ending inside a character has the character's end as its offset end, like the token(s) that complete
    the character. That end is a real boundary when one of those completing tokens ends there, even past the
    ground-truth window (the window's last token may be the first half of a character), and not when the next
    token straddles it.
    """
    following = k + 1
    while following < len(ends) and starts_inside_char[following] and ends[following] == ends[k]:
        following += 1  # a token completing the character, ending where token k's offsets end
    return following == len(ends) or not starts_inside_char[following]


def _document_examples(
    text: str,
    offsets: Sequence[tuple[int, int]],
    positions: Sequence[int],
    *,
    document_id: int,
    template: str,
    prompt_format: str,
    max_context_tokens: int,
    max_ground_truth_tokens: int,
    skip_unanswerable: bool,
    entropy: Sequence[float] | None,
    min_entropy: float | None,
    difficulty_thresholds: Mapping[str, float],
    stats: NextTokenDatasetStats,
) -> Iterator[dict[str, Any]]:
    num_tokens = len(offsets)
    span_starts, ends = token_spans(offsets)
    starts_inside_char = [k > 0 and offsets[k][0] < ends[k - 1] for k in range(num_tokens)]
    byte_at = _char_to_byte(text)

    for t in positions:
        stats.candidate_positions += 1
        if starts_inside_char[t]:
            stats.mid_character_positions += 1
            continue
        start = span_starts[t]
        if ends[t] == start:
            stats.zero_width_positions += 1
            continue
        if min_entropy is not None and not entropy[t] >= min_entropy:  # NaN (unscored) is dropped too
            stats.low_entropy_positions += 1
            continue
        last = min(t + max_ground_truth_tokens, num_tokens)
        answer_ends = []  # character index where each reachable answer ends
        for k in range(t, last):
            if ends[k] > start and _ends_on_token_boundary(k, ends, starts_inside_char):
                if not answer_ends or ends[k] > answer_ends[-1]:
                    answer_ends.append(ends[k])
        boundaries = [byte_at[end] - byte_at[start] for end in answer_ends]
        ground_truth = text[start : ends[last - 1]]
        if skip_unanswerable and not any(can_be_boxed(text[start:end]) for end in answer_ends):
            stats.unanswerable_positions += 1
            continue
        context = text[span_starts[max(0, t - max_context_tokens)] : start]
        prompt = render_prompt(template, context)
        stats.examples += 1
        example = {
            "prompt": [{"role": "user", "content": prompt}] if prompt_format == "conversational" else prompt,
            "ground_truth": ground_truth,
            "ground_truth_boundaries": boundaries,
            "document_id": document_id,
            "position": t,
        }
        if entropy is not None:
            example["entropy"] = entropy[t]
            example["difficulty"] = difficulty_labels(entropy[t], difficulty_thresholds)
        yield example


def build_next_token_dataset(
    data: datasets.Dataset | Sequence[str],
    tokenizer: Any,
    *,
    text_column: str | Sequence[str] = "text",
    positions: str | int | Sequence[Sequence[int]] = "all",
    template: str = "v0",
    prompt_format: str = "conversational",
    min_context_tokens: int = 16,
    max_context_tokens: int = 3840,
    max_ground_truth_tokens: int = 16,
    skip_unanswerable: bool = True,
    token_entropy: Sequence[Sequence[float]] | None = None,
    min_entropy: float | None = None,
    difficulty_thresholds: Mapping[str, float] = DIFFICULTY_THRESHOLDS,
    show_progress: bool = True,
    return_stats: bool = False,
) -> datasets.Dataset | tuple[datasets.Dataset, NextTokenDatasetStats]:
    r"""Turn documents into next-token reasoning examples for [`RPTTrainer`] (or a plain `GRPOTrainer`).

    Args:
        data: A `datasets.Dataset` or a list of strings, one document each.
        tokenizer: A fast tokenizer (it must return offsets); positions are indices into its tokenization of each
            document, without special tokens.
        text_column: The column holding the text, or a list of columns joined with a blank line (e.g.
            `["problem", "solution"]`). Ignored for a list of strings.
        positions: `"all"`, a stride (every n-th token), or one list of token indices per document (the hook the
            entropy filter uses).
        template: A template name (`"v0"`, `"few_shot"`) or a string containing `{context}`.
        prompt_format: `"conversational"` (a one-message user prompt, for chat models) or `"text"` (a plain
            string, for base models).
        min_context_tokens: Positions with fewer tokens before them are not used.
        max_context_tokens: The context is left-truncated to this many tokens.
        max_ground_truth_tokens: How many tokens of continuation to keep, so multi-token answers can be scored.
        skip_unanswerable: Skip (and count) positions where no token-aligned prefix of the ground truth can be
            written inside `\boxed{}` (see [`can_be_boxed`]).
        token_entropy: One list per document with a proxy model's entropy at each of `tokenizer`'s tokens, from
            [`compute_token_entropy`] (same tokenizer) or [`align_token_values`] (a different proxy tokenizer).
            Adds the columns `entropy` and `difficulty`.
        min_entropy: Keep only positions whose entropy is at least this (the paper's filter for training); needs
            `token_entropy`. Unscored (NaN) positions are dropped with them, and both are counted.
        difficulty_thresholds: Split name -> entropy threshold; a position is in every split whose threshold its
            entropy is above (the paper's nested easy / medium / hard at 0.5 / 1.0 / 1.5).
        show_progress: Show a progress bar over documents.
        return_stats: Also return a [`NextTokenDatasetStats`].

    Returns:
        A dataset with columns `prompt`, `ground_truth`, `ground_truth_boundaries`, `document_id` (the document's
        index in `data`) and `position` (the index t of the token to predict), plus `entropy` (float) and
        `difficulty` (list of split names) with `token_entropy`. With `return_stats`, a tuple.

    Example:
        >>> train = build_next_token_dataset(["The size of the box is 12 cm."], tokenizer, min_context_tokens=4)
        >>> train[0]["ground_truth"], train[0]["ground_truth_boundaries"]  # doctest: +SKIP
        (' box is 12 cm.', [4, 7, 10, 11, 12, 15, 16])
    """
    template = resolve_template(template)
    if prompt_format not in ("conversational", "text"):
        raise ValueError(f"prompt_format must be 'conversational' or 'text', got {prompt_format!r}.")
    if min_context_tokens < 1:
        raise ValueError(
            f"min_context_tokens must be at least 1 (a prompt needs some context), got {min_context_tokens}."
        )
    if max_context_tokens < min_context_tokens:
        raise ValueError(
            f"max_context_tokens ({max_context_tokens}) must be at least min_context_tokens ({min_context_tokens})."
        )
    if max_ground_truth_tokens < 1:
        raise ValueError(f"max_ground_truth_tokens must be at least 1, got {max_ground_truth_tokens}.")
    if isinstance(positions, str) and positions != "all":
        raise ValueError(f"positions must be 'all', a stride, or one list per document, got {positions!r}.")
    if isinstance(positions, int) and positions < 1:
        raise ValueError(f"A positions stride must be at least 1, got {positions}.")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            "build_next_token_dataset needs a fast tokenizer (one that returns character offsets); load it with "
            "AutoTokenizer.from_pretrained(..., use_fast=True)."
        )

    if min_entropy is not None and token_entropy is None:
        raise ValueError("min_entropy filters by a proxy model's entropy: pass token_entropy as well.")
    for name, threshold in difficulty_thresholds.items():
        if not isinstance(threshold, int | float) or math.isnan(threshold):
            raise ValueError(f"difficulty_thresholds[{name!r}] must be a number, got {threshold!r}.")

    texts = document_texts(data, text_column)
    if positions == "all":
        positions = 1
    if not isinstance(positions, int) and len(positions) != len(texts):
        raise ValueError(f"positions has {len(positions)} lists but there are {len(texts)} documents.")
    if token_entropy is not None and len(token_entropy) != len(texts):
        raise ValueError(f"token_entropy has {len(token_entropy)} lists but there are {len(texts)} documents.")

    stats = NextTokenDatasetStats(documents=len(texts))

    def examples() -> Iterator[dict[str, Any]]:
        progress = tqdm(total=len(texts), desc="Building next-token examples", unit="doc", disable=not show_progress)
        for batch_start in range(0, len(texts), _TOKENIZE_BATCH):
            batch = texts[batch_start : batch_start + _TOKENIZE_BATCH]
            kept = [(i, t) for i, t in enumerate(batch, batch_start) if t and t.strip()]
            stats.empty_documents += len(batch) - len(kept)
            encoded = tokenizer(
                [t for _, t in kept],
                add_special_tokens=False,
                return_offsets_mapping=True,
                return_attention_mask=False,
            )
            for (document_id, text), offsets in zip(kept, encoded["offset_mapping"]):
                chosen = _positions_for(positions, document_id, len(offsets), min_context_tokens)
                if len(offsets) <= min_context_tokens:
                    stats.short_documents += 1
                    continue
                entropy = None if token_entropy is None else token_entropy[document_id]
                if entropy is not None and len(entropy) != len(offsets):
                    raise ValueError(
                        f"token_entropy[{document_id}] has {len(entropy)} values but the document has "
                        f"{len(offsets)} tokens: the entropies come from another tokenizer. Map them with "
                        "rpt_trl.align_token_values(texts, entropies, proxy_tokenizer, tokenizer)."
                    )
                yield from _document_examples(
                    text,
                    offsets,
                    chosen,
                    document_id=document_id,
                    template=template,
                    prompt_format=prompt_format,
                    max_context_tokens=max_context_tokens,
                    max_ground_truth_tokens=max_ground_truth_tokens,
                    skip_unanswerable=skip_unanswerable,
                    entropy=entropy,
                    min_entropy=min_entropy,
                    difficulty_thresholds=difficulty_thresholds,
                    stats=stats,
                )
            progress.update(len(batch))
        progress.close()

    prompt_feature = (
        [{"role": datasets.Value("string"), "content": datasets.Value("string")}]
        if prompt_format == "conversational"
        else datasets.Value("string")
    )
    features = datasets.Features(
        {
            "prompt": prompt_feature,
            "ground_truth": datasets.Value("string"),
            "ground_truth_boundaries": datasets.Sequence(datasets.Value("int32")),
            "document_id": datasets.Value("int64"),
            "position": datasets.Value("int64"),
        }
    )
    if token_entropy is not None:
        features["entropy"] = datasets.Value("float64")
        features["difficulty"] = datasets.Sequence(datasets.Value("string"))
    columns: dict[str, list[Any]] = {name: [] for name in features}
    for example in examples():
        for name, value in example.items():
            columns[name].append(value)
    dataset = datasets.Dataset.from_dict(columns, features=features)
    logger.info("Next-token dataset: %s", asdict(stats))
    if stats.examples == 0:
        logger.warning("No examples were built: %s", asdict(stats))
    return (dataset, stats) if return_stats else dataset
