"""A trained batch without signal skips the loss forward and backward, and training ends exactly where it would."""

import random
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from conftest import CORPUS, make_byte_level_tokenizer, make_tiny_model

from rpt_trl import RPTConfig, RPTTrainer, build_next_token_dataset
from rpt_trl.trainer.empty_batch import SKIPPED_METRIC, EmptyBatchSkipMixin


FORMAT_TOKENS = ["<think>", "</think>", "\\boxed{"]


@pytest.fixture(scope="module")
def tokenizer():
    return make_byte_level_tokenizer(extra_tokens=FORMAT_TOKENS)


@pytest.fixture(scope="module")
def train_dataset(tokenizer):
    return build_next_token_dataset(CORPUS, tokenizer, position_stride=9, max_context_tokens=24, show_progress=False)


def signal_on_first_step_only(completions, trainer_state, **kwargs):
    """Mixed rewards on the first optimizer step, then one reward for every rollout: all advantages zero."""
    if trainer_state.global_step > 0:
        return [1.0] * len(completions)
    draw = random.Random(len(completions))
    return [draw.random() for _ in completions]


def constant_reward(completions, **kwargs):
    return [1.0] * len(completions)


def train(tokenizer, dataset, tmp_path, reward, *, skip: bool, **overrides):
    values = dict(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        num_generations=4,
        max_completion_length=8,
        max_steps=3,
        learning_rate=1e-2,  # large enough that weight decay and Adam's moments move every parameter visibly
        weight_decay=0.1,
        lr_scheduler_type="linear",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dynamic_sampling=False,
    )
    values.update(overrides)
    model = make_tiny_model(tokenizer)
    if values.get("beta"):  # TRL loads the reference model from the policy's checkpoint
        model.save_pretrained(tmp_path / "policy")
        model = str(tmp_path / "policy")
    trainer = RPTTrainer(
        model=model,
        reward_funcs=[reward],
        args=RPTConfig(**values),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.skip_batches_without_signal = skip
    trainer.train()
    return trainer


def logged(trainer, key):
    return [entry[key] for entry in trainer.state.log_history if key in entry and "reward" in entry]


def test_skipped_steps_end_with_the_parameters_and_optimizer_state_of_full_steps(tokenizer, train_dataset, tmp_path):
    full = train(tokenizer, train_dataset, tmp_path / "full", signal_on_first_step_only, skip=False)
    skipped = train(tokenizer, train_dataset, tmp_path / "skipped", signal_on_first_step_only, skip=True)

    assert logged(full, "grad_norm")[1:] == [0.0, 0.0]  # the full run's later steps did compute zeros
    assert logged(skipped, SKIPPED_METRIC) == [0.0, 1.0, 1.0]
    assert logged(skipped, "loss")[1:] == [0.0, 0.0]
    for (name, full_parameter), skipped_parameter in zip(full.model.named_parameters(), skipped.model.parameters()):
        assert torch.equal(full_parameter, skipped_parameter), name
    full_state, skipped_state = full.optimizer.state_dict()["state"], skipped.optimizer.state_dict()["state"]
    assert full_state.keys() == skipped_state.keys() and full_state
    for index, moments in full_state.items():
        assert moments["step"] == skipped_state[index]["step"] == 3  # AdamW counted the skipped steps
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(moments[key], skipped_state[index][key]), (index, key)
    assert full.lr_scheduler.get_last_lr() == skipped.lr_scheduler.get_last_lr()


def test_steps_after_the_signal_still_move_the_parameters(tokenizer, train_dataset, tmp_path):
    # The equality above is not vacuous: the skipped steps change the weights (Adam's momentum, weight decay).
    one_step = train(tokenizer, train_dataset, tmp_path / "one", signal_on_first_step_only, skip=True, max_steps=1)
    three_steps = train(tokenizer, train_dataset, tmp_path / "three", signal_on_first_step_only, skip=True)
    for (name, after_one), after_three in zip(one_step.model.named_parameters(), three_steps.model.parameters()):
        assert not torch.equal(after_one, after_three), name


@pytest.mark.parametrize(
    ("reward", "overrides", "skipped_logged"),
    [
        (signal_on_first_step_only, {"max_steps": 1}, [0.0]),
        # With a KL term the loss depends on more than the advantages: the question is not even asked.
        (constant_reward, {"beta": 0.1, "max_steps": 1}, []),
        # The mixed objective's next-token term does not depend on the advantages either.
        (constant_reward, {"next_token_loss_coef": 0.5, "max_steps": 1}, []),
    ],
    ids=["non_zero_advantages", "kl_term", "next_token_term"],
)
def test_no_skip_when_the_loss_is_not_zero(tokenizer, train_dataset, tmp_path, reward, overrides, skipped_logged):
    trainer = train(tokenizer, train_dataset, tmp_path, reward, skip=True, **overrides)
    assert len(logged(trainer, "entropy")) == 1  # the loss forward ran
    assert logged(trainer, SKIPPED_METRIC) == skipped_logged


class FullLoss:
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return "full"


class DecisionOnly(EmptyBatchSkipMixin, FullLoss):
    """The mixin's decision alone, on a fake trainer (the fake gather sees every rank agree)."""

    beta, _entropy_bonus_enabled, aux_loss_enabled = 0.0, False, False

    def __init__(self, num_processes):
        self.accelerator = SimpleNamespace(
            num_processes=num_processes, sync_gradients=True, distributed_type="MULTI_CPU", gather=lambda t: t
        )
        self.args = SimpleNamespace(optim="adamw_torch")
        self.model = torch.nn.Linear(2, 2)
        self._metrics = {"train": defaultdict(list)}


@pytest.mark.parametrize(
    ("num_processes", "signal", "expected"),
    [
        (1, [True, False], ["full", "skip"]),
        (2, [True, False], ["full", "full"]),  # DDP averages the first micro-batch's gradients in the last backward
        (2, [False, False], ["skip", "skip"]),
        (2, [False, True], ["skip", "full"]),
        (2, [True, False, False, False], ["full", "full", "skip", "skip"]),  # a new window starts clean
    ],
)
def test_the_last_micro_batch_of_a_window_runs_its_backward_where_ddp_needs_it(num_processes, signal, expected):
    trainer = DecisionOnly(num_processes)
    outcomes = []
    for step, has_signal in enumerate(signal):
        trainer.accelerator.sync_gradients = step % 2 == 1  # gradient accumulation over two micro-batches
        inputs = {"advantages": torch.tensor([0.5 if has_signal else 0.0, 0.0])}
        loss = trainer.compute_loss(trainer.model, inputs)
        outcomes.append("full" if loss == "full" else "skip")
    assert outcomes == expected
    for parameter in trainer.model.parameters():  # a skipped batch leaves a zero gradient, as its backward would
        assert parameter.grad is None if "skip" not in expected else torch.equal(parameter.grad, parameter * 0)


@pytest.mark.parametrize("shared_prefix_loss", [False, True])
def test_two_runs_from_one_seed_end_with_the_same_weights(tokenizer, train_dataset, tmp_path, shared_prefix_loss):
    """Bitwise, on two threads. The shared prefix once picked each row's prompt keys by indexing, whose backward
    accumulated the rows of a prompt in an order that differed between runs: 16 of the model's tensors differed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first, second = (
            train(tokenizer, train_dataset, tmp_path / name, signal_on_first_step_only, skip=False, max_steps=1,
                  shared_prefix_loss=shared_prefix_loss)
            for name in ("first", "second")
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert logged(first, "grad_norm")[0] > 0
    for (name, a), b in zip(first.model.named_parameters(), second.model.parameters()):
        assert torch.equal(a, b), name
