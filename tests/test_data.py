from dataclasses import asdict

import pytest
from conftest import CORPUS, first_token_of, is_word_of
from datasets import Dataset

from rpt_trl import (
    DIFFICULTY_THRESHOLDS,
    NextTokenSettings,
    RPTConfig,
    build_next_token_dataset,
    can_be_boxed,
    difficulty_labels,
    prefix_match_reward,
)
from rpt_trl.data.templates import TEMPLATE_V0


def byte_level_token_bytes(tokenizer, ids):
    """Exact bytes of byte-level BPE tokens, from the GPT-2 byte-to-unicode table."""
    from tokenizers import pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    # GPT-2's table: printable bytes map to themselves, the others to 256 + n in order.
    table, extra = {}, 0
    for byte in range(256):
        char = chr(byte)
        if char in alphabet and (33 <= byte <= 126 or 161 <= byte <= 172 or 174 <= byte <= 255):
            table[char] = byte
        else:
            table[chr(256 + extra)] = byte
            extra += 1
    return [bytes(table[c] for c in token) for token in tokenizer.convert_ids_to_tokens(ids)]


def sentencepiece_token_bytes(tokenizer, ids):
    out = []
    for piece in tokenizer.convert_ids_to_tokens(ids):
        if piece.startswith("<0x") and piece.endswith(">"):
            out.append(bytes([int(piece[3:-1], 16)]))
        else:
            out.append(piece.replace("▁", " ").encode("utf-8"))
    return out


def exact_token_bytes(kind, tokenizer, ids):
    return (byte_level_token_bytes if kind == "byte_level" else sentencepiece_token_bytes)(tokenizer, ids)


@pytest.mark.parametrize("kind", ["byte_level", "sentencepiece"])
def test_boundaries_equal_exact_token_bytes(kind, byte_level_tokenizer, sentencepiece_tokenizer):
    tokenizer = byte_level_tokenizer if kind == "byte_level" else sentencepiece_tokenizer
    window = 6
    dataset, stats = build_next_token_dataset(
        CORPUS,
        tokenizer,
        min_context_tokens=2,
        max_ground_truth_tokens=window,
        skip_unanswerable_positions=False,
        show_progress=False,
        return_stats=True,
    )
    assert stats.mid_character_positions > 0  # the corpus has emoji and CJK split into byte tokens
    checked = 0
    for example in dataset:
        text = CORPUS[example["document_id"]]
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        pieces = exact_token_bytes(kind, tokenizer, ids)
        t = example["position"]
        window_bytes = pieces[t : t + window]
        ground_truth = example["ground_truth"].encode("utf-8")
        # The window's bytes, completed to a whole character when its last token ends inside one.
        joined = b"".join(window_bytes)
        assert ground_truth.startswith(joined)
        assert all((byte & 0xC0) == 0x80 for byte in ground_truth[len(joined) :])
        # Boundaries are the exact cumulative token byte lengths that end on a character boundary, up to the
        # ground truth's end (which the token completing a character split by the window's last token may reach).
        every_end = [len(b"".join(pieces[t : k + 1])) for k in range(t, len(pieces))]
        expected = [b for b in every_end if b <= len(ground_truth) and _is_char_boundary(ground_truth, b)]
        assert example["ground_truth_boundaries"] == expected
        # The context is exactly the text before the predicted token.
        prefix = b"".join(pieces[:t])
        context = example["prompt"][0]["content"][len(TEMPLATE_V0) - len("{context}") :]
        assert prefix.endswith(context.encode("utf-8"))
        checked += 1
    assert checked == len(dataset) > 100


NON_LATIN = [
    "Tiếng Việt rất đẹp và phong phú, người ta nói vậy.",
    "Τα ελληνικά γράμματα είναι όμορφα και παλιά.",
]


@pytest.mark.parametrize("window", [1, 2, 3, 5])
def test_window_ending_inside_a_character_keeps_the_completing_tokens_boundary(byte_level_tokenizer, window):
    """Found with Vietnamese and Greek under a byte-level BPE: the window's last token is the first half of a
    character. The token completing it ends exactly at the ground truth's end, a real boundary, so an answer
    spanning the whole window must score 1."""
    dataset = build_next_token_dataset(
        NON_LATIN, byte_level_tokenizer, min_context_tokens=1, max_ground_truth_tokens=window,
        skip_unanswerable_positions=False, show_progress=False,
    )  # fmt: skip
    split_windows = 0
    for example in dataset:
        ids = byte_level_tokenizer(NON_LATIN[example["document_id"]], add_special_tokens=False)["input_ids"]
        pieces = byte_level_token_bytes(byte_level_tokenizer, ids)
        t = example["position"]
        ground_truth = example["ground_truth"].encode("utf-8")
        every_end = [len(b"".join(pieces[t : k + 1])) for k in range(t, len(pieces))]
        expected = [b for b in every_end if b <= len(ground_truth) and _is_char_boundary(ground_truth, b)]
        assert example["ground_truth_boundaries"] == expected
        window_bytes = len(b"".join(pieces[t : t + window]))
        if window_bytes < len(ground_truth) and len(ground_truth) in every_end:
            split_windows += 1
            answer = f"<think>x</think> \\boxed{{{example['ground_truth']}}}"
            assert prefix_match_reward([answer], [example["ground_truth"]], [example["ground_truth_boundaries"]]) == [
                1.0
            ]
    assert split_windows > 0  # the case this test is about occurs


def _is_char_boundary(data, index):
    return index == len(data) or (data[index] & 0xC0) != 0x80


def test_leading_space_is_kept_under_sentencepiece(sentencepiece_tokenizer):
    dataset = build_next_token_dataset(
        ["The size of the box is 12.5 cm"], sentencepiece_tokenizer, min_context_tokens=1, show_progress=False
    )
    truths = dataset["ground_truth"]
    assert any(t.startswith(" size") for t in truths)
    # Decoding the continuation alone would drop that space; the builder does not.
    assert (
        sentencepiece_tokenizer.decode(sentencepiece_tokenizer(" size", add_special_tokens=False)["input_ids"])
        == "size"
    )


def test_mid_character_positions_are_skipped_and_counted(byte_level_tokenizer):
    text = "Fireworks: " + "🎆" * 12 + " end of text"
    ids = byte_level_tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = byte_level_token_bytes(byte_level_tokenizer, ids)
    starts_inside = sum(1 for t in range(1, len(pieces)) if (pieces[t][0] & 0xC0) == 0x80)
    assert starts_inside > 0
    dataset, stats = build_next_token_dataset(
        [text], byte_level_tokenizer, min_context_tokens=1, show_progress=False, return_stats=True
    )
    assert stats.mid_character_positions == starts_inside
    assert all((pieces[t][0] & 0xC0) != 0x80 for t in dataset["position"])


def test_context_is_left_truncated(any_tokenizer):
    text = " ".join(f"word{i}" for i in range(80))
    dataset = build_next_token_dataset(
        [text],
        any_tokenizer,
        prompt_template="{context}",
        min_context_tokens=4,
        max_context_tokens=10,
        show_progress=False,
    )
    for example in dataset:
        context = example["prompt"][0]["content"]
        assert text[: text.index(example["ground_truth"])].endswith(context) or context in text
        assert len(any_tokenizer(context, add_special_tokens=False)["input_ids"]) <= 11
    assert dataset["position"][0] == 4


@pytest.mark.parametrize(
    ("selection", "expected"), [({"position_stride": 3}, "stride"), ({"positions": [[9, 12, 30]]}, [9, 12, 30])]
)
def test_positions_stride_and_lists(byte_level_tokenizer, selection, expected):
    text = " ".join("abcdefghijklmnopqrstuvwxyz")
    n = len(byte_level_tokenizer(text, add_special_tokens=False)["input_ids"])
    assert n > 30
    dataset = build_next_token_dataset(
        [text], byte_level_tokenizer, min_context_tokens=8, show_progress=False, **selection
    )
    assert dataset["position"] == (list(range(8, n, 3)) if expected == "stride" else expected)


def test_settings_object_and_deprecated_names_build_the_same_examples(byte_level_tokenizer):
    settings = NextTokenSettings(
        prompt_template="{context}", position_stride=3, min_context_tokens=4, skip_unanswerable_positions=False
    )
    expected = build_next_token_dataset(CORPUS, byte_level_tokenizer, settings, show_progress=False)
    with pytest.warns(FutureWarning, match="deprecated"):
        old = build_next_token_dataset(
            CORPUS, byte_level_tokenizer, template="{context}", positions=3, min_context_tokens=4,
            skip_unanswerable=False, show_progress=False,
        )  # fmt: skip
    assert old.to_list() == expected.to_list() and len(expected) > 10
    # An RPTConfig is a NextTokenSettings: a trainer's config builds the same examples
    config = RPTConfig(output_dir="unused", use_cpu=True, report_to="none", **asdict(settings))
    assert build_next_token_dataset(CORPUS, byte_level_tokenizer, config, show_progress=False).to_list() == (
        expected.to_list()
    )
    with pytest.raises(TypeError, match="Unknown setting"):
        build_next_token_dataset(CORPUS, byte_level_tokenizer, stride=3)


def test_out_of_range_positions_raise(byte_level_tokenizer):
    with pytest.raises(ValueError, match="outside"):
        build_next_token_dataset(["a b c"], byte_level_tokenizer, positions=[[100]], show_progress=False)


def test_empty_and_short_documents_are_skipped_and_counted(byte_level_tokenizer):
    documents = ["", "   \n ", None, "too short", CORPUS[0]]
    dataset, stats = build_next_token_dataset(
        documents, byte_level_tokenizer, min_context_tokens=8, show_progress=False, return_stats=True
    )
    assert (stats.documents, stats.empty_documents, stats.short_documents) == (5, 3, 1)
    assert set(dataset["document_id"]) == {4}


def test_unanswerable_positions_are_skipped(byte_level_tokenizer):
    text = "Compute $\\frac{a}{b}$ and $x^{2}$ then $\\sqrt{y}$ and $\\{1\\}$ done."
    kept, stats = build_next_token_dataset(
        [text],
        byte_level_tokenizer,
        min_context_tokens=1,
        max_ground_truth_tokens=3,
        show_progress=False,
        return_stats=True,
    )
    everything = build_next_token_dataset(
        [text],
        byte_level_tokenizer,
        min_context_tokens=1,
        max_ground_truth_tokens=3,
        skip_unanswerable_positions=False,
        show_progress=False,
    )
    assert stats.unanswerable_positions > 0
    assert len(everything) - len(kept) == stats.unanswerable_positions
    for example in kept:
        truth = example["ground_truth"].encode("utf-8")
        assert any(can_be_boxed(truth[:b].decode("utf-8")) for b in example["ground_truth_boundaries"])


# Documents whose words recur (names, items), beside the test corpus's mixed scripts, formulas and emoji.
REPEATING = [
    "Ana has 7 apples and Ben has 3 apples. Ana gives Ben 2 apples, so Ben has 5 apples and Ana keeps 5.",
    "The cat sat on the mat. Then the cat saw a dog, and the dog sat on the mat beside the cat.",
]


@pytest.mark.parametrize("skip_unanswerable_positions", [True, False])
def test_word_in_context_keeps_exactly_the_positions_whose_first_token_is_a_word_of_the_context(
    any_tokenizer, skip_unanswerable_positions
):
    kwargs = dict(
        prompt_template="{context}", prompt_format="text", min_context_tokens=2, max_context_tokens=12,
        skip_unanswerable_positions=skip_unanswerable_positions, show_progress=False, return_stats=True,
    )  # fmt: skip
    everything, every_stats = build_next_token_dataset(CORPUS + REPEATING, any_tokenizer, **kwargs)
    kept, stats = build_next_token_dataset(
        CORPUS + REPEATING, any_tokenizer, position_filter="word_in_context", **kwargs
    )
    # With the bare template the prompt is the (left-truncated) context itself.
    expected = [row for row in everything if is_word_of(first_token_of(row), row["prompt"])]
    assert 0 < len(expected) < len(everything)
    assert kept.to_list() == expected
    left_out = len(everything) - len(kept)
    assert asdict(stats) == {**asdict(every_stats), "examples": len(kept), "filtered_out_positions": left_out}
    assert stats.answerable_fraction == every_stats.answerable_fraction
    assert every_stats.filtered_out_positions == 0


def test_word_in_context_looks_only_at_the_context_the_prompt_shows():
    from conftest import make_byte_level_tokenizer

    text = "Zebra " + "one two three four five six seven eight nine ten " * 2 + "Zebra and more text."
    tokenizer = make_byte_level_tokenizer([text] * 8)  # every word of the text is one token

    def zebra_rows(max_context_tokens):
        dataset, stats = build_next_token_dataset(
            [text], tokenizer, prompt_template="{context}", prompt_format="text", min_context_tokens=2,
            max_context_tokens=max_context_tokens, position_filter="word_in_context", show_progress=False,
            return_stats=True,
        )  # fmt: skip
        return [row["ground_truth"][:6] for row in dataset if row["ground_truth"].startswith(" Zebra")], stats

    assert tokenizer.tokenize(" Zebra") == [tokenizer.tokenize(text)[-5]]  # " Zebra" is one token
    assert zebra_rows(max_context_tokens=64)[0] == [" Zebra"]  # the first "Zebra" is in the context
    rows, stats = zebra_rows(max_context_tokens=8)  # truncated: the context no longer shows it
    assert rows == [] and stats.filtered_out_positions > 0


@pytest.mark.parametrize("value", ["words", "Word_In_Context", "", None])
def test_an_unknown_position_filter_is_refused_in_one_line(value):
    with pytest.raises(ValueError, match=r"^position_filter must be one of 'all', 'word_in_context' .*got ") as error:
        NextTokenSettings(position_filter=value)
    assert "\n" not in str(error.value)


def test_dataset_input_with_joined_columns_and_text_format(byte_level_tokenizer):
    data = Dataset.from_dict({"problem": ["What is 12 + 30?"], "solution": ["We add them: 12 + 30 = 42."]})
    dataset = build_next_token_dataset(
        data,
        byte_level_tokenizer,
        text_column=["problem", "solution"],
        prompt_template="few_shot",
        prompt_format="text",
        min_context_tokens=4,
        show_progress=False,
    )
    assert isinstance(dataset[0]["prompt"], str)
    assert any("?\n\nWe" in p for p in dataset["prompt"]) or any(
        g.startswith("\n\nWe") for g in dataset["ground_truth"]
    )
    assert dataset.column_names == ["prompt", "ground_truth", "ground_truth_boundaries", "document_id", "position"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt_template": "no placeholder"}, "{context}"),
        ({"prompt_format": "chat"}, "prompt_format"),
        ({"min_context_tokens": 0}, "min_context_tokens"),
        ({"max_context_tokens": 2, "min_context_tokens": 4}, "max_context_tokens"),
        ({"max_ground_truth_tokens": 0}, "max_ground_truth_tokens"),
        ({"positions": "some"}, "positions"),
        ({"position_stride": 0}, "stride"),
        ({"text_column": "body"}, "body"),
        ({"position_filter": "word"}, "position_filter must be one of"),
    ],
)
def test_bad_arguments_raise(byte_level_tokenizer, kwargs, message):
    data = Dataset.from_dict({"text": [CORPUS[0]]})
    with pytest.raises(ValueError, match=message):
        build_next_token_dataset(data, byte_level_tokenizer, show_progress=False, **kwargs)


def test_slow_tokenizer_is_refused():
    class Slow:
        is_fast = False

    with pytest.raises(ValueError, match="fast tokenizer"):
        build_next_token_dataset(["text"], Slow(), show_progress=False)


@pytest.mark.parametrize(
    ("data", "index"),
    [(["fine text", 3], 1), (Dataset.from_dict({"problem": ["a", "b"], "solution": [5, 7]}), 0)],
    ids=["list", "columns"],
)
def test_non_text_document_is_named(byte_level_tokenizer, data, index):
    with pytest.raises(TypeError, match=f"Document {index}"):
        build_next_token_dataset(data, byte_level_tokenizer, text_column=["problem", "solution"], show_progress=False)


def synthetic_entropy(tokenizer, texts):
    """A known entropy per token: 0.1, 0.7, 1.2, 1.7, 0.1, ... so every difficulty band occurs."""
    cycle = [0.1, 0.7, 1.2, 1.7]
    return [
        [float("nan")] + [cycle[k % 4] for k in range(1, len(tokenizer(t, add_special_tokens=False)["input_ids"]))]
        for t in texts
    ]


@pytest.mark.parametrize("min_entropy", [None, 0.7, 1.5])
def test_entropy_filter_and_nested_difficulty_splits(byte_level_tokenizer, min_entropy):
    entropy = synthetic_entropy(byte_level_tokenizer, CORPUS)
    kwargs = dict(min_context_tokens=2, skip_unanswerable_positions=False, show_progress=False, return_stats=True)
    unfiltered = build_next_token_dataset(CORPUS, byte_level_tokenizer, **kwargs)[0]
    dataset, stats = build_next_token_dataset(
        CORPUS, byte_level_tokenizer, token_entropy=entropy, min_entropy=min_entropy, **kwargs
    )
    for row in dataset:
        value = entropy[row["document_id"]][row["position"]]
        assert row["entropy"] == value
        assert row["difficulty"] == [name for name, t in DIFFICULTY_THRESHOLDS.items() if value > t]
        assert min_entropy is None or value >= min_entropy
    kept = {(r["document_id"], r["position"]) for r in dataset}
    expected = {
        (r["document_id"], r["position"])
        for r in unfiltered
        if min_entropy is None or entropy[r["document_id"]][r["position"]] >= min_entropy
    }
    assert kept == expected and len(kept) > 0
    assert stats.low_entropy_positions == len(unfiltered) - len(dataset)
    splits = {
        name: {(r["document_id"], r["position"]) for r in dataset if name in r["difficulty"]}
        for name in DIFFICULTY_THRESHOLDS
    }
    assert splits["hard"] <= splits["medium"] <= splits["easy"] <= kept
    if min_entropy is None:
        assert splits["hard"] < splits["medium"] < splits["easy"] < kept  # every band is populated


def test_difficulty_thresholds_are_user_settable(byte_level_tokenizer):
    entropy = synthetic_entropy(byte_level_tokenizer, CORPUS[:2])
    dataset = build_next_token_dataset(
        CORPUS[:2], byte_level_tokenizer, token_entropy=entropy, difficulty_thresholds={"any": 0.0, "top": 1.6},
        min_context_tokens=2, skip_unanswerable_positions=False, show_progress=False,
    )  # fmt: skip
    assert {tuple(r["difficulty"]) for r in dataset} == {("any",), ("any", "top")}
    assert (
        difficulty_labels(1.2) == ["easy", "medium"]
        and difficulty_labels(0.3) == []
        and difficulty_labels(1.5) == ["easy", "medium"]
    )


def test_unscored_positions_are_dropped_by_the_filter_and_counted(byte_level_tokenizer):
    entropy = [[float("nan")] * len(e) for e in synthetic_entropy(byte_level_tokenizer, CORPUS[:1])]
    dataset, stats = build_next_token_dataset(
        CORPUS[:1], byte_level_tokenizer, token_entropy=entropy, min_entropy=0.0, min_context_tokens=2,
        show_progress=False, return_stats=True,
    )  # fmt: skip
    assert len(dataset) == 0 and stats.low_entropy_positions == stats.candidate_positions > 0


def test_entropy_arguments_are_checked(byte_level_tokenizer, sentencepiece_tokenizer):
    with pytest.raises(ValueError, match="pass token_entropy"):
        build_next_token_dataset(CORPUS, byte_level_tokenizer, min_entropy=1.0)
    with pytest.raises(ValueError, match="lists but there are"):
        build_next_token_dataset(CORPUS, byte_level_tokenizer, token_entropy=[[0.0]])
    other = synthetic_entropy(sentencepiece_tokenizer, CORPUS)
    with pytest.raises(ValueError, match="align_token_values"):
        build_next_token_dataset(CORPUS, byte_level_tokenizer, token_entropy=other, show_progress=False)


def test_the_copy_word_templates_examples_are_positions_word_in_context_keeps():
    """Its examples teach what the filter selects: each answer is a word of its own context, boxed after the one
    fixed thought, and the prompt ends inside the thought for the context."""
    from rpt_trl.data.builder import word_in_context
    from rpt_trl.data.templates import COPY_WORD_EXAMPLES, resolve_template
    from rpt_trl.parsing import extract_prediction

    template = resolve_template("copy_word")
    assert template.count("{context}") == 1 and template.endswith('Text: "{context}"\n<think>')
    for context, answer in COPY_WORD_EXAMPLES:
        assert word_in_context(answer, context)
        shown = f'Text: "{context}"\n<think>Copy the word that fits.</think> \\boxed{{{answer}}}'
        assert shown in template
        assert extract_prediction(shown.split("<think>", 1)[1]) == answer
