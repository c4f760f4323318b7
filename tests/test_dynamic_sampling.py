import logging
import math

import pytest
import torch
from datasets import Dataset

from rpt_trl import RPTConfig, RPTTrainer
from rpt_trl.experiments.tiny import make_tiny_model, make_tiny_tokenizer
from rpt_trl.trainer.dynamic_sampling import merge_rollouts, uniform_groups


@pytest.fixture(scope="module")
def tokenizer():
    return make_tiny_tokenizer()


@pytest.mark.parametrize(
    ("rewards", "expected"),
    [
        ([1.0, 1.0, 1.0, 1.0], [True, True]),
        ([0.0, 1.0, 1.0, 1.0], [False, True]),
        ([0.3, 0.3, 0.2, 0.4], [True, False]),
        ([float("nan"), 1.0, 0.0, float("nan")], [True, True]),  # one scored rollout per group: nothing to compare
        ([float("nan"), float("nan"), 0.5, 0.5], [True, True]),
        ([1.0, 1.0 + 1e-9, 0.0, 1e-3], [True, False]),
    ],
)
def test_uniform_groups(rewards, expected):
    rewards_per_func = torch.tensor(rewards).unsqueeze(1)
    assert uniform_groups(rewards_per_func, torch.tensor([1.0]), 2).tolist() == expected


def test_uniform_groups_combines_reward_functions_with_weights():
    # Two functions that disagree row by row but sum to the same reward: uniform, as GRPO sees it.
    rewards_per_func = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    assert uniform_groups(rewards_per_func, torch.tensor([1.0, 1.0]), 2).tolist() == [True, False]
    assert uniform_groups(rewards_per_func, torch.tensor([1.0, 0.5]), 2).tolist() == [False, False]


def test_merge_rollouts_pads_prompts_left_and_completions_right():
    first = {
        "prompt_ids": torch.tensor([[5, 6]]),
        "prompt_mask": torch.tensor([[1, 1]]),
        "completion_ids": torch.tensor([[7, 8, 9]]),
        "completion_mask": torch.tensor([[1, 1, 1]]),
        "advantages": torch.tensor([0.5]),
    }
    second = {
        "prompt_ids": torch.tensor([[4, 5, 6]]),
        "prompt_mask": torch.tensor([[1, 1, 1]]),
        "completion_ids": torch.tensor([[3]]),
        "completion_mask": torch.tensor([[1]]),
        "advantages": torch.tensor([-0.5]),
    }
    merged = merge_rollouts([first, second], pad_token_id=0)
    assert merged["prompt_ids"].tolist() == [[0, 5, 6], [4, 5, 6]]
    assert merged["prompt_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert merged["completion_ids"].tolist() == [[7, 8, 9], [3, 0, 0]]
    assert merged["completion_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert merged["advantages"].tolist() == [0.5, -0.5]
    with pytest.raises(ValueError, match="pixel_values.*dynamic_sampling=False"):
        merge_rollouts([{**first, "pixel_values": torch.zeros(1, 3)}], pad_token_id=0)


class KindReward:
    """Reward 0 for every rollout of a "flat" prompt (a uniform group); 0, 1, 0, 1 for a "live" prompt."""

    __name__ = "kind_reward"

    def __init__(self, always=None):
        self.always = always
        self.groups_seen = []  # the kind of each group scored, in order

    def __call__(self, completions, kind, **kwargs):
        self.groups_seen += kind[::4]
        if self.always is not None:
            return [self.always] * len(kind)
        return [0.0 if k == "flat" else float(i % 2) for i, k in enumerate(kind)]


def make_trainer(tmp_path, tokenizer, reward, **overrides):
    kinds = ["flat", "live"] * 8
    dataset = Dataset.from_dict({"prompt": [f"{d} cat says" for d in "abcdefghijklmnop"], "kind": kinds})
    values = dict(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=4,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        prompt_format="text",
        dynamic_sampling_start_step=0,
        seed=3,
        gradient_checkpointing=False,
    )
    values.update(overrides)
    return RPTTrainer(
        model=make_tiny_model(tokenizer),
        reward_funcs=reward,
        args=RPTConfig(**values),
        train_dataset=dataset,
        processing_class=tokenizer,
    )


def test_uniform_groups_are_dropped_and_refilled_with_informative_ones(tmp_path, tokenizer):
    reward = KindReward()
    trainer = make_trainer(tmp_path, tokenizer, reward, dynamic_sampling_max_refills=50)
    trainer.model.train()
    inputs = [trainer.train_dataset[i] for i in (0, 1) for _ in range(4)]  # one flat group, one live group
    output = trainer._generate_and_score_completions(inputs)

    assert output["advantages"].shape == (8,)
    # Every kept group is live: its advantages are +-1 (rewards 0, 1, 0, 1), none is zero.
    assert torch.all(output["advantages"].abs() > 0.5)
    prompts = tokenizer.batch_decode(output["prompt_ids"], skip_special_tokens=True)
    kinds = dict(zip(trainer.train_dataset["prompt"], trainer.train_dataset["kind"]))
    assert [kinds[p] for p in prompts] == ["live"] * 8
    assert output["num_items_in_batch"].item() == output["completion_mask"].sum().item()

    metrics = trainer._metrics["train"]
    seen = reward.groups_seen
    assert seen[:2] == ["flat", "live"]
    assert seen.count("live") >= 2  # refilled until two live groups were found
    assert metrics["dynamic_sampling/refill_rounds"] == [len(seen) / 2 - 1]
    assert metrics["dynamic_sampling/dropped_fraction"] == [seen.count("flat") / len(seen)]
    assert metrics["dynamic_sampling/uniform_fraction_kept"] == [0.0]


def test_refill_prompts_depend_only_on_step_and_round(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, KindReward(), seed=2**32 - 1)
    first = trainer._refill_prompts(3, refill_round=1)
    assert len(first) == 12 and first[0:4] == [first[0]] * 4  # 3 prompts, each repeated num_generations times
    assert len({row["prompt"] for row in first}) == 3  # drawn without replacement
    assert trainer._refill_prompts(3, refill_round=1) == first  # no hidden state: a resumed run refills the same
    draws = {tuple(r["prompt"] for r in trainer._refill_prompts(3, refill_round=n)[::4]) for n in range(1, 6)}
    trainer.state.global_step = 7
    draws.add(tuple(r["prompt"] for r in trainer._refill_prompts(3, refill_round=1)[::4]))
    assert len(draws) >= 5  # rounds and steps draw different prompts (16 prompts, 560 ordered triples)
    assert len(trainer._refill_prompts(20, refill_round=1)) == 80  # more than the dataset: with replacement


def test_training_with_dynamic_sampling_from_the_start_step(tmp_path, tokenizer):
    # Two accumulation steps: the generation batch (2 groups) is generated once and split in two, as GRPO buffers it.
    trainer = make_trainer(
        tmp_path,
        tokenizer,
        KindReward(),
        dynamic_sampling_start_step=1,
        max_steps=2,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
    )
    trainer.train()
    steps = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(steps) == 2
    assert "dynamic_sampling/dropped_fraction" not in steps[0]  # step 0 is before the start step
    assert steps[1]["dynamic_sampling/uniform_fraction_kept"] == 0.0
    assert 0.0 < steps[1]["dynamic_sampling/dropped_fraction"] < 1.0
    assert math.isfinite(steps[1]["loss"])


@pytest.mark.parametrize("min_groups", [1, 2])
def test_a_group_target_refills_only_while_fewer_groups_differ(tmp_path, tokenizer, min_groups):
    """One live group of two: with a target of 1 no refill runs and a uniform group fills the other slot; with 2 the
    refills go on until a second live group is found."""
    reward = KindReward()
    trainer = make_trainer(
        tmp_path, tokenizer, reward, dynamic_sampling_max_refills=50, dynamic_sampling_min_groups=min_groups
    )
    trainer.model.train()
    inputs = [trainer.train_dataset[i] for i in (0, 1) for _ in range(4)]  # one flat group, one live group
    output = trainer._generate_and_score_completions(inputs)
    prompts = tokenizer.batch_decode(output["prompt_ids"], skip_special_tokens=True)
    kinds = dict(zip(trainer.train_dataset["prompt"], trainer.train_dataset["kind"]))
    metrics = trainer._metrics["train"]
    if min_groups == 1:
        assert reward.groups_seen == ["flat", "live"]
        assert [kinds[p] for p in prompts] == ["live"] * 4 + ["flat"] * 4  # the live group first, then padding
        assert metrics["dynamic_sampling/refill_rounds"] == [0.0]
        assert metrics["dynamic_sampling/uniform_fraction_kept"] == [0.5]
    else:
        assert reward.groups_seen.count("live") >= 2
        assert [kinds[p] for p in prompts] == ["live"] * 8


def test_config_rejects_a_group_target_below_one(tmp_path):
    with pytest.raises(ValueError, match="dynamic_sampling_min_groups"):
        RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, dynamic_sampling_min_groups=0)


def test_all_uniform_groups_stop_refilling_at_the_cap_with_a_warning(tmp_path, tokenizer, caplog):
    reward = KindReward(always=1.0)
    trainer = make_trainer(tmp_path, tokenizer, reward, dynamic_sampling_max_refills=2, max_steps=1)
    with caplog.at_level(logging.WARNING, logger="rpt_trl.trainer.dynamic_sampling"):
        trainer.train()
    warnings = [r.getMessage() for r in caplog.records if "dynamic_sampling_max_refills=2" in r.getMessage()]
    assert len(warnings) == 1
    assert "0 of 2 groups" in warnings[0] and "the other 2 slots hold uniform groups" in warnings[0]
    assert len(reward.groups_seen) == 2 * (1 + 2)  # the first batch and two refills, then it stopped
    entry = next(e for e in trainer.state.log_history if "loss" in e)
    assert entry["dynamic_sampling/refill_rounds"] == 2.0
    assert entry["dynamic_sampling/dropped_fraction"] == 1.0
    assert entry["dynamic_sampling/uniform_fraction_kept"] == 1.0


def test_dynamic_sampling_is_off_before_the_start_step_and_when_disabled(tmp_path, tokenizer):
    for overrides in ({"dynamic_sampling_start_step": 500}, {"dynamic_sampling": False}):
        reward = KindReward()
        trainer = make_trainer(tmp_path, tokenizer, reward, **overrides)
        trainer.model.train()
        inputs = [trainer.train_dataset[i] for i in (0, 1) for _ in range(4)]
        output = trainer._generate_and_score_completions(inputs)
        assert reward.groups_seen == ["flat", "live"]  # no refill
        assert output["advantages"][:4].abs().max() < 1e-3  # the flat group stays in the batch
        assert "dynamic_sampling/refill_rounds" not in trainer._metrics["train"]


def test_trl_output_is_checked_on_the_first_step_not_when_sampling_starts(tmp_path, tokenizer, monkeypatch):
    """A rollout field that dynamic sampling cannot merge (say, from a TRL upgrade) fails at step 0, not at 500."""
    from trl import GRPOTrainer

    trainer = make_trainer(tmp_path, tokenizer, KindReward(), dynamic_sampling_start_step=500)
    trainer.model.train()
    inputs = [trainer.train_dataset[i] for i in (0, 1) for _ in range(4)]
    generate = GRPOTrainer._generate_and_score_completions
    monkeypatch.setattr(
        GRPOTrainer, "_generate_and_score_completions", lambda self, batch: {**generate(self, batch), "new_field": 1}
    )
    with pytest.raises(ValueError, match="new_field.*dynamic_sampling=False"):
        trainer._generate_and_score_completions(inputs)
    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", generate)
    trainer._generate_and_score_completions(inputs)  # TRL's own output passes, and is checked once
    assert trainer._rollouts_checked


def test_dynamic_sampling_needs_whole_groups_per_process(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, KindReward())
    # On one process TRL already requires whole groups; with 2 processes and 2 rollouts per process, a group of 4
    # would span both. Set that layout on the config and run the check the trainer runs at init.
    trainer.args.per_device_train_batch_size, trainer.args.steps_per_generation = 2, 1
    with pytest.raises(ValueError, match="multiple of num_generations.*dynamic_sampling=False"):
        trainer._check_dynamic_sampling()
    trainer.args.max_steps, trainer.args.dynamic_sampling_start_step = 10, 10  # ends before it starts: no refusal
    trainer._check_dynamic_sampling()
    trainer.args.max_steps, trainer.args.dynamic_sampling = 11, False
    trainer._check_dynamic_sampling()


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("dynamic_sampling_start_step", -1, "dynamic_sampling=False"),
        ("dynamic_sampling_max_refills", -1, "at least 0"),
    ],
)
def test_config_rejects_negative_dynamic_sampling_values(tmp_path, field, value, match):
    with pytest.raises(ValueError, match=match):
        RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, **{field: value})


def test_paper_default_is_dynamic_sampling_from_step_500(tmp_path):
    args = RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False)
    assert (args.dynamic_sampling, args.dynamic_sampling_start_step) == (True, 500)


@pytest.mark.slow  # ~40 s on 2 shared cores: three training runs
def test_a_resumed_run_with_dynamic_sampling_ends_as_the_uninterrupted_one(tmp_path, tokenizer):
    def run(output_dir, max_steps, resume=None):
        reward = KindReward()
        trainer = make_trainer(
            output_dir,
            tokenizer,
            reward,
            max_steps=max_steps,
            dynamic_sampling_start_step=1,
            # Two accumulation steps: a generation batch of 2 groups, generated once and split in two as GRPO buffers.
            per_device_train_batch_size=4,
            gradient_accumulation_steps=2,
            save_strategy="steps",
            save_steps=2,
            lr_scheduler_type="constant",  # the cut run stops at 2 steps: a decaying schedule would differ
            seed=5,
        )
        trainer.train(resume_from_checkpoint=resume)
        return trainer, reward

    full, full_reward = run(tmp_path / "full", 4)
    steps = [entry for entry in full.state.log_history if "loss" in entry]
    assert len(steps) == 4 and all(math.isfinite(entry["loss"]) for entry in steps)
    assert "dynamic_sampling/refill_rounds" not in steps[0]  # step 0 is before the start step
    assert sum(entry["dynamic_sampling/refill_rounds"] for entry in steps[2:]) > 0  # the steps to replay refilled

    run(tmp_path / "cut", 2)  # stops after checkpoint-2, as an interrupted run would
    resumed, resumed_reward = run(tmp_path / "cut", 4, resume=str(tmp_path / "cut" / "checkpoint-2"))
    assert resumed_reward.groups_seen == full_reward.groups_seen[-len(resumed_reward.groups_seen) :]
    for (name, expected), actual in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(expected, actual), name


def test_trained_tokens_count_each_prompt_once_per_group():
    from collections import defaultdict
    from types import SimpleNamespace

    from rpt_trl.trainer.dynamic_sampling import DynamicSamplingMixin

    trainer = SimpleNamespace(
        num_generations=2, accelerator=SimpleNamespace(gather=lambda t: t.reshape(1)),
        _metrics={"train": defaultdict(list)},
    )  # fmt: skip
    output = {
        # Two groups of two rollouts: prompts of 3 and 5 tokens (left padding), completions of 1, 2, 4 and 0 tokens.
        "prompt_mask": torch.tensor([[0, 0, 1, 1, 1], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]),
        "completion_mask": torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]),
    }
    DynamicSamplingMixin._log_trained_tokens(trainer, output)
    assert trainer._metrics["train"]["rpt/trained_tokens"] == [3 + 5 + 1 + 2 + 4 + 0]
