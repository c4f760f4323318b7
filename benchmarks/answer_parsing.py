"""Time per MB of the answer parser and of the answer-stop logits processor on their worst input families.

    python benchmarks/answer_parsing.py [--megabytes 1.0] [--repeats 3]

Parser families (`extract_prediction` on the whole text, after `</think>`): nested closed boxes
(`\\boxed{` * n + `}` * n, the family where slicing at every closing brace was quadratic), LaTeX-like text, open boxes,
escapes and braces. Processor: one sequence of `</think>` and LaTeX-like pieces fed token by token through
`AnswerStopLogitsProcessor` (one decode and one parse update per token, as in generation), 8,192 and 16,384 tokens.
Each figure is the best of `--repeats` runs. Prints one line per measurement.
"""

import argparse
import functools
import time

import torch

from rpt_trl.parsing import extract_prediction
from rpt_trl.trainer.generation import AnswerStopLogitsProcessor


# Each makes about n characters. Nested closed boxes: every `}` closes a box (the old parser copied its content).
PARSER_FAMILIES = {
    "nested closed boxes": lambda n: "</think>" + "\\boxed{" * (n // 8) + "x" + "}" * (n // 8),
    "latex-like": lambda n: "</think>" + "\\frac{a}{b}^{2} " * (n // 16),
    "open boxes": lambda n: "</think>" + "\\boxed{" * (n // 7),
    "escapes and braces": lambda n: "</think>" + "\\\\{}\\{" * (n // 6),
}
LATEX_PIECES = ["\\frac", "{a", "}{", "b}", "^{", "2}", " +"]


class PieceTokenizer:
    """Token id i decodes to `vocabulary[i]`: drives the processor through any split of a text."""

    def __init__(self, vocabulary: list[str]):
        self.vocabulary = vocabulary

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(self.vocabulary[i] for i in ids)


def best_of(repeats: int, function) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def run_processor(num_tokens: int) -> None:
    """`</think>`, then LaTeX-like tokens with no box: each closing brace made the old processor re-parse it all."""
    vocabulary = ["<eos>", "</think>", *LATEX_PIECES]
    processor = AnswerStopLogitsProcessor(PieceTokenizer(vocabulary), eos_token_id=0)
    scores = torch.zeros((1, len(vocabulary)))
    input_ids = torch.zeros((1, num_tokens + 1), dtype=torch.long)
    input_ids[0, 1] = 1
    for step in range(1, num_tokens):
        input_ids[0, step + 1] = 2 + step % len(LATEX_PIECES)
    processor(input_ids[:, :1], scores)
    for step in range(1, num_tokens + 1):
        processor(input_ids[:, : step + 1], scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for name, make in PARSER_FAMILIES.items():
        for scale in (args.megabytes / 4, args.megabytes):
            text = make(int(scale * 1_000_000))
            seconds = best_of(args.repeats, functools.partial(extract_prediction, text))
            megabytes = len(text.encode()) / 1e6
            print(f"parser  {name:22s} {megabytes:5.2f} MB  {seconds:8.3f} s  {seconds / megabytes:8.3f} s/MB")
    characters_per_token = sum(map(len, LATEX_PIECES)) / len(LATEX_PIECES)
    for num_tokens in (8192, 16384):
        seconds = best_of(args.repeats, functools.partial(run_processor, num_tokens))
        megabytes = num_tokens * characters_per_token / 1e6
        print(f"processor latex-like {num_tokens:6d} tokens  {seconds:8.3f} s  {seconds / megabytes:8.3f} s/MB")


if __name__ == "__main__":
    main()
