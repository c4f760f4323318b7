"""Reasoning-pattern keyword counts per 1,000 reasoning tokens, models side by side.

Usage: `python -m evaluation.reasoning_patterns --help` (the same as `rpt-trl evaluate patterns --help`).
"""

from rpt_trl.commands.evaluate import patterns_parser, run_patterns


def make_parser():
    return patterns_parser()


def main(argv=None):
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_patterns(make_parser().parse_args(argv))


if __name__ == "__main__":
    main()
