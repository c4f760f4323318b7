"""Issue 21, item 7: a checkpoint is complete only once every file the run writes into it is there, whole, and an
older checkpoint is deleted only after that.

An information_gain run writes `reference_ema.pt` from a callback, after `trainer_state.json`; a kill in between
used to leave a checkpoint that resume picked (and then refused), with the older complete one already rotated away.
"""

import copy
import json
import shutil

import pytest
import torch

from rpt_trl import RPTTrainer
from rpt_trl.experiments.tiny import tiny_training_config, warm_started_world
from rpt_trl.rewards import reference
from rpt_trl.rewards.reference import REFERENCE_EMA_FILE
from rpt_trl.trainer.checkpoints import COMPLETE_MARKER, checkpoint_problems, last_complete_checkpoint


@pytest.fixture(scope="module")
def world():
    model, tokenizer, dataset, _ = warm_started_world(seed=0)
    return model, tokenizer, dataset


def information_gain_run(world, output_dir, **overrides):
    model, tokenizer, dataset = world
    args = tiny_training_config(
        str(output_dir), reward="information_gain", prompt_template="{context}", prompt_format="text",
        per_device_train_batch_size=8, num_generations=4, max_steps=2, dynamic_sampling=False,
        save_strategy="steps", save_steps=1, **overrides,
    )  # fmt: skip
    return RPTTrainer(model=copy.deepcopy(model), args=args, train_dataset=dataset, processing_class=tokenizer)


@pytest.fixture(scope="module")
def two_checkpoints(world, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("run")
    information_gain_run(world, output_dir).train()
    return output_dir


def test_the_run_lists_every_file_of_its_checkpoints(two_checkpoints):
    for step in (1, 2):
        folder = two_checkpoints / f"checkpoint-{step}"
        listed = json.loads((folder / COMPLETE_MARKER).read_text())["files"]
        on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {COMPLETE_MARKER}
        assert set(listed) == on_disk and REFERENCE_EMA_FILE in listed and "trainer_state.json" in listed
        assert all(listed[name] == (folder / name).stat().st_size for name in listed)
        assert checkpoint_problems(str(folder)) == []
        state = json.loads((folder / "trainer_state.json").read_text())
        assert "CheckpointCompletion" in state["stateful_callbacks"]


def checkpoint_files(two_checkpoints):
    folder = two_checkpoints / "checkpoint-2"
    return sorted(json.loads((folder / COMPLETE_MARKER).read_text())["files"])


@pytest.mark.parametrize("how", ["killed before it", "cut short"])
def test_for_every_file_a_checkpoint_holds_a_kill_before_it_falls_back_to_the_previous_checkpoint(
    two_checkpoints, tmp_path, how
):
    files = checkpoint_files(two_checkpoints)
    assert len(files) >= 8  # weights, config, optimizer, scheduler, RNG, trainer state, arguments, reference
    for name in files:
        run = tmp_path / name.replace("/", "_")
        shutil.copytree(two_checkpoints / "checkpoint-1", run / "checkpoint-1")
        newest = run / "checkpoint-2"
        shutil.copytree(two_checkpoints / "checkpoint-2", newest)
        (newest / COMPLETE_MARKER).unlink()  # a kill comes before the list, the checkpoint's last file
        if how == "killed before it":
            (newest / name).unlink()
        else:
            content = (newest / name).read_bytes()
            (newest / name).write_bytes(content[: len(content) // 2])
        assert checkpoint_problems(str(newest)), name
        assert last_complete_checkpoint(str(run)) == str(run / "checkpoint-1"), name


def test_a_file_damaged_after_the_list_was_written_is_found(two_checkpoints, tmp_path):
    for name in checkpoint_files(two_checkpoints):
        newest = tmp_path / name.replace("/", "_") / "checkpoint-2"
        shutil.copytree(two_checkpoints / "checkpoint-2", newest)
        with open(newest / name, "ab") as handle:
            handle.write(b"\0")
        assert any(name in problem for problem in checkpoint_problems(str(newest))), name


class Killed(BaseException):
    pass


def test_a_kill_before_the_reference_keeps_the_older_checkpoint_and_resume_uses_it(world, tmp_path, monkeypatch):
    save = reference.ReferenceEMACallback.save

    def die_at_step_two(self, folder):
        if folder.endswith("checkpoint-2"):
            raise Killed  # after trainer_state.json, before reference_ema.pt
        return save(self, folder)

    monkeypatch.setattr(reference.ReferenceEMACallback, "save", die_at_step_two)
    with pytest.raises(Killed):
        information_gain_run(world, tmp_path, save_total_limit=1).train()
    monkeypatch.undo()
    assert (tmp_path / "checkpoint-2" / "trainer_state.json").exists()
    assert not (tmp_path / "checkpoint-2" / REFERENCE_EMA_FILE).exists()
    assert (tmp_path / "checkpoint-1").is_dir()  # not rotated away before checkpoint-2 was whole
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-1")

    resumed = information_gain_run(world, tmp_path, save_total_limit=1)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 2
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2"]  # rotated once whole
    assert checkpoint_problems(str(tmp_path / "checkpoint-2")) == []
    saved_args = torch.load(tmp_path / "checkpoint-2" / "training_args.bin", weights_only=False)
    assert saved_args.save_total_limit == 1  # held back only while the Trainer saved


def test_a_run_resumes_from_a_checkpoint_written_before_the_lists(world, two_checkpoints, tmp_path):
    old = tmp_path / "checkpoint-1"
    shutil.copytree(two_checkpoints / "checkpoint-1", old)
    (old / COMPLETE_MARKER).unlink()
    state = json.loads((old / "trainer_state.json").read_text())
    del state["stateful_callbacks"]["CheckpointCompletion"]
    (old / "trainer_state.json").write_text(json.dumps(state))
    assert last_complete_checkpoint(str(tmp_path)) == str(old)  # an older rpt-trl's checkpoint is still complete
    resumed = information_gain_run(world, tmp_path)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 2 and checkpoint_problems(str(tmp_path / "checkpoint-2")) == []
