"""`rpt-trl demo`: RPT against the base model and next-token training on Gemma 3 270M, offline."""

import argparse
import logging
from typing import Any


def make_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `rpt-trl demo`."""
    parser = subparsers.add_parser(
        "demo",
        help="Offline demo: RPT and RPT + next-token loss against the base model and next-token training on Gemma 3 270M (CPU).",
    )
    parser.add_argument("--output_dir", "--output-dir", default="rpt-demo",
                        help="Where to write report.md, results.json and the PNGs.")  # fmt: skip
    parser.add_argument(
        "--model", default=None, help="Hub id or local path; defaults to the embedded Gemma 3 270M (offline)."
    )
    parser.add_argument("--train_steps", "--train-steps", type=int, default=None, help="RPT optimizer steps.")
    parser.add_argument("--eval_positions", "--eval-positions", type=int, default=None,
                        help="Held-out targeted positions to evaluate.")  # fmt: skip
    parser.add_argument("--all_positions", "--all-positions", type=int, default=None,
                        help="Also score a seeded sample of this many held-out positions of every kind (default 0: "
                             "the targeted positions only).")  # fmt: skip
    parser.add_argument("--learning_rate", "--learning-rate", type=float, default=None,
                        help="For RPT and the next-token baseline (default 1e-6, full fine-tuning).")  # fmt: skip
    parser.add_argument("--use_vllm", "--use-vllm", action=argparse.BooleanOptionalAction, default=None,
                        help="vLLM for RPT's rollouts (default: when installed).")  # fmt: skip
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 mixed precision for training and evaluation, weights in float32 (default: where "
                             "the CPU multiplies bf16 natively, AVX512-BF16 or AMX).")  # fmt: skip
    parser.add_argument("--seed", type=int, default=None)
    return parser


def main(args: argparse.Namespace) -> None:
    """Run `rpt-trl demo` from parsed flags."""
    from ..experiments.arithmetic_demo import demo_settings, run_demo

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = demo_settings(
            train_steps=args.train_steps, eval_positions=args.eval_positions, all_positions=args.all_positions,
            learning_rate=args.learning_rate, use_vllm=args.use_vllm, bf16=args.bf16, seed=args.seed,
        )  # fmt: skip
        run_demo(args.output_dir, model_name=args.model, settings=settings)
    except ValueError as error:
        raise SystemExit(f"rpt-trl demo: error: {error}") from None
