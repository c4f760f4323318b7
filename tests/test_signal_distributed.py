"""The signal measure and band sampling's tracker on 2 CPU processes (gloo), every group of 4 rollouts split 2 + 2
across them."""

import subprocess

import pytest
from conftest import ACCELERATE_TWO_PROCESSES, REPO_ROOT, free_port, read_rank_records, subprocess_env

from rpt_trl.trainer.signal import distinct_answers_per_group


DRIVER = REPO_ROOT / "tests" / "signal_distributed_driver.py"


def test_signal_is_measured_on_groups_split_across_two_processes(tmp_path):
    command = [*ACCELERATE_TWO_PROCESSES, "--main_process_port", str(free_port()), str(DRIVER), str(tmp_path)]
    env = subprocess_env(CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False)
    logs = result.stdout + result.stderr
    assert result.returncode == 0, logs[-4000:]
    first, second = read_rank_records(tmp_path, logs)
    # Each rank alone sees uniform rewards (all 1 or all 0); gathered, each group holds both: all groups are mixed.
    assert first["generated"] == second["generated"] == [1.0, 1.0]
    assert first["trained"] == second["trained"] == [1.0, 1.0]
    for step in range(2):
        # One group per step, its rollouts in process order: rank 0's two, then rank 1's two.
        gathered = first["predictions"][step] + second["predictions"][step]
        expected = distinct_answers_per_group(gathered, 4)
        assert first["distinct_answers"][step] == second["distinct_answers"][step] == expected
    # The band sampler drew the same positions on both ranks: each rank holds half of the same group.
    assert first["prompts"] == second["prompts"]
    assert all(len(set(prompts)) == 1 for prompts in first["prompts"])
    # Band sampling observed every group whole (pass rate 1/2) and holds the same state on both ranks.
    assert first["band_trials"] == second["band_trials"] and first["band_passes"] == second["band_passes"]
    assert sum(first["band_trials"]) > 0
    assert [2 * p for p in first["band_passes"]] == pytest.approx(first["band_trials"])
