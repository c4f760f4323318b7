"""How closely a vLLM engine's log-probabilities match transformers' on the embedded Gemma 3 270M.

    .venv-engines/bin/python benchmarks/vllm_logprob_agreement.py --dtype float32 [--keep-weights-loadable]

Scores one arithmetic text with transformers (float32) and with vLLM's `prompt_logprobs` in `--dtype`, and prints the
mean and largest absolute difference of the actual tokens' log-probabilities (nats). `--keep-weights-loadable` applies
the CPU weight override that colocated training uses (`keep_cpu_weights_loadable`), to show it changes nothing.
"""

import argparse

import torch


TEXT = (
    "Problem: Ana has 7 pencils and buys 3 more. How many pencils does Ana have now? First we add 7 and 3 to get 10."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--keep_weights_loadable", "--keep-weights-loadable", action="store_true")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from rpt_trl.models import ensure_embedded_model
    from rpt_trl.trainer.vllm_engine import keep_cpu_weights_loadable

    path = str(ensure_embedded_model())
    if args.keep_weights_loadable:
        keep_cpu_weights_loadable()
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenizer(TEXT)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    reference = [log_probs[i - 1, ids[i]].item() for i in range(1, len(ids))]
    llm = LLM(
        model=path, dtype=args.dtype, enforce_eager=True, gpu_memory_utilization=0.3, max_model_len=512,
        max_logprobs=1,
    )  # fmt: skip
    output = llm.generate(
        [TokensPrompt(prompt_token_ids=ids)], SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False
    )[0]
    engine = [output.prompt_logprobs[i][ids[i]].logprob for i in range(1, len(ids))]
    differences = [abs(a - b) for a, b in zip(reference, engine)]
    print(
        f"vLLM {args.dtype} (keep weights loadable: {args.keep_weights_loadable}) vs transformers float32, "
        f"{len(differences)} tokens: mean |diff| {sum(differences) / len(differences):.3g} nats, "
        f"max {max(differences):.3g}"
    )


if __name__ == "__main__":
    main()
