"""Train RPT with vLLM colocated generation on CPU and write what the engine ended with: run by test_engines_vllm.py.

Each scenario runs in its own process, because a colocated engine initialises torch.distributed in the process that
builds it.

Usage: python tests/vllm_colocate_driver.py <scenario> <workdir>
- `train`: 2 steps with `stop_after_answer`; records the trainer's weights after step 1 (the weights step 2 generates
  with), the engine's weights after training, and the logged metrics.
- `train_shared_prefix`: `train` with `shared_prefix_loss`; also scores every trained micro-batch a second time without
  it, and records how far that loss and its gradients are from the shared ones.
- `resume`: 1 step with transformers generation saving checkpoint-1, then a vLLM run resumed from it to step 2;
  records the checkpoint's weights and the engine's weights.
"""

import functools
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, TrainerCallback

import rpt_trl.trainer.shared_prefix as shared_prefix
from rpt_trl import RPTConfig, RPTTrainer
from rpt_trl.experiments.tiny import warm_started_world


def engine_weights(trainer: RPTTrainer) -> dict[str, torch.Tensor]:
    """The colocated engine's parameters, under vLLM's (fused) names."""
    runner = trainer.vllm_generation.llm.llm_engine.model_executor.driver_worker.model_runner
    return {name: tensor.detach().clone() for name, tensor in runner.model.named_parameters()}


def as_engine_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Qwen2 state dict under vLLM's names: q/k/v fused into qkv_proj, gate/up into gate_up_proj."""
    fused = {}
    for name, tensor in state.items():
        for parts, target in (
            (("q_proj", "k_proj", "v_proj"), "qkv_proj"),
            (("gate_proj", "up_proj"), "gate_up_proj"),
        ):
            if f".{parts[0]}." in name:
                fused[name.replace(parts[0], target)] = torch.cat([state[name.replace(parts[0], p)] for p in parts])
        if not any(f".{p}." in name for p in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")):
            fused[name] = tensor
    return fused


def max_difference(engine: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> dict[str, float]:
    expected = as_engine_names(expected)
    missing = sorted(set(engine) - set(expected))
    if missing:
        raise KeyError(f"engine parameters with no trainer counterpart: {missing}")
    differences = {}
    for name, tensor in engine.items():
        rows = expected[name].shape[0]  # vLLM pads the vocabulary dimension of the embedding; padding rows are unused
        # The engine holds the weights in its own dtype (bfloat16 on a CPU with bf16 support): compare in that dtype.
        target = expected[name].to(tensor.dtype)
        differences[name] = (tensor[:rows].float() - target.float()).abs().max().item()
    return differences


def config(workdir: Path, **overrides) -> RPTConfig:
    settings = dict(
        output_dir=str(workdir / "run"), use_cpu=True, bf16=False, use_vllm=True, vllm_mode="colocate",
        vllm_gpu_memory_utilization=0.2, vllm_max_model_length=256, max_steps=2, per_device_train_batch_size=16,
        num_generations=8, max_completion_length=16, learning_rate=2e-3, temperature=1.0, logging_steps=1,
        save_strategy="no", report_to="none", disable_tqdm=True, prompt_template="{context}", prompt_format="text",
        seed=0,
    )  # fmt: skip
    settings.update(overrides)
    return RPTConfig(**settings)


class Snapshot(TrainerCallback):
    """Copies the model's parameters at the end of each optimizer step."""

    def __init__(self):
        self.by_step: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.by_step[state.global_step] = {n: t.detach().clone() for n, t in model.state_dict().items()}


class UnsharedComparison:
    """Wraps the trainer's `_compute_loss`: each micro-batch's loss and parameter gradients are also computed with
    `shared_prefix_loss` off, and their largest difference from the shared ones kept (relative to the largest
    unshared gradient); and every scoring batch that the shared-prefix path scored is counted."""

    def __init__(self, trainer: RPTTrainer):
        self.trainer, self.compute_loss = trainer, trainer._compute_loss
        self.records: list[dict[str, float]] = []
        self.shared_scorings = 0
        trainer._compute_loss = self
        score = shared_prefix.shared_prefix_per_token_logps

        def counting(*args, **kwargs):
            scored = score(*args, **kwargs)
            self.shared_scorings += scored is not None
            return scored

        shared_prefix.shared_prefix_per_token_logps = counting

    def __call__(self, model: torch.nn.Module, inputs: dict) -> torch.Tensor:
        loss = self.compute_loss(model, inputs)
        self.trainer.args.shared_prefix_loss = False
        try:
            unshared = self.compute_loss(model, inputs)
        finally:
            self.trainer.args.shared_prefix_loss = True
        parameters = [p for p in model.parameters() if p.requires_grad]
        gradients = torch.autograd.grad(loss, parameters, retain_graph=True)  # the trainer's backward follows
        unshared_gradients = torch.autograd.grad(unshared, parameters)
        largest = max(g.abs().max().item() for g in unshared_gradients)
        difference = max((a - b).abs().max().item() for a, b in zip(gradients, unshared_gradients))
        self.records.append(
            {"loss": loss.item(), "unshared_loss": unshared.item(), "largest_gradient": largest,
             "gradient_difference": difference / largest}
        )  # fmt: skip
        return loss


def save_world(workdir: Path) -> tuple[Path, object, object]:
    model, tokenizer, dataset, _ = warm_started_world(num_attention_heads=2)
    path = workdir / "policy"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, tokenizer, dataset


def train(workdir: Path, shared_prefix_loss: bool = False) -> dict:
    path, tokenizer, dataset = save_world(workdir)
    initial = AutoModelForCausalLM.from_pretrained(path).state_dict()
    snapshot = Snapshot()
    trainer = RPTTrainer(
        model=str(path), args=config(workdir, stop_after_answer=True, shared_prefix_loss=shared_prefix_loss),
        train_dataset=dataset, processing_class=tokenizer, callbacks=[snapshot],
    )  # fmt: skip
    comparison = UnsharedComparison(trainer) if shared_prefix_loss else None
    trainer.train()
    engine = engine_weights(trainer)
    return {
        "shared_prefix_loss": trainer.args.shared_prefix_loss,
        "gradient_checkpointing": trainer.args.gradient_checkpointing,
        "unshared_comparison": comparison.records if comparison else None,
        "shared_scorings": comparison.shared_scorings if comparison else None,
        "engine_vs_step1": max_difference(engine, snapshot.by_step[1]),
        "engine_vs_step2": max_difference(engine, snapshot.by_step[2]),
        "engine_vs_initial": max_difference(engine, initial),
        "engine_dtype": str(next(iter(engine.values())).dtype),
        "log_history": trainer.state.log_history,
        "generation_kwargs": trainer.args.generation_kwargs,
    }


def resume(workdir: Path) -> dict:
    from safetensors.torch import load_file

    path, tokenizer, dataset = save_world(workdir)
    first = RPTTrainer(
        model=str(path), args=config(workdir, use_vllm=False, max_steps=1, save_strategy="steps", save_steps=1),
        train_dataset=dataset, processing_class=tokenizer,
    )  # fmt: skip
    first.train()
    del first
    checkpoint = workdir / "run" / "checkpoint-1"
    resumed = RPTTrainer(
        model=str(path), args=config(workdir, max_steps=2), train_dataset=dataset, processing_class=tokenizer
    )
    resumed.train(resume_from_checkpoint=str(checkpoint))
    engine = engine_weights(resumed)
    saved = load_file(checkpoint / "model.safetensors")
    if "lm_head.weight" not in saved:  # tied embeddings are saved once
        saved["lm_head.weight"] = saved["model.embed_tokens.weight"]
    initial = AutoModelForCausalLM.from_pretrained(path).state_dict()
    return {
        "engine_vs_checkpoint": max_difference(engine, saved),
        "engine_vs_initial": max_difference(engine, initial),
        "steps": resumed.state.global_step,
    }


if __name__ == "__main__":
    scenario, workdir = sys.argv[1], Path(sys.argv[2])
    scenarios = {
        "train": train,
        "train_shared_prefix": functools.partial(train, shared_prefix_loss=True),
        "resume": resume,
    }
    result = scenarios[scenario](workdir)
    (workdir / f"{scenario}.json").write_text(json.dumps(result, default=float))
