"""Prepare the offline evaluation demo: evaluation data, source documents, and a series of RPT checkpoints.

Two worlds, both offline on a CPU:

- `--world gemma` (default): the embedded Gemma 3 270M base model and the generated arithmetic corpus of
  `rpt_trl.experiments.arithmetic_demo` (its template and its word positions). The first 24 documents are held out for evaluation.
- `--world tiny`: the warm-started tiny policy of the learning test, whose reward rises within 16 steps; its
  checkpoints give a scaling curve with something to fit.

Writes to `--output-dir`: `documents.jsonl` (the source documents, for standard mode), `eval/` (the next-token
evaluation dataset, with `entropy` and `difficulty` columns from the base model so that the Easy / Medium / Hard splits exist),
`base/` for the tiny world (the warm-started model), `rpt/checkpoint-<step>/` every `--save-steps` steps, and a
small generated multiple-choice file in MMLU-Pro's format (`mmlu_pro_demo.jsonl`) with a few-shot template for a
base model (`mc_template.txt`).

The entropy here is the base model's own top-16 entropy (renormalised), computed for the demo only; the paper takes
it from a larger proxy model.

    python -m evaluation.prepare_demo --output-dir eval-demo --train-steps 8 --save-steps 2
"""

import argparse
import json
import math
import time
from pathlib import Path


# A few-shot multiple-choice template for a small base model (the general template in rpt_trl is zero-shot).
DEMO_MULTIPLE_CHOICE_TEMPLATE = (
    "Answer the multiple choice question. Think in a few words, then give the letter of the correct option in "
    "\\boxed{}.\n\n"
    "Question: Ana has 3 apples and gets 4 more. How many apples does Ana have?\n"
    "Options:\nA. 6\nB. 7\nC. 8\nD. 12\n"
    "<think>3 + 4 = 7, option B.</think> \\boxed{B}\n\n"
    "Question: Which word names an animal?\n"
    "Options:\nA. table\nB. river\nC. horse\nD. green\n"
    "<think>A horse is an animal, option C.</think> \\boxed{C}\n\n"
    "Question: {question}\n"
    "Options:\n{options}\n"
)

_ANIMALS = ["cat", "dog", "cow", "sheep", "horse", "goat", "duck", "mouse", "lion", "bear"]
_THINGS = ["chair", "spoon", "window", "paper", "bottle", "pencil", "blanket", "ladder", "basket", "hammer"]


def multiple_choice_questions(num_questions: int = 20, seed: int = 0) -> list[dict]:
    """Questions in MMLU-Pro's format (10 options, `answer` letter, `answer_index`, `category`), generated here."""
    import random

    rng = random.Random(seed)
    questions = []
    for index in range(num_questions):
        if index % 2 == 0:
            a, b = rng.randint(2, 30), rng.randint(2, 30)
            options = rng.sample([n for n in range(2, 70) if n != a + b], 9) + [a + b]
            question, category = f"Tom has {a} coins and finds {b} more. How many coins does Tom have?", "math"
            correct = a + b
        else:
            animal = rng.choice(_ANIMALS)
            options = rng.sample(_THINGS, 9) + [animal]
            question, category, correct = "Which word names an animal?", "words", animal
        rng.shuffle(options)
        answer_index = options.index(correct)
        questions.append({
            "question_id": index, "question": question, "options": [str(o) for o in options],
            "answer": "ABCDEFGHIJ"[answer_index], "answer_index": answer_index, "category": category,
        })  # fmt: skip
    return questions


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", "--output-dir", default="eval-demo")
    parser.add_argument("--world", choices=["gemma", "tiny"], default="gemma")
    parser.add_argument("--train_steps", "--train-steps", type=int, default=8)
    parser.add_argument("--save_steps", "--save-steps", type=int, default=2)
    parser.add_argument(
        "--eval_positions", "--eval-positions", type=int, default=None, help="Default: 24 (gemma), 16 (tiny)."
    )
    parser.add_argument(
        "--learning_rate", "--learning-rate", type=float, default=None, help="Default: 1e-6 (gemma), 2e-3 (tiny)."
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from rpt_trl import DIFFICULTY_THRESHOLDS, RPTConfig, RPTTrainer, compute_token_entropy, difficulty_labels
    from rpt_trl.experiments.arithmetic_demo import demo_splits
    from rpt_trl.experiments.presets import QUICK_EVAL_POSITIONS
    from rpt_trl.models import EMBEDDED_MODEL_ID, load_model, load_tokenizer

    started = time.perf_counter()
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    if args.world == "gemma":
        tokenizer, _, path = load_tokenizer(EMBEDDED_MODEL_ID)
        model = load_model(path, device="cpu", dtype="float32")
        splits = demo_splits(tokenizer, seed=args.seed, eval_positions=args.eval_positions or QUICK_EVAL_POSITIONS)
        documents, train_set, eval_set = splits.corpus, splits.train, splits.eval
        config = dict(per_device_train_batch_size=4, num_generations=4, max_completion_length=24,
                      learning_rate=args.learning_rate or 1e-6, stop_after_answer=True)  # fmt: skip
    else:
        from rpt_trl.experiments.tiny import ANIMAL_SOUNDS, TINY_TRAINING, animal_corpus, warm_started_world

        model, tokenizer, dataset, _ = warm_started_world(seed=args.seed)
        documents = animal_corpus(
            sounds=dict.fromkeys(ANIMAL_SOUNDS, " meow")
        )  # the documents the world was built from
        split = dataset.train_test_split(test_size=args.eval_positions or 16, seed=args.seed)
        train_set, eval_set = split["train"], split["test"]
        model.save_pretrained(output / "base")
        tokenizer.save_pretrained(output / "base")
        config = {**TINY_TRAINING, **({"learning_rate": args.learning_rate} if args.learning_rate else {})}

    (output / "mmlu_pro_demo.jsonl").write_text(
        "".join(json.dumps(q) + "\n" for q in multiple_choice_questions(seed=args.seed))
    )
    (output / "mc_template.txt").write_text(DEMO_MULTIPLE_CHOICE_TEMPLATE)
    (output / "documents.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in documents))
    model.eval()
    # The base model's own top-16 entropy stands in for a proxy model's (rpt-trl prepare does it with a real one).
    scored_ids = sorted(set(eval_set["document_id"]))
    scored = compute_token_entropy([documents[i] for i in scored_ids], model, tokenizer, show_progress=False)
    by_document = dict(zip(scored_ids, scored))
    entropy = [by_document[row["document_id"]][row["position"]] for row in eval_set]
    eval_set = eval_set.add_column("entropy", entropy).add_column(
        "difficulty", [difficulty_labels(e) for e in entropy]
    )
    eval_set.save_to_disk(str(output / "eval"))
    print(f"{len(train_set)} training and {len(eval_set)} evaluation positions; entropy above "
          f"{' / '.join(map(str, DIFFICULTY_THRESHOLDS.values()))}: "
          f"{[sum(e > t for e in entropy) for t in DIFFICULTY_THRESHOLDS.values()]}", flush=True)  # fmt: skip

    rpt_args = RPTConfig(
        output_dir=str(output / "rpt"), use_cpu=True, bf16=False, seed=args.seed, max_steps=args.train_steps,
        prompt_format="text", gradient_checkpointing=False, logging_steps=1, save_strategy="steps",
        save_steps=args.save_steps, save_only_model=True, report_to="none", **config,
    )  # fmt: skip
    trainer = RPTTrainer(model=model, args=rpt_args, train_dataset=train_set, processing_class=tokenizer)
    trainer.train()
    rewards = [round(e["reward"], 3) for e in trainer.state.log_history if "reward" in e and "step" in e]
    print(f"Reward per step: {rewards}")
    print(f"Checkpoints: {sorted(p.name for p in (output / 'rpt').glob('checkpoint-*'))}")
    print(f"Wall time: {time.perf_counter() - started:.1f} s ({math.ceil(args.train_steps)} RPT steps)")


if __name__ == "__main__":
    main()
