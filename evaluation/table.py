"""Combine evaluation result files into the Table-1-style and zero-shot Markdown tables.

Usage: `python -m evaluation.table --help` (the same as `rpt-trl evaluate table --help`).
"""

from rpt_trl.commands.evaluate import run_table, table_parser


def make_parser():
    return table_parser()


def main(argv=None):
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_table(make_parser().parse_args(argv))


if __name__ == "__main__":
    main()
