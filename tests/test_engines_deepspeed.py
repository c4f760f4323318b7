"""DeepSpeed ZeRO-2 and ZeRO-3, for real, on 2 CPU processes (DeepSpeed's `cpu` accelerator over gloo).

Each test launches the tiny recipe with the project's own Accelerate config (`recipes/accelerate_configs/zero*.yaml`)
and only CPU overrides on the command line (`--mixed_precision no --num_processes 2`; the recipe sets `use_cpu`).
ZeRO-3 runs with and without `shared_prefix_loss`, and the two runs are compared.
Run by the engine lane (`make test-engines`); skipped with a printed reason where DeepSpeed is not installed.
"""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, free_port, read_rank_records, require_engine, subprocess_env


require_engine("deepspeed")

import torch  # noqa: E402
import yaml  # noqa: E402
from deepspeed_driver import RECIPE, gathered_digest  # noqa: E402
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


# Groups of 2 rollouts from a policy right 1 time in 4 are uniform 5 times in 8: refills are all but certain. Each step
# starts from the same seed (see deepspeed_driver.py), so that runs with and without the shared prefix generate alike.
ZERO3_SETTINGS = (
    "dynamic_sampling_start_step=0",
    "num_generations=2",
    "gradient_checkpointing=true",
    "--seed-each-step",
)


@pytest.fixture(scope="module")
def zero3_run(tmp_path_factory):
    """`zero3_run(shared_prefix_loss)`: the output folder and rank records of a ZeRO-3 run, launched once a module."""
    runs = {}

    def run(shared_prefix_loss: bool) -> tuple[Path, list[dict]]:
        if shared_prefix_loss not in runs:
            out_dir = tmp_path_factory.mktemp(f"zero3_shared_prefix_{shared_prefix_loss}")
            flag = f"shared_prefix_loss={str(shared_prefix_loss).lower()}"
            runs[shared_prefix_loss] = out_dir, launch(out_dir, 3, *ZERO3_SETTINGS, flag)
        return runs[shared_prefix_loss]

    return run


@pytest.mark.parametrize("shared_prefix_loss", [False, True], ids=["", "shared_prefix"])
def test_zero3_partitions_parameters_samples_dynamically_and_saves_a_loadable_model(zero3_run, shared_prefix_loss):
    out_dir, records = zero3_run(shared_prefix_loss)
    for record in records:
        assert record["optimizer"] == "DeepSpeedZeroOptimizer_Stage3"
        assert record["partitioned_parameters"] > 0
        # each rank holds about half of every parameter: the stage really partitions
        assert record["partition_elements"] < 0.6 * record["full_elements"]
        assert len(record["refill_rounds"]) == 3
        # Every step's loss ran on the shared prefix when it is on (one scoring batch a step), never when it is off.
        assert record["shared_prefix_scorings"] == (3 if shared_prefix_loss else 0)
    assert records[0]["refill_rounds"] == records[1]["refill_rounds"]  # refills run in step on both ranks
    assert sum(records[0]["refill_rounds"]) > 0
    # The model saved under ZeRO-3 is a normal checkpoint: it loads alone and holds the trained parameters.
    reloaded = AutoModelForCausalLM.from_pretrained(out_dir / "final", use_safetensors=True)
    assert gathered_digest(reloaded) == records[0]["final"]


def test_zero3_shared_prefix_loss_trains_as_the_unshared_loss(zero3_run):
    """Under ZeRO-3 with gradient checkpointing, the same seed and data: the same rollouts and rewards, the same loss
    and gradient norm at every step, and the same trained parameters, with the shared prefix as without."""
    shared_dir, shared = zero3_run(True)
    unshared_dir, unshared = zero3_run(False)
    for with_prefix, without in zip(shared, unshared):
        assert with_prefix["rewards"] == without["rewards"]  # the same rollouts, from the same weights
        assert with_prefix["refill_rounds"] == without["refill_rounds"]
        assert with_prefix["grad_norms"] == pytest.approx(without["grad_norms"], rel=1e-5)
        assert with_prefix["losses"] == pytest.approx(without["losses"], rel=1e-4, abs=1e-6)
        assert min(without["grad_norms"]) > 0.1  # the steps learned something to compare
    trained, reference = (
        AutoModelForCausalLM.from_pretrained(folder / "final", use_safetensors=True).state_dict()
        for folder in (shared_dir, unshared_dir)
    )
    learning_rate = yaml.safe_load(RECIPE.read_text())["learning_rate"]
    assert without["largest_change"] > learning_rate  # training moved the parameters by more than one AdamW step
    for name, parameter in reference.items():
        # AdamW divides by the gradient's running scale, which turns float rounding in a near-zero gradient into a
        # visible difference in that element's step; a tenth of a step bounds it.
        torch.testing.assert_close(trained[name], parameter, rtol=0, atol=learning_rate / 10, msg=name)


@pytest.mark.vllm
@pytest.mark.parametrize("shared_prefix_loss", [False, True], ids=["", "shared_prefix"])
def test_zero3_with_colocated_vllm_the_14b_recipes_combination(tmp_path, shared_prefix_loss):
    require_engine("vllm")
    flag = f"shared_prefix_loss={str(shared_prefix_loss).lower()}"
    records = launch(tmp_path, 3, "--vllm", "dynamic_sampling=false", flag)
    for record in records:
        assert record["used_vllm"]
        assert record["optimizer"] == "DeepSpeedZeroOptimizer_Stage3"
        assert all(0.0 <= reward <= 1.0 for reward in record["rewards"]) and len(record["rewards"]) == 3
        # The trainer scores the tokens vLLM sampled as vLLM does (float32 on both sides).
        assert len(record["sampling_logp_differences"]) == 3 and max(record["sampling_logp_differences"]) < 0.1
        # With the shared prefix on, it scored each step's loss and the old policy (for TRL's importance sampling).
        assert record["shared_prefix_scorings"] == (2 * record["steps"] if shared_prefix_loss else 0)
