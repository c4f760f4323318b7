"""Next-token accuracy as in the paper's Table 1, standard or reasoning mode.

Usage: `python -m evaluation.next_token_accuracy --help` (the same as `rpt-trl evaluate next-token --help`).
"""

from rpt_trl.commands.evaluate import next_token_parser, run_next_token


def make_parser():
    return next_token_parser()


def main(argv=None):
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_next_token(make_parser().parse_args(argv))


if __name__ == "__main__":
    main()
