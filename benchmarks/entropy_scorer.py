"""Entropy scorer against a bare forward pass and against one pass per position: time and peak memory.

    python benchmarks/entropy_scorer.py [--model PATH_OR_ID] [--lengths 512 1024 2048] [--repeats 3]

Default model: the embedded Gemma 3 270M (262k vocabulary, float32, CPU), so the full-vocabulary logits that the
scorer avoids are as large as they get. Three measurements, each against a baseline in the same run:

1. Time: `compute_token_entropy` (top-16) against `model(input_ids).logits` on the same tokens and batch (best of
   `--repeats`, interleaved so both see the same machine load).
2. Time: against the naive approach, one forward pass per position, on a short document.
3. Peak RSS: each of the scorer and the bare forward in a fresh process per document length, measured from the
   moment the model is loaded (Linux); the report gives the peak and the peak above the loaded model's RSS.
"""

import argparse
import json
import math
import subprocess
import sys
from functools import partial

import torch
from reward_throughput import best_of


GIB = 1024 * 1024  # KiB per GiB


def load(model_name: str | None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rpt_trl.models import EMBEDDED_MODEL_ID, resolve_model

    path = resolve_model(model_name or EMBEDDED_MODEL_ID)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, tokenizer


def document(tokenizer, num_tokens: int, seed: int = 0) -> str:
    """Generated worked solutions, cut at exactly `num_tokens` tokens."""
    from rpt_trl.experiments.arithmetic_demo import arithmetic_corpus

    text, k = "", 0
    while len(tokenizer(text, add_special_tokens=False)["input_ids"]) < num_tokens:
        text += "\n\n".join(arithmetic_corpus(16, seed=seed + k)) + "\n\n"
        k += 1
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:num_tokens]
    out = tokenizer.decode(ids)
    assert len(tokenizer(out, add_special_tokens=False)["input_ids"]) == num_tokens, "re-tokenisation changed length"
    return out


def bare_forward(model, tokenizer, texts):
    ids = [[tokenizer.bos_token_id, *tokenizer(t, add_special_tokens=False)["input_ids"]] for t in texts]
    width = max(len(i) for i in ids)
    input_ids = torch.zeros((len(ids), width), dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for b, row in enumerate(ids):
        input_ids[b, : len(row)], mask[b, : len(row)] = torch.tensor(row), 1
    with torch.inference_mode():
        return model(input_ids=input_ids, attention_mask=mask).logits


def scorer(model, tokenizer, texts, max_length, position_chunk_size=None):
    from rpt_trl import compute_token_entropy

    return compute_token_entropy(
        texts, model, tokenizer, batch_size=len(texts), max_length=max_length, show_progress=False,
        position_chunk_size=position_chunk_size,
    )  # fmt: skip


def naive(model, tokenizer, text):
    ids = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]
    values = [math.nan]
    with torch.inference_mode():
        for t in range(2, len(ids)):  # predict ids[t] from ids[:t]
            # logits_to_keep=1: the head runs on the last position only, as a careful naive implementation would
            logits = model(input_ids=torch.tensor([ids[:t]]), logits_to_keep=1).logits[0, -1].double()
            probs = torch.softmax(logits.topk(16).values, -1)
            values.append(float(-(probs * probs.log()).sum()))
    return values


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def child(mode: str, num_tokens: int, model_name: str | None, chunk: int | None = None) -> None:
    """One measurement in a fresh process: RSS once the model is loaded, then the peak RSS of the work (KiB).

    Loading reaches a higher peak than the work itself, so the peak is reset after loading and a short warm-up (Linux: writing 5 to
    /proc/self/clear_refs resets VmHWM) and read from /proc/self/status afterwards.
    """
    model, tokenizer = load(model_name)
    text = document(tokenizer, num_tokens)
    bare_forward(model, tokenizer, ["Warm up"])  # page in every weight (safetensors are memory-mapped)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    loaded = _status_kib("VmRSS")
    if mode == "bare":
        bare_forward(model, tokenizer, [text])
    else:
        scorer(model, tokenizer, [text], num_tokens + 1, chunk)
    print(json.dumps({"loaded_kib": loaded, "peak_kib": _status_kib("VmHWM")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Hub id or path; default: the embedded Gemma 3 270M.")
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive_tokens", "--naive-tokens", type=int, default=96)
    parser.add_argument(
        "--chunks", type=int, nargs="*", default=[], help="position chunk sizes to time besides the default"
    )
    parser.add_argument(
        "--parts", nargs="+", default=["forward", "naive", "memory"], choices=["forward", "naive", "memory"]
    )
    parser.add_argument("--child", nargs=2, metavar=("MODE", "TOKENS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, _, chunk = args.child[0].partition("-")  # "scorer-1024": the scorer with 1,024-position chunks
        child(mode, int(args.child[1]), args.model, int(chunk) if chunk else None)
        return

    model, tokenizer = load(args.model)
    print(f"model: {args.model or 'embedded Gemma 3 270M'}, vocabulary {model.config.vocab_size}, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip

    if "forward" in args.parts:
        compare_with_forward(model, tokenizer, args)
    if "naive" in args.parts:
        compare_with_naive(model, tokenizer, args)
    if "memory" in args.parts:
        compare_memory(args)


def compare_with_forward(model, tokenizer, args) -> None:
    from rpt_trl.data.entropy import positions_per_chunk

    print(f"\n1. Scorer against a bare forward pass, same tokens and batch (best of {args.repeats})")
    print(
        "| batch x tokens | chunk (positions) | bare forward s | scorer s | ratio |\n| --- | --- | --- | --- | --- |"
    )
    shapes = [(1, max(args.lengths))] + ([(4, min(args.lengths))] if len(args.lengths) > 1 else [])
    for batch, tokens in shapes:
        texts = [document(tokenizer, tokens, seed=100 * k) for k in range(batch)]
        chunks = [None, *args.chunks]  # None: the scorer's default, sized by memory
        bare_times, scorer_times = [], {chunk: [] for chunk in chunks}
        for _ in range(args.repeats):  # interleaved
            bare_times.append(best_of(partial(bare_forward, model, tokenizer, texts), 1))
            for chunk in chunks:
                scorer_times[chunk].append(best_of(partial(scorer, model, tokenizer, texts, tokens + 1, chunk), 1))
        bare = min(bare_times)
        for chunk in chunks:
            scored = min(scorer_times[chunk])
            label = chunk or f"default ({positions_per_chunk(model)})"
            print(f"| {batch} x {tokens} | {label} | {bare:.2f} | {scored:.2f} | {scored / bare:.3f} |")


def compare_with_naive(model, tokenizer, args) -> None:
    print(f"\n2. Scorer against one forward pass per position ({args.naive_tokens}-token document)")
    text = document(tokenizer, args.naive_tokens, seed=7)
    naive_time = best_of(lambda: naive(model, tokenizer, text), 1)
    scorer_time = best_of(lambda: scorer(model, tokenizer, [text], args.naive_tokens + 1), args.repeats)
    fast = scorer(model, tokenizer, [text], args.naive_tokens + 1)[0]
    slow = naive(model, tokenizer, text)
    gap = max(abs(a - b) for a, b in zip(fast[1:], slow[1:]))
    print(f"naive {naive_time:.2f} s, scorer {scorer_time:.3f} s: the scorer is {naive_time / scorer_time:.1f}x faster; "
          f"largest entropy difference {gap:.2e} nats")  # fmt: skip


def compare_memory(args) -> None:
    print("\n3. Peak RSS during the work, one fresh process per run (GiB)")
    print(
        "| tokens | scorer chunk | bare peak | scorer peak | bare above load | scorer above load | scorer / bare (peak) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for tokens in args.lengths:
        rss = {}
        for mode in ["bare", "scorer", *(f"scorer-{chunk}" for chunk in args.chunks)]:
            command = [sys.executable, __file__, "--child", mode, str(tokens)]
            if args.model:
                command += ["--model", args.model]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            rss[mode] = json.loads(output.strip().splitlines()[-1])
        bare = rss.pop("bare")
        for mode, used in rss.items():
            above = (used["peak_kib"] - used["loaded_kib"]) / GIB
            print(
                f"| {tokens} | {mode.partition('-')[2] or 'default'} | {bare['peak_kib'] / GIB:.2f} | "
                f"{used['peak_kib'] / GIB:.2f} | {(bare['peak_kib'] - bare['loaded_kib']) / GIB:.2f} | {above:.2f} | "
                f"{used['peak_kib'] / bare['peak_kib']:.3f} |"
            )


if __name__ == "__main__":
    main()
