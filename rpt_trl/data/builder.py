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
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import accumulate
from typing import Any

import datasets
from tqdm.auto import tqdm

from ..numeric_fields import check_numeric_fields
from ..parsing import can_be_boxed
from ..results import DIFFICULTY_THRESHOLDS
from .templates import render_prompt, resolve_template


logger = logging.getLogger(__name__)

DOCUMENT_SEPARATOR = "\n\n"
PROMPT_FORMATS = ("conversational", "text")
_TOKENIZE_BATCH = 64
# Evaluation difficulty (paper, Section 4.1): positions whose proxy entropy is above each threshold; nested sets.


def word_in_context(first_token: str, context: str) -> bool:
    """Whether `first_token` is a word of two or more characters, with a letter or digit, that already occurs in
    `context` (anywhere, as text): the positions `position_filter="word_in_context"` keeps.

    Surrounding whitespace is not part of the word, so a lone space or a single digit (Gemma splits " 42" into
    " " + "4" + "2") never qualifies.

    >>> word_in_context(" apples", "Tom has 7 apples and"), word_in_context(" pears", "Tom has 7 apples and")
    (True, False)
    """
    word = first_token.strip()
    return len(word) > 1 and any(character.isalnum() for character in word) and word in context


# `position_filter` name -> whether to keep a position, given its first ground-truth token and its context (the
# left-truncated text the prompt shows); `None` keeps every position.
POSITION_FILTERS: dict[str, Callable[[str, str], bool] | None] = {"all": None, "word_in_context": word_in_context}


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
    filtered_out_positions: int = 0  # positions that passed every other check but not `position_filter`

    @property
    def answerable_fraction(self) -> float:
        """Fraction of aligned positions whose ground truth can be written inside `\\boxed{}`."""
        aligned = self.candidate_positions - self.mid_character_positions - self.zero_width_positions
        return (aligned - self.unanswerable_positions) / aligned if aligned else float("nan")


@dataclass
class NextTokenSettings:
    r"""How documents become next-token examples: the one definition of these settings and their defaults.

    [`RPTConfig`] inherits them (so a recipe's YAML sets them by these names), [`build_next_token_dataset`] and
    [`prepare_rpt_dataset`] take them, and `rpt-trl prepare` parses them as flags.

    > Parameters that control the prompt

    prompt_template (`str`, *optional*, defaults to `"v0"`):
        Template name (`"v0"`, the paper's; `"few_shot"`, this project's) or a string containing `{context}`.
    prompt_format (`str`, *optional*, defaults to `"conversational"`):
        `"conversational"` (a one-message user prompt, for chat models) or `"text"` (a plain string, for base
        models).

    > Parameters that control which positions become examples

    text_column (`list[str]`, *optional*, defaults to `["text"]`):
        Column(s) holding a document's text, joined with a blank line (e.g. `["problem", "solution"]`).
    position_stride (`int`, *optional*, defaults to `1`):
        Use every n-th token position of each document.
    min_context_tokens (`int`, *optional*, defaults to `16`):
        Positions with fewer tokens of context are not used.
    max_context_tokens (`int`, *optional*, defaults to `3840`):
        Left-truncate the context to this many tokens; leaves room for the template in the paper's 4,096-token
        prompt.
    max_ground_truth_tokens (`int`, *optional*, defaults to `16`):
        Tokens of continuation kept as ground truth, so multi-token answers can be scored.
    skip_unanswerable_positions (`bool`, *optional*, defaults to `True`):
        Skip (and count) positions where no token-aligned prefix of the ground truth can be written inside
        `\boxed{}` (see [`can_be_boxed`]).
    position_filter (`str`, *optional*, defaults to `"all"`):
        Which of the positions that pass the other checks become examples: `"all"`, or `"word_in_context"`: only
        those whose first ground-truth token is a word of two or more characters, with a letter or digit, that
        already occurs in the (truncated) context (see [`word_in_context`]). A small model can answer such positions
        (a name, an item, a repeated term) and rarely any other, so on `"all"` its rollouts can all earn 0 and GRPO
        gets no signal; the filter starts it on the easy positions, as an easy-to-hard curriculum would (RMT, arXiv
        2509.24375). The builder counts the positions it leaves out (`NextTokenDatasetStats.filtered_out_positions`).
    min_entropy (`float`, *optional*):
        The entropy filter (paper, Section 3.3): keep only positions whose proxy entropy is **at least** this (nats);
        unscored (NaN) positions are dropped with them. Needs entropies: `token_entropy` when building, or the
        `entropy` column of a prepared dataset.
    """

    prompt_template: str = field(
        default="v0",
        metadata={
            "help": "Template name ('v0', 'few_shot') or a string containing '{context}'.",
            "aliases": ["--template"],
        },
    )
    prompt_format: str = field(
        default="conversational",
        metadata={
            "help": "'conversational' for chat models, 'text' for base models.",
            "choices": list(PROMPT_FORMATS),
        },
    )
    text_column: list[str] = field(
        default_factory=lambda: ["text"],
        metadata={"help": "Column(s) holding a document's text, joined with a blank line."},
    )
    position_stride: int = field(
        default=1,
        metadata={"help": "Use every n-th token position of each document.", "aliases": ["--stride"]},
    )
    min_context_tokens: int = field(
        default=16,
        metadata={"help": "Positions with fewer tokens of context are not used."},
    )
    max_context_tokens: int = field(
        default=3840,
        metadata={"help": "Left-truncate the context to this many tokens."},
    )
    max_ground_truth_tokens: int = field(
        default=16,
        metadata={"help": "Tokens of continuation kept as ground truth."},
    )
    skip_unanswerable_positions: bool = field(
        default=True,
        metadata={"help": "Skip positions whose continuation cannot be written inside \\boxed{}."},
    )
    position_filter: str = field(
        default="all",
        metadata={
            "help": "'all' positions, or 'word_in_context': only those whose next token is a word (2+ characters) "
            "that already occurs in the context, which a small model can answer.",
            "choices": list(POSITION_FILTERS),
        },
    )
    min_entropy: float | None = field(
        default=None,
        metadata={"help": "Keep only positions whose proxy entropy is at least this (nats); needs entropies."},
    )

    def __post_init__(self):
        self.check_next_token_settings()

    def check_next_token_settings(self) -> None:
        """Normalise `text_column` and raise a `ValueError` that says how to fix a bad setting."""
        check_numeric_fields(self)
        if isinstance(self.text_column, str):
            self.text_column = [self.text_column]
        try:
            resolve_template(self.prompt_template)
        except ValueError as error:
            raise ValueError(f"prompt_template: {error}") from None
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(
                f"prompt_format must be 'conversational' (chat models) or 'text' (base models), got "
                f"{self.prompt_format!r}."
            )
        if not self.text_column:
            raise ValueError("text_column must name at least one column, e.g. text_column=['problem', 'solution'].")
        if self.position_stride < 1:
            raise ValueError(
                f"position_stride must be at least 1 (1 uses every position), got {self.position_stride}."
            )
        if self.min_context_tokens < 1:
            raise ValueError(
                f"min_context_tokens must be at least 1 (a prompt needs some context), got {self.min_context_tokens}."
            )
        if self.max_context_tokens < self.min_context_tokens:
            raise ValueError(
                f"max_context_tokens ({self.max_context_tokens}) must be at least min_context_tokens "
                f"({self.min_context_tokens}); raise max_context_tokens or lower min_context_tokens."
            )
        if self.max_ground_truth_tokens < 1:
            raise ValueError(
                f"max_ground_truth_tokens must be at least 1 (the answer is at least one token), "
                f"got {self.max_ground_truth_tokens}."
            )
        if self.position_filter not in POSITION_FILTERS:
            raise ValueError(
                f"position_filter must be one of {', '.join(map(repr, POSITION_FILTERS))} ('word_in_context' keeps "
                f"the positions whose next token is a word of the context), got {self.position_filter!r}."
            )

    def next_token_settings(self) -> "NextTokenSettings":
        """These settings alone, as a plain `NextTokenSettings` (from an [`RPTConfig`], say)."""
        return NextTokenSettings(**{f.name: getattr(self, f.name) for f in fields(NextTokenSettings)})


# Old keyword names of `build_next_token_dataset` -> the settings' names (deprecated, still accepted).
_DEPRECATED_NAMES = {"template": "prompt_template", "skip_unanswerable": "skip_unanswerable_positions"}


def resolve_settings(settings: NextTokenSettings | None, overrides: dict[str, Any]) -> NextTokenSettings:
    for old, new in _DEPRECATED_NAMES.items():
        if old in overrides:
            warnings.warn(f"`{old}=` is deprecated; use `{new}=`.", FutureWarning, stacklevel=3)
            overrides[new] = overrides.pop(old)
    names = {f.name for f in fields(NextTokenSettings)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"Unknown setting(s) {unknown}; the settings are {sorted(names)}.")
    base = (settings or NextTokenSettings()).next_token_settings()
    return replace(base, **overrides) if overrides else base


def check_difficulty_thresholds(thresholds: Mapping[str, float]) -> None:
    """Raise a `ValueError` unless every threshold is a number and they strictly increase.

    The splits are nested (paper, Section 4.1): a position is in every split whose threshold its entropy is above, so
    the easier split, with the lower threshold, holds the harder ones. Thresholds in another order would make "easy"
    smaller than "hard".

    >>> check_difficulty_thresholds({"easy": 1.5, "medium": 1.0, "hard": 0.5})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: difficulty_thresholds must strictly increase (easy < medium < hard: ...), got easy=1.5, medium=1.0, ...
    """
    for name, threshold in thresholds.items():
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or math.isnan(threshold):
            raise ValueError(f"difficulty_thresholds[{name!r}] must be a number, got {threshold!r}.")
    values = list(thresholds.values())
    if any(lower >= higher for lower, higher in zip(values, values[1:])):
        given = ", ".join(f"{name}={value}" for name, value in thresholds.items())
        raise ValueError(
            f"difficulty_thresholds must strictly increase ({' < '.join(thresholds)}: nested splits, the easiest "
            f"holds the others), got {given}; the paper's are {' '.join(map(str, DIFFICULTY_THRESHOLDS.values()))}."
        )


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
        if not columns:
            raise ValueError(
                "text_column names no column: give at least one, e.g. text_column=['problem', 'solution']."
            )
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
    not_indices = [t for t in chosen if isinstance(t, bool) or not isinstance(t, int)]
    if not_indices:
        raise ValueError(f"positions[{document_index}] must hold token indices (integers), got {not_indices[:5]}.")
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


def _answer_ends(window: range, start: int, ends: Sequence[int], on_boundary: Sequence[bool]) -> list[int]:
    """The character index where each answer that the ground-truth `window` of tokens allows ends, increasing."""
    answer_ends: list[int] = []
    for k in window:
        if ends[k] > start and on_boundary[k] and (not answer_ends or ends[k] > answer_ends[-1]):
            answer_ends.append(ends[k])
    return answer_ends


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
    keep_position: Callable[[str, str], bool] | None,
    entropy: Sequence[float] | None,
    min_entropy: float | None,
    difficulty_thresholds: Mapping[str, float],
    stats: NextTokenDatasetStats,
) -> Iterator[dict[str, Any]]:
    num_tokens = len(offsets)
    span_starts, ends = token_spans(offsets)
    starts_inside_char = [k > 0 and offsets[k][0] < ends[k - 1] for k in range(num_tokens)]
    # Once per token, not once per (position, window token): the answer is the same for every window holding k.
    on_boundary = [_ends_on_token_boundary(k, ends, starts_inside_char) for k in range(num_tokens)]
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
        answer_ends = _answer_ends(range(t, last), start, ends, on_boundary)
        if skip_unanswerable and not any(can_be_boxed(text[start:end]) for end in answer_ends):
            stats.unanswerable_positions += 1
            continue
        context = text[span_starts[max(0, t - max_context_tokens)] : start]
        # After the answerability check, so that `answerable_fraction` does not depend on the filter.
        if keep_position is not None and not (answer_ends and keep_position(text[start : answer_ends[0]], context)):
            stats.filtered_out_positions += 1
            continue
        prompt = render_prompt(template, context)
        stats.examples += 1
        example = {
            "prompt": [{"role": "user", "content": prompt}] if prompt_format == "conversational" else prompt,
            "ground_truth": text[start : ends[last - 1]],
            "ground_truth_boundaries": [byte_at[end] - byte_at[start] for end in answer_ends],
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
    settings: NextTokenSettings | None = None,
    *,
    positions: str | int | Sequence[Sequence[int]] | None = None,
    token_entropy: Sequence[Sequence[float]] | None = None,
    difficulty_thresholds: Mapping[str, float] = DIFFICULTY_THRESHOLDS,
    show_progress: bool = True,
    return_stats: bool = False,
    **setting_overrides: Any,
) -> datasets.Dataset | tuple[datasets.Dataset, NextTokenDatasetStats]:
    r"""Turn documents into next-token reasoning examples for [`RPTTrainer`] (or a plain `GRPOTrainer`).

    Args:
        data: A `datasets.Dataset` or a list of strings, one document each (`text_column` is then ignored).
        tokenizer: A fast tokenizer (it must return offsets); positions are indices into its tokenization of each
            document, without special tokens.
        settings: A [`NextTokenSettings`] (an [`RPTConfig`] is one): template, prompt format, text column(s),
            position stride, context and ground-truth lengths, answerability, the position filter and the entropy
            filter. Defaults to `NextTokenSettings()`.
        positions: One list of token indices per document, used instead of `settings.position_stride` (the hook
            the last-word and custom selections use). `"all"` or an int (a stride) are deprecated spellings of
            `position_stride`.
        token_entropy: One list per document with a proxy model's entropy at each of `tokenizer`'s tokens, from
            [`compute_token_entropy`] (same tokenizer) or [`align_token_values`] (a different proxy tokenizer).
            Adds the columns `entropy` and `difficulty`; `settings.min_entropy` filters by it.
        difficulty_thresholds: Split name -> entropy threshold; a position is in every split whose threshold its
            entropy is above (the paper's nested easy / medium / hard at 0.5 / 1.0 / 1.5).
        show_progress: Show a progress bar over documents.
        return_stats: Also return a [`NextTokenDatasetStats`].
        **setting_overrides: Any [`NextTokenSettings`] field by name, overriding `settings` (e.g.
            `min_context_tokens=4`). The old names `template=` and `skip_unanswerable=` are deprecated aliases.

    Returns:
        A dataset with columns `prompt`, `ground_truth`, `ground_truth_boundaries`, `document_id` (the document's
        index in `data`) and `position` (the index t of the token to predict), plus `entropy` (float) and
        `difficulty` (list of split names) with `token_entropy`. With `return_stats`, a tuple.

    Example:
        >>> train = build_next_token_dataset(["The size of the box is 12 cm."], tokenizer, min_context_tokens=4)
        >>> train[0]["ground_truth"], train[0]["ground_truth_boundaries"]  # doctest: +SKIP
        (' box is 12 cm.', [4, 7, 10, 11, 12, 15, 16])
    """
    positions = _positions_without_stride(positions, setting_overrides)
    settings = resolve_settings(settings, setting_overrides)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            "build_next_token_dataset needs a fast tokenizer (one that returns character offsets); load it with "
            "AutoTokenizer.from_pretrained(..., use_fast=True)."
        )
    if settings.min_entropy is not None and token_entropy is None:
        raise ValueError("min_entropy filters by a proxy model's entropy: pass token_entropy as well.")
    check_difficulty_thresholds(difficulty_thresholds)
    template = resolve_template(settings.prompt_template)
    text_column = settings.text_column

    texts = document_texts(data, text_column)
    if positions is None:
        positions = settings.position_stride
    elif len(positions) != len(texts):
        raise ValueError(f"positions has {len(positions)} lists but there are {len(texts)} documents.")
    if token_entropy is not None and len(token_entropy) != len(texts):
        raise ValueError(f"token_entropy has {len(token_entropy)} lists but there are {len(texts)} documents.")

    stats = NextTokenDatasetStats(documents=len(texts))
    examples = _next_token_examples(
        texts, tokenizer, positions, token_entropy, settings, template, difficulty_thresholds, stats, show_progress
    )
    features = _next_token_features(settings.prompt_format, with_entropy=token_entropy is not None)
    columns: dict[str, list[Any]] = {name: [] for name in features}
    for example in examples:
        for name, value in example.items():
            columns[name].append(value)
    dataset = datasets.Dataset.from_dict(columns, features=features)
    logger.info("Next-token dataset: %s", asdict(stats))
    if settings.position_filter != "all":
        logger.info(
            "position_filter=%r kept %d of %d positions.",
            settings.position_filter,
            stats.examples,
            stats.examples + stats.filtered_out_positions,
        )
    if stats.examples == 0:
        logger.warning("No examples were built: %s", asdict(stats))
    return (dataset, stats) if return_stats else dataset


def _positions_without_stride(
    positions: str | int | Sequence[Sequence[int]] | None, setting_overrides: dict[str, Any]
) -> Sequence[Sequence[int]] | None:
    """The per-document positions; the deprecated `positions="all"` or int stride moves to
    `setting_overrides["position_stride"]`."""
    if isinstance(positions, str | int):  # the old spelling of the stride
        if positions != "all" and not isinstance(positions, int):
            raise ValueError(f"positions must be 'all', a stride, or one list per document, got {positions!r}.")
        warnings.warn("`positions='all'` or an int stride is deprecated; use `position_stride=`.", FutureWarning, 3)
        setting_overrides["position_stride"] = 1 if positions == "all" else positions
        positions = None
    return positions


def _next_token_examples(
    texts: list[str],
    tokenizer: Any,
    positions: int | Sequence[Sequence[int]],
    token_entropy: Sequence[Sequence[float]] | None,
    settings: NextTokenSettings,
    template: str,
    difficulty_thresholds: Mapping[str, float],
    stats: NextTokenDatasetStats,
    show_progress: bool,
) -> Iterator[dict[str, Any]]:
    """The examples of every document, tokenized in batches; empty and short documents are counted in `stats`."""
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
            chosen = _positions_for(positions, document_id, len(offsets), settings.min_context_tokens)
            if len(offsets) <= settings.min_context_tokens:
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
                prompt_format=settings.prompt_format,
                max_context_tokens=settings.max_context_tokens,
                max_ground_truth_tokens=settings.max_ground_truth_tokens,
                skip_unanswerable=settings.skip_unanswerable_positions,
                keep_position=POSITION_FILTERS[settings.position_filter],
                entropy=entropy,
                min_entropy=settings.min_entropy,
                difficulty_thresholds=difficulty_thresholds,
                stats=stats,
            )
        progress.update(len(batch))
    progress.close()


def _next_token_features(prompt_format: str, with_entropy: bool) -> datasets.Features:
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
    if with_entropy:
        features["entropy"] = datasets.Value("float64")
        features["difficulty"] = datasets.Sequence(datasets.Value("string"))
    return features
