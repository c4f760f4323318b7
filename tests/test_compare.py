"""The comparison command's arithmetic on worlds whose answers the tests control: bootstrap intervals over positions,
paired differences and their verdicts, and the matched-compute bookkeeping of the next-token baseline."""

import json
import math

import pytest
import torch

from rpt_trl.evaluation.compare import (
    Interval,
    bootstrap_interval,
    compare_models,
    compare_scores,
    difference_verdict,
    load_comparison,
    paired_difference,
    training_record,
    write_comparison,
)
from rpt_trl.experiments.next_token_baseline import (
    encode_documents,
    matched_budget,
    next_token_blocks,
    train_next_token_baseline,
)
from rpt_trl.experiments.tiny import animal_corpus, make_tiny_model, make_tiny_tokenizer


def test_bootstrap_interval_agrees_with_the_normal_approximation():
    scores = [1.0] * 120 + [0.0] * 280  # p = 0.3 over 400 positions
    interval = bootstrap_interval(scores, num_resamples=4000)
    expected = 1.959964 * math.sqrt(0.3 * 0.7 / 400)  # 0.0449
    assert interval.estimate == pytest.approx(0.3)
    assert interval.low < 0.3 < interval.high
    assert interval.half_width == pytest.approx(expected, rel=0.12)
    assert bootstrap_interval(scores, num_resamples=4000) == interval  # seeded
    assert bootstrap_interval([1.0] * 50) == Interval(1.0, 1.0, 1.0)


def test_bootstrap_resamples_positions_not_samples():
    # Two samples per position, always agreeing: 200 positions, not 400 draws, set the width.
    per_position = [1.0] * 60 + [0.0] * 140
    wide = bootstrap_interval(per_position, num_resamples=4000).half_width
    assert wide == pytest.approx(1.959964 * math.sqrt(0.3 * 0.7 / 200), rel=0.12)


def test_paired_difference():
    reference = [1.0] * 50 + [0.0] * 150
    assert paired_difference(reference, reference) == Interval(0.0, 0.0, 0.0)
    better = [1.0] * 70 + [0.0] * 130  # right on 20 more positions, wrong on none of the reference's
    difference = paired_difference(better, reference)
    assert difference.estimate == pytest.approx(0.1)
    assert difference.significant and difference.low > 0.05
    # The same marginal accuracies with the gains and losses spread over other positions: not significant.
    mixed = [0.0] * 40 + [1.0] * 60 + [0.0] * 100  # right on 60, 10 of them shared with the reference
    assert paired_difference(mixed, reference).estimate == pytest.approx(0.05)
    assert not paired_difference(mixed, reference).significant
    with pytest.raises(ValueError, match="different numbers of positions"):
        paired_difference([1.0, 0.0], [1.0])


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        (Interval(0.1, 0.04, 0.16), "rpt:reasoning is above base:reasoning by 10.0 points (95% interval 4.0 to 16.0): "
                                    "significant."),
        (Interval(-0.08, -0.13, -0.02), "rpt:reasoning is below base:reasoning by 8.0 points (95% interval -13.0 to "
                                        "-2.0): significant."),
        (Interval(0.02, -0.05, 0.09), "rpt:reasoning is above base:reasoning by 2.0 points (95% interval -5.0 to 9.0):"
                                      " not significant, the interval includes 0."),
        (Interval(0.0, 0.0, 0.0), "rpt:reasoning is level with base:reasoning (95% interval 0.0 to 0.0): not "
                                  "significant, the interval includes 0."),
    ],
)  # fmt: skip
def test_verdict_wording(interval, expected):
    assert difference_verdict("rpt:reasoning", "base:reasoning", interval) == expected


def _rows(n):
    """Rows whose answer is a word the fake policies below either box or not."""
    return [{"prompt": f"p{i}", "ground_truth": f" w{i} rest", "ground_truth_boundaries": [len(f" w{i}")]}
            for i in range(n)]  # fmt: skip


def _policy(correct: set[int], rows):
    """A generator factory whose 'model' answers the rows in `correct` and boxes a wrong word elsewhere."""

    def generate(prompts, num_samples):
        index = {row["prompt"]: i for i, row in enumerate(rows)}
        return [[f"<think>t</think> \\boxed{{{' w' + str(index[p]) if index[p] in correct else ' nope'}}}"]
                * num_samples for p in prompts]  # fmt: skip

    return generate


def test_compare_models_on_controlled_answers(tmp_path):
    rows = _rows(200)
    policies = {
        "base": set(range(0, 40)),  # 0.20
        "close": set(range(50, 150)),  # 0.50, other positions than rpt's
        "rpt": set(range(0, 104)),  # 0.52
    }
    results = compare_models(
        {label: label for label in policies}, rows, tokenizer=None, modes=["reasoning"], num_samples=2,
        generator=lambda label: _policy(policies[label], rows), training={"rpt": {"optimizer_steps": 3,
                                                                                   "tokens_seen": 1234}},
    )  # fmt: skip
    by_label = {r["label"]: r for r in results}
    assert [r["overall"]["accuracy"] for r in results] == pytest.approx([0.2, 0.5, 0.52])
    assert by_label["rpt"]["position_scores"][:2] == [1.0, 1.0] and by_label["rpt"]["training"]["tokens_seen"] == 1234
    differences = {d["reference"]: d for d in by_label["rpt"]["differences"]}
    assert set(differences) == {"base:reasoning", "close:reasoning"}
    assert differences["base:reasoning"]["estimate"] == pytest.approx(0.32) and differences["base:reasoning"][
        "significant"]  # fmt: skip
    assert differences["close:reasoning"]["estimate"] == pytest.approx(0.02)
    assert not differences["close:reasoning"]["significant"]
    assert differences["close:reasoning"]["verdict"].endswith("not significant, the interval includes 0.")
    # The interval of each system is the bootstrap over its positions.
    assert by_label["base"]["overall"]["interval"] == bootstrap_interval(by_label["base"]["position_scores"]).as_dict()

    write_comparison(results, tmp_path / "compare.json")
    assert load_comparison(tmp_path / "compare.json") == json.loads(json.dumps(results))
    markdown = (tmp_path / "compare.md").read_text()
    assert "| rpt:reasoning | 52.0 |" in markdown and "| 3 | 1,234 |" in markdown
    assert (tmp_path / "compare.png").stat().st_size > 0


def test_compare_scores_rejects_an_unknown_target():
    with pytest.raises(ValueError, match="target"):
        compare_scores({"a:standard": [1.0]}, "b:standard")


def test_matched_budget_arithmetic():
    budget = matched_budget(46_000, 10, block_size=128, micro_batch_size=4)
    assert (budget.blocks_per_step, budget.gradient_accumulation_steps, budget.total_tokens) == (36, 9, 46_080)
    # Within half a micro-batch of tokens per step of the reference.
    for tokens in (1, 500, 5_000, 46_000, 123_457):
        budget = matched_budget(tokens, 7, block_size=64, micro_batch_size=2)
        per_step_gap = abs(budget.total_tokens - tokens) / 7
        assert per_step_gap <= 64 * 2 / 2 or budget.blocks_per_step == 2  # at least one micro-batch
    with pytest.raises(ValueError, match="optimizer_steps"):
        matched_budget(100, 0)


def test_next_token_blocks_cycle_the_documents_in_a_seeded_order():
    tokenizer = make_tiny_tokenizer()
    documents = animal_corpus()[:5]
    budget = matched_budget(10 * 16 * 3, 3, block_size=16, micro_batch_size=2)
    blocks = next_token_blocks(encode_documents(documents, tokenizer), budget, seed=1)
    assert len(blocks) == 3 * budget.blocks_per_step and {len(b) for b in blocks["input_ids"]} == {16}
    stream = [t for b in blocks["input_ids"] for t in b]
    assert stream.count(tokenizer.eos_token_id) >= len(documents)  # more than one pass over five short documents
    assert (
        next_token_blocks(encode_documents(documents, tokenizer), budget, seed=1)["input_ids"] == blocks["input_ids"]
    )


def test_next_token_baseline_trains_at_the_rpt_runs_budget(tmp_path):
    """The SFTTrainer baseline records the optimizer steps and tokens of its budget, as the comparison reads them."""
    tokenizer = make_tiny_tokenizer()
    model = make_tiny_model(tokenizer, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    rpt_state = {"global_step": 2, "num_input_tokens_seen": 700}
    (tmp_path / "rpt").mkdir()
    (tmp_path / "rpt" / "trainer_state.json").write_text(json.dumps(rpt_state))
    rpt = training_record(tmp_path / "rpt")
    budget = matched_budget(rpt["tokens_seen"], rpt["optimizer_steps"], block_size=32, micro_batch_size=2)
    trainer = train_next_token_baseline(
        model, tokenizer, encode_documents(animal_corpus(), tokenizer), budget, output_dir=str(tmp_path / "sft"), learning_rate=1e-3,
        use_cpu=True, bf16=False,
    )  # fmt: skip
    record = training_record(tmp_path / "sft")
    assert record == {"optimizer_steps": 2, "tokens_seen": budget.total_tokens}
    assert abs(record["tokens_seen"] - 700) <= 2 * 32  # half a micro-batch of 2 blocks per step, over 2 steps
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert training_record(tmp_path / "missing") is None
