import dataclasses
import logging
import runpy
import sys
from pathlib import Path

import datasets
import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

from rpt_trl import cli
from rpt_trl.experiments.rlvr import RLVRScriptArguments, ground_truth_answer, prepare_split
from rpt_trl.experiments.rlvr import make_parser as make_rlvr_parser
from rpt_trl.trainer.train import RPTScriptArguments, load_train_dataset, parse_args


REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
RPT_14B = RECIPES / "DeepSeek-R1-Distill-Qwen-14B" / "rpt" / "config_omnimath.yaml"
TINY = RECIPES / "tiny" / "rpt" / "config_cpu.yaml"
GEMMA_CPU = RECIPES / "gemma-3-270m" / "rpt" / "config_cpu.yaml"
ON_CPU = ["--bf16", "false", "--use_cpu", "true"]  # the GPU recipes ask for bf16, which this machine lacks


def test_14b_recipe_has_the_papers_values():
    script_args, args, model_args = parse_args(["--config", str(RPT_14B), *ON_CPU])
    num_gpus = load_config_from_file(str(RECIPES / "accelerate_configs" / "zero3.yaml")).num_processes
    completions_per_step = num_gpus * args.per_device_train_batch_size * args.gradient_accumulation_steps
    # Paper, Section 4.1 (see RPT_METHOD): the training table, value by value.
    assert model_args.model_name_or_path == "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"
    assert args.learning_rate == 1e-6
    assert (args.adam_beta1, args.adam_beta2, args.weight_decay) == (0.9, 0.999, 0.01)
    assert args.num_generations == 8
    assert completions_per_step // args.num_generations == 256  # prompts a step
    assert args.steps_per_generation == args.gradient_accumulation_steps and args.num_iterations == 1  # one update
    assert args.temperature == 0.8
    assert args.max_completion_length == 8192
    assert args.max_context_tokens < 4096  # the context, plus the template, within the 4,096-token prompt
    assert (args.beta, args.epsilon) == (0.0, 0.2)
    assert args.max_steps == 1000
    assert (args.dynamic_sampling, args.dynamic_sampling_start_step) == (True, 500)
    assert (args.reward, args.prompt_template) == ("prefix_match", "v0")
    assert (args.use_vllm, args.vllm_mode, args.vllm_enable_sleep_mode) == (True, "colocate", True)
    assert script_args.documents_dataset_name == "KbsdJames/Omni-MATH"
    assert args.text_column == ["problem", "solution"]
    assert yaml.safe_load(RPT_14B.read_text())["bf16"] is True


def test_recipe_script_defaults_to_the_14b_yaml_and_flags_override_it():
    script = runpy.run_path(str(RECIPES / "rpt_14b.py"), run_name="not_main")
    assert Path(script["DEFAULT_CONFIG"]) == RPT_14B
    _, args, model_args = parse_args([*ON_CPU, "--max_steps", "10"], default_config=script["DEFAULT_CONFIG"])
    assert model_args.model_name_or_path == "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"
    assert (args.max_steps, args.learning_rate) == (10, 1e-6)
    script_args, args, _ = parse_args(["--config", str(TINY)], default_config=script["DEFAULT_CONFIG"])
    assert script_args.dataset_name is None and args.use_cpu and args.max_steps == 3


@pytest.mark.parametrize(
    "path", sorted(RECIPES.glob("*/rpt/config_*.yaml")), ids=lambda p: str(p.relative_to(RECIPES))
)
def test_every_rpt_recipe_parses(path):
    # TrlParser rejects keys no dataclass knows, so a misspelt field fails here.
    script_args, args, _ = parse_args(["--config", str(path), *ON_CPU])
    assert args.max_context_tokens <= 3840
    # The tiny recipe's script builds its own model and data; the Gemma CPU recipe takes its data from --dataset_name
    # (tests/test_gemma_recipe.py).
    if path not in (TINY, GEMMA_CPU):
        assert script_args.dataset_name and script_args.documents_dataset_name


def test_rlvr_recipe_parses():
    path = RECIPES / "DeepSeek-R1-Distill-Qwen-14B" / "rlvr" / "config_skywork.yaml"
    script_args, args, _ = make_rlvr_parser().parse_args_and_config(["--config", str(path), *ON_CPU])
    assert (script_args.num_train, script_args.num_test) == (256, 200)  # paper, Table 2
    assert args.use_vllm and args.beta == 0.0


@pytest.mark.parametrize(
    ("name", "distributed_type", "expected"),
    [
        ("ddp", DistributedType.MULTI_GPU, {}),
        ("zero2", DistributedType.DEEPSPEED, {"zero_stage": 2}),
        (
            "zero3",
            DistributedType.DEEPSPEED,
            {"zero_stage": 3, "zero3_init_flag": True, "zero3_save_16bit_model": True},
        ),
        ("fsdp", DistributedType.FSDP, {"fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP"}),
    ],
)
def test_accelerate_configs_load_with_accelerates_loader(name, distributed_type, expected):
    config = load_config_from_file(str(RECIPES / "accelerate_configs" / f"{name}.yaml"))
    assert config.distributed_type == distributed_type
    assert (config.num_processes, config.num_machines, config.mixed_precision) == (8, 1, "bf16")
    section = config.deepspeed_config if distributed_type == DistributedType.DEEPSPEED else config.fsdp_config
    assert {key: section[key] for key in expected} == expected


def test_fsdp_config_becomes_accelerates_fsdp_environment():
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import prepare_multi_gpu_env

    config = str(RECIPES / "accelerate_configs" / "fsdp.yaml")
    args = launch_command_parser().parse_args(["--config_file", config, str(RECIPES / "rpt_14b.py")])
    args, _, _ = _validate_launch_command(args)
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true"
    assert (env["FSDP_VERSION"], env["FSDP_AUTO_WRAP_POLICY"]) == ("2", "TRANSFORMER_BASED_WRAP")


@pytest.fixture
def documents_dir(tmp_path):
    path = tmp_path / "documents"
    datasets.Dataset.from_dict({"problem": ["1 + 1 = ?"], "solution": ["2"]}).save_to_disk(str(path))
    return str(path)


def test_missing_prepared_dataset_falls_back_to_documents_with_a_warning(tmp_path, documents_dir, caplog):
    script_args = RPTScriptArguments(dataset_name=str(tmp_path / "absent"), documents_dataset_name=documents_dir)
    with caplog.at_level(logging.WARNING, logger="rpt_trl.trainer.train"):
        dataset = load_train_dataset(script_args)
    assert dataset.column_names == ["problem", "solution"]
    assert any("falling back to the raw documents" in r.getMessage() for r in caplog.records)
    with pytest.raises(FileNotFoundError):
        load_train_dataset(RPTScriptArguments(dataset_name=str(tmp_path / "absent")))
    with pytest.raises(ValueError, match="dataset_name"):
        load_train_dataset(RPTScriptArguments())


def test_prepared_dataset_is_filtered_by_entropy_and_truncated(tmp_path, documents_dir):
    path = tmp_path / "prepared"
    entropies = [0.2, 1.7, float("nan"), 0.9, 2.5]
    datasets.Dataset.from_dict({"prompt": list("abcde"), "entropy": entropies}).save_to_disk(str(path))
    dataset = load_train_dataset(RPTScriptArguments(dataset_name=str(path)), min_entropy=0.5)
    assert dataset["prompt"] == ["b", "d", "e"]  # NaN (not scored) is not above the threshold
    dataset = load_train_dataset(RPTScriptArguments(dataset_name=str(path), max_train_examples=2), min_entropy=0.5)
    assert dataset["prompt"] == ["b", "d"]
    with pytest.raises(ValueError, match="entropy"):
        load_train_dataset(RPTScriptArguments(dataset_name=documents_dir), min_entropy=0.5)
    # min_entropy means "at least" here as in build_next_token_dataset: an entropy equal to it is kept
    assert load_train_dataset(RPTScriptArguments(dataset_name=str(path)), min_entropy=0.9)["prompt"] == ["b", "d", "e"]


def test_cli_train_parses_the_recipe_and_runs_the_script_main(tmp_path, monkeypatch):
    import rpt_trl.trainer.train

    calls = []
    monkeypatch.setattr(rpt_trl.trainer.train, "main", lambda *groups: calls.append(groups))
    cli.main(["train", "--config", str(TINY), "--output_dir", str(tmp_path), "--max_steps", "1"])
    ((script_args, args, model_args),) = calls
    assert script_args.dataset_name is None and args.use_cpu
    assert (args.output_dir, args.max_steps, args.num_generations) == (str(tmp_path), 1, 4)


@pytest.mark.parametrize(
    ("truth", "expected"),
    [('["\\\\frac{1}{2}"]', "\\frac{1}{2}"), ("42", "42"), ("[1, 2]", "1"), ("[not json", "[not json")],
)
def test_rlvr_ground_truth_answer(truth, expected):
    assert ground_truth_answer({"ground_truth": truth}) == expected


def test_rlvr_split_keeps_hard_questions_and_holds_out_a_test_set():
    rows = {
        "prompt": [[{"role": "user", "content": f"question {i}"}] for i in range(10)],
        "reward_model": [{"ground_truth": f'["{i}"]', "style": "rule"} for i in range(10)],
        "extra_info": [{"index": i, "model_difficulty": {"DeepSeek-R1-Distill-Qwen-32B": i}} for i in range(10)],
    }
    script_args = RLVRScriptArguments(max_reference_solved=5, num_train=4, num_test=2)
    splits = prepare_split(datasets.Dataset.from_dict(rows), script_args, seed=0)
    assert splits["train"].column_names == ["prompt", "solution"]
    questions = [p[0]["content"] for p in list(splits["train"]["prompt"]) + list(splits["test"]["prompt"])]
    assert sorted(questions) == [f"question {i}" for i in range(6)]  # solved at most 5 times: 0..5, none twice
    for split in splits.values():
        for prompt, solution in zip(split["prompt"], split["solution"]):
            assert prompt[0]["content"] == f"question {solution}"
    with pytest.raises(ValueError, match="max_reference_solved"):
        prepare_split(datasets.Dataset.from_dict(rows), RLVRScriptArguments(max_reference_solved=1), seed=0)


def test_rlvr_names_the_extra_when_math_verify_is_missing(monkeypatch):
    import importlib

    from rpt_trl.experiments.rlvr import main

    monkeypatch.setattr(importlib.import_module("trl.import_utils"), "is_math_verify_available", lambda: False)
    with pytest.raises(ImportError, match=r"rpt-trl\[rlvr\]"):
        main(RLVRScriptArguments(), None, None)


def run_slurm_dry(tmp_path, nodes, *args):
    import os
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scontrol = bin_dir / "scontrol"  # stands in for SLURM's: expands the job's node list
    scontrol.write_text("#!/bin/bash\n" + "".join(f"echo {node}\n" for node in nodes))
    scontrol.chmod(0o755)
    python_dir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=f"{bin_dir}:{python_dir}:{os.environ['PATH']}", DRY_RUN="1", SLURM_JOB_NODELIST="x")
    return subprocess.run(
        ["bash", str(RECIPES / "slurm" / "rpt.slurm"), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_slurm_launcher_splits_nodes_and_keeps_the_global_batch(tmp_path):
    result = run_slurm_dry(tmp_path, ["gpu-1", "gpu-2", "gpu-3"], str(RPT_14B), "recipes/accelerate_configs/zero3.yaml", "--max_steps", "7")  # fmt: skip
    assert result.returncode == 0, result.stderr
    vllm_line, train_line = result.stdout.strip().splitlines()
    assert vllm_line.startswith("vllm node gpu-3: trl vllm-serve --model deepseek-ai/DeepSeek-R1-Distill-Qwen-14B")
    assert "--data_parallel_size 8" in vllm_line
    assert train_line.startswith("train nodes gpu-1,gpu-2: accelerate launch")
    for flag in ["--num_machines 2", "--num_processes 16", "--main_process_ip gpu-1", "--vllm_server_host gpu-3",
                 "--gradient_accumulation_steps 64", "--vllm_mode server", "--max_steps 7"]:  # fmt: skip
        assert flag in train_line  # 16 GPUs x 2 completions x 64 accumulation steps / 8 rollouts = 256 prompts


def test_slurm_launcher_refuses_a_batch_it_cannot_split(tmp_path):
    result = run_slurm_dry(tmp_path, ["a", "b", "c", "d"], str(RPT_14B))  # 3 training nodes: 128 / 3
    assert result.returncode == 1
    assert "not divisible by 3 training nodes" in result.stderr
    result = run_slurm_dry(tmp_path, ["a"], str(RPT_14B))
    assert result.returncode == 1 and "at least 2 nodes" in result.stderr


def test_tiny_recipe_script_trains_the_tiny_world_through_the_production_main(tmp_path):
    """The production script has no test flag: the tiny recipe passes its model and data to `train.main`."""
    script = runpy.run_path(str(RECIPES / "tiny" / "rpt_tiny.py"), run_name="not_main")
    assert Path(script["DEFAULT_CONFIG"]) == TINY
    trainer = script["run"](["--output_dir", str(tmp_path), "--max_steps", "1"])
    assert trainer.state.global_step == 1 and (tmp_path / "README.md").exists()
    assert "tiny_world" not in {f.name for f in dataclasses.fields(RPTScriptArguments)}
