"""DeepSpeed ZeRO-2 and ZeRO-3, for real, on 2 CPU processes (DeepSpeed's `cpu` accelerator over gloo).

Each test launches the tiny recipe with the project's own Accelerate config (`recipes/accelerate_configs/zero*.yaml`)
and only CPU overrides on the command line (`--mixed_precision no --num_processes 2`; the recipe sets `use_cpu`).
Run by the engine lane (`make test-engines`); skipped with a printed reason where DeepSpeed is not installed.
"""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, free_port, read_rank_records, require_engine, subprocess_env


require_engine("deepspeed")

from transformers import AutoModelForCausalLM  # noqa: E402


pytestmark = pytest.mark.deepspeed

DRIVER = REPO_ROOT / "tests" / "deepspeed_driver.py"
CONFIGS = REPO_ROOT / "recipes" / "accelerate_configs"
TIMEOUT_S = 900


def launch(out_dir: Path, stage: int, *driver_args: str) -> list[dict]:
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / f"zero{stage}.yaml"),
        "--mixed_precision", "no", "--num_processes", "2", "--main_process_port", str(free_port()),
        str(DRIVER), str(out_dir), "max_steps=3", *driver_args,
    ]  # fmt: skip
    result = subprocess.run(
        command, env=subprocess_env(CUDA_VISIBLE_DEVICES=""), cwd=out_dir, capture_output=True, text=True,
        timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    logs = result.stdout + result.stderr
    assert result.returncode == 0, logs[-6000:]
    records = read_rank_records(out_dir, logs)
    for rank, record in enumerate(records):
        assert record["rank"] == rank and record["world_size"] == 2
        assert record["distributed_type"] == "DistributedType.DEEPSPEED"
        assert record["backend"] == "gloo" and record["accelerator"] == "cpu"
        assert record["zero_stage"] == stage
        assert record["steps"] == 3
    assert records[0]["initial"] == records[1]["initial"]
    assert records[0]["final"] == records[1]["final"]  # both ranks end with the same (gathered) parameters
    assert records[0]["final"] != records[0]["initial"]  # and training moved them
    return records


def test_zero2_on_two_cpu_processes(tmp_path):
    records = launch(tmp_path, 2, "dynamic_sampling=false")
    for record in records:
        assert record["optimizer"] == "DeepSpeedZeroOptimizer"  # optimizer states and gradients partitioned
        assert record["partitioned_parameters"] == 0  # ZeRO-2 keeps whole parameters on every rank


def test_zero3_partitions_parameters_samples_dynamically_and_saves_a_loadable_model(tmp_path):
    # Groups of 2 rollouts from a policy right 1 time in 4 are uniform 5 times in 8: refills are all but certain.
    records = launch(tmp_path, 3, "dynamic_sampling_start_step=0", "num_generations=2")
    for record in records:
        assert record["optimizer"] == "DeepSpeedZeroOptimizer_Stage3"
        assert record["partitioned_parameters"] > 0
        # each rank holds about half of every parameter: the stage really partitions
        assert record["partition_elements"] < 0.6 * record["full_elements"]
        assert len(record["refill_rounds"]) == 3
    assert records[0]["refill_rounds"] == records[1]["refill_rounds"]  # refills run in step on both ranks
    assert sum(records[0]["refill_rounds"]) > 0
    # The model saved under ZeRO-3 is a normal checkpoint: it loads alone and holds the trained parameters.
    from deepspeed_driver import gathered_digest

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "final", use_safetensors=True)
    assert gathered_digest(reloaded) == records[0]["final"]


@pytest.mark.vllm
def test_zero3_with_colocated_vllm_the_14b_recipes_combination(tmp_path):
    require_engine("vllm")
    records = launch(tmp_path, 3, "--vllm", "dynamic_sampling=false")
    for record in records:
        assert record["used_vllm"]
        assert record["optimizer"] == "DeepSpeedZeroOptimizer_Stage3"
        assert all(0.0 <= reward <= 1.0 for reward in record["rewards"]) and len(record["rewards"]) == 3
