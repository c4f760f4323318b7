"""The paper's comparison: models in standard and reasoning mode on the same held-out positions, with bootstrap
intervals over positions and a verdict on each difference with the target system.

Usage: `python -m evaluation.compare --help` (the same as `rpt-trl evaluate compare --help`).
"""

from rpt_trl.commands.evaluate import compare_parser, run_compare


def make_parser():
    return compare_parser()


def main(argv=None):
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_compare(make_parser().parse_args(argv))


if __name__ == "__main__":
    main()
