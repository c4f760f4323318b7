"""The RPT model card: evaluation results, training curves and metadata that round-trips through huggingface_hub."""

import pytest
import yaml
from conftest import make_tiny_model
from huggingface_hub import ModelCard

from rpt_trl import RPTConfig, RPTTrainer
from rpt_trl.experiments.tiny import animal_corpus, last_word_dataset, make_tiny_tokenizer
from rpt_trl.hub.model_card import render_model_card, training_curve_rows


EVAL_RESULTS = [
    {
        "model": "org/rpt-14b",
        "dataset": "org/omnimath-eval",
        "mode": "reasoning",
        "overall": {"accuracy": 0.3356, "n": 1000},
        "splits": {"easy": {"accuracy": 0.4511, "n": 600}, "medium": {"accuracy": 0.3356, "n": 300},
                   "hard": {"accuracy": 0.2375, "n": 100}},
        "temperature": 0.8,
    },
    {"model": "org/rpt-14b", "dataset": "org/omnimath-eval", "mode": "standard",
     "overall": {"accuracy": 0.419, "n": 1000}, "splits": {}},
    # A comparison: shown in the table, not claimed in this model's model-index.
    {"model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "dataset": "org/omnimath-eval", "mode": "standard",
     "overall": {"accuracy": 0.416, "n": 1000}},
]  # fmt: skip


def render(tmp_path, **overrides):
    args = RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    values = dict(
        base_model="deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", model_name="rpt-14b", hub_model_id="org/rpt-14b",
        dataset_name="org/omnimath-rpt", tags=["math"], args=args, license="mit",
    )  # fmt: skip
    values.update(overrides)
    card = render_model_card(**values)
    path = tmp_path / "README.md"
    card.save(path)
    return card, path


def header(path):
    return yaml.safe_load(path.read_text().split("---")[1])


def test_card_without_eval_results_has_valid_metadata_and_no_evaluation_section(tmp_path):
    _, path = render(tmp_path)
    card = ModelCard.load(path, ignore_metadata_errors=False)
    assert {"trl", "rpt", "math"} <= set(card.data.tags)
    assert card.data.base_model == "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"
    assert card.data.datasets in ("org/omnimath-rpt", ["org/omnimath-rpt"])
    assert card.data.license == "mit"
    assert card.data.eval_results is None and "model-index" not in header(path)
    assert "## Evaluation" not in card.text and "### Training curves" not in card.text
    assert "2506.08007" in card.text


def test_card_with_eval_results_renders_a_table_and_model_index_that_round_trips(tmp_path):
    _, path = render(tmp_path, eval_results=EVAL_RESULTS)
    card = ModelCard.load(path, ignore_metadata_errors=False)
    assert (
        "| org/rpt-14b | org/omnimath-eval | reasoning | 33.56 (n=1000) | 45.11 (n=600) | 33.56 (n=300) | 23.75 (n=100) |"
        in (card.text)
    )
    assert "| org/rpt-14b | org/omnimath-eval | standard | 41.90 (n=1000) | – | – | – |" in card.text
    assert "| deepseek-ai/DeepSeek-R1-Distill-Qwen-14B | org/omnimath-eval | standard | 41.60 (n=1000) |" in card.text

    # model-index: the four groups of the reasoning run and the overall accuracy of the standard run, not the base's.
    assert header(path)["model-index"][0]["name"] == "rpt-14b"
    results = card.data.eval_results
    assert [(r.metric_name, r.metric_value) for r in results] == [
        ("overall accuracy (reasoning)", 0.3356),
        ("easy accuracy (reasoning)", 0.4511),
        ("medium accuracy (reasoning)", 0.3356),
        ("hard accuracy (reasoning)", 0.2375),
        ("overall accuracy (standard)", 0.419),
    ]
    assert {(r.task_type, r.dataset_name, r.metric_type) for r in results} == {
        ("next-token-prediction", "org/omnimath-eval", "accuracy")
    }
    # Saving the parsed card again gives the same metadata.
    card.save(tmp_path / "again.md")
    assert header(tmp_path / "again.md") == header(path)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"dataset": "d", "mode": "reasoning"}, r"lacks \['overall'\]"),
        ({"dataset": "d", "mode": "greedy", "overall": {"accuracy": 0.1, "n": 3}}, "mode"),
        ({"dataset": "d", "mode": "standard", "overall": {"accuracy": 45.1, "n": 3}}, r"fraction in \[0, 1\]"),
        ("not a dict", "must be a dict"),
    ],
)
def test_malformed_eval_results_are_refused(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        render(tmp_path, eval_results=[bad])


def test_training_curves_table_is_thinned_and_keeps_the_last_step():
    history = [{"step": s, "reward": s / 100, "rpt/answer_rate": 1.0, "loss": 0.1} for s in range(1, 101)]
    history.append({"step": 100, "train_runtime": 3.0})
    rows = training_curve_rows(history, max_rows=20)
    assert len(rows) == 20 and rows[0] == {"step": 1, "reward": 0.01, "rpt/answer_rate": 1.0}
    assert rows[-1]["step"] == 100 and rows[-2]["step"] == 91


def test_trainer_card_has_curves_png_eval_results_and_license(tmp_path):
    tokenizer = make_tiny_tokenizer()
    trainer = RPTTrainer(
        model=make_tiny_model(tokenizer),
        args=RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none"),
        train_dataset=last_word_dataset(tokenizer, animal_corpus()[:4]),
        processing_class=tokenizer,
    )
    trainer.state.log_history = [
        {"step": 1, "reward": 0.25, "rpt/next_token_accuracy": 0.25, "rpt/answer_rate": 0.75},
        {"step": 2, "reward": 0.5, "rpt/next_token_accuracy": 0.5, "rpt/answer_rate": 1.0},
    ]
    evaluated_here = {**EVAL_RESULTS[0], "model": str(tmp_path)}  # `rpt-trl evaluate` run on the output dir
    trainer.create_model_card(
        dataset_name="org/animals", eval_results=[evaluated_here, EVAL_RESULTS[2]], license="apache-2.0"
    )
    assert (tmp_path / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = ModelCard.load(tmp_path / "README.md", ignore_metadata_errors=False)
    assert card.data.license == "apache-2.0" and len(card.data.eval_results) == 4
    assert "![Reward per step](training_curves.png)" in card.text
    assert "| step | reward | rpt/next_token_accuracy | rpt/answer_rate |" in card.text
    assert "| 2 | 0.5 | 0.5 | 1.0 |" in card.text
