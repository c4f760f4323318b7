"""A thought's tokens counted in the completion ids equal the tokenizer's own count of the thought, also when the
tokenizer merges the thought's last character into the first token of `</think>` (Gemma's `.</`, ` </`, ...)."""

import pytest
from conftest import CORPUS, make_byte_level_tokenizer, make_sentencepiece_tokenizer

from rpt_trl import prefix_match_reward, score_prefix_match
from rpt_trl.parsing import THINK_CLOSE, extract_prediction, split_thought
from rpt_trl.rewards import thought_token_counts
from rpt_trl.rewards.thought_tokens import (
    TokenBytes,
    find_think_tags,
    thought_tokens_from_ids,
    thought_tokens_in_ids,
    token_bytes,
)


ENDINGS = [".", " ", ")", "}", "\n", "$"]
THOUGHTS = ["the sum is 42", "so f(x", "we get {a, b", "let $x", "which gives 中文 🎉", "and the box is 12.5 cm"]
# Trained on thoughts that end like these, BPE learns the merges Gemma's tokenizer has (`.</`, `)</`, ...).
MERGING_CORPUS = [f"<think>{t}{e}</think> \\boxed{{ size}}" for t in THOUGHTS for e in ENDINGS] + CORPUS


@pytest.fixture(scope="module", params=["byte_level", "sentencepiece", "byte_level_with_think_token"])
def tokenizer(request, tmp_path_factory):
    if request.param == "sentencepiece":
        return make_sentencepiece_tokenizer(tmp_path_factory.mktemp("spm"), corpus=MERGING_CORPUS, vocab_size=500)
    extra = [THINK_CLOSE] if request.param == "byte_level_with_think_token" else []
    return make_byte_level_tokenizer(MERGING_CORPUS, vocab_size=500, extra_tokens=extra)


def own_count(tokenizer, completion: str) -> int:
    return len(tokenizer(split_thought(completion)[0], add_special_tokens=False)["input_ids"])


def ids_holding_the_thought(tokenizer, completion: str, ids: list[int]) -> int:
    """Brute force: the fewest leading ids whose decoding holds the whole thought."""
    thought = split_thought(completion)[0]
    return next(k for k in range(len(ids) + 1) if tokenizer.decode(ids[:k]).startswith(thought))


def count_from_ids(tokenizer, completion: str) -> tuple[int | None, list[int]]:
    ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return thought_tokens_from_ids(completion, completion.find(THINK_CLOSE), ids, token_bytes(tokenizer)), ids


@pytest.mark.parametrize("ending", ENDINGS, ids=repr)
@pytest.mark.parametrize("thought", ["the answer is 7", "so f(x", "we get {a, b} in 中文", ""])
def test_thought_tokens_from_ids_equal_the_tokenizers_count(tokenizer, thought, ending):
    completion = f"<think>{thought}{ending}</think> The answer is \\boxed{{ 中}}."
    count, ids = count_from_ids(tokenizer, completion)
    assert count == own_count(tokenizer, completion)  # read from the ids (not None: no second tokenisation)
    assert thought_token_counts([completion], tokenizer, [ids]) == [count]


@pytest.mark.parametrize("ending", ENDINGS, ids=repr)
@pytest.mark.parametrize("thought", ["中文 🎉", "so $x$)", "\\frac{a}{b}}"])
def test_thought_tokens_are_the_ids_that_hold_the_thought(tokenizer, thought, ending):
    # Where the characters before the tag merge with each other too (`🎉.</`, `$)</`), the thought's own
    # tokenisation may split them differently; the count is of the ids, the tokens the policy generated.
    completion = f"<think>{thought}{ending}</think> \\boxed{{ size}}"
    count, ids = count_from_ids(tokenizer, completion)
    assert count == ids_holding_the_thought(tokenizer, completion, ids)


@pytest.mark.parametrize("ending", [".", " ", ")", "}", "$"], ids=repr)
def test_the_test_tokenizers_merge_the_last_character_into_the_tag(tokenizer, ending):
    # Without the merge the tests above would not test it (the tokenizer with `</think>` whole does not merge).
    ids = tokenizer(f"<think>the answer is 7{ending}</think>", add_special_tokens=False)["input_ids"]
    merged = any(token.endswith("</") and len(token) > 2 for token in tokenizer.convert_ids_to_tokens(ids))
    assert merged == (THINK_CLOSE not in tokenizer.get_added_vocab())


def test_ids_that_are_not_the_texts_are_counted_by_tokenising_the_thought(tokenizer):
    completion = "<think>the answer is 7.</think> \\boxed{ 7}"
    foreign = [token_id % 50 + 10 for token_id in tokenizer(completion, add_special_tokens=False)["input_ids"]]
    table = token_bytes(tokenizer)
    assert thought_tokens_from_ids(completion, completion.find(THINK_CLOSE), foreign, table) is None
    assert thought_token_counts([completion], tokenizer, [foreign]) == [own_count(tokenizer, completion)]


def test_ids_that_spell_the_tag_in_pieces_are_counted_in_the_ids():
    # A policy may sample a tokenisation of its text other than the tokenizer's own (here `.`, `</` for `.</`).
    tokenizer = make_byte_level_tokenizer(MERGING_CORPUS, vocab_size=500)
    thought, rest = "<think>the answer is 7.", "</think> \\boxed{ 7}"
    ids = (
        tokenizer(thought, add_special_tokens=False)["input_ids"]
        + tokenizer(rest, add_special_tokens=False)["input_ids"]
    )
    assert tokenizer.decode(ids) == thought + rest and ids != tokenizer(thought + rest)["input_ids"]
    assert thought_token_counts([thought + rest], tokenizer, [ids]) == [own_count(tokenizer, thought + rest)]


@pytest.mark.parametrize(
    "text",
    [
        "<think>so 7.</think> \\boxed{ 7}",
        "<think>中文 🎉</think> 答 \\boxed{ 中}",  # the answer part's bytes, not its characters
        "a</think>b</think>c",
        "</think>",
        "<think>no close tag",
        "",
    ],
)
def test_think_tags_measure_the_answer_part(text):
    think_close = text.find(THINK_CLOSE)
    answer_part = text[think_close:] if think_close >= 0 else ""
    expected = ([think_close], [len(answer_part.encode("utf-8"))], [answer_part.count(THINK_CLOSE) > 1])
    assert tuple(find_think_tags([text])) == expected
    assert tuple(find_think_tags([[{"role": "assistant", "content": text}]], [think_close])) == expected


def mixed_batch(tokenizer) -> tuple[list, list[list[int]]]:
    """Completions of every kind the count meets in one batch, with their own ids (and an EOS, some a padding too)."""
    texts = [f"<think>{t}{e}</think> The answer is \\boxed{{ size}}." for t in THOUGHTS[:4] for e in ENDINGS]
    texts += [
        # The first tag counts, where the second lies near the end and the first, past ids of one byte each, far.
        "<think>a thought</think> \\boxed{ x} 💡💡💡💡💡</think> \\boxed{ y}",
        "<think>no close tag, cut at the length limit",
        "</think> \\boxed{ at once}",  # an empty thought
        "<think>中文 🎉 then.</think> 答 \\boxed{ 中}",  # a tail that is not ASCII
    ]
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for text in texts]
    ids[1] += [tokenizer.pad_token_id or tokenizer.eos_token_id] * 3  # TRL pads to the longest completion
    ids[-3] += [tokenizer.eos_token_id]
    completions = [[{"role": "assistant", "content": text}] if i % 5 == 0 else text for i, text in enumerate(texts)]
    return completions, ids


def test_a_batch_counts_each_thought_as_its_own_tokenisation(tokenizer):
    completions, ids = mixed_batch(tokenizer)
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    expected = [own_count(tokenizer, text) for text in texts]
    trailing = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    table = TokenBytes(tokenizer)  # a fresh table: the first batch reads the ids, the second finds the tag by them
    think_tags = find_think_tags(completions)
    first = thought_tokens_in_ids(think_tags, ids, table, trailing)
    assert table.tag_holders  # the tag's first tokens were noted while the first batch read them
    second = thought_tokens_in_ids(think_tags, ids, table, trailing)
    assert first == second
    # Read from the ids but where the ids cannot tell (SentencePiece strips the space of a thought that is empty).
    assert [count for count in first if count is not None] == [e for c, e in zip(first, expected) if c is not None]
    assert None not in first[:24] + first[-4:-2] + first[-1:]
    assert thought_token_counts(completions, tokenizer, ids) == expected  # those are tokenised again


def test_the_bound_reward_logs_the_metrics_of_an_independent_count(tokenizer):
    # The reward as RPTTrainer binds it, called as GRPOTrainer calls it, on every kind of completion at once.
    completions, ids = mixed_batch(tokenizer)
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    truths, boundaries = [" size of"] * len(texts), [[5, 8]] * len(texts)
    extra, metrics = {}, {}
    rewards = prefix_match_reward(
        prompts=["p"] * len(texts), completions=completions, completion_ids=ids, ground_truth=truths,
        ground_truth_boundaries=boundaries, trainer_state=None, log_extra=extra.__setitem__,
        log_metric=metrics.__setitem__, require_think_close=True, reasoning_tokenizer=tokenizer,
    )  # fmt: skip
    predictions = [extract_prediction(text) for text in texts]
    assert rewards == [score_prefix_match(p, g, b) for p, g, b in zip(predictions, truths, boundaries)]
    assert extra == {"prediction": predictions}
    assert metrics == {
        "rpt/next_token_accuracy": sum(rewards) / len(rewards),
        "rpt/answer_rate": sum(p is not None for p in predictions) / len(predictions),
        "rpt/reasoning_tokens": sum(own_count(tokenizer, text) for text in texts) / len(texts),
    }


def test_the_tag_holders_are_the_read_ids_that_end_as_the_tags_first_token(tokenizer):
    table = TokenBytes(tokenizer)
    completions, ids = mixed_batch(tokenizer)
    for token_id in {token_id for row in ids for token_id in row}:
        table[token_id]
    first = table.tag_first
    assert table.tag_holders == {
        token_id: len(piece) - len(first)
        for token_id, piece in table.pieces.items()
        if piece is not None and table.tag_follow and piece.endswith(first)
    }


@pytest.mark.parametrize("decoy", ["</thick>", "</thing>", "</think,"])
def test_a_tag_of_many_ids_is_matched_whole(decoy):
    # Not trained on `think`, the tokenizer spells `</think>` in single characters: after the `<` come seven ids,
    # and a word that shares all but a middle or the last of them, just before the tag, is not the tag.
    tokenizer = make_byte_level_tokenizer(vocab_size=400)
    table = TokenBytes(tokenizer)
    assert len(table.tag_follow) > 2 and table.tag_first == b"<"
    completion = f"<think>so {decoy}</think> The size of the box is \\boxed{{ 12.5 cm}}."
    ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert len(tokenizer(decoy, add_special_tokens=False)["input_ids"]) == len(table.tag_follow) + 1
    expected = [own_count(tokenizer, completion)]
    assert expected == [ids_holding_the_thought(tokenizer, completion, ids)]
    for _ in range(2):  # the second time the ids are read, and the decoy's `<` is known to end as the tag's `<`
        assert thought_tokens_in_ids(find_think_tags([completion]), [ids], table) == expected


def test_token_bytes_are_the_decoded_texts_bytes(tokenizer):
    table = token_bytes(tokenizer)
    assert token_bytes(tokenizer) is table
    for text in MERGING_CORPUS[:12] + CORPUS:
        ids = tokenizer("<" + text, add_special_tokens=False)["input_ids"]  # a first token that is whole characters
        rest = b"".join(table[token_id] for token_id in ids[1:])
        assert tokenizer.decode(ids[:1]).encode("utf-8") + rest == tokenizer.decode(ids).encode("utf-8")
    assert table[tokenizer.eos_token_id] == b""


@pytest.mark.slow  # converts the embedded Gemma 3 270M once (about a minute), then reuses the cache
@pytest.mark.parametrize("ending", ENDINGS, ids=repr)
def test_gemma_tokenizer_counts(ending):
    from transformers import AutoTokenizer

    from rpt_trl.demo.embedded import ensure_embedded_model

    gemma = AutoTokenizer.from_pretrained(ensure_embedded_model())
    for thought in ("Each box holds 12.5 cm, so f(x) = {1, 2} and x", "the box is 中文", "so $x$"):
        completion = f"<think>{thought}{ending}</think> \\boxed{{ size}}"
        count, ids = count_from_ids(gemma, completion)
        assert count == ids_holding_the_thought(gemma, completion, ids), thought
        if not thought.endswith("$"):  # `$)` is one token in the thought alone, `$` + `)</` in the completion
            assert count == own_count(gemma, completion), thought
