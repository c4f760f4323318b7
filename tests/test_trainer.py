import pytest
import yaml
from conftest import CORPUS, make_byte_level_tokenizer, make_tiny_model
from datasets import Dataset
from huggingface_hub import ModelCard
from trl import GRPOConfig, GRPOTrainer

from rpt_trl import RPTConfig, RPTTrainer, build_next_token_dataset, prefix_match_reward


FORMAT_TOKENS = ["<think>", "</think>", "\\boxed{"]


@pytest.fixture(scope="module")
def tokenizer():
    return make_byte_level_tokenizer(extra_tokens=FORMAT_TOKENS)


def cpu_args(tmp_path, config_class=RPTConfig, **overrides):
    values = dict(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    values.update(overrides)
    return config_class(**values)


def test_rpt_trainer_end_to_end_logs_rpt_metrics_and_writes_card(tmp_path, tokenizer):
    train = build_next_token_dataset(CORPUS, tokenizer, position_stride=9, max_context_tokens=24, show_progress=False)
    trainer = RPTTrainer(
        model=make_tiny_model(tokenizer), args=cpu_args(tmp_path), train_dataset=train, processing_class=tokenizer
    )
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert len(logged) == 2
    for entry in logged:
        assert {"rpt/next_token_accuracy", "rpt/answer_rate", "rpt/reasoning_tokens"} <= entry.keys()
        assert entry["rpt/next_token_accuracy"] == entry["rewards/prefix_match_reward/mean"]

    trainer.create_model_card(dataset_name="org/omnimath-rpt")
    card = ModelCard.load(tmp_path / "README.md")
    assert {"rpt", "trl"} <= set(card.data.tags)
    assert card.data.datasets in ("org/omnimath-rpt", ["org/omnimath-rpt"])
    assert "2506.08007" in card.text and "dong2025reinforcement" in card.text
    assert "| `temperature` | `0.8` |" in card.text
    header = (tmp_path / "README.md").read_text().split("---")[1]
    assert yaml.safe_load(header)["library_name"] == "transformers"


def test_missing_column_error_names_it_and_says_how_to_build(tmp_path, tokenizer):
    data = Dataset.from_dict({"prompt": ["a"], "ground_truth": [" b"]})
    with pytest.raises(ValueError, match=r"ground_truth_boundaries.*build_next_token_dataset"):
        RPTTrainer(
            model=make_tiny_model(tokenizer), args=cpu_args(tmp_path), train_dataset=data, processing_class=tokenizer
        )


def test_raw_documents_are_built_with_the_config_settings(tmp_path, tokenizer):
    raw = Dataset.from_dict({"problem": CORPUS[:2], "solution": CORPUS[2:4]})
    args = cpu_args(tmp_path, text_column=["problem", "solution"], position_stride=5, max_context_tokens=20)
    trainer = RPTTrainer(model=make_tiny_model(tokenizer), args=args, train_dataset=raw, processing_class=tokenizer)
    expected = build_next_token_dataset(
        raw,
        tokenizer,
        text_column=["problem", "solution"],
        position_stride=5,
        max_context_tokens=20,
        show_progress=False,
    )
    assert trainer.train_dataset["ground_truth"] == expected["ground_truth"]
    assert trainer.train_dataset["position"] == expected["position"]


def test_requires_rpt_config(tmp_path, tokenizer):
    with pytest.raises(TypeError, match="RPTConfig"):
        RPTTrainer(model=make_tiny_model(tokenizer), args=cpu_args(tmp_path, GRPOConfig), processing_class=tokenizer)


def test_reward_works_in_plain_grpo_trainer(tmp_path, tokenizer):
    train = build_next_token_dataset(CORPUS, tokenizer, position_stride=11, max_context_tokens=24, show_progress=False)
    trainer = GRPOTrainer(
        model=make_tiny_model(tokenizer),
        reward_funcs=prefix_match_reward,
        args=cpu_args(tmp_path, GRPOConfig, max_steps=1),
        train_dataset=train,
        processing_class=tokenizer,
    )
    trainer.train()
    entry = next(e for e in trainer.state.log_history if "reward" in e)
    assert entry["rewards/prefix_match_reward/mean"] == entry["rpt/next_token_accuracy"]
    # A correct answer is an answer: the accuracy never exceeds the share of completions that give one.
    assert entry["rpt/next_token_accuracy"] <= entry["rpt/answer_rate"] <= 1.0


def test_stop_after_answer_ends_completions_with_eos(tokenizer):
    import torch

    from rpt_trl.trainer.generation import install_answer_stop

    model = make_tiny_model(tokenizer)
    install_answer_stop(model, tokenizer)
    answer = tokenizer("</think> \\boxed{ size} and more words after", add_special_tokens=False)["input_ids"]
    prompt = tokenizer("The", return_tensors="pt", add_special_tokens=False)

    # Drive generation along a fixed completion: a processor that forces the next token of `answer`.
    class Follow:
        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - prompt["input_ids"].shape[1]
            forced = torch.full_like(scores, float("-inf"))
            forced[:, answer[min(step, len(answer) - 1)]] = 0.0
            return forced

    output = model.generate(**prompt, logits_processor=[Follow()], max_new_tokens=len(answer) + 3, do_sample=False)
    completion = output[0, prompt["input_ids"].shape[1] :].tolist()
    close = tokenizer("</think> \\boxed{ size}", add_special_tokens=False)["input_ids"]
    assert completion[: len(close)] == close
    assert completion[len(close)] == tokenizer.eos_token_id
