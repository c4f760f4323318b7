"""Evaluation entry points (`python -m evaluation.<name> ...`); the computation lives in `rpt_trl.evaluation`."""
