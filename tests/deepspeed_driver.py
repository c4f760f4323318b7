"""Train the tiny recipe under DeepSpeed and write what each rank ran and ended with: launched by test_engines_deepspeed.py.

Usage: accelerate launch --config_file recipes/accelerate_configs/zero3.yaml --use_cpu --mixed_precision no
           --num_processes 2 tests/deepspeed_driver.py <out_dir> [--vllm] [RPTConfig overrides as key=value ...]

The settings are the tiny CPU recipe's (`recipes/tiny/rpt/config_cpu.yaml`); `--vllm` saves the tiny policy (with a
head size vLLM's CPU backend supports) and generates with colocated vLLM, as the 14B recipe does.
"""

import hashlib
import json
import sys
from pathlib import Path

import deepspeed
import torch
import yaml

from rpt_trl import RPTConfig, RPTTrainer
from rpt_trl.experiments.tiny import warm_started_world


RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "rpt" / "config_cpu.yaml"


def gathered_digest(model: torch.nn.Module) -> str:
    """A digest of the full parameters, gathered from their ZeRO-3 partitions where they are partitioned."""
    digest = hashlib.sha256()
    parameters = dict(model.named_parameters())
    with deepspeed.zero.GatheredParameters(list(parameters.values()), modifier_rank=None):
        for name in sorted(parameters):
            digest.update(name.encode())
            digest.update(parameters[name].detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()


def main(out_dir: Path, use_vllm: bool, overrides: list[str]) -> None:
    settings = yaml.safe_load(RECIPE.read_text())
    settings.pop("tiny_world", None)
    for override in overrides:
        key, value = override.split("=", 1)
        settings[key] = yaml.safe_load(value)
    settings.update(output_dir=str(out_dir / "run"))
    model, tokenizer, dataset, _ = warm_started_world(seed=settings["seed"], num_attention_heads=2)
    initial = gathered_digest(model)
    if use_vllm:
        path = out_dir / "policy"
        model.save_pretrained(path)  # every rank writes the same bytes; vLLM loads the policy from a folder
        tokenizer.save_pretrained(path)
        settings.update(
            use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.1, vllm_max_model_length=256,
            vllm_enable_sleep_mode=False,
        )  # fmt: skip
        model = str(path)
    trainer = RPTTrainer(model=model, args=RPTConfig(**settings), train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    engine = trainer.model_wrapped  # the DeepSpeed engine, once training has prepared it
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    partitioned = [p for p in unwrapped.parameters() if hasattr(p, "ds_id")]
    trainer.save_model(str(out_dir / "final"))
    rank = trainer.accelerator.process_index
    record = {
        "rank": rank,
        "world_size": trainer.accelerator.num_processes,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "backend": torch.distributed.get_backend(),
        "accelerator": deepspeed.get_accelerator().device_name(),
        "zero_stage": engine.zero_optimization_stage() if hasattr(engine, "zero_optimization_stage") else None,
        "optimizer": type(getattr(engine, "optimizer", None)).__name__,
        "partitioned_parameters": len(partitioned),
        "partition_elements": sum(p.ds_tensor.numel() for p in partitioned),
        "full_elements": sum(p.ds_numel for p in partitioned),
        "initial": initial,
        "final": gathered_digest(unwrapped),
        "steps": trainer.state.global_step,
        "refill_rounds": [
            e["dynamic_sampling/refill_rounds"]
            for e in trainer.state.log_history
            if "loss" in e and "dynamic_sampling/refill_rounds" in e
        ],
        "rewards": [e["reward"] for e in trainer.state.log_history if "reward" in e],
        "used_vllm": trainer.args.use_vllm,
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    arguments = sys.argv[1:]
    use_vllm = "--vllm" in arguments
    arguments = [a for a in arguments if a != "--vllm"]
    main(Path(arguments[0]), use_vllm, arguments[1:])
