"""vLLM against transformers on the embedded Gemma 3 270M, on the demo's prompts and settings, in one run.

    .venv-engines/bin/python benchmarks/engines.py [--steps 3] [--prompts 8] [--output engines.json]

Run it in the engine lane's environment (`make install-engines`), on a quiet machine: both sides share the CPU.
It measures, in this order:
1. RPT steps with transformers generation (`RPTTrainer`, the demo's settings, `stop_after_answer=True`);
2. RPT steps with vLLM colocated (`use_vllm=True`), and the engine's start time inside `RPTTrainer`;
3. generation on the demo's prompts (each `--num-generations` times), transformers `generate` against the colocated
   engine, alternated over `--rounds` rounds (best round of each), with and without stopping after the answer;
   the tokens the stop saves are counted on the same seeded samples.
Prints a table and writes the figures as JSON.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="RPT steps per generation backend.")
    parser.add_argument("--prompts", type=int, default=8, help="Demo prompts for the generation benchmark.")
    parser.add_argument(
        "--num_generations", "--num-generations", type=int, default=4, help="Completions per prompt (the demo's G)."
    )
    parser.add_argument(
        "--max_new_tokens", "--max-new-tokens", type=int, default=24, help="The demo's max_completion_length."
    )
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds of the generation benchmark.")
    parser.add_argument("--output", default="engines.json")
    args = parser.parse_args()

    import vllm
    from vllm import SamplingParams

    from rpt_trl import RPTConfig, RPTTrainer
    from rpt_trl.evaluation.next_token import TEMPERATURE
    from rpt_trl.experiments.arithmetic_demo import demo_splits
    from rpt_trl.models import ensure_embedded_model, load_model, load_tokenizer
    from rpt_trl.trainer.generation import AnswerStopLogitsProcessor
    from rpt_trl.trainer.vllm_engine import answer_stop_sampling_kwargs

    started = time.perf_counter()
    path = str(ensure_embedded_model())
    conversion_s = time.perf_counter() - started
    tokenizer, _, _ = load_tokenizer(path)
    train_set = demo_splits(tokenizer).train
    figures: dict = {"model": "gemma-3-270m (embedded)", "conversion_or_cache_s": round(conversion_s, 1)}

    def rpt_args(output_dir: str, **overrides) -> RPTConfig:
        settings = dict(
            output_dir=output_dir, use_cpu=True, bf16=False, seed=0, max_steps=args.steps,
            per_device_train_batch_size=4, num_generations=4, max_completion_length=args.max_new_tokens,
            learning_rate=1e-6, prompt_format="text", stop_after_answer=True, gradient_checkpointing=False,
            logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
        )  # fmt: skip
        settings.update(overrides)
        return RPTConfig(**settings)

    def step_times(trainer: RPTTrainer) -> list[float]:
        return [entry["step_time"] for entry in trainer.state.log_history if "step_time" in entry]

    # 1. RPT steps, transformers generation.
    model = load_model(path, device="cpu", dtype="float32")
    hf_trainer = RPTTrainer(
        model=model,
        args=rpt_args(tempfile.mkdtemp(prefix="rpt-bench-")),
        train_dataset=train_set,
        processing_class=tokenizer,
    )
    hf_trainer.train()
    figures["rpt_step_s_transformers"] = step_times(hf_trainer)

    # 2. RPT steps, vLLM colocated; time the engine's construction inside the trainer.
    engine_start = {}
    original_init = vllm.LLM.__init__

    def timed_init(self, *a, **k):
        began = time.perf_counter()
        original_init(self, *a, **k)
        engine_start["s"] = time.perf_counter() - began

    vllm.LLM.__init__ = timed_init
    vllm_trainer = RPTTrainer(
        model=path,
        args=rpt_args(
            tempfile.mkdtemp(prefix="rpt-bench-"), use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.3
        ),
        train_dataset=train_set,
        processing_class=tokenizer,
    )
    vllm.LLM.__init__ = original_init
    figures["vllm_engine_start_s"] = round(engine_start["s"], 1)
    vllm_trainer.train()
    figures["rpt_step_s_vllm"] = step_times(vllm_trainer)
    # How well the engine's sampling log-probabilities match the trainer's (importance-sampling ratio near 1).
    figures["vllm_sampling_checks"] = [
        {key: round(entry[key], 4) for key in entry if key.startswith("sampling/")}
        for entry in vllm_trainer.state.log_history
        if "step_time" in entry
    ]
    llm = vllm_trainer.vllm_generation.llm
    figures["vllm_engine_dtype"] = str(llm.llm_engine.model_config.dtype)

    # 3. Generation on the demo's prompts, alternating the backends.
    prompts = [row["prompt"] for row in train_set.select(range(args.prompts))]
    # A fresh model: the trainer's own has answer stop installed on its `generate` (stop_after_answer=True).
    generator_model = load_model(path, device="cpu", dtype="float32").eval()

    def transformers_tokens(stop: bool, seed: int) -> tuple[int, float]:
        torch.manual_seed(seed)
        inputs = tokenizer(prompts, return_tensors="pt", padding=True)
        processors = [AnswerStopLogitsProcessor(tokenizer, tokenizer.eos_token_id)] if stop else []
        began = time.perf_counter()
        with torch.no_grad():
            out = generator_model.generate(
                **inputs, do_sample=True, temperature=TEMPERATURE, top_k=0, top_p=1.0, max_new_tokens=args.max_new_tokens,
                num_return_sequences=args.num_generations, logits_processor=processors,
                pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
        seconds = time.perf_counter() - began
        completions = out[:, inputs["input_ids"].shape[1] :]
        ended = completions == tokenizer.eos_token_id
        # Up to and including the first EOS; a completion without one ran to the budget.
        lengths = torch.where(ended.any(1), ended.int().argmax(1) + 1, completions.shape[1])
        return int(lengths.sum()), seconds

    def vllm_tokens(stop: bool, seed: int) -> tuple[int, float]:
        extra = answer_stop_sampling_kwargs() if stop else {}
        params = SamplingParams(
            n=args.num_generations, temperature=TEMPERATURE, max_tokens=args.max_new_tokens, seed=seed, **extra
        )
        began = time.perf_counter()
        requests = llm.generate(prompts, params, use_tqdm=False)
        seconds = time.perf_counter() - began
        return sum(len(o.token_ids) for r in requests for o in r.outputs), seconds

    rates: dict[str, list[float]] = {}
    tokens: dict[str, int] = {}
    for round_index in range(args.rounds):
        for name, run in (("transformers", transformers_tokens), ("vllm", vllm_tokens)):
            for stop in (False, True):
                count, seconds = run(stop, seed=round_index)
                key = f"{name}_{'stop' if stop else 'full'}"
                rates.setdefault(key, []).append(count / seconds)
                if round_index == 0:
                    tokens[key] = count
    figures["generation_tokens_per_s_best"] = {key: round(max(values), 1) for key, values in rates.items()}
    figures["generated_tokens_round0"] = tokens
    best = figures["generation_tokens_per_s_best"]
    figures["vllm_over_transformers_tokens_per_s"] = {
        mode: round(best[f"vllm_{mode}"] / best[f"transformers_{mode}"], 2) for mode in ("full", "stop")
    }
    figures["tokens_saved_by_stop_vllm"] = tokens["vllm_full"] - tokens["vllm_stop"]
    figures["rpt_step_median_s"] = {
        "transformers": round(statistics.median(figures["rpt_step_s_transformers"]), 2),
        "vllm": round(statistics.median(figures["rpt_step_s_vllm"]), 2),
    }
    figures["settings"] = vars(args)
    Path(args.output).write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
