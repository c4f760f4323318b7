"""End to end on a real model, offline: an OmniMATH-format file -> `rpt-trl prepare` -> RPT steps on its train split.

    python benchmarks/prepare_omnimath_style.py [--documents 40] [--eval-size 8] [--train-steps 2] [--workdir DIR]

Writes a jsonl in OmniMATH's format (domain, difficulty, problem, solution, answer, source) whose solutions are
generated LaTeX-heavy worked solutions (OmniMATH itself needs the network), runs `rpt-trl prepare` with the
embedded Gemma 3 270M as proxy and tokenizer, then trains `RPTTrainer` for a few steps on the prepared `train` split
as it is. Prints the split counts, the wall time of each stage and the logged rewards.
"""

import argparse
import json
import os
import tempfile
import time

from brace_coverage import latex_corpus

from rpt_trl.commands.flags import DeprecatedFlag


def write_omnimath_style(path: str, num_documents: int) -> None:
    with open(path, "w") as file:
        for k, document in enumerate(latex_corpus(num_documents, seed=11)):
            problem, solution = document.split("\n", 1)
            row = {
                "domain": ["Mathematics -> Algebra -> Other"],
                "difficulty": 2.0 + k % 5,
                "problem": problem,
                "solution": solution,
                "answer": solution.rsplit("\\boxed{", 1)[-1].split("}")[0],
                "source": "generated",
            }
            file.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=40)
    parser.add_argument("--eval_size", "--eval-size", type=int, default=8)
    parser.add_argument("--min_entropy", "--min-entropy", type=float, default=1.0)
    parser.add_argument("--train_steps", "--train-steps", type=int, default=2)
    parser.add_argument(
        "--output_dir", "--output-dir", default=None, help="Working folder (default: a new temporary one)."
    )
    parser.add_argument("--workdir", dest="output_dir", action=DeprecatedFlag, replacement="--output_dir")
    args = parser.parse_args()

    from datasets import load_from_disk

    from rpt_trl import RPTConfig, RPTTrainer
    from rpt_trl.cli import main as cli
    from rpt_trl.models import EMBEDDED_MODEL_ID, ensure_embedded_model

    workdir = args.output_dir or tempfile.mkdtemp(prefix="rpt-prepare-")
    os.makedirs(workdir, exist_ok=True)
    corpus = os.path.join(workdir, "omnimath-style.jsonl")
    output = os.path.join(workdir, "rpt-omnimath-style")
    write_omnimath_style(corpus, args.documents)
    ensure_embedded_model()

    start = time.perf_counter()
    cli(
        [
            "prepare", "--dataset", corpus, "--text-column", "problem", "solution", "--proxy-model", EMBEDDED_MODEL_ID,
            "--eval-size", str(args.eval_size), "--min-entropy", str(args.min_entropy), "--prompt-format", "text",
            "--template", "few_shot", "--no-cache", "--output", output, "--overwrite",
        ]
    )  # fmt: skip
    prepare_seconds = time.perf_counter() - start
    info = json.load(open(os.path.join(output, "prepare_info.json")))
    for split, counts in info["splits"].items():
        print(f"{split}: {counts['documents']} documents -> {counts['examples']} examples; difficulty {counts['difficulty']}; "
              f"skipped {counts['stats']}")  # fmt: skip
    print(f"prepare: {prepare_seconds:.1f} s")

    train = load_from_disk(output)["train"].shuffle(seed=0)
    config = RPTConfig(
        output_dir=os.path.join(workdir, "rpt-gemma"), use_cpu=True, bf16=False, max_steps=args.train_steps,
        per_device_train_batch_size=4, num_generations=4, max_completion_length=24, logging_steps=1,
        save_strategy="no", report_to="none", prompt_format="text", stop_after_answer=True,
    )  # fmt: skip
    start = time.perf_counter()
    trainer = RPTTrainer(model=str(ensure_embedded_model()), args=config, train_dataset=train)
    trainer.train()
    train_seconds = time.perf_counter() - start
    rewards = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    answered = [entry["rpt/answer_rate"] for entry in trainer.state.log_history if "rpt/answer_rate" in entry]
    print(f"RPTTrainer on the prepared train split: {args.train_steps} steps in {train_seconds:.1f} s; "
          f"reward per step {rewards}; answer rate per step {answered}")  # fmt: skip


if __name__ == "__main__":
    main()
