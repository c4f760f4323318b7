import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpt_trl import can_be_boxed, extract_prediction


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>hmm</think> \\boxed{ size}", " size"),
        ("</think>\\boxed{size }", "size "),  # trailing space kept
        ("</think> \\boxed{\\frac{a}{b}}", "\\frac{a}{b}"),  # nested braces
        ("</think> \\boxed{a} then \\boxed{b}", "b"),  # last box wins
        ("<think>\\boxed{a}</think> done", None),  # a box only before </think>
        ("<think>\\boxed{a}</think> \\boxed{b}", "b"),
        ("</think> \\boxed{}", ""),  # empty box: parsed, scores 0
        ("</think> \\boxed{ unclosed", None),
        ("</think> \\boxed{a} \\boxed{b", "a"),  # an unclosed last box does not hide a complete one
        ("</think> \\boxed{\\{}", "\\{"),  # escaped braces do not count
        ("</think> \\boxed{\\}}", "\\}"),
        ("</think> \\boxed{a\\\\}", "a\\\\"),  # an escaped backslash does not escape the brace
        ("</think> } \\boxed{x}", "x"),  # stray closing brace outside a box
        ("</think> {\\boxed{x}", "x"),  # stray opening brace before the box
        ("</think> \\boxed{\\boxed{x}}", "\\boxed{x}"),  # nested box: the outer box closes last
        ("</think> \\boxed {x}", None),  # only the exact `\boxed{` opens a box
        ("no think \\boxed{x}", None),
        ("</think></think> \\boxed{x}", "x"),
        ("", None),
        ("</think> \\boxed{中文 🎉}", "中文 🎉"),
    ],
)
def test_extract_prediction(completion, expected):
    assert extract_prediction(completion) == expected


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("\\boxed{x}", "x"),
        ("<think>\\boxed{a}</think> \\boxed{b}", "b"),
        ("<think>\\boxed{a}</think> no box", None),
        ("plain text", None),
    ],
)
def test_extract_prediction_without_think_close(completion, expected):
    assert extract_prediction(completion, require_think_close=False) == expected


def test_conversational_completion():
    completion = [{"role": "assistant", "content": "<think>ok</think> \\boxed{ the}"}]
    assert extract_prediction(completion) == " the"
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "</think> \\boxed{ x}"}]}]
    assert extract_prediction(parts) == " x"


@pytest.mark.parametrize("bad", [None, 3, [1, 2]])
def test_bad_completion_type_raises(bad):
    with pytest.raises(TypeError):
        extract_prediction(bad)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(" size", True), ("}", False), ("{", False), ("}{", False), ("}$", False), ("{a}", True), ("\\", False),
     ("\\}", True), ("a\\\\", True), ("", True), ("\n", True)],
)  # fmt: skip
def test_can_be_boxed(answer, expected):
    assert can_be_boxed(answer) is expected


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parser_never_raises_on_unicode(text):
    result = extract_prediction(text)
    assert result is None or result in text
    extract_prediction(text, require_think_close=False)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="{}\\")))
def test_brace_free_answers_round_trip(answer):
    assert extract_prediction(f"<think>x</think> \\boxed{{{answer}}}") == answer


@pytest.mark.parametrize(
    "unit", ["\\boxed{", "{", "}", "\\", "a", "</think>", "\\boxed{x}", "{{{{", "</think>\\boxed{\\boxed{"]
)
def test_one_megabyte_input_is_fast(unit):
    text = "</think>" + unit * (1_000_000 // len(unit))
    start = time.perf_counter()
    extract_prediction(text)
    assert time.perf_counter() - start < 0.5


def test_linear_time():
    # Doubling the input at most roughly doubles the time (quadratic scanning would quadruple it).
    def timed(n):
        text = "</think>" + "\\boxed{" * n
        start = time.perf_counter()
        for _ in range(3):
            extract_prediction(text)
        return time.perf_counter() - start

    small, large = timed(50_000), timed(200_000)
    assert large < small * 8
