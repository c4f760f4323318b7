"""The `rpt-trl` command line."""

import argparse
import logging


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rpt-trl", description="Reinforcement Pre-Training with TRL.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="Run the offline demo on a real small model (CPU, about 9 minutes).")
    demo.add_argument("--output-dir", default="rpt-demo", help="Where to write report.md, results.json, rewards.png.")
    demo.add_argument(
        "--model", default=None, help="Hub id or local path; defaults to the embedded Gemma 3 270M (offline)."
    )
    demo.add_argument("--train-steps", type=int, default=12, help="RPT steps on the real model.")
    demo.add_argument("--eval-positions", type=int, default=24, help="Held-out positions to evaluate.")
    demo.add_argument("--learning-rate", type=float, default=1e-6, help="The paper's 1e-6 by default.")
    demo.add_argument("--seed", type=int, default=0)

    from .evaluation.commands import add_evaluate_commands

    add_evaluate_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from .demo import run_demo

        run_demo(
            args.output_dir,
            model_name=args.model,
            train_steps=args.train_steps,
            eval_positions=args.eval_positions,
            learning_rate=args.learning_rate,
            seed=args.seed,
        )
    elif args.command == "evaluate":
        from .evaluation.commands import run_evaluate_command

        run_evaluate_command(args)


if __name__ == "__main__":
    main()
