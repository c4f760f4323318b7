"""Real distributed runs of the tiny recipe on CPU (torchrun with the gloo backend, started by `accelerate launch`).

Each rank runs `recipes/rpt_14b.py`'s `main` with `recipes/tiny/rpt/config_cpu.yaml` and writes a digest of its
parameters; after a few steps every rank must hold the same parameters, different from the starting ones.
"""

import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import ACCELERATE_TWO_PROCESSES, REPO_ROOT, free_port, read_rank_records, subprocess_env


DRIVER = REPO_ROOT / "tests" / "distributed_driver.py"
TINY_RECIPE = REPO_ROOT / "recipes" / "tiny" / "rpt" / "config_cpu.yaml"
TIMEOUT_S = 240


def launch_command(out_dir: Path, *launch_args: str) -> list[str]:
    return [
        *ACCELERATE_TWO_PROCESSES, *launch_args,
        str(DRIVER), str(out_dir), "--config", str(TINY_RECIPE), "--output_dir", str(out_dir / "run"),
        "--max_steps", "3", "--dynamic_sampling_start_step", "0",
        # Groups of 2 rollouts from a policy right 1 time in 4 are uniform 5 times in 8: refills are all but certain.
        "--num_generations", "2",
    ]  # fmt: skip


def environment() -> dict[str, str]:
    return subprocess_env(CUDA_VISIBLE_DEVICES="")  # the CPU path even on a machine with GPUs


def check_ranks(out_dir: Path, logs: str) -> None:
    records = read_rank_records(out_dir, logs)
    for rank, record in enumerate(records):
        assert record["rank"] == rank
        assert record["world_size"] == 2
        assert record["backend"] == "gloo"
        assert record["distributed_type"] == "DistributedType.MULTI_CPU"
        assert record["steps"] == 3
        assert len(record["refill_rounds"]) == 3  # dynamic sampling ran at every step, on both ranks
    assert records[0]["initial"] == records[1]["initial"]
    assert records[0]["final"] == records[1]["final"]
    assert records[0]["final"] != records[0]["initial"]  # training moved the parameters
    assert records[0]["refill_rounds"] == records[1]["refill_rounds"]  # refills run in step on every rank
    assert sum(records[0]["refill_rounds"]) > 0


# With `--shared_prefix_loss true` each micro-batch runs two forwards (the prompts, then the completions on their
# cache) before one backward, through DistributedDataParallel.
@pytest.mark.parametrize("extra_flags", [[], ["--shared_prefix_loss", "true"]], ids=["", "shared-prefix"])
def test_two_process_cpu_run_ends_with_identical_parameters(tmp_path, extra_flags):
    command = [*launch_command(tmp_path, "--main_process_port", str(free_port())), *extra_flags]
    result = subprocess.run(
        command, env=environment(), cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    logs = result.stdout + result.stderr
    assert result.returncode == 0, logs[-4000:]
    check_ranks(tmp_path, logs)


def test_two_machine_loopback_launch_ends_with_identical_parameters(tmp_path):
    port = str(free_port())
    machines = []
    for machine_rank in ("0", "1"):
        launch_args = ["--num_machines", "2", "--machine_rank", machine_rank]
        launch_args += ["--main_process_ip", "127.0.0.1", "--main_process_port", port]
        log = open(tmp_path / f"machine{machine_rank}.log", "w")  # noqa: SIM115 (closed below)
        machines.append(
            (
                subprocess.Popen(
                    launch_command(tmp_path, *launch_args),
                    env=environment(),
                    cwd=tmp_path,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
            )  # fmt: skip
        )
    try:
        codes = [process.wait(timeout=TIMEOUT_S) for process, _ in machines]
    except subprocess.TimeoutExpired:
        pytest.fail(f"the two-machine launch did not finish within {TIMEOUT_S} s")
    finally:
        for process, log in machines:
            if process.poll() is None:  # stop the launcher and the workers it started (its own session)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.close()
    logs = "".join((tmp_path / f"machine{rank}.log").read_text() for rank in (0, 1))
    assert codes == [0, 0], logs[-4000:]
    check_ranks(tmp_path, logs)
