"""The follow-on RLVR recipe (`recipes/rlvr.py`, paper Table 2) runs on a tiny world with math-verify installed.

Run by the engine lane (`make test-engines`); skipped with a printed reason where math-verify is not installed.
"""

import json
import subprocess
import sys

from conftest import CHAT_TEMPLATE, REPO_ROOT, require_engine, subprocess_env


require_engine("math_verify")

from trl.rewards import reasoning_accuracy_reward  # noqa: E402

from rpt_trl.experiments.tiny import make_byte_level_tokenizer, make_tiny_model  # noqa: E402


RLVR_RECIPE = REPO_ROOT / "recipes" / "rlvr.py"
RLVR_CONFIG = REPO_ROOT / "recipes" / "DeepSeek-R1-Distill-Qwen-14B" / "rlvr" / "config_skywork.yaml"
REFERENCE = "DeepSeek-R1-Distill-Qwen-32B"


def test_math_verify_scores_equivalent_answers():
    completions = [[{"role": "assistant", "content": f"<think>half</think> The answer is $\\boxed{{{answer}}}$."}]
                   for answer in ("0.5", "\\frac{1}{2}", "\\frac{1}{3}")]  # fmt: skip
    rewards = reasoning_accuracy_reward(completions, solution=["\\frac{1}{2}"] * 3)
    assert rewards == [1.0, 1.0, 0.0]


def test_rlvr_recipe_trains_on_a_tiny_skywork_style_world(tmp_path):
    questions = [(f"What is {a}/{b}?", f"\\frac{{{a}}}{{{b}}}", solved) for a, b, solved in
                 [(1, 2, 0), (1, 3, 1), (2, 3, 0), (3, 4, 9), (1, 5, 0), (2, 5, 0), (3, 5, 1), (4, 5, 0)]]  # fmt: skip
    data = tmp_path / "skywork"
    data.mkdir()
    with open(data / "train.jsonl", "w") as handle:
        for question, truth, solved in questions:
            row = {
                "prompt": [{"role": "user", "content": question}],
                "reward_model": {"ground_truth": json.dumps([truth])},
                "extra_info": {"model_difficulty": {REFERENCE: solved}},
            }
            handle.write(json.dumps(row) + "\n")
    corpus = [q for q, _, _ in questions] + ["<think>so</think> $\\boxed{\\frac{1}{2}}$"] * 4
    tokenizer = make_byte_level_tokenizer(corpus, vocab_size=320, extra_tokens=["<think>", "</think>"])
    tokenizer.chat_template = CHAT_TEMPLATE
    model = make_tiny_model(tokenizer)
    model.save_pretrained(tmp_path / "policy")
    tokenizer.save_pretrained(tmp_path / "policy")

    command = [
        sys.executable, str(RLVR_RECIPE), "--config", str(RLVR_CONFIG),
        "--model_name_or_path", str(tmp_path / "policy"), "--dataset_name", str(data), "--dataset_train_split", "train",
        "--max_reference_solved", "1", "--num_train", "4", "--num_test", "2", "--output_dir", str(tmp_path / "run"),
        "--use_cpu", "true", "--bf16", "false", "--use_vllm", "false", "--gradient_checkpointing", "false",
        "--max_steps", "2", "--per_device_train_batch_size", "4", "--num_generations", "4",
        "--gradient_accumulation_steps", "1", "--max_completion_length", "16", "--logging_steps", "1",
        "--save_strategy", "no", "--report_to", "none", "--dtype", "float32", "--attn_implementation", "sdpa", "--push_to_hub", "false",
    ]  # fmt: skip
    result = subprocess.run(
        command, env=subprocess_env(CUDA_VISIBLE_DEVICES=""), cwd=tmp_path, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert (tmp_path / "run" / "model.safetensors").exists()
    # The math-verify reward scored both steps (the Trainer prints one metrics line per logging step).
    assert (result.stdout + result.stderr).count("'rewards/reasoning_accuracy_reward/mean'") == 2
