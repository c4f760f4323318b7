import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpt_trl import first_token_reward, prefix_match_reward, score_first_token, score_prefix_match


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
