import logging
import math
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset

from rpt_trl import RPTConfig, RPTTrainer
from rpt_trl.experiments.tiny import make_tiny_model, make_tiny_tokenizer
from rpt_trl.trainer.signal import (
    DISTINCT_ANSWERS,
    SIGNAL_GENERATED,
    SIGNAL_TRAINED,
    LearningSignalWarning,
    distinct_answers_per_group,
    groups_with_signal,
    signal_share,
)


@pytest.fixture(scope="module")
def tokenizer():
    return make_tiny_tokenizer()


@pytest.mark.parametrize(
    ("rewards", "group_size", "expected"),
    [
        ([1.0, 1.0, 0.0, 0.0], 2, [False, False]),
        ([1.0, 0.0, 0.0, 0.0], 2, [True, False]),
        ([1.0, 0.0, 0.0, 0.0], 4, [True]),
        ([0.2, 0.2, 0.2, 0.7, 0.0, 0.0], 3, [False, True]),
        ([float("nan"), 1.0, 0.0, float("nan")], 2, [False, False]),
        ([float("nan"), 1.0, 0.0, 0.5], 2, [False, True]),
    ],
)
def test_groups_with_signal_on_controlled_rewards(rewards, group_size, expected):
    flags = groups_with_signal(torch.tensor(rewards).unsqueeze(1), torch.tensor([1.0]), group_size)
    assert flags.tolist() == expected
    assert signal_share(flags) == pytest.approx(sum(expected) / len(expected))


def test_signal_share_of_no_group_is_nan():
    assert math.isnan(signal_share(torch.zeros(0, dtype=torch.bool)))


@pytest.mark.parametrize(
    ("predictions", "group_size", "expected"),
    [
        ([" a", " a", " a", " a"], 2, 1.0),
        ([" a", " b", " c", " c"], 2, 1.5),
        ([None, None, " a", " b"], 2, 1.0),
        ([" a", " b", " c", None, None, None], 3, 1.5),
    ],
)
def test_distinct_answers_per_group(predictions, group_size, expected):
    assert distinct_answers_per_group(predictions, group_size) == expected


def test_distinct_answers_needs_whole_groups():
    with pytest.raises(ValueError, match="whole groups of 4"):
        distinct_answers_per_group([" a"] * 6, 4)


def _feed(callback, shares, logging_steps=1):
    state = SimpleNamespace(global_step=0)
    for share in shares:
        state.global_step += logging_steps
        callback.on_log(None, state, None, logs={SIGNAL_GENERATED: share, "reward": 0.0})


def _warnings(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING and "Learning signal lost" in r.message]


@pytest.mark.parametrize(
    ("shares", "logging_steps", "fires_after"),
    [
        ([0.0, 0.0, 0.05], 1, 3),  # three steps below 0.1: warns at the third
        ([0.0, 0.0, 0.5, 0.0, 0.0], 1, None),  # a step above resets the count
        ([0.0, 0.0, 0.1, 0.0], 1, None),  # at the threshold is not below it
        ([0.0, 0.0], 2, 2),  # two logs of two steps each: four steps below
        ([0.0], 4, 1),
    ],
)
def test_signal_warning_fires_exactly_when_the_share_stays_low(caplog, shares, logging_steps, fires_after):
    callback = LearningSignalWarning(threshold=0.1, patience=3 if logging_steps == 1 else 4)
    fired_at = []
    with caplog.at_level(logging.WARNING, logger="rpt_trl.trainer.signal"):
        for index, share in enumerate(shares, start=1):
            before = len(_warnings(caplog))
            state = SimpleNamespace(global_step=index * logging_steps)
            callback.on_log(None, state, None, logs={SIGNAL_GENERATED: share})
            if len(_warnings(caplog)) > before:
                fired_at.append(index)
    assert fired_at == ([] if fires_after is None else [fires_after])


def test_signal_warning_fires_once_and_says_what_to_try(caplog):
    callback = LearningSignalWarning(threshold=0.25, patience=2)
    with caplog.at_level(logging.WARNING, logger="rpt_trl.trainer.signal"):
        _feed(callback, [0.0] * 10 + [0.9] + [0.0] * 10)
    (record,) = _warnings(caplog)
    for advice in (
        "temperature",
        "learning rate",
        "beta > 0",
        "entropy_coef",
        "band_sampling",
        "next_token_loss_coef",
    ):
        assert advice in record.message
    assert "for 2 steps" in record.message


def test_signal_warning_ignores_logs_without_the_share(caplog):
    callback = LearningSignalWarning(threshold=0.5, patience=1)
    with caplog.at_level(logging.WARNING, logger="rpt_trl.trainer.signal"):
        callback.on_log(None, SimpleNamespace(global_step=1), None, logs={"eval_rpt/next_token_accuracy": 0.0})
    assert not _warnings(caplog)


@pytest.mark.parametrize(("field", "value"), [("signal_warning_threshold", 0.0), ("signal_warning_steps", 0)])
def test_config_rejects_bad_signal_warning_settings(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, **{field: value})


class ScriptedReward:
    """Round 1 of each generation batch: live groups 0, 1, 0, 1, flat groups all 0, by the `kind` column;
    later rounds (dynamic sampling's refills): every group live."""

    __name__ = "scripted_reward"

    def __init__(self):
        self.calls = 0

    def __call__(self, completions, kind, **kwargs):
        self.calls += 1
        if self.calls > 1:
            return [float(i % 2) for i in range(len(kind))]
        return [0.0 if k == "flat" else float(i % 2) for i, k in enumerate(kind)]


def make_trainer(tmp_path, tokenizer, reward, **overrides):
    dataset = Dataset.from_dict({"prompt": [f"{d} cat says" for d in "abcdefgh"], "kind": ["flat", "live"] * 4})
    values = dict(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=8, num_generations=4,
        max_completion_length=4, max_steps=1, logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True, prompt_format="text", dynamic_sampling_start_step=0, seed=3, gradient_checkpointing=False,
    )  # fmt: skip
    values.update(overrides)
    return RPTTrainer(
        model=make_tiny_model(tokenizer),
        reward_funcs=reward,
        args=RPTConfig(**values),
        train_dataset=dataset,
        processing_class=tokenizer,
    )


def _one_batch(trainer):
    trainer.model.train()
    inputs = [trainer.train_dataset[i] for i in (0, 1) for _ in range(4)]  # one flat group, one live group
    trainer._generate_and_score_completions(inputs)
    return trainer._metrics["train"]


def test_trainer_logs_generated_and_trained_share_with_dynamic_sampling(tmp_path, tokenizer):
    metrics = _one_batch(make_trainer(tmp_path, tokenizer, ScriptedReward(), dynamic_sampling_max_refills=3))
    # Round 1: 1 of 2 groups live; the refill round: 2 of 2. The batch trained holds live groups only.
    assert metrics[SIGNAL_GENERATED] == [0.5, 1.0]
    assert metrics[SIGNAL_TRAINED] == [1.0]
    assert 0.0 <= metrics[DISTINCT_ANSWERS][0] <= 4.0


def test_trainer_trained_share_counts_the_padding_at_the_refill_cap(tmp_path, tokenizer):
    metrics = _one_batch(make_trainer(tmp_path, tokenizer, ScriptedReward(), dynamic_sampling_max_refills=0))
    assert metrics[SIGNAL_GENERATED] == [0.5]
    assert metrics[SIGNAL_TRAINED] == [0.5]  # the flat group pads the batch


def test_trainer_without_dynamic_sampling_trains_what_it_generates(tmp_path, tokenizer):
    metrics = _one_batch(make_trainer(tmp_path, tokenizer, ScriptedReward(), dynamic_sampling=False))
    assert metrics[SIGNAL_GENERATED] == [0.5]
    assert metrics[SIGNAL_TRAINED] == [0.5]


def test_trainer_warns_by_default_when_no_group_has_a_signal(tmp_path, tokenizer, caplog):
    flat = lambda completions, **kwargs: [0.0] * len(completions)  # noqa: E731
    flat.__name__ = "flat"
    trainer = make_trainer(tmp_path, tokenizer, flat, dynamic_sampling=False, max_steps=3, signal_warning_steps=3)
    with caplog.at_level(logging.WARNING, logger="rpt_trl.trainer.signal"):
        trainer.train()
    assert len(_warnings(caplog)) == 1
    logged = [e[SIGNAL_GENERATED] for e in trainer.state.log_history if SIGNAL_GENERATED in e]
    assert logged == [0.0, 0.0, 0.0]


def test_the_ablation_logs_the_one_signal_measure():
    from rpt_trl.experiments.ablation import _step_log

    fields = _step_log("variant").fields
    assert fields["signal_share"] == SIGNAL_GENERATED
    assert fields["trained_signal_share"] == SIGNAL_TRAINED
    assert fields["entropy"] == "entropy" and fields["distinct_answers"] == DISTINCT_ANSWERS
