"""Train the tiny recipe under DeepSpeed and write what each rank ran and ended with: launched by test_engines_deepspeed.py.

Usage: accelerate launch --config_file recipes/accelerate_configs/zero3.yaml --use_cpu --mixed_precision no
           --num_processes 2 tests/deepspeed_driver.py <out_dir> [--vllm] [--seed-each-step]
           [RPTConfig overrides as key=value ...]

The settings are the tiny CPU recipe's (`recipes/tiny/rpt/config_cpu.yaml`); `--vllm` saves the tiny policy (with a
head size vLLM's CPU backend supports) and generates with colocated vLLM, as the 14B recipe does. `--seed-each-step`
reseeds torch at the start of every step, so that two runs whose steps draw differently from torch's generator (the
shared-prefix loss shuffles its batch by group, TRL by row) still generate the same rollouts from the same weights.
"""

import hashlib
import json
import sys
from pathlib import Path

import deepspeed
import torch
import yaml
from transformers import TrainerCallback, set_seed

import rpt_trl.trainer.shared_prefix as shared_prefix
from rpt_trl import RPTConfig, RPTTrainer
from rpt_trl.experiments.tiny import warm_started_world


RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "rpt" / "config_cpu.yaml"
# How far the trainer's log-probabilities of the sampled tokens are from vLLM's, as TRL logs it with vLLM.
SAMPLING_LOGP_DIFFERENCE = "sampling/sampling_logp_difference/max"


def gathered_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full parameters, gathered from their ZeRO-3 partitions where they are partitioned, in float32 on the CPU."""
    parameters = dict(model.named_parameters())
    with deepspeed.zero.GatheredParameters(list(parameters.values()), modifier_rank=None):
        return {name: parameter.detach().cpu().float().clone() for name, parameter in parameters.items()}


def parameters_digest(parameters: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name, parameter in sorted(parameters.items()):
        digest.update(name.encode())
        digest.update(parameter.numpy().tobytes())
    return digest.hexdigest()


def gathered_digest(model: torch.nn.Module) -> str:
    """A digest of the full parameters (see `gathered_parameters`)."""
    return parameters_digest(gathered_parameters(model))


class SeedEachStep(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        set_seed(args.seed + state.global_step)


def count_shared_prefix_scorings() -> list[int]:
    """Count the scoring batches that the shared-prefix path scored (it returns None for TRL's path to score)."""
    scored = [0]
    score = shared_prefix.shared_prefix_per_token_logps

    def counting(*args, **kwargs):
        result = score(*args, **kwargs)
        scored[0] += result is not None
        return result

    shared_prefix.shared_prefix_per_token_logps = counting
    return scored


def main(out_dir: Path, use_vllm: bool, seed_each_step: bool, overrides: list[str]) -> None:
    settings = yaml.safe_load(RECIPE.read_text())
    settings.pop("tiny_world", None)
    for override in overrides:
        key, value = override.split("=", 1)
        settings[key] = yaml.safe_load(value)
    settings.update(output_dir=str(out_dir / "run"))
    model, tokenizer, dataset, _ = warm_started_world(seed=settings["seed"], num_attention_heads=2)
    initial = gathered_parameters(model)
    if use_vllm:
        path = out_dir / "policy"
        model.save_pretrained(path)  # every rank writes the same bytes; vLLM loads the policy from a folder
        tokenizer.save_pretrained(path)
        settings.update(
            use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.1, vllm_max_model_length=256,
            vllm_enable_sleep_mode=False,
        )  # fmt: skip
        model = str(path)
    callbacks = [SeedEachStep()] if seed_each_step else []
    trainer = RPTTrainer(
        model=model, args=RPTConfig(**settings), train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks
    )
    shared_prefix_scorings = count_shared_prefix_scorings()
    trainer.train()
    engine = trainer.model_wrapped  # the DeepSpeed engine, once training has prepared it
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    partitioned = [p for p in unwrapped.parameters() if hasattr(p, "ds_id")]
    trainer.save_model(str(out_dir / "final"))
    rank = trainer.accelerator.process_index
    final = gathered_parameters(unwrapped)
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
        "initial": parameters_digest(initial),
        "final": parameters_digest(final),
        "largest_change": max((final[name] - parameter).abs().max().item() for name, parameter in initial.items()),
        "steps": trainer.state.global_step,
        "refill_rounds": [
            e["dynamic_sampling/refill_rounds"]
            for e in trainer.state.log_history
            if "loss" in e and "dynamic_sampling/refill_rounds" in e
        ],
        "rewards": [e["reward"] for e in trainer.state.log_history if "reward" in e],
        "sampling_logp_differences": [
            e[SAMPLING_LOGP_DIFFERENCE] for e in trainer.state.log_history if SAMPLING_LOGP_DIFFERENCE in e
        ],
        "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
        "grad_norms": [e["grad_norm"] for e in trainer.state.log_history if "grad_norm" in e],
        "shared_prefix_scorings": shared_prefix_scorings[0],
        "used_vllm": trainer.args.use_vllm,
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    arguments = sys.argv[1:]
    flags = {"--vllm", "--seed-each-step"}
    use_vllm, seed_each_step = "--vllm" in arguments, "--seed-each-step" in arguments
    arguments = [a for a in arguments if a not in flags]
    main(Path(arguments[0]), use_vllm, seed_each_step, arguments[1:])
    from driver_exit import exit_without_teardown

    exit_without_teardown()
