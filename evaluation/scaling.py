"""Fit next-token accuracy against training compute, P(C) = A / C^alpha + P*, per split.

Usage: `python -m evaluation.scaling --help` (the same as `rpt-trl evaluate scaling --help`).
"""

from rpt_trl.commands.evaluate import run_scaling, scaling_parser


def make_parser():
    return scaling_parser()


def main(argv=None):
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_scaling(make_parser().parse_args(argv))


if __name__ == "__main__":
    main()
