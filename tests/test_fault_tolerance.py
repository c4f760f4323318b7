"""Fault tolerance: a run SIGKILLed mid-training resumes to exactly the uninterrupted run's end state, and
half-written checkpoints are detected and skipped."""

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import subprocess_env
from safetensors.torch import load_file, save_file

from rpt_trl import RPTConfig
from rpt_trl.experiments.tiny import warm_started_world
from rpt_trl.trainer.checkpoints import checkpoint_problems, last_complete_checkpoint, resolve_resume_checkpoint
from rpt_trl.trainer.sampler import EpochReplayRepeatSampler


WORKER = Path(__file__).with_name("resume_worker.py")


def launch(world_dir, output_dir, mode):
    output_dir.mkdir(exist_ok=True)
    env = subprocess_env()
    log = open(output_dir / f"{mode}.log", "w")
    return subprocess.Popen([sys.executable, str(WORKER), str(world_dir), str(output_dir), mode], env=env,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip


def finish(process, output_dir, mode, timeout=240):
    assert process.wait(timeout=timeout) == 0, (output_dir / f"{mode}.log").read_text()[-3000:]


def recorded_steps(output_dir):
    return [json.loads(line) for line in (output_dir / "steps.jsonl").read_text().splitlines()]


def test_sigkilled_run_resumes_to_the_uninterrupted_end_state(tmp_path):
    # The tiny warm-started world (reward ~0.25, so GRPO has non-zero advantages), on 6 prompts: 3 steps per epoch,
    # 8 steps (2.67 epochs), a checkpoint every 2 steps. One run goes to the end; another is SIGKILLed while it
    # writes checkpoint-6 (weights and optimizer on disk, RNG and trainer state not yet): resuming must skip that
    # torn folder, go back to checkpoint-4 (in epoch 1, so the epoch's shuffle must be replayed), and end identical.
    model, tokenizer, dataset, _ = warm_started_world(seed=0)
    world = tmp_path / "world"
    model.save_pretrained(world)
    tokenizer.save_pretrained(world)
    dataset.select(range(6)).save_to_disk(str(world / "dataset"))

    start = time.monotonic()
    full_dir, killed_dir = tmp_path / "full", tmp_path / "killed"
    full = launch(world, full_dir, "full")
    doomed = launch(world, killed_dir, "kill-at-save-6")
    while not (killed_dir / "killme").exists():
        assert doomed.poll() is None, (killed_dir / "kill-at-save-6.log").read_text()[-3000:]
        assert time.monotonic() - start < 240, "the run never reached checkpoint-6"
        time.sleep(0.1)
    doomed.send_signal(signal.SIGKILL)
    assert doomed.wait(timeout=30) == -signal.SIGKILL
    torn = killed_dir / "checkpoint-6"
    assert (torn / "model.safetensors").exists() and not (torn / "trainer_state.json").exists()
    killed_steps = recorded_steps(killed_dir)
    assert [row["step"] for row in killed_steps] == [1, 2, 3, 4, 5, 6]

    resumed = launch(world, killed_dir, "resume")
    finish(resumed, killed_dir, "resume")
    finish(full, full_dir, "full")
    elapsed = time.monotonic() - start
    print(f"three runs (full, killed, resumed) took {elapsed:.1f} s")

    resume_log = (killed_dir / "resume.log").read_text()
    assert "Skipping incomplete checkpoint" in resume_log and "checkpoint-6 (no trainer_state.json" in resume_log
    resumed_steps = recorded_steps(killed_dir)[len(killed_steps) :]
    assert [row["step"] for row in resumed_steps] == [5, 6, 7, 8]  # back to checkpoint-4, then on to the end

    # Data order and sampling: the same prompts and the same sampled completions at every step.
    full_steps = recorded_steps(full_dir)
    assert [row["step"] for row in full_steps] == list(range(1, 9))
    interrupted = killed_steps[:4] + resumed_steps
    for expected, got in zip(full_steps, interrupted, strict=True):
        assert got["prompts"] == expected["prompts"], expected["step"]
        assert got["completions"] == expected["completions"], expected["step"]
    # The epoch-1 and epoch-2 shuffles are not the epoch-0 one: the replay is what kept the order.
    assert [row["prompts"] for row in full_steps[3:6]] != [row["prompts"] for row in full_steps[0:3]]

    # Parameters, optimizer and scheduler state and the logged rewards at the end: bitwise equal.
    full_end, resumed_end = full_dir / "checkpoint-8", killed_dir / "checkpoint-8"
    expected_weights, got_weights = (
        load_file(full_end / "model.safetensors"),
        load_file(resumed_end / "model.safetensors"),
    )
    assert expected_weights.keys() == got_weights.keys()
    for name, tensor in expected_weights.items():
        assert torch.equal(got_weights[name], tensor), name
    initial = load_file(world / "model.safetensors")
    assert any(not torch.equal(initial[name], tensor) for name, tensor in expected_weights.items())
    expected_optimizer = torch.load(full_end / "optimizer.pt", weights_only=True)
    got_optimizer = torch.load(resumed_end / "optimizer.pt", weights_only=True)
    assert got_optimizer["param_groups"] == expected_optimizer["param_groups"]
    assert expected_optimizer["state"].keys() == got_optimizer["state"].keys()
    for index, state in expected_optimizer["state"].items():
        for key, value in state.items():
            assert torch.equal(got_optimizer["state"][index][key], value), (index, key)
    assert torch.load(resumed_end / "scheduler.pt") == torch.load(full_end / "scheduler.pt")

    def rewards(run_dir):
        history = json.loads((run_dir / "checkpoint-8" / "trainer_state.json").read_text())["log_history"]
        return [(entry["step"], entry["reward"]) for entry in history if "reward" in entry]

    assert rewards(killed_dir) == rewards(full_dir) and len(rewards(full_dir)) == 8


def test_epoch_replay_sampler_matches_an_uninterrupted_sampler():
    plain = EpochReplayRepeatSampler(list(range(10)), mini_repeat_count=2, batch_size=2, seed=3)
    orders = []
    for epoch in range(3):
        plain.set_epoch(epoch)
        orders.append(list(plain))
    assert orders[0] != orders[1] != orders[2]
    fresh = EpochReplayRepeatSampler(list(range(10)), mini_repeat_count=2, batch_size=2, seed=3)
    fresh.set_epoch(2)  # a run resumed in epoch 2 builds a new sampler
    assert list(fresh) == orders[2]
    # Without set_epoch it is trl's RepeatSampler: the same order, epoch after epoch.
    from trl.trainer.utils import RepeatSampler

    upstream = RepeatSampler(list(range(10)), mini_repeat_count=2, batch_size=2, seed=3)
    assert [list(upstream) for _ in range(3)] == orders


def write_checkpoint(path, *, weights=True, optimizer=True, state=True):
    path.mkdir(parents=True)
    if weights:
        save_file({"w": torch.arange(64, dtype=torch.float32)}, path / "model.safetensors")
    if optimizer:
        torch.save({"state": {0: {"exp_avg": torch.ones(64)}}}, path / "optimizer.pt")
    if state:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": int(path.name.split("-")[1])}))
    return path


def truncate(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - keep] if keep > 0 else data[:-keep])


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda p: (p / "trainer_state.json").unlink(), "no trainer_state.json"),
        (lambda p: (p / "trainer_state.json").write_text('{"global_st'), "trainer_state.json does not parse"),
        (lambda p: (p / "model.safetensors").unlink(), "no model weights"),
        (lambda p: truncate(p / "model.safetensors", keep=10), "model.safetensors is truncated"),
        (lambda p: truncate(p / "model.safetensors", keep=-20), "model.safetensors is truncated"),
        (lambda p: (p / "optimizer.pt").unlink(), "no optimizer.pt"),
        (lambda p: truncate(p / "optimizer.pt", keep=30), "optimizer.pt is truncated"),
    ],
)
def test_checkpoint_problems_names_what_is_torn(tmp_path, damage, problem):
    checkpoint = write_checkpoint(tmp_path / "checkpoint-4")
    assert checkpoint_problems(str(checkpoint)) == []
    damage(checkpoint)
    problems = checkpoint_problems(str(checkpoint))
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_sharded_weights_need_every_shard(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "checkpoint-2", weights=False)
    save_file({"a": torch.zeros(4)}, checkpoint / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(index))
    assert checkpoint_problems(str(checkpoint)) == [
        "shard model-00002-of-00002.safetensors listed in model.safetensors.index.json is missing"
    ]
    assert checkpoint_problems(str(checkpoint / "nope")) == [f"{checkpoint / 'nope'} is not a directory"]


def test_resume_true_skips_torn_checkpoints_with_a_warning(tmp_path, caplog):
    write_checkpoint(tmp_path / "checkpoint-2")
    write_checkpoint(tmp_path / "checkpoint-10")  # numeric, not lexicographic, order: 10 is newer than 4
    write_checkpoint(tmp_path / "checkpoint-12", state=False)
    torn = write_checkpoint(tmp_path / "checkpoint-14")
    truncate(torn / "model.safetensors", keep=10)
    args = RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    with caplog.at_level(logging.WARNING, logger="rpt_trl.trainer.checkpoints"):
        assert resolve_resume_checkpoint(True, args) == str(tmp_path / "checkpoint-10")
    skipped = [record.getMessage() for record in caplog.records]
    assert len(skipped) == 2
    assert "checkpoint-14 (model.safetensors is truncated" in skipped[0]
    assert "checkpoint-12 (no trainer_state.json)" in skipped[1]

    # As `--resume_from_checkpoint true` passes it.
    assert (
        resolve_resume_checkpoint("true", args)
        == resolve_resume_checkpoint("last", args)
        == str(tmp_path / "checkpoint-10")
    )

    # A torn folder named explicitly is an error, not a silent restart at step 0.
    with pytest.raises(ValueError, match=r"Cannot resume from .*checkpoint-12: no trainer_state.json"):
        resolve_resume_checkpoint(str(tmp_path / "checkpoint-12"), args)
    assert resolve_resume_checkpoint(None, args) is None


def test_resume_true_without_a_complete_checkpoint_says_so(tmp_path):
    write_checkpoint(tmp_path / "checkpoint-3", optimizer=False)
    args = RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    with pytest.raises(ValueError, match="no complete checkpoint"):
        resolve_resume_checkpoint(True, args)
    # With save_only_model=True the optimizer is not expected.
    only_model = RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", save_only_model=True)
    assert last_complete_checkpoint(str(tmp_path), require_optimizer=False) == str(tmp_path / "checkpoint-3")
    assert resolve_resume_checkpoint(True, only_model) == str(tmp_path / "checkpoint-3")
