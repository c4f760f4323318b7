"""Zero-shot multiple choice in reasoning mode: MMLU-Pro, SuperGPQA or a local file.

Usage: `python -m evaluation.zero_shot --help` (the same as `rpt-trl evaluate zero-shot --help`).
"""

from rpt_trl.commands.evaluate import run_zero_shot, zero_shot_parser


def make_parser():
    return zero_shot_parser()


def main(argv=None):
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_zero_shot(make_parser().parse_args(argv))


if __name__ == "__main__":
    main()
