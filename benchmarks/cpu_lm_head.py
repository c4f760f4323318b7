"""One GRPO loss forward+backward on a CPU, with and without scoring only the completion positions.

    python benchmarks/cpu_lm_head.py [--model qwen2-32k|qwen2-262k|gemma3-270m] [--repeats 3] [--threads N]
                                     [--prompt-length 260] [--completion-length 24] [--num-completions 4]

`RPTTrainer` on a CPU scores only the completion positions through TRL's fused LM head (`rpt_trl.trainer.cpu_lm_head`);
TRL 1.16 alone scores every position, the prompt included, over the whole vocabulary. This times
`trainer.compute_loss(...)` plus `loss.backward()` on one batch of `--num-completions` sequences (left-padded
prompts, right-padded completions, advantages of both signs): the baseline with TRL's own
`_get_per_token_logps_and_entropies`, the candidate with RPTTrainer's, interleaved in the same run so that both see
the same machine load. It reports the best of `--repeats` of each, their ratio, and the median of the ratios within
each interleaved pair, and checks that both give the same loss and gradients.

Models are randomly initialised from a config built here (no download): two tiny Qwen2 models (2 layers, hidden 256)
with a 32k and a 262k vocabulary, and one with the shapes of Gemma 3 270M (18 layers, hidden 640, 262k vocabulary),
whose compute is that of the embedded demo model.
"""

import argparse
import functools
import json
import os
import statistics
import time

import torch
from trl import GRPOTrainer


def make_model(name: str) -> torch.nn.Module:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    if name.startswith("qwen2-"):
        vocab_size = {"qwen2-32k": 32768, "qwen2-262k": 262144}[name]
        config = Qwen2Config(
            vocab_size=vocab_size,
            hidden_size=256,
            intermediate_size=512,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            tie_word_embeddings=True,
        )
        return Qwen2ForCausalLM(config)
    # The shapes of google/gemma-3-270m (its config.json), random weights.
    config = Gemma3TextConfig(
        vocab_size=262144,
        hidden_size=640,
        intermediate_size=2048,
        num_hidden_layers=18,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        sliding_window=512,
        max_position_embeddings=32768,
        query_pre_attn_scalar=256,
        tie_word_embeddings=True,
    )
    return Gemma3ForCausalLM(config)


def make_trainer(model: torch.nn.Module, output_dir: str, completion_length: int, num_completions: int):
    from rpt_trl import RPTConfig, RPTTrainer
    from rpt_trl.experiments.tiny import animal_corpus, last_word_dataset, make_tiny_tokenizer

    tokenizer = make_tiny_tokenizer()  # only for the trainer's setup; the batch below is made of model token ids
    args = RPTConfig(
        output_dir=output_dir,
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=num_completions,
        num_generations=num_completions,
        max_completion_length=completion_length,
        report_to="none",
        disable_tqdm=True,
    )
    train = last_word_dataset(tokenizer, animal_corpus())
    trainer = RPTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # what `Trainer.train` sets before the first step
    return trainer


def make_batch(vocab_size: int, prompt_length: int, completion_length: int, num_completions: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    prompt_ids = torch.randint(2, vocab_size, (num_completions, prompt_length), generator=generator)
    completion_ids = torch.randint(2, vocab_size, (num_completions, completion_length), generator=generator)
    prompt_mask, completion_mask = torch.ones_like(prompt_ids), torch.ones_like(completion_ids)
    prompt_mask[0, : prompt_length // 20] = 0  # one shorter prompt, left-padded
    completion_mask[1, completion_length // 2 :] = 0  # one completion that stopped early
    advantages = torch.linspace(-1.0, 1.0, num_completions)
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": advantages,
        "num_items_in_batch": completion_mask.sum(),
    }


def loss_step(trainer, batch: dict) -> tuple[float, torch.Tensor, dict[str, torch.Tensor]]:
    """One `compute_loss` forward and backward; returns the time, the loss and the gradients."""
    trainer.model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    elapsed = time.perf_counter() - start
    gradients = {name: p.grad for name, p in trainer.model.named_parameters() if p.grad is not None}
    return elapsed, loss.detach(), gradients


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["qwen2-32k", "qwen2-262k", "gemma3-270m"], default="qwen2-262k")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt_length", "--prompt-length", type=int, default=260)
    parser.add_argument("--completion_length", "--completion-length", type=int, default=24)
    parser.add_argument("--num_completions", "--num-completions", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--output_dir", "--output-dir", default="outputs/benchmark-cpu-lm-head")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = make_model(args.model)
    trainer = make_trainer(model, args.output_dir, args.completion_length, args.num_completions)
    batch = make_batch(model.config.vocab_size, args.prompt_length, args.completion_length, args.num_completions)
    trl_scoring = functools.partial(GRPOTrainer._get_per_token_logps_and_entropies, trainer)

    def baseline():
        trainer._get_per_token_logps_and_entropies = trl_scoring  # the instance attribute hides RPTTrainer's
        try:
            return loss_step(trainer, batch)
        finally:
            del trainer._get_per_token_logps_and_entropies

    def candidate():
        return loss_step(trainer, batch)

    times = {"baseline": [], "candidate": []}
    for _ in range(args.repeats):  # interleaved, so that both see the same load
        elapsed, baseline_loss, baseline_gradients = baseline()
        times["baseline"].append(elapsed)
        elapsed, candidate_loss, candidate_gradients = candidate()
        times["candidate"].append(elapsed)

    max_gradient_difference = max(
        float((candidate_gradients[name] - gradient).abs().max()) for name, gradient in baseline_gradients.items()
    )
    gradients_close = baseline_gradients.keys() == candidate_gradients.keys() and all(
        torch.allclose(candidate_gradients[name], gradient, rtol=1e-4, atol=1e-6)
        for name, gradient in baseline_gradients.items()
    )
    best = {name: min(values) for name, values in times.items()}
    # Under a shared load one repetition can be slowed more than its neighbour; the ratio within each interleaved
    # pair, and its median, say the same as the best-of ratio with less luck involved.
    paired_ratios = [b / c for b, c in zip(times["baseline"], times["candidate"])]
    print(
        json.dumps(
            {
                "model": args.model,
                "parameters": sum(p.numel() for p in model.parameters()),
                "vocab_size": model.config.vocab_size,
                "batch": f"{args.num_completions} x ({args.prompt_length} prompt + {args.completion_length} completion)",
                "torch_threads": torch.get_num_threads(),
                "load_average_after": os.getloadavg(),
                "seconds": {name: [round(t, 3) for t in values] for name, values in times.items()},
                "best_seconds": {name: round(t, 3) for name, t in best.items()},
                "speedup": round(best["baseline"] / best["candidate"], 2),
                "paired_ratios": [round(r, 2) for r in paired_ratios],
                "median_paired_ratio": round(statistics.median(paired_ratios), 2),
                "loss_abs_difference": float((candidate_loss - baseline_loss).abs()),
                "max_gradient_abs_difference": max_gradient_difference,
                "gradients_allclose": gradients_close,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
