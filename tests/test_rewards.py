import pytest
from conftest import make_byte_level_tokenizer
from hypothesis import given, settings
from hypothesis import strategies as st

from rpt_trl import first_token_reward, prefix_match_reward, score_first_token, score_prefix_match
from rpt_trl.parsing import split_thought
from rpt_trl.rewards import score_completions, thought_token_counts


def box(answer):
    return f"<think>reasoning</think> The next token is \\boxed{{{answer}}}."


GROUND_TRUTH = " size of the box"
BOUNDARIES = [5, 8, 12, 16]  # " size", " of", " the", " box"


@pytest.mark.parametrize(
    ("completion", "ground_truth", "boundaries", "prefix", "first"),
    [
        (box(" size"), GROUND_TRUTH, BOUNDARIES, 1.0, 1.0),
        (box(" size of"), GROUND_TRUTH, BOUNDARIES, 1.0, 0.0),  # multi-token answer
        (box(" size of the box"), GROUND_TRUTH, BOUNDARIES, 1.0, 0.0),  # the whole window
        (box(" si"), GROUND_TRUTH, BOUNDARIES, 0.0, 0.0),  # stops mid-token
        (box(" size o"), GROUND_TRUTH, BOUNDARIES, 0.0, 0.0),
        (box("size"), GROUND_TRUTH, BOUNDARIES, 0.0, 0.0),  # missing leading space
        (box(" Size"), GROUND_TRUTH, BOUNDARIES, 0.0, 0.0),
        (box(""), GROUND_TRUTH, BOUNDARIES, 0.0, 0.0),  # empty box
        ("<think>no answer</think>", GROUND_TRUTH, BOUNDARIES, 0.0, 0.0),  # missing box
        ("\\boxed{ size}", GROUND_TRUTH, BOUNDARIES, 0.0, 0.0),  # no </think>
        (box(" size of the box and more"), GROUND_TRUTH, BOUNDARIES, 0.0, 0.0),  # longer than the ground truth
        # CJK and emoji: "中文" is one 6-byte token, "🎉" a 4-byte token
        (box("中文"), "中文🎉 ok", [6, 10, 13], 1.0, 1.0),
        (box("中文🎉"), "中文🎉 ok", [6, 10, 13], 1.0, 0.0),
        (box("中"), "中文🎉 ok", [6, 10, 13], 0.0, 0.0),
        # a byte-level token boundary inside "🎉" (bytes 6..10) cannot be matched by text
        (box("中文"), "中文🎉", [6, 8, 10], 1.0, 1.0),
        (box("\\frac{a}{b}"), "\\frac{a}{b} + c", [5, 6, 7, 8, 9, 10, 11, 13], 1.0, 0.0),
    ],
)
def test_rewards_table(completion, ground_truth, boundaries, prefix, first):
    assert prefix_match_reward([completion], [ground_truth], [boundaries]) == [prefix]
    assert first_token_reward([completion], [ground_truth], [boundaries]) == [first]


def test_conversational_completions():
    completions = [[{"role": "assistant", "content": box(" size")}], [{"role": "assistant", "content": box(" of")}]]
    assert prefix_match_reward(completions, [GROUND_TRUTH] * 2, [BOUNDARIES] * 2) == [1.0, 0.0]


def test_require_think_close_can_be_turned_off():
    assert prefix_match_reward(["\\boxed{ size}"], [GROUND_TRUTH], [BOUNDARIES], require_think_close=False) == [1.0]


def test_log_extra_and_log_metric_receive_predictions_and_metrics():
    extra, metrics = {}, {}
    completions = [box(" size"), box(" so"), "<think>long thought here</think>"]
    rewards = prefix_match_reward(
        completions,
        [GROUND_TRUTH] * 3,
        [BOUNDARIES] * 3,
        log_extra=lambda column, values: extra.__setitem__(column, values),
        log_metric=lambda name, value: metrics.__setitem__(name, value),
        trainer_state=None,  # TRL passes extra keyword arguments; they are ignored
        prompts=["p"] * 3,
    )
    assert rewards == [1.0, 0.0, 0.0]
    assert extra == {"prediction": [" size", " so", None]}
    assert metrics["rpt/next_token_accuracy"] == pytest.approx(1 / 3)
    assert metrics["rpt/answer_rate"] == pytest.approx(2 / 3)
    assert metrics["rpt/reasoning_chars"] == pytest.approx(
        (len("<think>reasoning") * 2 + len("<think>long thought here")) / 3
    )


def test_reasoning_length_in_tokens(byte_level_tokenizer):
    metrics = {}
    prefix_match_reward(
        [box(" size")],
        [GROUND_TRUTH],
        [BOUNDARIES],
        reasoning_tokenizer=byte_level_tokenizer,
        log_metric=lambda name, value: metrics.__setitem__(name, value),
    )
    expected = len(byte_level_tokenizer("<think>reasoning", add_special_tokens=False)["input_ids"])
    assert metrics["rpt/reasoning_tokens"] == expected


@pytest.mark.parametrize(
    ("completion", "thought", "answer_part"),
    [
        ("<think>a</think> \\boxed{ b}", "<think>a", " \\boxed{ b}"),
        ("no close tag", "no close tag", None),
        ("x</think>y</think>z", "x", "y</think>z"),  # the first </think> ends the thought
        ([{"role": "assistant", "content": "t</think>a"}], "t", "a"),
    ],
)
def test_split_thought(completion, thought, answer_part):
    assert split_thought(completion) == (thought, answer_part)


def test_score_completions_returns_rewards_and_predictions():
    completions = [box(" size"), box(" si"), "no box", box(" size of")]
    rewards, predictions = score_completions(completions, [GROUND_TRUTH] * 4, [BOUNDARIES] * 4)
    assert rewards == [1.0, 0.0, 0.0, 1.0]
    assert predictions == [" size", " si", None, " size of"]
    rewards, _ = score_completions(completions, [GROUND_TRUTH] * 4, [BOUNDARIES] * 4, scorer="first_token")
    assert rewards == [1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="scorer must be one of"):
        score_completions(completions, [GROUND_TRUTH] * 4, [BOUNDARIES] * 4, scorer="dense")


@pytest.fixture(scope="module")
def think_tokenizer():
    return make_byte_level_tokenizer(extra_tokens=["<think>", "</think>", "\\boxed{"])


@pytest.mark.parametrize(
    "completion",
    [box(" size"), "<think>a longer thought, with words</think> \\boxed{ of}", "<think>no close tag at all", ""],
)
def test_thought_tokens_from_completion_ids_equal_a_second_tokenisation(think_tokenizer, completion):
    ids = think_tokenizer(completion, add_special_tokens=False)["input_ids"]
    expected = len(think_tokenizer(split_thought(completion)[0], add_special_tokens=False)["input_ids"])
    assert thought_token_counts([completion], think_tokenizer) == [expected]
    assert thought_token_counts([completion], think_tokenizer, [ids]) == [expected]
    # TRL's completion ids end with EOS when the model stopped; EOS is not part of the thought
    assert thought_token_counts([completion], think_tokenizer, [ids + [think_tokenizer.eos_token_id]]) == [expected]


def test_thought_tokens_fall_back_when_the_ids_are_not_the_texts(think_tokenizer, sentencepiece_tokenizer):
    completion = box(" size")
    # ids of another vocabulary do not decode to the text: the thought is tokenised again
    ids = sentencepiece_tokenizer(completion, add_special_tokens=False)["input_ids"]
    expected = len(think_tokenizer("<think>reasoning", add_special_tokens=False)["input_ids"])
    assert thought_token_counts([completion], think_tokenizer, [ids]) == [expected]


def test_thought_tokens_are_counted_in_ids_that_split_the_tag(think_tokenizer, byte_level_tokenizer):
    completion = box(" size")
    # ids from a tokenizer without </think> as one token still decode to the text: the count is of these ids
    ids = byte_level_tokenizer(completion, add_special_tokens=False)["input_ids"]
    expected = len(byte_level_tokenizer("<think>reasoning", add_special_tokens=False)["input_ids"])
    assert expected != len(think_tokenizer("<think>reasoning", add_special_tokens=False)["input_ids"])
    assert thought_token_counts([completion], think_tokenizer, [ids]) == [expected]


def test_reward_reads_reasoning_tokens_from_trl_completion_ids(think_tokenizer):
    """Called as GRPOTrainer calls it: the logged length comes from `completion_ids`, not from the text."""
    metrics = {}
    completion = "<think>a b c</think> \\boxed{ size}"
    ids = think_tokenizer(completion, add_special_tokens=False)["input_ids"]
    close = ids.index(think_tokenizer.convert_tokens_to_ids("</think>"))
    prefix_match_reward(
        prompts=["p"],
        completions=[completion],
        completion_ids=[ids[:close] + [ids[0]] * 7 + ids[close:]],  # seven more thought tokens than the text has
        ground_truth=[GROUND_TRUTH],
        ground_truth_boundaries=[BOUNDARIES],
        reasoning_tokenizer=think_tokenizer,
        log_metric=metrics.__setitem__,
    )
    assert metrics["rpt/reasoning_tokens"] == close + 7


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="equally long"):
        prefix_match_reward([box("a"), box("b")], [GROUND_TRUTH], [BOUNDARIES])


def test_boundary_past_ground_truth_raises():
    with pytest.raises(ValueError, match="past the end"):
        prefix_match_reward([box("a")], ["ab"], [[1, 5]])


def oracle(prediction, token_bytes):
    """Brute force: is the prediction exactly the concatenation of the first k >= 1 tokens?"""
    if prediction is None:
        return 0.0
    target = prediction.encode("utf-8")
    return float(any(b"".join(token_bytes[:k]) == target for k in range(1, len(token_bytes) + 1)))


@st.composite
def tokenized_text_and_prediction(draw):
    text = draw(st.text(min_size=1, max_size=12))
    data = text.encode("utf-8")
    # Random cut points, which may fall inside a character, as byte-level BPE allows.
    cuts = sorted(set(draw(st.lists(st.integers(1, len(data)), max_size=6))) | {len(data)})
    token_bytes = [data[a:b] for a, b in zip([0, *cuts[:-1]], cuts)]
    choice = draw(st.integers(0, 2))
    if choice == 0:
        prediction = text[: draw(st.integers(0, len(text)))]  # a character prefix
    elif choice == 1:
        prediction = draw(st.text(max_size=6))
    else:
        k = draw(st.integers(1, len(token_bytes)))
        prediction = b"".join(token_bytes[:k]).decode("utf-8", errors="replace")
    return text, cuts, token_bytes, prediction


@settings(max_examples=500, deadline=None)
@given(tokenized_text_and_prediction())
def test_prefix_match_equals_brute_force_oracle(case):
    text, cuts, token_bytes, prediction = case
    assert score_prefix_match(prediction, text, cuts) == oracle(prediction, token_bytes)


@settings(max_examples=300, deadline=None)
@given(tokenized_text_and_prediction())
def test_first_token_equals_brute_force(case):
    text, cuts, token_bytes, prediction = case
    expected = float(bool(prediction) and prediction.encode("utf-8") == token_bytes[0])
    assert score_first_token(prediction, text, cuts) == expected
