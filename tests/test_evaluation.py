"""Evaluation: standard and reasoning next-token accuracy, pass@k, results schema, multiple choice, scaling fits,
reasoning patterns, the training callback, the `evaluate` module and the commands."""

import copy
import itertools
import json
import random
from math import comb
from pathlib import Path

import pytest
import torch

from rpt_trl import build_next_token_dataset, prefix_match_reward
from rpt_trl.evaluation import (
    CompletionEntropy,
    NextTokenAccuracyCallback,
    ScalingFitError,
    compute_from_trainer_state,
    count_patterns,
    extract_choice,
    fit_power_law,
    next_token_table,
    normalize_row,
    pass_at_k,
    reasoning_scores,
    reasoning_summary,
    row_splits,
    standard_scores,
    summarize,
    transformers_generator,
    validate_result,
    zero_shot_table,
)
from rpt_trl.evaluation.callback import stop_tokens
from rpt_trl.experiments.tiny import animal_corpus, make_tiny_model, make_tiny_tokenizer, warm_started_world
from rpt_trl.trainer.prefix_cache import MIN_SHARED_PREFIX, shared_prefix_length


REPO_ROOT = Path(__file__).resolve().parents[1]


# --- standard mode ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lm_world():
    """A tiny Qwen2 trained for a few steps as a plain LM on animal sentences, so its argmax is right some of the time;
    a next-token dataset built from the same documents, with difficulty labels on some rows."""
    tokenizer = make_tiny_tokenizer()
    sentences = animal_corpus()
    documents = [" ".join(sentences[i : i + 6]) + "." for i in range(0, len(sentences), 6)]
    model = make_tiny_model(tokenizer, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = tokenizer(documents, add_special_tokens=False, padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    for _ in range(30):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    dataset = build_next_token_dataset(
        documents,
        tokenizer,
        prompt_template="{context}",
        prompt_format="text",
        min_context_tokens=2,
        show_progress=False,
    )
    rng = random.Random(0)
    labels_per_row = [rng.choice([[], ["easy"], ["easy", "medium"], ["easy", "medium", "hard"]]) for _ in dataset]
    dataset = dataset.add_column("difficulty", labels_per_row)
    return model, tokenizer, documents, dataset


@torch.no_grad()
def _plain_argmax_scores(model, tokenizer, documents, dataset):
    """One forward pass per position on the document's tokens before it: the independent reference."""
    scores = []
    for row in dataset:
        ids = tokenizer(documents[row["document_id"]], add_special_tokens=False)["input_ids"]
        logits = model(input_ids=torch.tensor([ids[: row["position"]]])).logits
        scores.append(float(logits[0, -1].argmax().item() == ids[row["position"]]))
    return scores


def test_standard_accuracy_equals_plain_pytorch_per_split(lm_world):
    model, tokenizer, documents, dataset = lm_world
    scores = standard_scores(model, tokenizer, dataset, documents, show_progress=False)
    reference = _plain_argmax_scores(model, tokenizer, documents, dataset)
    assert scores == reference
    assert 0.2 < sum(scores) / len(scores) < 0.95  # neither all right nor all wrong: the comparison means something

    overall, splits = summarize(list(dataset), scores)
    assert overall == {"accuracy": pytest.approx(sum(reference) / len(reference)), "n": len(dataset)}
    for split in ("easy", "medium", "hard"):
        members = [s for s, row in zip(reference, dataset) if split in row["difficulty"]]
        assert splits[split]["n"] == len(members) > 0
        assert splits[split]["accuracy"] == pytest.approx(sum(members) / len(members))
    assert splits["easy"]["n"] > splits["medium"]["n"] > splits["hard"]["n"]  # nested splits


def test_standard_mode_one_forward_pass_per_document(lm_world):
    model, tokenizer, documents, dataset = lm_world
    calls = []
    handle = model.register_forward_hook(lambda module, args, output: calls.append(1))
    try:
        standard_scores(model, tokenizer, dataset, documents, show_progress=False)
    finally:
        handle.remove()
    assert len(calls) == len(set(dataset["document_id"])) < len(dataset)


def test_standard_mode_rejects_other_documents(lm_world):
    model, tokenizer, documents, dataset = lm_world
    with pytest.raises(ValueError, match="documents and the tokenizer the dataset was built with"):
        standard_scores(model, tokenizer, dataset, list(reversed(documents)), show_progress=False)
    with pytest.raises(ValueError, match="documents were given"):
        standard_scores(model, tokenizer, dataset, documents[:1], show_progress=False)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"difficulty": ["easy", "medium"]}, ["easy", "medium"]),
        ({"difficulty": []}, []),
        ({"entropy": 0.3}, []),
        ({"entropy": 1.2}, ["easy", "medium"]),
        ({"entropy": 1.6}, ["easy", "medium", "hard"]),
        ({"entropy": float("nan")}, []),
        ({}, []),
    ],
)
def test_row_splits(row, expected):
    assert row_splits(row) == expected


# --- reasoning mode and pass@k ---------------------------------------------------------------------------------------


def test_reasoning_scores_equal_the_reward_with_a_controlled_generator():
    rows = [
        {"prompt": "a", "ground_truth": " size of", "ground_truth_boundaries": [5, 8], "difficulty": ["easy"]},
        {"prompt": "b", "ground_truth": " 42.", "ground_truth_boundaries": [3, 4], "difficulty": []},
    ]
    outputs = {
        "a": ["</think> \\boxed{ size}", "</think> \\boxed{ si}", "no answer", "</think> \\boxed{ size of}"],
        "b": ["</think> \\boxed{ 42}", "</think> \\boxed{42}", "</think> \\boxed{ 4}", "\\boxed{ 42}"],
    }
    completions, rewards, predictions = reasoning_scores(
        rows, lambda prompts, k: [outputs[p][:k] for p in prompts], num_samples=4
    )
    for row, row_completions, row_rewards in zip(rows, completions, rewards):
        expected = prefix_match_reward(
            row_completions, [row["ground_truth"]] * 4, [row["ground_truth_boundaries"]] * 4
        )
        assert row_rewards == expected
    assert rewards == [[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]]
    assert predictions[1] == [" 42", "42", " 4", None]

    overall, splits = reasoning_summary(rows, rewards, predictions, pass_k=[2])
    assert overall["accuracy"] == pytest.approx((0.5 + 0.25) / 2)
    assert overall["pass@1"] == pytest.approx(overall["accuracy"])
    assert overall["pass@2"] == pytest.approx((pass_at_k(4, 2, 2) + pass_at_k(4, 1, 2)) / 2)
    assert overall["pass@4"] == 1.0
    assert overall["answer_rate"] == pytest.approx((3 / 4 + 3 / 4) / 2)
    assert splits == {"easy": pytest.approx({**splits["easy"], "accuracy": 0.5, "n": 1})}


@pytest.fixture(scope="module")
def warm_world():
    """The learning test's warm-started tiny policy (it writes the answer format, right about a quarter of the time)."""
    return warm_started_world(seed=0)


def test_reasoning_mode_on_a_warm_started_tiny_model_is_seeded_and_scored_by_the_reward(warm_world):
    model, tokenizer, dataset, _ = warm_world
    rows = list(dataset.select(range(8)))
    generate = transformers_generator(
        model, tokenizer, max_new_tokens=12, temperature=1.0, batch_size=16, seed=3, show_progress=False
    )
    completions, rewards, _ = reasoning_scores(rows, generate, num_samples=4)
    again, _, _ = reasoning_scores(rows, generate, num_samples=4)
    assert completions == again  # seeded: the same draws
    flat = [c for per_row in completions for c in per_row]
    expected = prefix_match_reward(
        flat,
        [r["ground_truth"] for r in rows for _ in range(4)],
        [r["ground_truth_boundaries"] for r in rows for _ in range(4)],
    )
    assert [r for per_row in rewards for r in per_row] == expected
    assert 0 < sum(expected) < len(expected)  # the warm start answers " meow" about a quarter of the time


def test_completion_entropy_against_a_forward_pass_of_each_completion(warm_world, monkeypatch):
    model, tokenizer, dataset, _ = warm_world
    rows = list(dataset.select(range(6)))
    prompts = [r["prompt"] for r in rows]
    written = []
    generate_calls = model.generate

    def keep(*args, **kwargs):
        written.append(generate_calls(*args, **kwargs))
        return written[-1]

    monkeypatch.setattr(model, "generate", keep)
    stops = stop_tokens(model, tokenizer)
    entropy = CompletionEntropy(0.7, stops)  # not the sampling temperature: the distribution is taken at 0.7
    generate = transformers_generator(
        model, tokenizer, max_new_tokens=12, temperature=1.0, batch_size=6, seed=1, prefix_cache=False,
        entropy=entropy, show_progress=False,
    )  # fmt: skip
    generate(prompts, 1)
    (output,) = written
    width = max(len(ids) for ids in tokenizer(prompts)["input_ids"])  # left-padded prompts, completions after
    total, tokens, lengths = 0.0, 0, []
    with torch.no_grad():
        for row, prompt in enumerate(prompts):
            prompt_ids = tokenizer(prompt)["input_ids"]
            completion = output[row, width:].tolist()
            ends = [i for i, token in enumerate(completion) if token in stops]
            completion = completion[: ends[0] + 1] if ends else completion  # up to and including the end
            lengths.append(len(completion))
            sequence = torch.tensor([prompt_ids + completion])
            logits = model(input_ids=sequence).logits[0, len(prompt_ids) - 1 : -1] / 0.7
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            total += float(-(log_probs.exp() * log_probs).sum())
            tokens += len(completion)
    assert len(set(lengths)) > 1  # rows end at different tokens: the ended ones must stop counting
    assert entropy.tokens == tokens
    assert entropy.mean == pytest.approx(total / tokens, rel=1e-4)
    entropy.reset()
    assert entropy.tokens == 0 and entropy.mean != entropy.mean  # NaN before any token
    with pytest.raises(ValueError, match="temperature"):
        CompletionEntropy(0.0, stops)


def test_shared_prefix_cache_gives_the_plain_outputs(warm_world):
    _, tokenizer, dataset, _ = warm_world
    model = make_tiny_model(tokenizer, seed=1)  # random weights: seeded samples differ from row to row
    rows = list(dataset.select(range(12)))
    template = " ".join(r["prompt"] + r["ground_truth"] for r in rows[:6]) + " "  # a few-shot-like shared prefix
    prompts = [template + " ".join(r["prompt"] for r in rows[: 1 + k % 4]) for k in range(len(rows))]
    ids = tokenizer(prompts)["input_ids"]
    assert shared_prefix_length(ids) >= MIN_SHARED_PREFIX  # the template is shared, so the cached path runs
    assert max(map(len, ids)) - min(map(len, ids)) > 8  # padding sits between the prefix and the own tokens
    outputs = {}
    for prefix_cache in (True, False):
        generate = transformers_generator(
            model, tokenizer, max_new_tokens=10, temperature=1.0, batch_size=12, prefix_cache=prefix_cache,
            stop_after_answer=False, show_progress=False,
        )  # fmt: skip
        outputs[prefix_cache] = generate(prompts, 1)
    assert outputs[True] == outputs[False]
    assert len({c[0] for c in outputs[True]}) > 1


def test_shared_prefix_length():
    assert shared_prefix_length([]) == 0
    assert shared_prefix_length([[1, 2, 3]]) == 2  # one token is always left to the prompt itself
    assert shared_prefix_length([[1, 2], [3, 4]]) == 0


@pytest.mark.parametrize(("n", "c", "k", "expected"), [(4, 1, 1, 0.25), (4, 1, 2, 0.5), (4, 2, 2, 5 / 6),
                                                        (4, 0, 4, 0.0), (8, 1, 8, 1.0), (10, 7, 4, 1.0)])  # fmt: skip
def test_pass_at_k_known_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_is_the_unbiased_estimator():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                closed_form = 1 - comb(n - c, k) / comb(n, k)
                # Brute force: the share of k-subsets of the n samples that hold at least one correct one.
                samples = [1] * c + [0] * (n - c)
                subsets = list(itertools.combinations(samples, k))
                brute = sum(any(s) for s in subsets) / len(subsets)
                assert pass_at_k(n, c, k) == pytest.approx(closed_form) == pytest.approx(brute)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


# --- results schema and tables ---------------------------------------------------------------------------------------


def _result(model, mode, accuracy, splits=None, **extra):
    return {"model": model, "dataset": "d", "mode": mode, "overall": {"accuracy": accuracy, "n": 10},
            "splits": splits or {}, **extra}  # fmt: skip


def test_results_schema_and_table_one_layout():
    base = _result("org/base", "standard", 0.3, {s: {"accuracy": a, "n": 5} for s, a in zip(
        ["easy", "medium", "hard"], [0.419, 0.3003, 0.2065])})  # fmt: skip
    rpt = _result("ckpt/checkpoint-12", "reasoning", 0.25, {"easy": {"accuracy": 0.5, "n": 4}}, label="RPT")
    for result in (base, rpt):
        validate_result(result)
    lines = next_token_table([base, rpt]).splitlines()
    assert lines[0] == "| model | mode | easy | medium | hard | all | n |"
    assert lines[2] == "| base | standard | 41.90 | 30.03 | 20.65 | 30.00 | 10 |"
    assert lines[3] == "| RPT | reasoning | 50.00 | – | – | 25.00 | 10 |"

    mc = [_result("a", "multiple_choice", 0.5, benchmark="mmlu-pro"), _result("a", "multiple_choice", 0.25,
          benchmark="supergpqa"), _result("b", "multiple_choice", 0.75, benchmark="mmlu-pro")]  # fmt: skip
    assert zero_shot_table(mc).splitlines()[2:] == ["| a | 50.00 (n=10) | 25.00 (n=10) |", "| b | 75.00 (n=10) | – |"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mode": "greedy"}, "mode must be one of"),
        ({"overall": {"accuracy": 1.5, "n": 3}}, "accuracy must be a fraction"),
        ({"overall": {"accuracy": 0.5}}, "n must be a non-negative integer"),
        ({"splits": {"hard": {"accuracy": 0.5, "n": -1}}}, "splits.hard.n"),
        ({"model": None}, "'model'"),
    ],
)
def test_results_schema_rejects(change, message):
    with pytest.raises(ValueError, match=message):
        validate_result({**_result("m", "standard", 0.5), **change})


# --- multiple choice -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>so</think> \\boxed{C}", "C"),
        ("\\boxed{c}", "C"),
        ("\\boxed{(C)}", "C"),
        ("\\boxed{ (d) }", "D"),
        ("\\boxed{C. 42 metres}", "C"),
        ("\\boxed{B) the second}", "B"),
        ("\\boxed{\\text{E}}", "E"),
        ("\\boxed{[A]}", "A"),
        ("first \\boxed{A}, then \\boxed{B}", "B"),
        ("<think>maybe \\boxed{A}</think> \\boxed{J}", "J"),
        ("<think>\\boxed{A}</think> no box after", None),
        ("no box at all", None),
        ("\\boxed{}", None),
        ("\\boxed{Apple}", None),
        ("\\boxed{42}", None),
        ("\\boxed{C", None),
        ("\\boxed{K}", None),  # past the 10th option
    ],
)
def test_extract_choice(completion, expected):
    assert extract_choice(completion, num_options=10) == expected


def test_normalize_rows_of_both_benchmarks():
    mmlu_pro = {"question": "Q?", "options": ["a", "b", "c"], "answer": "B", "answer_index": 1, "category": "math"}
    supergpqa = {"question": "Q?", "options": ["a", "b"], "answer": "b", "answer_letter": "B", "discipline": "Science"}
    assert normalize_row(mmlu_pro) == {"question": "Q?", "options": ["a", "b", "c"], "answer": "B", "category": "math"}
    assert normalize_row(supergpqa)["answer"] == "B" and normalize_row(supergpqa)["category"] == "Science"
    assert normalize_row({"question": "Q", "options": ["x", "y"], "answer_index": 0})["answer"] == "A"
    with pytest.raises(ValueError, match="no gold letter"):
        normalize_row({"question": "Q", "options": ["x", "y"], "answer": "C"})


# --- scaling fit -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("A", "alpha", "P_star"), [(-0.3, 0.5, 0.45), (-2.0, 0.08, 0.6), (-40.0, 0.35, 0.23)])
def test_power_law_fit_recovers_known_parameters(A, alpha, P_star):
    compute = [1e18 * 2**i for i in range(8)]
    accuracy = [A / (c / 1e18) ** alpha * 1e18**0 + P_star for c in compute]  # A on the C / 1e18 scale
    fit = fit_power_law(compute, accuracy)
    assert fit.alpha == pytest.approx(alpha, rel=1e-3)
    assert fit.P_star == pytest.approx(P_star, abs=1e-4)
    assert fit.A == pytest.approx(A * 1e18**alpha, rel=1e-2)  # reported on the original compute scale
    assert fit.r_squared > 0.9999 and not fit.alpha_at_bound


def test_power_law_fit_with_noise():
    rng = random.Random(0)
    compute = [100 * i for i in range(1, 13)]  # the paper's steps 100..1200
    accuracy = [-1.5 / c**0.4 + 0.35 + rng.gauss(0, 0.001) for c in compute]
    fit = fit_power_law(compute, accuracy)
    assert fit.r_squared > 0.99
    assert fit.P_star == pytest.approx(0.35, abs=0.02)


@pytest.mark.parametrize(
    ("compute", "accuracy", "message"),
    [
        ([1, 2, 3], [0.1, 0.2, 0.3], "at least 4 checkpoints"),
        ([1, 2, 4, 8], [0.3, 0.3, 0.3, 0.3], "flat"),
        ([1, 2, 0, 8], [0.1, 0.2, 0.3, 0.4], "positive"),
        ([1, 1, 2, 2], [0.1, 0.2, 0.3, 0.4], "three distinct"),
    ],
)
def test_power_law_fit_says_when_it_fails(compute, accuracy, message):
    with pytest.raises(ScalingFitError, match=message):
        fit_power_law(compute, accuracy)


def test_compute_from_trainer_state(tmp_path):
    from safetensors.torch import save_file

    checkpoint = tmp_path / "checkpoint-20"
    checkpoint.mkdir()
    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5)}, str(checkpoint / "model.safetensors"))
    state = {"log_history": [{"step": 10, "num_tokens": 1000.0}, {"step": 20, "num_tokens": 2500.0}]}
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    assert compute_from_trainer_state(checkpoint) == 6 * 17 * 2500
    assert compute_from_trainer_state(checkpoint, num_parameters=100) == 6 * 100 * 2500


# --- reasoning patterns ----------------------------------------------------------------------------------------------


def test_reasoning_pattern_counts():
    completions = [
        "Maybe the cat. Wait, let me check: the cat says meow, therefore meow. </think> \\boxed{ meow}",
        "First, suppose it is a dog. Alternatively a cow. </think> \\boxed{ therefore wait}",  # after </think>: ignored
    ]
    stats = count_patterns(completions)
    assert stats["counts"]["hypothesis"] == 2  # maybe, suppose
    assert stats["counts"]["reflection"] == 1  # wait
    assert stats["counts"]["verification"] == 1  # check
    assert stats["counts"]["deduction"] == 1  # therefore
    assert stats["counts"]["decomposition"] == 1  # first
    assert stats["counts"]["alternatives"] == 1  # alternatively
    words = sum(len(c.split("</think>")[0].split()) for c in completions)
    assert stats["reasoning_tokens"] == words
    assert stats["per_1k_tokens"]["hypothesis"] == pytest.approx(2000 / words)
    assert count_patterns(["WAITING is not wait"])["counts"]["reflection"] == 1  # whole words, any case


# --- callback --------------------------------------------------------------------------------------------------------


def test_callback_logs_next_token_accuracy_every_n_steps(tmp_path, warm_world):
    from rpt_trl import RPTConfig, RPTTrainer

    model, tokenizer, dataset, _ = warm_world
    model = copy.deepcopy(model)  # the module's other tests use the untrained policy
    split = dataset.train_test_split(test_size=8, seed=0)
    held_out = split["test"].add_column("difficulty", [["easy"]] * 4 + [["easy", "medium"]] * 4)
    args = RPTConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, seed=0, max_steps=2, per_device_train_batch_size=8,
        num_generations=4, max_completion_length=12, learning_rate=1e-3, temperature=1.0,
        gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
    )  # fmt: skip
    trainer = RPTTrainer(model=model, args=args, train_dataset=split["train"], processing_class=tokenizer)
    callback = NextTokenAccuracyCallback(trainer, held_out, eval_steps=1, num_samples=2, seed=5, eval_on_start=True)
    trainer.add_callback(callback)
    trainer.train()
    # The history holds step 0 too, with one score per position whose mean is the logged accuracy.
    assert [h["step"] for h in callback.history] == [0, 1, 2]
    for entry in callback.history:
        assert len(entry["position_scores"]) == 8
        assert sum(entry["position_scores"]) / 8 == pytest.approx(entry["eval_rpt/next_token_accuracy"])

    logged = [e for e in trainer.state.log_history if "eval_rpt/next_token_accuracy" in e]
    assert [e["step"] for e in logged] == [1, 2]
    for entry in logged:
        assert 0.0 <= entry["eval_rpt/next_token_accuracy"] <= 1.0
        assert {"eval_rpt/pass@2", "eval_rpt/answer_rate", "eval_rpt/next_token_accuracy_medium"} <= set(entry)
    # The training metrics of each step are still logged in their own entry.
    train_logs = [e for e in trainer.state.log_history if "reward" in e]
    assert [e["step"] for e in train_logs] == [1, 2]
    assert all("rpt/next_token_accuracy" in e for e in train_logs)
    # The last logged value is the evaluation of the final model with the same seed.
    torch.manual_seed(11)
    state = torch.get_rng_state()
    again = callback.evaluate(trainer.model)
    for key in ("eval_rpt/next_token_accuracy", "eval_rpt/entropy"):
        assert again[key] == pytest.approx(logged[-1][key])
    assert 0 < logged[-1]["eval_rpt/entropy"] < 10  # the trainer's temperature, over the completions' tokens
    assert torch.equal(torch.get_rng_state(), state)  # evaluation leaves training's random stream where it was


# --- the `evaluate` module -------------------------------------------------------------------------------------------


def test_evaluate_load_local_module_offline():
    evaluate = pytest.importorskip("evaluate", reason="the optional `eval` extra")
    metric = evaluate.load(str(REPO_ROOT / "evaluation" / "next_token_accuracy_metric"))
    completions = [
        "<think>a</think> \\boxed{ size}",
        "</think> \\boxed{ si}",
        "\\boxed{ size}",
        "</think>\\boxed{ size of}",
    ]
    references = [{"ground_truth": " size of it", "ground_truth_boundaries": [5, 8, 11]}] * 4
    result = metric.compute(predictions=completions, references=references)
    expected = prefix_match_reward(completions, [" size of it"] * 4, [[5, 8, 11]] * 4)
    assert result == {"next_token_accuracy": sum(expected) / 4, "answer_rate": 0.75}
    assert result["next_token_accuracy"] == 0.5


# --- the commands, end to end on a saved tiny model ------------------------------------------------------------------


def test_commands_end_to_end(lm_world, tmp_path, capsys):
    from rpt_trl.cli import main

    model, tokenizer, documents, dataset = lm_world
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    dataset.save_to_disk(str(tmp_path / "dataset"))
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in documents))
    common = ["--model", str(tmp_path / "model"), "--dataset", str(tmp_path / "dataset")]

    main(["evaluate", "next-token", *common, "--mode", "standard", "--documents", str(tmp_path / "docs.jsonl"),
          "--output", str(tmp_path / "standard.json")])  # fmt: skip
    standard = json.loads((tmp_path / "standard.json").read_text())
    expected = _plain_argmax_scores(model, tokenizer, documents, dataset)
    assert standard["overall"]["accuracy"] == pytest.approx(sum(expected) / len(expected))
    assert standard["overall"]["n"] == len(dataset) and set(standard["splits"]) == {"easy", "medium", "hard"}
    assert (tmp_path / "standard.png").stat().st_size > 0
    assert "| model | mode | easy |" in (tmp_path / "standard.md").read_text()

    main(["evaluate", "next-token", *common, "--mode", "reasoning", "--limit", "4", "--num-samples", "2",
          "--max-new-tokens", "4", "--label", "tiny", "--save-completions", str(tmp_path / "completions.jsonl"),
          "--output", str(tmp_path / "reasoning.json")])  # fmt: skip
    reasoning = json.loads((tmp_path / "reasoning.json").read_text())
    assert reasoning["overall"]["n"] == 4 and "pass@2" in reasoning["overall"]
    records = [json.loads(line) for line in (tmp_path / "completions.jsonl").read_text().splitlines()]
    assert len(records) == 8

    # The comparison: the trained model against a random one, in both modes, on the same positions.
    make_tiny_model(tokenizer, seed=5).save_pretrained(tmp_path / "random")
    tokenizer.save_pretrained(tmp_path / "random")
    (tmp_path / "model" / "trainer_state.json").write_text(
        json.dumps({"global_step": 30, "num_input_tokens_seen": 99})
    )
    main(["evaluate", "compare", "--models", f"random={tmp_path / 'random'}", f"lm={tmp_path / 'model'}",
          "--dataset", str(tmp_path / "dataset"), "--documents", str(tmp_path / "docs.jsonl"), "--target",
          "lm:standard", "--max-new-tokens", "4", "--num-samples", "2", "--output", str(tmp_path / "compare.json")])  # fmt: skip
    compared = {f"{r['label']}:{r['mode']}": r for r in json.loads((tmp_path / "compare.json").read_text())}
    assert set(compared) == {"random:standard", "random:reasoning", "lm:standard", "lm:reasoning"}
    assert compared["lm:standard"]["overall"]["accuracy"] == pytest.approx(standard["overall"]["accuracy"])
    assert compared["lm:standard"]["training"] == {"optimizer_steps": 30, "tokens_seen": 99}
    assert "training" not in compared["random:standard"]
    assert len(compared["lm:standard"]["differences"]) == 3
    assert "lm:standard is above random:standard" in (tmp_path / "compare.md").read_text()
    with pytest.raises(SystemExit, match="names no model"):
        main(["evaluate", "compare", "--models", f"lm={tmp_path / 'model'}", "--dataset", str(tmp_path / "dataset"),
              "--target", "rpt:reasoning", "--output", str(tmp_path / "x.json")])  # fmt: skip

    questions = [{"question": f"Q{i}?", "options": ["meow", "woof", "moo"], "answer": "A", "category": c}
                 for i, c in enumerate(["x", "x", "y"])]  # fmt: skip
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    main(["evaluate", "zero-shot", "--model", str(tmp_path / "model"), "--benchmark", str(tmp_path / "mc.jsonl"),
          "--prompt-format", "text", "--max-new-tokens", "4", "--output", str(tmp_path / "mc.json")])  # fmt: skip
    mc = json.loads((tmp_path / "mc.json").read_text())
    assert mc["overall"]["n"] == 3 and {k: v["n"] for k, v in mc["categories"].items()} == {"x": 2, "y": 1}

    main(["evaluate", "table", str(tmp_path / "standard.json"), str(tmp_path / "reasoning.json"),
          str(tmp_path / "mc.json"), "--output", str(tmp_path / "table.md")])  # fmt: skip
    table = (tmp_path / "table.md").read_text()
    assert "| model | standard |" in table and "| tiny | reasoning |" in table and "Zero-shot" in table

    main(["evaluate", "patterns", "--completions", f"tiny={tmp_path / 'completions.jsonl'}",
          "--output", str(tmp_path / "patterns.json")])  # fmt: skip
    assert json.loads((tmp_path / "patterns.json").read_text())["tiny"]["completions"] == 8

    points = []
    for step, accuracy in [(1, 0.1), (2, 0.2), (4, 0.26), (8, 0.29), (16, 0.305)]:
        path = tmp_path / f"scaling-{step}.json"
        path.write_text(json.dumps(_result(f"ckpt-{step}", "reasoning", accuracy, {"hard": {"accuracy": accuracy / 2,
                                                                                              "n": 5}})))  # fmt: skip
        points.append(str(path))
    main(["evaluate", "scaling", "--results", *points, "--compute", "1", "2", "4", "8", "16",
          "--output", str(tmp_path / "scaling.json")])  # fmt: skip
    fits = json.loads((tmp_path / "scaling.json").read_text())["fits"]
    assert set(fits) == {"hard", "all"} and fits["all"]["r_squared"] > 0.99
    assert (tmp_path / "scaling.png").stat().st_size > 0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("script", "command"),
    [("next_token_accuracy", "next-token"), ("zero_shot", "zero-shot"), ("scaling", "scaling"),
     ("reasoning_patterns", "patterns"), ("table", "table"), ("compare", "compare")],
)  # fmt: skip
def test_each_entry_point_takes_the_flags_of_its_rpt_trl_evaluate_command(script, command):
    import argparse
    import importlib

    from rpt_trl.cli import make_parser

    def options(parser):
        return {option for action in parser._actions for option in action.option_strings}

    evaluate = next(a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["evaluate"]
    subcommand = next(a for a in evaluate._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    entry_point = importlib.import_module(f"evaluation.{script}").make_parser()
    assert options(entry_point) == options(subcommand)
    assert "--output" in options(entry_point)


def test_evaluation_scores_the_held_out_split_of_a_prepared_dataset_dict(lm_world, tmp_path, capsys):
    """`prepare` writes `train` and `eval`: with no --split, evaluation scores `eval` (not `train`) and says so."""
    import datasets

    from rpt_trl.cli import main

    model, tokenizer, documents, dataset = lm_world
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    half = len(dataset) // 2
    splits = datasets.DatasetDict(
        {"train": dataset.select(range(half)), "eval": dataset.select(range(half, half + 5))}
    )
    splits.save_to_disk(str(tmp_path / "prepared"))
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in documents))
    common = ["--model", str(tmp_path / "model"), "--dataset", str(tmp_path / "prepared"), "--mode", "standard",
              "--documents", str(tmp_path / "docs.jsonl")]  # fmt: skip

    main(["evaluate", "next-token", *common, "--output", str(tmp_path / "default.json")])
    scored = json.loads((tmp_path / "default.json").read_text())
    assert scored["overall"]["n"] == 5 and scored["split"] == "eval"
    assert "(split eval)" in (tmp_path / "default.md").read_text()
    main(["evaluate", "next-token", *common, "--split", "train", "--output", str(tmp_path / "train.json")])
    assert json.loads((tmp_path / "train.json").read_text())["overall"]["n"] == half

    main(["evaluate", "compare", "--models", f"lm={tmp_path / 'model'}", "--dataset", str(tmp_path / "prepared"),
          "--documents", str(tmp_path / "docs.jsonl"), "--modes", "standard", "--output",
          str(tmp_path / "compare.json")])  # fmt: skip
    compared = json.loads((tmp_path / "compare.json").read_text())
    assert [(r["split"], r["overall"]["n"]) for r in compared] == [("eval", 5)]
    assert "Positions: " in (tmp_path / "compare.md").read_text()
    assert "(split eval)" in (tmp_path / "compare.md").read_text()
    capsys.readouterr()
