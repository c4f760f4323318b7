"""A thought's tokens counted in the completion ids equal the tokenizer's own count of the thought, also when the
tokenizer merges the thought's last character into the first token of `</think>` (Gemma's `.</`, ` </`, ...)."""

import pytest
from conftest import CORPUS, make_byte_level_tokenizer, make_sentencepiece_tokenizer

from rpt_trl.parsing import THINK_CLOSE, split_thought
from rpt_trl.rewards import thought_token_counts
from rpt_trl.rewards.thought_tokens import thought_tokens_from_ids, token_bytes


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
