"""Time of an RPT step whose batch has no signal (every reward equal), with and without skipping its loss forward and
backward, alternated over rounds, on a tiny model built locally (or a given checkpoint).

The step time is TRL's `step_time` (generation included); the rest is the step time less the time spent in
`_generate_and_score_completions` (generation, rewards, advantages) during that step.

Usage: python benchmarks/skip_empty_batch.py [--rounds 3] [--steps 3] [--completion-tokens 32] [--model PATH]
"""

import argparse
import statistics
import tempfile
import time


def constant_reward(completions, **kwargs):
    return [1.0] * len(completions)


def run(args, tokenizer, dataset, model_factory, skip: bool) -> list[dict]:
    from rpt_trl import RPTConfig, RPTTrainer

    with tempfile.TemporaryDirectory() as output_dir:
        config = RPTConfig(
            output_dir=output_dir, use_cpu=True, bf16=False, per_device_train_batch_size=8, num_generations=8,
            max_completion_length=args.completion_tokens, max_steps=args.steps, logging_steps=1, save_strategy="no",
            report_to="none", disable_tqdm=True, dynamic_sampling=False,
        )  # fmt: skip
        trainer = RPTTrainer(
            model=model_factory(), reward_funcs=[constant_reward], args=config, train_dataset=dataset,
            processing_class=tokenizer,
        )  # fmt: skip
        trainer.skip_batches_without_signal = skip
        generation_times = time_generation(trainer)
        trainer.train()
    steps = [entry for entry in trainer.state.log_history if "step_time" in entry]
    return [{**entry, "generation": seconds} for entry, seconds in zip(steps, generation_times)][1:]  # warm-up


def time_generation(trainer) -> list[float]:
    """The seconds of each call to the trainer's generation and scoring, one per step here (no refills)."""
    generate, seconds = trainer._generate_and_score_completions, []

    def timed(*args, **kwargs):
        started = time.perf_counter()
        output = generate(*args, **kwargs)
        seconds.append(time.perf_counter() - started)
        return output

    trainer._generate_and_score_completions = timed
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a local checkpoint; default: a tiny Qwen2 built here")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--completion_tokens", "--completion-tokens", type=int, default=32)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rpt_trl.experiments.arithmetic_demo import demo_splits
    from rpt_trl.experiments.tiny import animal_corpus, last_word_dataset, make_tiny_model, make_tiny_tokenizer

    if args.model:
        tokenizer = AutoTokenizer.from_pretrained(args.model, padding_side="left")
        dataset = demo_splits(tokenizer, eval_positions=8).train

        def model_factory():
            return AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, use_safetensors=True)
    else:
        tokenizer = make_tiny_tokenizer()
        dataset = last_word_dataset(tokenizer, animal_corpus())

        def model_factory():
            return make_tiny_model(tokenizer, hidden_size=256, num_layers=4)

    times: dict[bool, list[float]] = {True: [], False: []}
    loss_times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.rounds):
        for skip in (False, True):
            for entry in run(args, tokenizer, dataset, model_factory, skip):
                times[skip].append(entry["step_time"])
                loss_times[skip].append(entry["step_time"] - entry["generation"])
    for skip in (False, True):
        print(
            f"skip={skip}: step {statistics.median(times[skip]):.3f} s, "
            f"rest (loss, backward) {statistics.median(loss_times[skip]):.3f} s (median of {len(times[skip])})"
        )
    for name, values in (("step", times), ("rest", loss_times)):
        print(f"{name} time ratio skip/full: {statistics.median(values[True]) / statistics.median(values[False]):.3f}")


if __name__ == "__main__":
    main()
