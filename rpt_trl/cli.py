"""The `rpt-trl` command line."""

import argparse
import logging
import os
import shlex
import sys
from typing import Any

from .hub import HubAccessError


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
    _add_prepare_parser(commands)
    # `train` is parsed by TrlParser (rpt_trl.train.make_parser): `rpt-trl train --help` lists its options.
    commands.add_parser(
        "train", add_help=False, help="Train with RPT from a recipe YAML (--config) and flags, as recipes/rpt_14b.py."
    )

    from .evaluation.commands import add_evaluate_commands

    add_evaluate_commands(commands)
    return parser


def _add_prepare_parser(commands: Any) -> None:
    prepare = commands.add_parser(
        "prepare",
        help="Score a corpus with a proxy model and write entropy-filtered RPT train / eval splits (and push them).",
    )
    source = prepare.add_argument_group("source")
    source.add_argument(
        "--dataset",
        nargs="+",
        required=True,
        help="A Hub id, a saved dataset folder, or jsonl / json / parquet / txt files.",
    )
    source.add_argument(
        "--split", default=None, help="Split of a Hub or saved dataset (default: the only one, or train)."
    )
    source.add_argument("--text-column", nargs="+", default=["text"], help="Text column(s), joined with a blank line.")
    source.add_argument("--max-documents", type=int, default=None, help="Use only the first N documents.")
    scoring = prepare.add_argument_group("entropy scoring")
    scoring.add_argument("--proxy-model", required=True, help="Hub id or local path of the scoring model.")
    scoring.add_argument(
        "--tokenizer", default=None, help="The policy's tokenizer (positions are its tokens); default: the proxy's."
    )
    scoring.add_argument(
        "--top-k", type=int, default=16, help="Entropy over the top-k tokens, renormalised (paper: 16)."
    )
    scoring.add_argument("--batch-size", type=int, default=8, help="Windows per forward pass.")
    scoring.add_argument("--max-length", type=int, default=2048, help="Tokens per window; longer texts slide.")
    scoring.add_argument("--window-overlap", type=int, default=None, help="Minimum left context in sliding windows.")
    scoring.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    scoring.add_argument("--vllm", action="store_true", help="Score with vLLM's prompt_logprobs (GPU, needs vllm).")
    scoring.add_argument("--cache-dir", default=None, help="Entropy cache (default: the rpt-trl cache folder).")
    scoring.add_argument("--no-cache", action="store_true", help="Always rescore.")
    scoring.add_argument("--trust-remote-code", action="store_true", help="Allow the proxy's own modelling code.")
    selection = prepare.add_argument_group("positions and splits")
    selection.add_argument(
        "--min-entropy", type=float, default=0.5, help="Training keeps positions with at least this."
    )
    selection.add_argument(
        "--eval-size", type=int, default=200, help="Documents held out for evaluation (paper: 200)."
    )
    selection.add_argument("--eval-min-entropy", type=float, default=0.5, help="Evaluation keeps at least this.")
    selection.add_argument(
        "--difficulty-thresholds", nargs=3, type=float, default=[0.5, 1.0, 1.5], metavar=("EASY", "MEDIUM", "HARD"),
        help="Nested splits: entropy above each (paper: 0.5 1.0 1.5).",
    )  # fmt: skip
    selection.add_argument("--stride", type=int, default=1, help="Consider every n-th token only.")
    selection.add_argument("--template", default="v0", help="Prompt template name or a string with {context}.")
    selection.add_argument("--prompt-format", default="conversational", choices=["conversational", "text"])
    selection.add_argument("--min-context-tokens", type=int, default=16)
    selection.add_argument("--max-context-tokens", type=int, default=3840)
    selection.add_argument("--max-ground-truth-tokens", type=int, default=16)
    selection.add_argument("--seed", type=int, default=0, help="Seed of the held-out documents.")
    output = prepare.add_argument_group("output")
    output.add_argument("--output", required=True, help="Folder for the splits, README.md and prepare_info.json.")
    output.add_argument("--overwrite", action="store_true", help="Replace an existing --output folder.")
    output.add_argument("--push-to-hub", default=None, metavar="ORG/NAME", help="Also push to this Hub dataset repo.")
    output.add_argument("--private", action="store_true", help="Create the Hub repo private.")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        from .train import check_inputs, parse_args
        from .train import main as train

        script_args, training_args, model_args = parse_args(argv[1:])
        try:
            check_inputs(script_args, model_args)
        except FileNotFoundError as error:  # explained: no traceback
            raise SystemExit(f"rpt-trl train: error: {error}") from None
        train(script_args, training_args, model_args)
        return
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
    elif args.command == "prepare":
        try:
            prepare(args, argv)
        except (ValueError, TypeError, HubAccessError) as error:  # bad input: say what and where, no traceback
            raise SystemExit(f"rpt-trl prepare: error: {error}") from None
    elif args.command == "evaluate":
        from .evaluation.commands import run_evaluate_command

        try:
            run_evaluate_command(args)
        except (ValueError, TypeError, FileNotFoundError) as error:  # explained input errors: no traceback
            raise SystemExit(f"rpt-trl evaluate: error: {error}") from None


def prepare(args: argparse.Namespace, argv: list[str] | None = None) -> None:
    """`rpt-trl prepare`: every check first, then scoring, building, writing and pushing."""
    import torch
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from . import prepare as preparing
    from .embedded import default_cache_dir, resolve_model
    from .hub import check_hub_access, public_command, public_name

    preparing.check_output_dir(args.output, args.overwrite)
    if args.push_to_hub:
        check_hub_access()
    documents = preparing.load_documents(
        args.dataset[0] if len(args.dataset) == 1 else args.dataset, split=args.split, columns=args.text_column
    )
    if args.max_documents is not None:
        documents = documents.select(range(min(args.max_documents, len(documents))))
    # Names for the card: a Hub id as given, a local folder by its name only (no machine paths in a public card).
    proxy_name, tokenizer_name = (public_name(n) for n in (args.proxy_model, args.tokenizer or args.proxy_model))
    args.proxy_model = resolve_model(args.proxy_model)  # the embedded model's name works offline
    args.tokenizer = args.tokenizer and resolve_model(args.tokenizer)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.proxy_model)
    if not getattr(tokenizer, "is_fast", False):
        raise SystemExit(
            f"{args.tokenizer or args.proxy_model}: the tokenizer returns no character offsets; use a fast one."
        )
    proxy_tokenizer = AutoTokenizer.from_pretrained(args.proxy_model) if args.tokenizer else tokenizer
    names = ("easy", "medium", "hard")
    prepare_kwargs = {
        "text_column": args.text_column,
        "min_entropy": args.min_entropy,
        "eval_size": args.eval_size,
        "eval_min_entropy": args.eval_min_entropy,
        "seed": args.seed,
        "dataset_kwargs": {
            "positions": args.stride,
            "template": args.template,
            "prompt_format": args.prompt_format,
            "min_context_tokens": args.min_context_tokens,
            "max_context_tokens": args.max_context_tokens,
            "max_ground_truth_tokens": args.max_ground_truth_tokens,
        },
    }
    preparing.plan_splits(documents, tokenizer, **prepare_kwargs)  # before the proxy loads
    _warn_if_longer_than_the_proxy(args.proxy_model, args.max_length)

    state = PartialState(cpu=not torch.cuda.is_available())
    if args.vllm:
        from vllm import LLM

        proxy = LLM(
            args.proxy_model, dtype=args.dtype, max_logprobs=args.top_k, trust_remote_code=args.trust_remote_code
        )
    else:
        dtype = "auto" if args.dtype == "auto" else getattr(torch, args.dtype)
        proxy = AutoModelForCausalLM.from_pretrained(
            args.proxy_model, dtype=dtype, trust_remote_code=args.trust_remote_code, use_safetensors=True
        )
        proxy.to(state.device).eval()
    cache_dir = None if args.no_cache else (args.cache_dir or os.path.join(default_cache_dir(), "entropy"))
    dataset_dict, info = preparing.prepare_rpt_dataset(
        documents,
        tokenizer,
        proxy,
        proxy_tokenizer,
        difficulty_thresholds=dict(zip(names, args.difficulty_thresholds)),
        **prepare_kwargs,
        scorer_kwargs={
            "top_k": args.top_k,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "window_overlap": args.window_overlap,
            "cache_dir": cache_dir,
        },
    )
    if not state.is_main_process:
        return
    source_is_hub = len(args.dataset) == 1 and not os.path.exists(args.dataset[0])
    info.update(
        source=", ".join(public_name(source) for source in args.dataset),
        source_is_hub=source_is_hub,
        proxy_model=proxy_name,
        tokenizer=tokenizer_name,
        repo_id=args.push_to_hub,
        command=shlex.join(["rpt-trl", *public_command(sys.argv[1:] if argv is None else argv)]),
    )
    preparing.save_prepared_dataset(dataset_dict, info, args.output, overwrite=args.overwrite)
    for split, counts in info["splits"].items():
        logging.getLogger("rpt_trl").info(
            "%s: %d examples from %d documents, %s",
            split,
            counts["examples"],
            counts["documents"],
            counts["difficulty"],
        )
    if args.push_to_hub:
        preparing.push_prepared_dataset(dataset_dict, info, args.push_to_hub, private=args.private or None)


def _warn_if_longer_than_the_proxy(proxy_model: str, max_length: int) -> None:
    from transformers import AutoConfig

    context = getattr(AutoConfig.from_pretrained(proxy_model), "max_position_embeddings", None)
    if context is not None and max_length > context:
        logging.getLogger("rpt_trl").warning(
            "--max-length %d exceeds the proxy's context of %d tokens: its entropies past position %d are not "
            "trustworthy. Lower --max-length to %d or less.",
            max_length,
            context,
            context,
            context,
        )


if __name__ == "__main__":
    main()
