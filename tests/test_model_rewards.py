"""The rewards that read the policy's probabilities (rpt_trl.rewards.model_rewards) and the EMA reference behind
information_gain: values against an independent float64 computation, group zeroing, EMA arithmetic, checkpoints,
and short RPTTrainer runs with each variant."""

import copy
import json
import math
import os

import pytest
import torch
from huggingface_hub import ModelCard

from rpt_trl import RPTConfig, RPTTrainer
from rpt_trl.experiments.tiny import make_tiny_model, make_tiny_tokenizer, tiny_training_config, warm_started_world
from rpt_trl.hub.model_card import REWARD_DESCRIPTIONS
from rpt_trl.rewards import score_prefix_match
from rpt_trl.rewards.model_rewards import (
    MODEL_REWARDS,
    ConditionalDenseReward,
    DenseReward,
    InformationGainReward,
    answer_prefix,
    next_token_log_probs,
)
from rpt_trl.rewards.reference import REFERENCE_EMA_FILE, ReferenceEMA


PROMPTS = ["the cat says", "a dog says", "my cow says", "one sheep says"]
TRUTHS = [" meow", " woof", " moo", " baa"]


@pytest.fixture(scope="module")
def tokenizer():
    return make_tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return make_tiny_model(tokenizer, seed=3).eval()


@pytest.fixture(scope="module")
def world():
    model, tokenizer, dataset, _ = warm_started_world(seed=0)
    return model, tokenizer, dataset


def boundaries(tokenizer, truths):
    """Cumulative byte lengths of each ground truth's tokens (as the dataset builder writes them)."""
    result = []
    for truth in truths:
        pieces = [tokenizer.decode([i]) for i in tokenizer(truth, add_special_tokens=False)["input_ids"]]
        result.append([len("".join(pieces[: k + 1]).encode()) for k in range(len(pieces))])
    return result


def float64_log_prob(model, tokenizer, text: str, prompt: str, next_text: str) -> float:
    """log p(first token of next_text | prompt + text), by an unbatched float64 forward over the whole sequence."""
    double = copy.deepcopy(model).double().eval()
    ids = tokenizer(prompt)["input_ids"] + tokenizer(text, add_special_tokens=False)["input_ids"]
    target = tokenizer(next_text, add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        logits = double(input_ids=torch.tensor([ids])).logits[0, -1].double()
    return float(torch.log_softmax(logits, dim=-1)[target])


# (completion, the text the answer position follows, the answer is correct, an answer is boxed)
DENSE_CASES = [
    ("<think>hm</think> \\boxed{ meow}", "<think>hm</think> \\boxed{", True, True),
    ("<think>hm</think> \\boxed{ woof}", "<think>hm</think> \\boxed{", False, True),
    (
        "<think>a</think> x \\boxed{ moo} then \\boxed{ baa}",
        "<think>a</think> x \\boxed{ moo} then \\boxed{",
        False,
        True,
    ),
    ("<think>hm</think> no box", "<think>hm</think> \\boxed{", False, False),
    ("<think>cut short", "<think>cut short</think> \\boxed{", False, False),
    ("\\boxed{ meow}", "\\boxed{ meow}</think> \\boxed{", False, False),  # no </think>: its box does not count
]


@pytest.mark.parametrize("completion, prefix, correct, boxed", DENSE_CASES)
def test_answer_prefix_is_where_the_answer_goes(completion, prefix, correct, boxed):
    assert answer_prefix(completion) == prefix


def test_dense_equals_float64_probability_at_the_answer_position(model, tokenizer):
    completions = [case[0] for case in DENSE_CASES]
    prompts = [PROMPTS[0]] * len(completions)
    truths = [TRUTHS[0]] * len(completions)
    reward = DenseReward(model, tokenizer, batch_size=4, position_chunk_size=2)  # several batches and chunks
    logged = {}
    values = reward(
        prompts=prompts,
        completions=completions,
        ground_truth=truths,
        ground_truth_boundaries=boundaries(tokenizer, truths),
        log_metric=logged.__setitem__,
    )
    expected_probabilities = []
    for (_, prefix, correct, boxed), value in zip(DENSE_CASES, values):
        probability = math.exp(float64_log_prob(model, tokenizer, prefix, PROMPTS[0], TRUTHS[0]))
        expected_probabilities.append(probability)
        assert probability > 1e-4  # so that 0 for an unboxed rollout is not the probability itself
        assert value == (1.0 if correct else pytest.approx(probability, rel=1e-5, abs=1e-7) if boxed else 0.0)
    assert logged["rpt/dense_probability"] == pytest.approx(sum(expected_probabilities) / len(values), rel=1e-5)
    assert logged["rpt/next_token_accuracy"] == pytest.approx(1 / len(values))


@pytest.mark.parametrize("reward_class", [DenseReward, ConditionalDenseReward])
def test_an_unboxed_rollout_never_earns_more_than_a_boxed_wrong_answer(model, tokenizer, reward_class):
    boxed_wrong = ["<think>hm</think> \\boxed{ woof}", "<think>a</think> \\boxed{ baa}", "<think></think> \\boxed{ x}"]
    unboxed = ["<think>hm</think> meow", "<think>the cat says", "<think>hm</think> \\boxed{ meo"]
    completions = [*boxed_wrong, *unboxed, "<think>hm</think> \\boxed{ meow}", "<think>hm</think> \\boxed{ meow}"]
    # One group with correct rollouts, so conditional_dense is dense here.
    options = {"num_generations": len(completions)} if reward_class is ConditionalDenseReward else {}
    reward = reward_class(model, tokenizer, **options)
    values = reward(
        prompts=[PROMPTS[0]] * len(completions),
        completions=completions,
        ground_truth=[TRUTHS[0]] * len(completions),
        ground_truth_boundaries=boundaries(tokenizer, [TRUTHS[0]] * len(completions)),
    )
    assert values[3:6] == [0.0, 0.0, 0.0]
    assert min(values[:3]) > 0.0 and values[6:] == [1.0, 1.0]


def test_batched_log_probs_do_not_depend_on_batching(model, tokenizer):
    rows = [tokenizer(p + " " * k)["input_ids"] for k, p in enumerate(PROMPTS * 2)]
    targets = [tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in TRUTHS * 2]
    one_pass = next_token_log_probs(model, rows, targets, batch_size=len(rows), position_chunk_size=len(rows))
    chunked = next_token_log_probs(model, rows, targets, batch_size=3, position_chunk_size=1)
    torch.testing.assert_close(one_pass, chunked, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("template_suffix", ["", "<think>"])
def test_information_gain_equals_float64_difference(model, tokenizer, template_suffix):
    # The policy's weights move after the EMA snapshot, so reference and policy differ.
    policy = copy.deepcopy(model)
    reward = InformationGainReward(policy, tokenizer, reference_ema_decay=0.5)
    snapshot = copy.deepcopy(policy)
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    reward.reference.update()  # reference = 0.5 * start + 0.5 * now
    averaged = copy.deepcopy(policy)
    with torch.no_grad():
        for mean, start, now in zip(averaged.parameters(), snapshot.parameters(), policy.parameters()):
            mean.copy_(0.5 * start.double() + 0.5 * now.double())

    completions = ["<think>hm</think> anything", "<think>a cat</think>", "<think>cut short"]
    thoughts = ["<think>hm</think>", "<think>a cat</think>", "<think>cut short</think>"]
    if template_suffix:  # the information_gain template: the prompt ends with <think>, the thought follows it
        completions = [c.removeprefix("<think>") for c in completions]
        thoughts = [t.removeprefix("<think>") for t in thoughts]
    prompts = [p + template_suffix for p in PROMPTS[:3]]
    truths = TRUTHS[:3]
    logged = {}
    gains = reward(
        prompts=prompts,
        completions=completions,
        ground_truth=truths,
        ground_truth_boundaries=boundaries(tokenizer, truths),
        log_metric=logged.__setitem__,
    )
    for gain, prompt, context, thought, truth in zip(gains, prompts, PROMPTS, thoughts, truths):
        with_thought = float64_log_prob(policy, tokenizer, thought, prompt, truth)
        without_thought = float64_log_prob(averaged, tokenizer, "", context, truth)
        assert gain == pytest.approx(with_thought - without_thought, rel=1e-5, abs=1e-5)
    assert logged["rpt/info_gain"] == pytest.approx(sum(gains) / len(gains))
    # The live weights came back unchanged after the reference pass.
    for live, kept in zip(policy.parameters(), reward.reference.parameters.values()):
        assert live is kept


def test_conditional_dense_zeroes_exactly_the_groups_without_a_correct_rollout(model, tokenizer):
    right, wrong = "<think>hm</think> \\boxed{ meow}", "<think>hm</think> \\boxed{ woof}"
    # Three groups of 3: one right rollout in the first, none in the second, all right in the third.
    completions = [wrong, right, wrong, wrong, wrong, wrong, right, right, right]
    truths = [TRUTHS[0]] * len(completions)
    columns = dict(
        prompts=[PROMPTS[0]] * len(completions),
        completions=completions,
        ground_truth=truths,
        ground_truth_boundaries=boundaries(tokenizer, truths),
    )
    dense = DenseReward(model, tokenizer)(**columns)
    logged = {}
    conditional = ConditionalDenseReward(model, tokenizer, num_generations=3)(**columns, log_metric=logged.__setitem__)
    assert conditional[:3] == dense[:3] and 0 < dense[0] < 1
    assert conditional[3:6] == [0.0, 0.0, 0.0] and all(value > 0 for value in dense[3:6])
    assert conditional[6:] == [1.0, 1.0, 1.0]
    assert logged["rpt/groups_with_correct"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="not whole groups"):
        ConditionalDenseReward(model, tokenizer, num_generations=4)(**columns)


def test_ema_arithmetic_and_exact_restore(model):
    policy = copy.deepcopy(model)
    start = {n: p.detach().double().clone() for n, p in policy.named_parameters()}
    ema = ReferenceEMA(policy, decay=0.9)
    expected = start
    for _ in range(3):
        with torch.no_grad():
            for parameter in policy.parameters():
                parameter.add_(torch.randn_like(parameter))
        ema.update()
        expected = {n: 0.9 * expected[n] + 0.1 * p.detach().double() for n, p in policy.named_parameters()}
    assert ema.num_updates == 3
    for name, shadow in ema.shadow.items():
        torch.testing.assert_close(shadow.double(), expected[name], rtol=1e-6, atol=1e-6)
        assert shadow.device.type == "cpu" and shadow.dtype == torch.float32
    live = {n: p.detach().clone() for n, p in policy.named_parameters()}
    with ema.applied():
        for name, parameter in policy.named_parameters():
            torch.testing.assert_close(parameter.double(), expected[name], rtol=1e-6, atol=1e-6)
    for name, parameter in policy.named_parameters():
        assert torch.equal(parameter, live[name])  # bit for bit
    frozen = ReferenceEMA(policy, decay=1.0)
    with torch.no_grad():
        next(policy.parameters()).add_(1.0)
    frozen.update()
    assert torch.equal(frozen.shadow[next(iter(frozen.shadow))], live[next(iter(frozen.shadow))].float())
    with pytest.raises(ValueError, match="decay"):
        ReferenceEMA(policy, decay=1.5)


def test_ema_of_a_lora_policy_holds_the_adapter_only(model):
    peft = pytest.importorskip("peft")  # the `peft` extra
    policy = peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    ema = ReferenceEMA(policy, decay=0.5)
    assert ema.shadow and all("lora_" in name for name in ema.shadow)
    adapter = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    assert ema.memory_bytes() == 4 * adapter < sum(p.numel() * 4 for p in policy.parameters()) // 10


def run_args(tmp_path, reward, **overrides):
    values = dict(
        reward=reward,
        per_device_train_batch_size=8,
        num_generations=4,
        max_steps=2,
        dynamic_sampling=False,
        prompt_template="{context}",
        prompt_format="text",
    )
    values.update(overrides)
    return tiny_training_config(str(tmp_path), **values)


METRICS = {
    "dense": "rpt/dense_probability",
    "conditional_dense": "rpt/groups_with_correct",
    "information_gain": "rpt/info_gain",
}


@pytest.mark.parametrize("reward", list(MODEL_REWARDS))
def test_two_step_rpt_run_with_each_model_reward(tmp_path, world, reward):
    model, tokenizer, dataset = world
    trainer = RPTTrainer(
        model=copy.deepcopy(model),
        args=run_args(tmp_path, reward),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    assert isinstance(trainer.reward_funcs[0], MODEL_REWARDS[reward])
    assert trainer.reward_funcs[0].trainer is trainer
    trainer.train()
    assert trainer.state.global_step == 2
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2
    for entry in logged:
        assert METRICS[reward] in entry and math.isfinite(entry[METRICS[reward]])
        assert f"rewards/{reward}/mean" in entry
    if reward == "information_gain":
        assert trainer.reward_funcs[0].reference.num_updates == 2
    trainer.create_model_card()
    card = ModelCard.load(os.path.join(tmp_path, "README.md")).text
    assert f"| `reward` | `{reward}` |" in card
    assert REWARD_DESCRIPTIONS[reward] in card
    assert f"{METRICS[reward]} |" in card  # its curve column
    assert ("| `reference_ema_decay` | `0.999` |" in card) == (reward == "information_gain")


class RecordingConditionalDense(ConditionalDenseReward):
    """Records every call's completions, ground truths, rewards and the step it ran at."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def __call__(self, prompts, completions, ground_truth, ground_truth_boundaries, **kwargs):
        rewards = super().__call__(prompts, completions, ground_truth, ground_truth_boundaries, **kwargs)
        self.calls.append(
            (self.trainer.state.global_step, completions, ground_truth, ground_truth_boundaries, rewards)
        )
        return rewards


def test_conditional_dense_under_dynamic_sampling(tmp_path, world):
    model, tokenizer, dataset = world
    reward = RecordingConditionalDense()
    args = run_args(tmp_path, "conditional_dense", dynamic_sampling=True, dynamic_sampling_start_step=0)
    args.dynamic_sampling_max_refills = 3
    trainer = RPTTrainer(
        model=copy.deepcopy(model), reward_funcs=[reward], args=args, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.train()
    size = args.num_generations
    dropped_per_step = {}
    for step, completions, truths, bounds, rewards in reward.calls:
        for start in range(0, len(completions), size):
            group = range(start, start + size)
            correct = [score_prefix_match(_prediction(completions[i]), truths[i], bounds[i]) for i in group]
            values = [rewards[i] for i in group]
            if not any(correct):
                assert values == [0.0] * size
            else:
                for i, hit, value in zip(group, correct, values):
                    if hit:
                        assert value == 1.0
                    elif _prediction(completions[i]) is None:  # no box: earns less than a boxed wrong answer
                        assert value == 0.0
                    else:
                        assert 0.0 < value < 1.0
            dropped, total = dropped_per_step.get(step, (0, 0))
            uniform = max(values) - min(values) <= 1e-6
            dropped_per_step[step] = (dropped + uniform, total + 1)
    assert len(reward.calls) > args.max_steps  # dynamic sampling refilled at least once
    logged = [entry for entry in trainer.state.log_history if "dynamic_sampling/dropped_fraction" in entry]
    assert len(logged) == args.max_steps
    for step, entry in enumerate(logged):
        dropped, total = dropped_per_step[step]
        assert entry["dynamic_sampling/dropped_fraction"] == pytest.approx(dropped / total)


def _prediction(completion):
    from rpt_trl.parsing import extract_prediction

    return extract_prediction(completion)


def test_information_gain_reference_is_saved_and_restored_on_resume(tmp_path, world):
    model, tokenizer, dataset = world
    args = run_args(tmp_path, "information_gain", reference_ema_decay=0.5, save_strategy="steps", save_steps=1)
    trainer = RPTTrainer(model=copy.deepcopy(model), args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    first = torch.load(tmp_path / "checkpoint-1" / REFERENCE_EMA_FILE, weights_only=True)
    second = torch.load(tmp_path / "checkpoint-2" / REFERENCE_EMA_FILE, weights_only=True)
    assert (first["num_updates"], second["num_updates"]) == (1, 2)
    final = trainer.reward_funcs[0].reference
    for name, shadow in second["shadow"].items():
        assert torch.equal(shadow, final.shadow[name])

    # Resume from step 1: the reference restarts from checkpoint-1's shadow, then takes one EMA step to the weights
    # of step 2 (0.5 * saved + 0.5 * weights).
    resumed = RPTTrainer(model=copy.deepcopy(model), args=args, train_dataset=dataset, processing_class=tokenizer)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))
    reference = resumed.reward_funcs[0].reference
    assert reference.num_updates == 2
    weights = dict(resumed.model.named_parameters())
    for name, shadow in reference.shadow.items():
        expected = 0.5 * first["shadow"][name].double() + 0.5 * weights[name].detach().double()
        torch.testing.assert_close(shadow.double(), expected, rtol=1e-6, atol=1e-6)

    os.remove(tmp_path / "checkpoint-1" / REFERENCE_EMA_FILE)
    again = RPTTrainer(model=copy.deepcopy(model), args=args, train_dataset=dataset, processing_class=tokenizer)
    # Issue 21, item 7: the checkpoint's list of files says it is incomplete, before anything trains ...
    with pytest.raises(ValueError, match=f"{REFERENCE_EMA_FILE}, listed in rpt_checkpoint.json, is missing"):
        again.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))
    # ... and a checkpoint without that list (an older rpt-trl's) is refused when the reference loads.
    os.remove(tmp_path / "checkpoint-1" / "rpt_checkpoint.json")
    state = json.loads((tmp_path / "checkpoint-1" / "trainer_state.json").read_text())
    del state["stateful_callbacks"]["CheckpointCompletion"]
    (tmp_path / "checkpoint-1" / "trainer_state.json").write_text(json.dumps(state))
    again = RPTTrainer(model=copy.deepcopy(model), args=args, train_dataset=dataset, processing_class=tokenizer)
    with pytest.raises(FileNotFoundError, match="reference EMA"):
        again.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))


def test_config_refuses_a_bad_reference_decay(tmp_path):
    with pytest.raises(ValueError, match="reference_ema_decay"):
        RPTConfig(output_dir=str(tmp_path), use_cpu=True, reward="information_gain", reference_ema_decay=1.2)
    with pytest.raises(ValueError, match="reference_ema_device"):
        RPTConfig(output_dir=str(tmp_path), use_cpu=True, reward="information_gain", reference_ema_device="gpu")
    assert RPTConfig(output_dir=str(tmp_path), use_cpu=True, reward="conditional_dense").reward == "conditional_dense"


def test_recipe_yaml_selects_a_model_reward(tmp_path):
    from rpt_trl.trainer.train import parse_args

    tiny = open(os.path.join(os.path.dirname(__file__), "..", "recipes", "tiny", "rpt", "config_cpu.yaml")).read()
    config = tmp_path / "config.yaml"
    config.write_text(tiny + "reward: information_gain\nreference_ema_decay: 0.99\nreference_ema_device: model\n")
    _, args, _ = parse_args(["--config", str(config)])
    assert (args.reward, args.reference_ema_decay, args.reference_ema_device) == ("information_gain", 0.99, "model")
    _, args, _ = parse_args(["--config", str(config), "--reward", "dense"])
    assert args.reward == "dense"


def test_information_gain_with_lora_keeps_an_ema_of_the_adapter(tmp_path, world):
    peft = pytest.importorskip("peft")  # the `peft` extra
    model, tokenizer, dataset = world
    trainer = RPTTrainer(
        model=copy.deepcopy(model),
        args=run_args(tmp_path, "information_gain", learning_rate=1e-2, reference_ema_decay=0.5),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]),
    )
    trainer.train()
    reference = trainer.reward_funcs[0].reference
    assert reference.num_updates == 2 and all("lora_" in name for name in reference.shadow)
    adapter = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert set(adapter) == set(reference.shadow)
    assert 4 * sum(p.numel() for p in adapter.values()) == reference.memory_bytes()


def test_reference_of_bfloat16_weights_is_copied_in_and_out(model):
    # bfloat16 weights and a float32 shadow: the copy path (the one a GPU run takes), not the float32 pointer swap.
    policy = copy.deepcopy(model).to(torch.bfloat16)
    ema = ReferenceEMA(policy, decay=0.5)
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.add_(1.0)
    ema.update()
    live = {n: p.detach().clone() for n, p in policy.named_parameters()}
    with ema.applied():
        for name, parameter in policy.named_parameters():
            assert parameter.dtype == torch.bfloat16
            assert torch.equal(parameter, ema.shadow[name].to(torch.bfloat16))
    for name, parameter in policy.named_parameters():
        assert torch.equal(parameter, live[name])
        assert not torch.equal(ema.shadow[name].to(torch.bfloat16), live[name])


def test_dense_reward_in_a_plain_grpo_trainer(tmp_path, world):
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer, dataset = world
    reward = DenseReward()
    args = GRPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=12,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        gradient_checkpointing=True,
    )
    trainer = GRPOTrainer(
        model=copy.deepcopy(model),
        reward_funcs=[reward],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    reward.bind(trainer)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2 and all(0 < entry["rpt/dense_probability"] < 1 for entry in logged)
    assert all("rewards/dense/mean" in entry for entry in logged)


def test_ema_of_zero3_shards_reads_and_writes_the_local_shard(model):
    # DeepSpeed ZeRO-3 stands in: each parameter's local shard is `ds_tensor` (here a slice-sized tensor of its own).
    policy = copy.deepcopy(model)
    for parameter in policy.parameters():
        parameter.ds_tensor = torch.randn(3)
    ema = ReferenceEMA(policy, decay=0.5)
    assert ema.sharded and all(s.shape == (3,) for s in ema.shadow.values())
    from rpt_trl.rewards.reference import reference_ema_filename

    assert reference_ema_filename(ema.sharded, 1) == "reference_ema-rank1.pt"
    start = {n: p.ds_tensor.clone() for n, p in policy.named_parameters()}
    full = {n: p.detach().clone() for n, p in policy.named_parameters()}
    for parameter in policy.parameters():
        parameter.ds_tensor += 2.0
    ema.update()
    with ema.applied():
        for name, parameter in policy.named_parameters():
            torch.testing.assert_close(parameter.ds_tensor, start[name] + 1.0)
            assert torch.equal(parameter.data, full[name])  # the gathered tensor is ZeRO-3's business
    for name, parameter in policy.named_parameters():
        torch.testing.assert_close(parameter.ds_tensor, start[name] + 2.0, rtol=0, atol=0)
    next(policy.parameters()).ds_persist = True
    with pytest.raises(ValueError, match="stage3_param_persistence_threshold"):
        ReferenceEMA(policy, decay=0.5)


def test_first_token_ids_are_the_documents_tokens(any_tokenizer):
    from rpt_trl import build_next_token_dataset
    from rpt_trl.rewards.model_rewards import first_token_ids

    document = "The size of the box is 12 cm. Then x = 5, so (x+1) is 6.\nNext line here. naïve 中文"
    document_ids = any_tokenizer(document, add_special_tokens=False)["input_ids"]
    examples = build_next_token_dataset(
        [document], any_tokenizer, min_context_tokens=2, position_stride=1, show_progress=False
    )
    ids = first_token_ids(any_tokenizer, examples["ground_truth"], examples["ground_truth_boundaries"])
    assert len(ids) > 20
    assert ids == [document_ids[position] for position in examples["position"]]


def test_thought_scores_are_the_probability_after_the_thought_and_its_gain(model, tokenizer):
    # Issue 18, item 5: an information_gain model is scored by p(first ground-truth token | prompt, its own thought),
    # the reward's policy term, and its gain over the same model reading the context alone.
    from rpt_trl.evaluation import thought_scores, thought_summary

    rows = [
        {"prompt": p + "<think>", "ground_truth": t, "ground_truth_boundaries": b}
        for p, t, b in zip(PROMPTS[:2], TRUTHS[:2], boundaries(tokenizer, TRUTHS[:2]))
    ]
    sampled = [["hm</think> anything after", "a cat"], ["woof</think>", "</think> \\boxed{ baa}"]]
    thoughts = [["hm</think>", "a cat</think>"], ["woof</think>", "</think>"]]
    asked = []

    def generate(prompts, num_samples):
        asked.append((prompts, num_samples))
        return sampled

    completions, probabilities, gains = thought_scores(rows, generate, model, tokenizer, num_samples=2, batch_size=3)
    assert completions == sampled and asked == [([row["prompt"] for row in rows], 2)]
    for row, context, row_thoughts, row_probabilities, row_gains in zip(rows, PROMPTS, thoughts, probabilities, gains):
        alone = float64_log_prob(model, tokenizer, "", context, row["ground_truth"])
        for thought, probability, gain in zip(row_thoughts, row_probabilities, row_gains):
            expected = float64_log_prob(model, tokenizer, thought, row["prompt"], row["ground_truth"])
            assert probability == pytest.approx(math.exp(expected), rel=1e-4)
            assert gain == pytest.approx(expected - alone, abs=1e-4)
    overall, splits = thought_summary(rows, probabilities, gains)
    assert overall["accuracy"] == pytest.approx(sum(map(sum, probabilities)) / 4) and overall["n"] == 2
    assert overall["info_gain"] == pytest.approx(sum(map(sum, gains)) / 4) and splits == {}
