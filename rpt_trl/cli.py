"""The `rpt-trl` command line."""

import argparse
import logging
import shlex
import sys
from typing import Any

from .hub import HubAccessError


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rpt-trl", description="Reinforcement Pre-Training with TRL.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="Offline demo: RPT against the base model and next-token training on Gemma 3 270M (CPU, ~15 minutes).",
    )
    demo.add_argument("--output_dir", "--output-dir", default="rpt-demo",
                      help="Where to write report.md, results.json and the PNGs.")  # fmt: skip
    demo.add_argument(
        "--model", default=None, help="Hub id or local path; defaults to the embedded Gemma 3 270M (offline)."
    )
    demo.add_argument("--train_steps", "--train-steps", type=int, default=None, help="RPT optimizer steps.")
    demo.add_argument("--eval_positions", "--eval-positions", type=int, default=None,
                      help="Held-out targeted positions to evaluate.")  # fmt: skip
    demo.add_argument("--learning_rate", "--learning-rate", type=float, default=None,
                      help="For RPT and the next-token baseline (default 1e-5, full fine-tuning).")  # fmt: skip
    demo.add_argument("--use_vllm", "--use-vllm", action=argparse.BooleanOptionalAction, default=None,
                      help="vLLM for RPT's rollouts (default: when installed).")  # fmt: skip
    demo.add_argument("--seed", type=int, default=None)
    from .ablation import add_ablation_arguments

    add_ablation_arguments(
        commands.add_parser(
            "ablate",
            help="Train several RPT variants (rewards, budget, curriculum) on the same data and seed and compare them "
            "on the same held-out positions (tiny world: minutes on a CPU).",
            description="Train several RPT variants on the same data and seed, compare them on the same held-out "
            "positions. Example: rpt-trl ablate --world tiny --variants prefix_match first_token "
            "'budget1:thought_budget=1,thought_budget_penalty=step' --max_steps 8",
        )
    )
    # `prepare` and `train` are parsed by TrlParser from their dataclasses: `rpt-trl prepare --help` lists the flags.
    commands.add_parser(
        "prepare",
        add_help=False,
        help="Score a corpus with a proxy model and write entropy-filtered RPT train / eval splits (and push them).",
    )
    commands.add_parser(
        "train", add_help=False, help="Train with RPT from a recipe YAML (--config) and flags, as recipes/rpt_14b.py."
    )

    from .evaluation.commands import add_evaluate_commands

    add_evaluate_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        from .trainer.train import check_inputs, parse_args
        from .trainer.train import main as train

        script_args, training_args, model_args = parse_args(argv[1:])
        try:
            check_inputs(model_args)
        except FileNotFoundError as error:  # explained: no traceback
            raise SystemExit(f"rpt-trl train: error: {error}") from None
        train(script_args, training_args, model_args)
        return
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv[:1] == ["prepare"]:
        from .data.prepare import run_prepare
        from .hub import public_command

        try:
            arguments, settings = make_prepare_parser().parse_args_and_config(argv[1:])
            run_prepare(arguments, settings, command=shlex.join(["rpt-trl", *public_command(argv)]))
        except (ValueError, TypeError, HubAccessError) as error:  # bad input: say what and where, no traceback
            raise SystemExit(f"rpt-trl prepare: error: {error}") from None
        return
    args = make_parser().parse_args(argv)
    if args.command == "demo":
        from .demo.arithmetic_demo import demo_settings, run_demo

        try:
            settings = demo_settings(
                train_steps=args.train_steps, eval_positions=args.eval_positions,
                learning_rate=args.learning_rate, use_vllm=args.use_vllm, seed=args.seed,
            )  # fmt: skip
            run_demo(args.output_dir, model_name=args.model, settings=settings)
        except ValueError as error:
            raise SystemExit(f"rpt-trl demo: error: {error}") from None
    elif args.command == "ablate":
        from .ablation import main as ablate
        from .hub import public_command

        try:
            ablate(args, public_command(argv))
        except (ValueError, TypeError, FileNotFoundError) as error:  # explained input errors: no traceback
            raise SystemExit(f"rpt-trl ablate: error: {error}") from None
    elif args.command == "evaluate":
        from .evaluation.commands import run_evaluate_command

        try:
            run_evaluate_command(args)
        except (ValueError, TypeError, FileNotFoundError) as error:  # explained input errors: no traceback
            raise SystemExit(f"rpt-trl evaluate: error: {error}") from None


def make_prepare_parser() -> Any:
    """The parser of `rpt-trl prepare`: [`PrepareArguments`] and [`NextTokenSettings`], snake_case flags as TRL's."""
    from trl import TrlParser

    from .data.builder import NextTokenSettings
    from .data.prepare import PrepareArguments

    return TrlParser((PrepareArguments, NextTokenSettings), prog="rpt-trl prepare")


if __name__ == "__main__":
    main()
