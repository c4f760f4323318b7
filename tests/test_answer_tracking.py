r"""The incremental answer tracker and the answer-stop processor agree with re-parsing, on hostile text, in linear time.

Adversarial inputs are built from the pieces the parser reacts to (`\boxed{`, braces, escapes, `</think>`), cut into
pieces anywhere, including inside those markers.
"""

import importlib.util
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rpt_trl.parsing import AnswerBoxTracker, extract_prediction
from rpt_trl.trainer.generation import AnswerStopLogitsProcessor


# The benchmark's input families, tokenizer stand-in and timer: the tests bound what the benchmark measures.
_spec = importlib.util.spec_from_file_location(
    "answer_parsing_benchmark", Path(__file__).resolve().parents[1] / "benchmarks" / "answer_parsing.py"
)
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)
PieceTokenizer, WORST_FAMILIES, best_time = benchmark.PieceTokenizer, benchmark.PARSER_FAMILIES, benchmark.best_of

MARKERS = ["\\boxed{", "{", "}", "\\", "\\\\", "\\{", "\\}", "</think>", "</th", "ink>", "\\box", "ed{", "b", "x", " "]
hostile_text = st.lists(st.sampled_from(MARKERS) | st.text(max_size=3), max_size=40).map("".join)


def split_at(text: str, cuts: list[int]) -> list[str]:
    bounds = sorted({0, len(text), *(cut % (len(text) + 1) for cut in cuts)})
    return [text[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=500, deadline=None)
@given(hostile_text, st.lists(st.integers(min_value=0), max_size=12), st.booleans())
def test_tracker_equals_reparse_at_every_piece(text, cuts, require_think_close):
    tracker = AnswerBoxTracker(require_think_close=require_think_close)
    seen = ""
    for piece in split_at(text, cuts):
        seen += piece
        expected = extract_prediction(seen, require_think_close=require_think_close) is not None
        assert tracker.feed(piece) is expected, (seen, piece)
        assert tracker.closed is expected


@settings(max_examples=200, deadline=None)
@given(hostile_text, st.booleans())
def test_tracker_fed_one_character_at_a_time(text, require_think_close):
    tracker = AnswerBoxTracker(require_think_close=require_think_close)
    for character in text:
        tracker.feed(character)
    assert tracker.closed is (extract_prediction(text, require_think_close=require_think_close) is not None)


def reference_prediction(text: str, require_think_close: bool = True) -> str | None:
    """The parsing rule written plainly, one character at a time (small inputs only: it copies freely)."""
    think = text.find("</think>")
    if think < 0 and require_think_close:
        return None
    i = think + len("</think>") if think >= 0 else 0
    stack, prediction = [], None  # content start of a box, or None for a plain brace
    while i < len(text):
        if text.startswith("\\\\", i) or text.startswith("\\{", i) or text.startswith("\\}", i):
            i += 2
        elif text.startswith("\\boxed{", i):
            i += len("\\boxed{")
            stack.append(i)
        elif text[i] == "{":
            stack.append(None)
            i += 1
        elif text[i] == "}":
            if stack:
                start = stack.pop()
                if start is not None:
                    prediction = text[start:i]
            i += 1
        else:
            i += 1
    return prediction


@settings(max_examples=1000, deadline=None)
@given(hostile_text, st.booleans())
def test_parser_equals_a_plain_reference_on_adversarial_braces(text, require_think_close):
    expected = reference_prediction(text, require_think_close)
    assert extract_prediction(text, require_think_close=require_think_close) == expected


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (["</think>\\", "\\}"], False),  # `\\` then a bare `}` that closes nothing
        (["</think>\\boxed{a\\", "\\}"], True),  # the escaped backslash does not escape the brace
        (["</think>\\boxed{a\\", "}"], False),  # `\}` is an escaped brace
        (["</think>\\", "boxed{a}"], True),
        (["</think>\\\\", "boxed{a}"], False),  # `\\` + `boxed{`: a plain brace, not a box
        (["</thi", "nk>\\bo", "xed", "{", "}"], True),
        (["\\boxed{a}", "</think>"], False),  # a box before </think> never counts
        (["</think>\\boxed{", "{}"], False),
        (["</think>\\boxed{", "{}", "}"], True),
    ],
)
def test_tracker_cut_inside_markers(pieces, expected):
    tracker = AnswerBoxTracker()
    verdicts = [tracker.feed(piece) for piece in pieces]
    assert verdicts[-1] is expected
    assert verdicts[-1] is (extract_prediction("".join(pieces)) is not None)


def test_without_think_close_a_later_think_restarts_the_search():
    tracker = AnswerBoxTracker(require_think_close=False)
    assert tracker.feed("\\boxed{a}") is True
    assert tracker.feed(" </think> ") is False  # as extract_prediction: boxes count from </think> once it is there
    assert tracker.feed("\\boxed{b}") is True


def run_processor(pieces_per_row: list[list[str]], *, require_think_close: bool = True) -> list[list[bool]]:
    """Feed each row its pieces, one per step; return, per step, which rows the processor forced to EOS."""
    vocabulary = ["<eos>"] + sorted({piece for pieces in pieces_per_row for piece in pieces})
    index = {piece: i for i, piece in enumerate(vocabulary)}
    processor = AnswerStopLogitsProcessor(
        PieceTokenizer(vocabulary), eos_token_id=0, require_think_close=require_think_close
    )
    rows, steps = len(pieces_per_row), max(map(len, pieces_per_row), default=0)
    input_ids = torch.zeros((rows, 1), dtype=torch.long)  # a one-token prompt
    processor(input_ids, torch.zeros((rows, len(vocabulary))))
    forced_per_step = []
    for step in range(steps):
        newest = [index[pieces[step]] if step < len(pieces) else 0 for pieces in pieces_per_row]
        input_ids = torch.cat([input_ids, torch.tensor(newest).unsqueeze(1)], dim=1)
        scores = processor(input_ids, torch.zeros((rows, len(vocabulary))))
        forced_per_step.append([bool(scores[row, 1:].eq(float("-inf")).all()) for row in range(rows)])
    return forced_per_step


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(MARKERS) | st.text(min_size=1, max_size=3), max_size=12), min_size=1,
                max_size=3))  # fmt: skip
def test_processor_equals_reparse(pieces_per_row):
    forced_per_step = run_processor(pieces_per_row)
    for row, pieces in enumerate(pieces_per_row):
        done = False
        for step, forced in enumerate(forced_per_step):
            if step < len(pieces):
                done = done or extract_prediction("".join(pieces[: step + 1])) is not None
            assert forced[row] is done, (pieces, step)


@pytest.mark.parametrize("family", sorted(WORST_FAMILIES))
def test_parser_time_per_megabyte_is_bounded_and_linear(family):
    make = WORST_FAMILIES[family]
    small, large = make(250_000), make(1_000_000)
    small_time = best_time(3, lambda: extract_prediction(small))
    large_time = best_time(3, lambda: extract_prediction(large))
    assert large_time < 1.0  # about 0.1 s per MB here; the quadratic scan took seconds
    assert large_time < 8 * max(small_time, 1e-3)  # 4x the input: linear is ~4x, quadratic ~16x


@pytest.mark.parametrize("family", sorted(WORST_FAMILIES))
def test_tracker_time_per_megabyte_is_bounded_and_linear(family):
    def feed_tokens(text: str) -> None:
        tracker = AnswerBoxTracker()
        for start in range(0, len(text), 3):  # about a token's worth of characters per piece
            tracker.feed(text[start : start + 3])

    make = WORST_FAMILIES[family]
    small, large = make(100_000), make(400_000)
    # Best of 5: on a shared machine one burst of load can double a single timing.
    small_time, large_time = best_time(5, lambda: feed_tokens(small)), best_time(5, lambda: feed_tokens(large))
    assert large_time < 2.0
    assert large_time < 8 * max(small_time, 1e-3)


def test_processor_on_long_latex_completion_is_linear():
    # 8,192 steps of LaTeX-like pieces, as a long OmniMATH-style chain of thought produces.
    pieces = ["</think>"] + ["\\frac", "{a", "}{", "b}", "^{", "2}", " +"] * (8192 // 7)
    start = time.perf_counter()
    forced = run_processor([pieces])
    elapsed = time.perf_counter() - start
    assert not any(step[0] for step in forced)
    assert elapsed < 5.0  # the re-parsing processor needed quadratic time here
