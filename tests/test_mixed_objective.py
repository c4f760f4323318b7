import pytest
import torch
from datasets import Dataset
from trl import GRPOTrainer

from rpt_trl import RPTConfig, RPTTrainer
from rpt_trl.experiments.tiny import make_tiny_model, make_tiny_tokenizer
from rpt_trl.trainer.mixed_objective import NTP_FIELDS, context_of_prompt


TEMPLATE = "Say: {context}|"
CONTEXTS = ["the cat says", "a dog says"]


@pytest.fixture(scope="module")
def tokenizer():
    return make_tiny_tokenizer()


@pytest.mark.parametrize(
    ("prompt", "template", "context"),
    [
        ("Say: the cat|", TEMPLATE, "the cat"),
        ("Say: |", TEMPLATE, ""),
        ("the cat", "{context}", "the cat"),
        ([{"role": "user", "content": "Say: a {b}|"}], TEMPLATE, "a {b}"),
        ('Text: "x"\nNext?', 'Text: "{context}"\nNext?', "x"),
    ],
)
def test_context_of_prompt(prompt, template, context):
    assert context_of_prompt(prompt, template) == context


@pytest.mark.parametrize("prompt", ["Tell: the cat|", "Say: the cat", "Say:|"])
def test_context_of_prompt_refuses_another_template(prompt):
    with pytest.raises(ValueError, match="prompt_template='Say: {context}|'"):
        context_of_prompt(prompt, TEMPLATE)


def box_length_reward(completions, **kwargs):
    return [float(len(c) % 3) for c in completions]  # differing rewards, so GRPO's loss has a gradient


def make_trainer(tmp_path, tokenizer, coef, **overrides):
    dataset = Dataset.from_dict({"prompt": [TEMPLATE.replace("{context}", c) for c in CONTEXTS]})
    values = dict(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=8, num_generations=4,
        max_completion_length=6, max_steps=1, logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True, prompt_format="text", prompt_template=TEMPLATE, dynamic_sampling=False, seed=5,
        gradient_checkpointing=False, next_token_loss_coef=coef,
    )  # fmt: skip
    values.update(overrides.pop("config", {}))
    trainer = RPTTrainer(
        model=make_tiny_model(tokenizer, seed=1),
        reward_funcs=box_length_reward,
        args=RPTConfig(**values),
        train_dataset=dataset,
        processing_class=tokenizer,
        **overrides,
    )
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def rollouts(trainer):
    trainer.model.train()
    return trainer._generate_and_score_completions([trainer.train_dataset[i] for i in (0, 1) for _ in range(4)])


def loss_and_grads(trainer, compute_loss, inputs):
    trainer.model.zero_grad(set_to_none=True)
    loss = compute_loss(trainer.model, inputs)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def grpo_loss(trainer):
    return lambda model, inputs: GRPOTrainer.compute_loss(trainer, model, inputs)


def test_coefficient_zero_is_exactly_grpo(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, 0.0)
    inputs = rollouts(trainer)
    assert not set(NTP_FIELDS) & set(inputs)  # nothing added to the batch
    loss, grads = loss_and_grads(trainer, trainer.compute_loss, inputs)
    expected_loss, expected_grads = loss_and_grads(trainer, grpo_loss(trainer), inputs)
    assert torch.equal(loss, expected_loss)
    assert grads.keys() == expected_grads.keys() and grads
    assert all(torch.equal(grads[name], expected_grads[name]) for name in grads)


def independent_cross_entropy(model, tokenizer):
    """Mean next-token cross-entropy over the contexts' tokens, one plain forward per context."""
    total, count = torch.zeros(()), 0
    for context in CONTEXTS:
        ids = torch.tensor([tokenizer(context)["input_ids"]])
        logits = model(input_ids=ids).logits[0, :-1].float()
        total = total + torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum")
        count += ids.shape[1] - 1
    return total / count, count


@pytest.mark.parametrize("lora", [False, True])
def test_positive_coefficient_adds_the_next_token_cross_entropy(tmp_path, tokenizer, lora):
    coef = 0.5
    overrides = {}
    if lora:
        from peft import LoraConfig

        overrides["peft_config"] = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = make_trainer(tmp_path, tokenizer, coef, **overrides)
    inputs = rollouts(trainer)
    # One context per group, on its first rollout.
    assert inputs["ntp_attention_mask"].any(dim=1).tolist() == [True, False, False, False] * 2

    mixed, mixed_grads = loss_and_grads(trainer, trainer.compute_loss, inputs)
    grpo, grpo_grads = loss_and_grads(trainer, grpo_loss(trainer), inputs)
    trainer.model.zero_grad(set_to_none=True)
    cross_entropy, _ = independent_cross_entropy(trainer.model, tokenizer)
    (coef * cross_entropy).backward()
    ntp_grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}

    assert cross_entropy.item() > 1.0  # an untrained model: the term is not negligible
    torch.testing.assert_close(mixed - grpo, coef * cross_entropy.detach(), rtol=1e-5, atol=1e-6)
    assert mixed_grads.keys() == ntp_grads.keys()
    for name, grad in mixed_grads.items():
        torch.testing.assert_close(grad, grpo_grads.get(name, 0) + ntp_grads[name], rtol=1e-4, atol=1e-6)
    if lora:  # only the adapter trains, and the term reaches it
        assert mixed_grads and all("lora_" in name for name in mixed_grads)
    logged = trainer._metrics["train"]["rpt/next_token_loss"]
    assert logged[-1] == pytest.approx(cross_entropy.item(), rel=1e-5)


def test_trained_tokens_count_the_contexts_once_per_group(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, 0.2)
    inputs = rollouts(trainer)
    context_tokens = sum(len(tokenizer(c)["input_ids"]) for c in CONTEXTS)
    rollout_tokens = inputs["prompt_mask"].sum().item() / 4 + inputs["completion_mask"].sum().item()
    assert trainer._metrics["train"]["rpt/trained_tokens"] == [rollout_tokens + context_tokens]


def test_dynamic_sampling_keeps_the_contexts_of_the_groups_it_keeps(tmp_path, tokenizer):
    def second_prompt_only(completions, prompts, **kwargs):
        return [float(i % 2) if p.endswith("dog says|") else 0.0 for i, p in enumerate(prompts)]

    trainer = make_trainer(
        tmp_path,
        tokenizer,
        0.2,
        config={"dynamic_sampling": True, "dynamic_sampling_start_step": 0, "dynamic_sampling_max_refills": 0},
    )
    trainer.reward_funcs = [second_prompt_only]
    inputs = rollouts(trainer)
    # The live group comes first, the flat one pads: each row's context is its own prompt's.
    firsts = inputs["ntp_attention_mask"].any(dim=1).nonzero().flatten().tolist()
    assert firsts == [0, 4]
    for row in firsts:
        tokens = inputs["ntp_input_ids"][row][inputs["ntp_attention_mask"][row].bool()]
        prompt = tokenizer.decode(inputs["prompt_ids"][row], skip_special_tokens=True)
        assert tokenizer.decode(tokens, skip_special_tokens=True) == context_of_prompt(prompt, TEMPLATE)


def test_config_rejects_a_negative_coefficient(tmp_path):
    with pytest.raises(ValueError, match="next_token_loss_coef"):
        RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, next_token_loss_coef=-0.1)


def test_training_with_the_mixed_objective_logs_its_loss(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, tokenizer, 0.2, config={"max_steps": 2})
    trainer.train()
    losses = [e["rpt/next_token_loss"] for e in trainer.state.log_history if "rpt/next_token_loss" in e]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)
