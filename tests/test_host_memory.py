"""`rpt_trl.host_memory`: freed memory kept for reuse on a CPU, released every few steps; and the GGUF conversion's
one reader."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from conftest import subprocess_env

from rpt_trl import host_memory, models
from rpt_trl.experiments.tiny import make_tiny_model, make_tiny_tokenizer
from rpt_trl.host_memory import OPT_OUT_ENV_VAR, ReleaseFreedMemory


glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not host_memory._glibc(), reason="malloc's settings are glibc's"
)

# Allocates, fills and frees a 256 MiB tensor 6 times, and reports the page faults and the resident size.
FAULTS = """
import json, resource, sys, torch
from rpt_trl.host_memory import keep_freed_memory, release_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()
torch.ones(1).add_(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(6):
    block = torch.empty(64 << 20, dtype=torch.float32).fill_(1.0)
    del block
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
held = resident()
release_freed_memory()
print(json.dumps({"kept": kept, "faults": faults, "held": held, "released": resident()}))
"""


def run_faults(mode: str, **env: str) -> dict:
    environment = subprocess_env(**env)
    if OPT_OUT_ENV_VAR not in env:
        environment.pop(OPT_OUT_ENV_VAR, None)
    done = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@glibc
def test_kept_freed_memory_is_reused_without_page_faults_and_released_on_demand():
    plain, kept = run_faults("plain"), run_faults("keep")
    pages = (256 << 20) // 4096
    assert not plain["kept"] and kept["kept"]
    assert plain["faults"] >= 5 * pages  # each new block's pages are mapped and zeroed again
    assert kept["faults"] < 2.5 * pages < plain["faults"] / 2  # the first blocks' pages, then reused
    assert kept["held"] - kept["released"] > 200 << 20  # the freed block stayed resident until released


@glibc
@pytest.mark.parametrize("env", [{OPT_OUT_ENV_VAR: "0"}, {"MALLOC_MMAP_MAX_": "65536"}])
def test_the_opt_out_and_a_users_own_malloc_settings_are_left_alone(env):
    assert not run_faults("keep", **env)["kept"]


def test_the_callback_releases_every_few_steps_and_at_the_end(monkeypatch):
    calls = []
    monkeypatch.setattr(host_memory, "release_freed_memory", lambda: calls.append("release"))
    callback = ReleaseFreedMemory(every_steps=3)
    for step in range(1, 8):
        callback.on_step_end(None, SimpleNamespace(global_step=step), None)
    assert len(calls) == 2  # steps 3 and 6
    callback.on_train_end(None, SimpleNamespace(global_step=7), None)
    assert len(calls) == 3
    with pytest.raises(ValueError, match="every_steps"):
        ReleaseFreedMemory(every_steps=0)


def no_reward(completions, **kwargs):
    return [0.0] * len(completions)


@pytest.mark.parametrize("kept", [True, False])
def test_the_trainer_adds_the_callback_only_where_freed_memory_is_kept(tmp_path, monkeypatch, kept):
    from datasets import Dataset

    from rpt_trl.trainer import rpt_trainer
    from rpt_trl.trainer.rpt_config import RPTConfig

    monkeypatch.setattr(rpt_trainer, "freed_memory_kept", lambda: kept)
    tokenizer = make_tiny_tokenizer()
    args = RPTConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=4, max_steps=1, save_strategy="no", report_to="none", prompt_format="text",
        gradient_checkpointing=False,
    )  # fmt: skip
    trainer = rpt_trainer.RPTTrainer(
        model=make_tiny_model(tokenizer), reward_funcs=no_reward, args=args, train_dataset=Dataset.from_dict({"prompt": ["a cat says"] * 4}),
        processing_class=tokenizer,
    )  # fmt: skip
    found = [c for c in trainer.callback_handler.callbacks if isinstance(c, ReleaseFreedMemory)]
    assert len(found) == (1 if kept else 0)


def test_the_cli_keeps_freed_memory_on_a_machine_without_cuda(monkeypatch, tmp_path):
    from rpt_trl import cli

    calls = []
    monkeypatch.setattr(host_memory, "keep_freed_memory", lambda: calls.append("kept") or True)
    monkeypatch.setattr(cli, "_has_cuda", lambda: False)
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "table", str(tmp_path / "missing.json"), "--output", str(tmp_path / "table.md")])
    assert calls == ["kept"]
    monkeypatch.setattr(cli, "_has_cuda", lambda: True)
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "table", str(tmp_path / "missing.json"), "--output", str(tmp_path / "table.md")])
    assert calls == ["kept"]


def test_the_conversion_reads_a_gguf_file_once(tmp_path):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("general.name", "tiny")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    build = gguf.GGUFReader
    with models._one_gguf_reader():
        first, again = gguf.GGUFReader(path), gguf.GGUFReader(str(path))
        assert first is again and isinstance(first, build)
        assert first.tensors[0].name == "token_embd.weight"
    assert gguf.GGUFReader is build
    assert gguf.GGUFReader(path) is not first
