"""`conditional_dense` with a group split across 2 processes (torchrun with gloo on CPU, started by accelerate)."""

import subprocess
import sys

import pytest
from conftest import ACCELERATE_TWO_PROCESSES, REPO_ROOT, free_port, read_rank_records, subprocess_env


sys.path.insert(0, str(REPO_ROOT / "tests"))
import conditional_dense_driver as driver  # noqa: E402

from rpt_trl.experiments.tiny import make_tiny_model, make_tiny_tokenizer  # noqa: E402
from rpt_trl.rewards.model_rewards import ConditionalDenseReward, DenseReward  # noqa: E402


def test_split_group_is_zeroed_only_when_no_process_holds_a_correct_rollout(tmp_path):
    command = [
        *ACCELERATE_TWO_PROCESSES, "--main_process_port", str(free_port()),
        str(REPO_ROOT / "tests" / "conditional_dense_driver.py"), str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(
        command,
        env=subprocess_env(CUDA_VISIBLE_DEVICES=""),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    logs = result.stdout + result.stderr
    assert result.returncode == 0, logs[-4000:]
    records = read_rank_records(tmp_path, logs)
    assert [r["world_size"] for r in records] == [2, 2]
    rewards = records[0]["rewards"] + records[1]["rewards"]

    tokenizer = make_tiny_tokenizer()
    model = make_tiny_model(tokenizer, seed=3).eval()
    dense = DenseReward(model, tokenizer)(**driver.batch())
    single = ConditionalDenseReward(model, tokenizer, num_generations=driver.NUM_GENERATIONS)(**driver.batch())
    assert rewards == pytest.approx(single, rel=1e-6)
    assert rewards[:4] == [0.0] * 4  # no right rollout in group 0
    # Group 1 is split: its right rollout is on rank 1, so rank 0's rows 4 and 5 keep their dense reward.
    assert rewards[4:8] == pytest.approx(dense[4:8], rel=1e-6) and 0 < rewards[4] < 1 and rewards[7] == 1.0
    assert rewards[8:] == pytest.approx(dense[8:], rel=1e-6) and rewards[8] == 1.0
    assert records[0]["groups_with_correct"] == records[1]["groups_with_correct"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("reward", ["conditional_dense", "information_gain"])
def test_two_process_training_with_split_groups(tmp_path, reward):
    # 2 rollouts per process and groups of 4: every group is split across the two processes.
    command = [
        *ACCELERATE_TWO_PROCESSES, "--main_process_port", str(free_port()),
        str(REPO_ROOT / "tests" / "distributed_driver.py"), str(tmp_path),
        "--config", str(REPO_ROOT / "recipes" / "tiny" / "rpt" / "config_cpu.yaml"),
        "--output_dir", str(tmp_path / "run"), "--max_steps", "2", "--reward", reward,
        "--per_device_train_batch_size", "2", "--num_generations", "4", "--dynamic_sampling", "false",
    ]  # fmt: skip
    result = subprocess.run(
        command,
        env=subprocess_env(CUDA_VISIBLE_DEVICES=""),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    logs = result.stdout + result.stderr
    assert result.returncode == 0, logs[-4000:]
    records = read_rank_records(tmp_path, logs)
    assert [r["steps"] for r in records] == [2, 2]
    assert records[0]["final"] == records[1]["final"]
