"""Fault injection: kill or raise inside each write (the dataset save, the swap that replaces an old output, the
entropy cache and its shards, the checkpoint save), then check what is on disk: the old output whole or the new
one whole, and no leftovers once the next run has started (issue 13, items 5, 6, 8 and 10)."""

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
from conftest import CORPUS, make_byte_level_tokenizer, subprocess_env
from safetensors.torch import save_file

from rpt_trl import compute_token_entropy
from rpt_trl.data import prepare
from rpt_trl.experiments.tiny import make_tiny_model
from rpt_trl.trainer.checkpoints import last_complete_checkpoint


WORKER = Path(__file__).with_name("_fault_worker.py")
sys.path.insert(0, str(WORKER.parent))
from _fault_worker import prepared  # noqa: E402


def run_killed(scenario: str, path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(WORKER), scenario, str(path)], env=subprocess_env(), capture_output=True, text=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def prompts(output: Path) -> dict[str, list[str]]:
    loaded = datasets.load_from_disk(str(output))
    return {split: loaded[split]["prompt"] for split in loaded}


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


@pytest.fixture
def old_output(tmp_path):
    output = tmp_path / "out"
    prepare.save_prepared_dataset(*prepared("old"), str(output))
    return output


OLD = {"train": ["old"] * 3, "eval": ["old"]}
NEW = {"train": ["new"] * 3, "eval": ["new"]}


@pytest.mark.parametrize("scenario", ["save-write", "save-swap"])
def test_sigkill_inside_the_save_leaves_the_old_output_and_the_next_run_cleans_up(old_output, scenario):
    run_killed(scenario, old_output)
    assert leftovers(old_output.parent)  # the killed run's staging (and, mid-swap, the old output moved aside)
    prepare.check_output_dir(str(old_output), overwrite=True)  # what the next `rpt-trl prepare` does first
    assert prompts(old_output) == OLD  # whole, and put back where the swap had moved it
    assert leftovers(old_output.parent) == []
    prepare.save_prepared_dataset(*prepared("new"), str(old_output), overwrite=True)
    assert prompts(old_output) == NEW and leftovers(old_output.parent) == []


@pytest.mark.parametrize("where", ["save_to_disk", "card", "swap"])
def test_an_error_inside_the_save_leaves_the_old_output_and_nothing_else(old_output, monkeypatch, where):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    if where == "save_to_disk":
        monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", fail)
    elif where == "card":
        monkeypatch.setattr(prepare, "render_dataset_card", fail)
    else:
        original = Path.rename
        monkeypatch.setattr(
            Path, "rename", lambda self, target: fail() if ".rpt-new-" in self.name else original(self, target)
        )
    with pytest.raises(OSError, match="disk full"):
        prepare.save_prepared_dataset(*prepared("new"), str(old_output), overwrite=True)
    monkeypatch.undo()
    assert prompts(old_output) == OLD and leftovers(old_output.parent) == []


def test_an_empty_split_is_not_written(tmp_path):
    # Issue 13, item 1: `load_from_disk` raised IndexError on the dataset that `prepare` had reported as written.
    splits, info = prepared("x")
    splits["eval"] = splits["eval"].select([])
    with pytest.raises(ValueError, match="The eval split is empty"):
        prepare.save_prepared_dataset(splits, info, str(tmp_path / "out"))
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def tokenizer():
    return make_byte_level_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return make_tiny_model(tokenizer, seed=3).eval()


def score(model, tokenizer, cache_dir, **kwargs):
    return compute_token_entropy(
        CORPUS, model, tokenizer, batch_size=1, max_length=16, cache_dir=str(cache_dir), show_progress=False, **kwargs
    )


def same(first, second):
    return [row[1:] for row in first] == [row[1:] for row in second]


def test_sigkill_inside_the_cache_write_leaves_a_temporary_that_the_next_run_removes(model, tokenizer, tmp_path):
    run_killed("cache-write", tmp_path / "entropy-x.npz")
    assert [p.name for p in tmp_path.iterdir()] == [
        f".entropy-x.npz.tmp-{p.name.rsplit('-', 1)[1]}" for p in tmp_path.iterdir()
    ]
    expected = score(model, tokenizer, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert same(score(model, tokenizer, tmp_path), expected)  # the entry written is whole


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 truncated", b"not a zip file at all"])
def test_a_corrupted_cache_file_is_named_deleted_and_rescored(model, tokenizer, tmp_path, caplog, damage):
    # Issue 13, item 5: a corrupted entry broke every later run with BadZipFile / EOFError.
    expected = score(model, tokenizer, tmp_path)
    (entry,) = tmp_path.glob("entropy-*.npz")
    entry.write_bytes(damage)
    with caplog.at_level(logging.WARNING, logger="rpt_trl.data.entropy"):
        again = score(model, tokenizer, tmp_path)
    assert same(again, expected)
    assert any(entry.name in r.getMessage() and "scored again" in r.getMessage() for r in caplog.records)
    assert same(score(model, tokenizer, tmp_path), expected)  # and the rewritten entry reads back


class Interrupt(KeyboardInterrupt):
    pass


def interrupt_after(model, passes: int):
    """A hook on the decoder that counts forward passes and raises `Interrupt` (a Ctrl-C) after `passes`."""
    calls = []

    def hook(*_):
        calls.append(1)
        if len(calls) > passes:
            raise Interrupt

    return model.get_decoder().register_forward_hook(hook), calls


def test_interrupted_scoring_resumes_from_its_shards(model, tokenizer, tmp_path, caplog):
    # Issue 13, item 6: Ctrl-C at 11% kept nothing of the scoring.
    hook, full_run = interrupt_after(model, 10**6)
    expected = compute_token_entropy(CORPUS, model, tokenizer, batch_size=1, max_length=16, show_progress=False)
    hook.remove()
    hook, _ = interrupt_after(model, 4)
    with pytest.raises(Interrupt):
        score(model, tokenizer, tmp_path, checkpoint_seconds=0)
    hook.remove()
    (parts,) = tmp_path.glob("entropy-*.parts")
    saved = len(list(parts.glob("*.npz")))  # one shard per finished batch
    assert saved >= 1

    hook, resumed_run = interrupt_after(model, 10**6)
    with caplog.at_level(logging.INFO, logger="rpt_trl.data.entropy"):
        resumed = score(model, tokenizer, tmp_path, checkpoint_seconds=0)
    hook.remove()
    assert same(resumed, expected)
    assert any(f"Resuming token entropy: {saved} of" in r.getMessage() for r in caplog.records)
    assert len(resumed_run) == len(full_run) - saved  # only what was left is scored
    assert not parts.exists() and len(list(tmp_path.glob("entropy-*.npz"))) == 1


def test_a_corrupted_shard_is_rescored(model, tokenizer, tmp_path):
    hook, _ = interrupt_after(model, 4)
    with pytest.raises(Interrupt):
        score(model, tokenizer, tmp_path, checkpoint_seconds=0)
    hook.remove()
    (parts,) = tmp_path.glob("entropy-*.parts")
    first_shard = sorted(parts.glob("*.npz"))[0]
    first_shard.write_bytes(first_shard.read_bytes()[:40])
    expected = compute_token_entropy(CORPUS, model, tokenizer, batch_size=1, max_length=16, show_progress=False)
    assert same(score(model, tokenizer, tmp_path, checkpoint_seconds=0), expected)


def write_checkpoint(path: Path) -> Path:
    path.mkdir(parents=True)
    save_file({"w": torch.arange(8, dtype=torch.float32)}, path / "model.safetensors")
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "rng_state_1.pth"):
        torch.save({"state": torch.ones(16)}, path / name)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": int(path.name.split("-")[1])}))
    return path


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda p: (p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes() + b"\0" * 7),
         "model.safetensors has 7 trailing bytes"),
        (lambda p: (p / "scheduler.pt").write_bytes((p / "scheduler.pt").read_bytes()[:-30]),
         "scheduler.pt is truncated"),
        (lambda p: (p / "rng_state.pth").write_bytes((p / "rng_state.pth").read_bytes()[:-30]),
         "rng_state.pth is truncated"),
        (lambda p: (p / "rng_state_1.pth").write_bytes(b""), "rng_state_1.pth is truncated"),
    ],
)  # fmt: skip
def test_resume_falls_back_past_a_torn_checkpoint_and_says_which_it_picked(tmp_path, caplog, damage, problem):
    # Issue 13, item 10: these crashed the resume instead of falling back to the previous complete checkpoint.
    from rpt_trl import RPTConfig
    from rpt_trl.trainer.checkpoints import resolve_resume_checkpoint

    write_checkpoint(tmp_path / "checkpoint-2")
    damage(write_checkpoint(tmp_path / "checkpoint-4"))
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-2")
    args = RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    with caplog.at_level(logging.INFO, logger="rpt_trl.trainer.checkpoints"):
        assert resolve_resume_checkpoint(True, args) == str(tmp_path / "checkpoint-2")
    messages = [r.getMessage() for r in caplog.records]
    assert any("checkpoint-4" in m and problem in m for m in messages), messages
    assert any(m.startswith("Resuming from") and "checkpoint-2" in m for m in messages)
