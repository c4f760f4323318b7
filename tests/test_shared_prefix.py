"""Shared-prefix scoring (`rpt_trl.trainer.shared_prefix`): the completions' log-probabilities, entropies and the
parameter gradients equal TRL's own scoring of every row over `prompt + completion`, on Qwen2 and on Gemma 3's mix of
sliding-window and global layers, with left-padded prompts of different lengths, padded completions and LoRA; while
each distinct prompt runs forward once."""

import contextlib
import inspect
import logging
import types

import pytest
import torch
from conftest import CORPUS, make_byte_level_tokenizer, make_tiny_model
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    MambaConfig,
    MambaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from trl import GRPOTrainer
from trl.trainer.utils import add_fused_lm_head

from rpt_trl import RPTConfig, RPTTrainer, build_next_token_dataset
from rpt_trl.trainer.shared_prefix import (
    check_shared_prefix_model,
    group_rows_by_prompt,
    shared_prefix_per_token_logps,
    shuffle_keeping_prompts_together,
)


VOCAB, PAD = 64, 0
COMPLETION_LENGTH = 5


def tiny_qwen2() -> torch.nn.Module:
    config = Qwen2Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=True, pad_token_id=PAD,
    )  # fmt: skip
    return Qwen2ForCausalLM(config)


def tiny_gemma3() -> torch.nn.Module:
    """Gemma 3's architecture at toy size: sliding-window layers around a global one, a window shorter than the
    prompts (so that the sliding layers' cache keeps only the window), logit soft-capping, tied embeddings."""
    config = Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8, sliding_window=4, pad_token_id=PAD,
        layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        final_logit_softcapping=30.0,
    )  # fmt: skip
    return Gemma3ForCausalLM(config)


def with_lora(model: torch.nn.Module) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    # Random (not zero) B matrices, so that the adapters change the forward and both factors get a gradient.
    lora = LoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj", "down_proj"], init_lora_weights=False)
    return get_peft_model(model, lora)


ARCHITECTURES = {"qwen2": tiny_qwen2, "gemma3": tiny_gemma3}
MODELS = [*ARCHITECTURES, *(f"{name}-lora" for name in ARCHITECTURES)]


def scoring_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = ARCHITECTURES[name.removesuffix("-lora")]().float()
    # As GRPOTrainer does: the fused head on the base model, before PEFT wraps it.
    add_fused_lm_head(model, temperature=0.8, outputs=("log_probs", "entropy"))
    if name.endswith("-lora"):
        model = with_lora(model)
    return model.train()


def grpo_rows(prompt_lengths: list[int], row_prompts: list[int], prompt_width: int, seed: int = 0) -> dict:
    """Rows as GRPOTrainer scores them: left-padded prompts (row `i` carries prompt `row_prompts[i]`), then
    right-padded completions. `prompt_width` wider than every prompt leaves padding common to all rows."""
    generator = torch.Generator().manual_seed(seed)
    prompts = torch.full((len(prompt_lengths), prompt_width), PAD)
    for index, length in enumerate(prompt_lengths):
        prompts[index, prompt_width - length :] = torch.randint(1, VOCAB, (length,), generator=generator)
    rows = torch.tensor(row_prompts)
    completion_ids = torch.randint(1, VOCAB, (len(rows), COMPLETION_LENGTH), generator=generator)
    completion_lengths = torch.randint(1, COMPLETION_LENGTH + 1, (len(rows),), generator=generator)
    completion_mask = (torch.arange(COMPLETION_LENGTH) < completion_lengths[:, None]).long()
    completion_ids[completion_mask == 0] = PAD
    prompt_ids = prompts[rows]
    return {
        "input_ids": torch.cat([prompt_ids, completion_ids], dim=1),
        "attention_mask": torch.cat([(prompt_ids != PAD).long(), completion_mask], dim=1),
        "completion_mask": completion_mask,
    }


def trl_scoring(model, input_ids, attention_mask, logits_to_keep, compute_entropy):
    """TRL 1.16's own `_get_per_token_logps_and_entropies`: every row over `prompt + completion`."""
    trainer = types.SimpleNamespace(accelerator=types.SimpleNamespace(autocast=contextlib.nullcontext))
    trainer.accelerator.is_main_process = True
    logps, entropies, _ = GRPOTrainer._get_per_token_logps_and_entropies(
        trainer, model, input_ids, attention_mask, logits_to_keep, compute_entropy=compute_entropy
    )
    return logps, entropies


def scores_and_gradients(model, rows, scoring):
    """Log-probabilities, entropies, and the gradient of a loss that reads both, as GRPO's loss does."""
    model.zero_grad()
    logps, entropies = scoring(model, rows["input_ids"], rows["attention_mask"], COMPLETION_LENGTH, True)
    weights = torch.linspace(-1.0, 1.0, logps.numel()).view_as(logps)
    mask = rows["completion_mask"]
    ((logps * weights * mask).sum() + 0.1 * (entropies * mask).sum()).backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return logps.detach(), entropies.detach(), gradients


@pytest.fixture
def tokens_run(monkeypatch):
    """The number of token positions each forward of the embedding runs, one entry per forward."""
    counts = []
    forward = torch.nn.Embedding.forward

    def counting(self, input_ids):
        counts.append(input_ids.numel())
        return forward(self, input_ids)

    monkeypatch.setattr(torch.nn.Embedding, "forward", counting)
    return counts


CASES = {
    # prompt lengths, the prompt of each row (groups interleaved, of different sizes), prompt width
    "two groups, one padded": ([9, 6], [0, 1, 0, 1, 1, 0], 9),
    "three lengths, common padding": ([7, 11, 4], [2, 0, 1, 1, 2, 0, 2, 1], 13),
    "prompts longer than the window": ([12, 12], [1, 1, 0, 0], 12),
}


def checkpoint_layers(model, use_reentrant=False):
    """Gradient checkpointing on every decoder layer, under transformers' name for it:
    `activation_checkpointing_enable`, or `gradient_checkpointing_enable` in older releases (5.17, which the engine
    lane's vLLM pins)."""
    kwargs = {"use_reentrant": use_reentrant}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def enable_checkpointing(model, use_reentrant=False):
    """Gradient checkpointing on every decoder layer, as Trainer turns it on (inputs that require grad for PEFT)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    checkpoint_layers(base, use_reentrant)
    base.enable_input_require_grads()


@pytest.mark.parametrize("checkpointing", [False, True], ids=["", "checkpointing"])
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("case", list(CASES))
def test_shared_scores_and_gradients_equal_trl(model_name, case, checkpointing, tokens_run):
    prompt_lengths, row_prompts, width = CASES[case]
    rows = grpo_rows(prompt_lengths, row_prompts, width)
    model = scoring_model(model_name)

    logps, entropies, gradients = scores_and_gradients(model, rows, trl_scoring)
    trl_tokens = sum(tokens_run)
    tokens_run.clear()
    if checkpointing:  # transformers drops a cache in checkpointed layers unless they are told it replays safely
        enable_checkpointing(model)
    shared_logps, shared_entropies, shared_gradients = scores_and_gradients(
        model, rows, lambda *args: shared_prefix_per_token_logps(*args)
    )

    # Each distinct prompt ran once (without the padding common to all and its last token, which runs with the
    # completions), where TRL ran every row's whole prompt.
    common_padding = width - max(prompt_lengths)
    distinct_prefix_tokens = len(prompt_lengths) * (width - common_padding - 1)
    assert tokens_run == [distinct_prefix_tokens, len(row_prompts) * (COMPLETION_LENGTH + 1)]
    assert trl_tokens == len(row_prompts) * (width + COMPLETION_LENGTH)

    mask = rows["completion_mask"].bool()
    assert (logps[mask] < 0).all() and (entropies[mask] > 0).all()
    torch.testing.assert_close(shared_logps, logps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared_entropies, entropies, rtol=1e-5, atol=1e-5)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert sorted(shared_gradients) == sorted(gradients) == sorted(trainable)
    for name, gradient in gradients.items():
        scale = gradient.abs().max().clamp(min=1.0)
        torch.testing.assert_close(shared_gradients[name] / scale, gradient / scale, rtol=1e-5, atol=1e-5, msg=name)
    assert sum(float(g.abs().sum()) for g in gradients.values()) > 0  # zero gradients would compare equal trivially


def test_the_prompts_last_token_sees_the_whole_prompt_on_gemma3():
    """A prompt token outside the last token's sliding window still reaches the completions through the global
    layer: changing it changes their log-probabilities, on the shared path as on TRL's."""
    model = scoring_model("gemma3")
    rows = grpo_rows([12, 12], [0, 1, 0, 1], 12)
    changed = {key: value.clone() for key, value in rows.items()}
    changed["input_ids"][:, 0] = (changed["input_ids"][:, 0] % (VOCAB - 1)) + 1
    with torch.no_grad():
        before, _ = shared_prefix_per_token_logps(model, rows["input_ids"], rows["attention_mask"], COMPLETION_LENGTH)
        after, _ = shared_prefix_per_token_logps(
            model, changed["input_ids"], changed["attention_mask"], COMPLETION_LENGTH
        )
        trl_after, _ = trl_scoring(model, changed["input_ids"], changed["attention_mask"], COMPLETION_LENGTH, False)
    assert (before - after).abs().max() > 1e-4
    torch.testing.assert_close(after, trl_after, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("prompt_lengths", "row_prompts", "width"),
    [
        ([5, 5, 5], [0, 1, 2], 5),  # every prompt distinct: nothing to share
        ([1], [0, 0, 0], 1),  # one-token prompts: no prefix to cache
        ([1, 1], [0, 1, 0, 1], 3),  # the same, left-padded
    ],
)
def test_nothing_to_share_is_left_to_trl(prompt_lengths, row_prompts, width, tokens_run):
    rows = grpo_rows(prompt_lengths, row_prompts, width)
    with torch.no_grad():
        assert (
            shared_prefix_per_token_logps(scoring_model("qwen2"), rows["input_ids"], rows["attention_mask"], 5) is None
        )
    assert tokens_run == []


@pytest.mark.parametrize(
    ("prompts", "masks", "first_rows", "row_to_group"),
    [
        ([[5, 6], [7, 8], [5, 6]], [[1, 1], [1, 1], [1, 1]], [0, 1], [0, 1, 0]),
        ([[9, 9], [3, 4], [3, 4], [9, 9]], [[1, 1]] * 4, [0, 1], [0, 1, 1, 0]),
        # The same ids with different padding are different prompts.
        ([[0, 6], [0, 6], [5, 6]], [[0, 1], [0, 1], [1, 1]], [0, 2], [0, 0, 1]),
        # Padding ids do not matter, only the mask.
        ([[0, 6], [3, 6]], [[0, 1], [0, 1]], [0], [0, 0]),
        ([[4], [5], [6]], [[1], [1], [1]], [0, 1, 2], [0, 1, 2]),
    ],
)
def test_group_rows_by_prompt(prompts, masks, first_rows, row_to_group):
    found_first_rows, found_row_to_group = group_rows_by_prompt(torch.tensor(prompts), torch.tensor(masks))
    assert found_first_rows.tolist() == first_rows
    assert found_row_to_group.tolist() == row_to_group


def test_refuses_reentrant_checkpointing_in_the_config(tmp_path):
    def config(**kwargs):
        return RPTConfig(output_dir=str(tmp_path), use_cpu=True, **kwargs)

    reentrant = {"use_reentrant": True}
    with pytest.raises(ValueError, match="shared_prefix_loss needs non-reentrant"):
        config(shared_prefix_loss=True, gradient_checkpointing_kwargs=reentrant)
    with pytest.raises(ValueError, match="shared_prefix_loss needs non-reentrant"):  # torch's default is reentrant
        config(shared_prefix_loss=True, gradient_checkpointing_kwargs={})
    # GRPOConfig's default: checkpointing on, of transformers' non-reentrant kind.
    assert config(shared_prefix_loss=True).gradient_checkpointing
    assert config(shared_prefix_loss=True, gradient_checkpointing=False, gradient_checkpointing_kwargs=reentrant)
    # The default leaves the choice to the trainer, which turns the shared prefix off where it cannot run.
    assert config().shared_prefix_loss is None
    assert config(gradient_checkpointing_kwargs=reentrant).shared_prefix_loss is None


def test_refuses_a_model_checkpointed_reentrantly_before_running_it(tokens_run):
    model = scoring_model("qwen2")
    enable_checkpointing(model, use_reentrant=True)
    rows = grpo_rows([6, 6], [0, 1, 0, 1], 6)
    with pytest.raises(ValueError, match="non-reentrant"):
        shared_prefix_per_token_logps(model, rows["input_ids"], rows["attention_mask"], COMPLETION_LENGTH)
    assert tokens_run == []
    assert not any(vars(module).get("_can_checkpoint_with_cache") for module in model.modules())


def test_refuses_models_it_cannot_score_exactly():
    check_shared_prefix_model(tiny_qwen2())
    check_shared_prefix_model(tiny_gemma3())
    mamba = MambaForCausalLM(MambaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, state_size=4))
    # Recent transformers give Mamba's forward a `cache` of recurrent states; older ones a `cache_params` of its own.
    takes_cache = "cache" in inspect.signature(MambaForCausalLM.forward).parameters
    with pytest.raises(ValueError, match="LinearAttentionLayer" if takes_cache else "takes no key/value cache"):
        check_shared_prefix_model(mamba)
    bidirectional = tiny_gemma3()
    bidirectional.config.use_bidirectional_attention = True
    with pytest.raises(ValueError, match="bidirectionally"):
        check_shared_prefix_model(bidirectional)


# The trainer: the loss and its gradients with `shared_prefix_loss=True` equal those without.

FORMAT_TOKENS = ["<think>", "</think>", "\\boxed{"]


@pytest.fixture(scope="module")
def tokenizer():
    return make_byte_level_tokenizer(extra_tokens=FORMAT_TOKENS)


def make_trainer(tmp_path, tokenizer, shared_prefix_loss):
    train = build_next_token_dataset(CORPUS, tokenizer, position_stride=9, max_context_tokens=24, show_progress=False)
    args = RPTConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=6,
        num_generations=3,
        max_completion_length=COMPLETION_LENGTH,
        entropy_coef=0.1,  # so that the entropies' gradient is compared too
        shared_prefix_loss=shared_prefix_loss,
        report_to="none",
        disable_tqdm=True,
    )
    return RPTTrainer(model=make_tiny_model(tokenizer), args=args, train_dataset=train, processing_class=tokenizer)


def loss_and_gradients(trainer, batch):
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # what `Trainer.train` sets before the first step
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.grad is not None}


@pytest.fixture
def projected_rows(monkeypatch):
    """The number of positions TRL's fused LM head projects onto the vocabulary, one entry per call."""
    import trl.trainer.utils as trl_utils

    rows = []
    kernel = trl_utils._ChunkedLogProbFunction

    class CountingKernel:
        @staticmethod
        def apply(hidden_states, *args):
            rows.append(hidden_states.shape[0])
            return kernel.apply(hidden_states, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", CountingKernel)
    return rows


def test_trainer_loss_and_gradients_equal_the_unshared_ones(tmp_path, tokenizer, projected_rows):
    generator = torch.Generator().manual_seed(0)
    prompts = torch.randint(2, len(tokenizer), (2, 10), generator=generator)
    prompt_mask = torch.ones_like(prompts)
    prompt_mask[1, :4] = 0
    prompts[prompt_mask == 0] = tokenizer.pad_token_id
    rows = torch.tensor([0, 0, 0, 1, 1, 1])
    completion_ids = torch.randint(2, len(tokenizer), (6, COMPLETION_LENGTH), generator=generator)
    completion_mask = torch.ones_like(completion_ids)
    completion_mask[0, 3:] = completion_mask[4, 1:] = 0
    completion_ids[completion_mask == 0] = tokenizer.pad_token_id
    batch = {
        "prompt_ids": prompts[rows],
        "prompt_mask": prompt_mask[rows],
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.tensor([1.0, -0.5, 0.25, -0.75, 0.5, 0.0]),
        "num_items_in_batch": completion_mask.sum(),
    }
    shared = make_trainer(tmp_path / "shared", tokenizer, shared_prefix_loss=True)
    unshared = make_trainer(tmp_path / "unshared", tokenizer, shared_prefix_loss=False)
    unshared.model.load_state_dict(shared.model.state_dict())
    checkpoint_layers(shared.model)

    loss, gradients = loss_and_gradients(shared, batch)
    # On a CPU the shared path still projects only the real completion tokens (rpt_trl.trainer.cpu_lm_head).
    assert projected_rows == [int(completion_mask.sum())]
    unshared_loss, unshared_gradients = loss_and_gradients(unshared, batch)

    torch.testing.assert_close(loss, unshared_loss, rtol=1e-5, atol=1e-7)
    assert gradients.keys() == unshared_gradients.keys() and len(gradients) == len(list(shared.model.parameters()))
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, unshared_gradients[name], rtol=1e-4, atol=1e-6, msg=name)
    assert sum(float(g.abs().sum()) for g in gradients.values()) > 0


def test_trainer_refuses_reentrant_checkpointing(tmp_path, tokenizer):
    train = build_next_token_dataset(CORPUS, tokenizer, position_stride=9, max_context_tokens=24, show_progress=False)
    args = RPTConfig(
        output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=4, num_generations=4,
        shared_prefix_loss=True, report_to="none",
    )  # fmt: skip
    args.gradient_checkpointing_kwargs = {"use_reentrant": True}  # as GRPOTrainer sets it for PEFT under ZeRO-3
    with pytest.raises(ValueError, match="non-reentrant"):
        RPTTrainer(model=make_tiny_model(tokenizer), args=args, train_dataset=train, processing_class=tokenizer)


def default_trainer(tmp_path, tokenizer, **fields):
    train = build_next_token_dataset(CORPUS, tokenizer, position_stride=9, max_context_tokens=24, show_progress=False)
    args = RPTConfig(
        output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=4, num_generations=4, report_to="none",
        **fields,
    )  # fmt: skip
    return args, train


def test_the_default_turns_the_shared_prefix_on_where_it_can_run(tmp_path, tokenizer, caplog):
    args, train = default_trainer(tmp_path, tokenizer)
    assert args.shared_prefix_loss is None
    with caplog.at_level(logging.INFO, logger="rpt_trl.trainer.rpt_trainer"):
        trainer = RPTTrainer(
            model=make_tiny_model(tokenizer), args=args, train_dataset=train, processing_class=tokenizer
        )
    assert trainer.args.shared_prefix_loss is True
    assert "shared_prefix_loss is off" not in caplog.text


@pytest.mark.parametrize("refusal", ["reentrant checkpointing", "a model it cannot share"])
def test_the_default_turns_the_shared_prefix_off_where_it_cannot_run(
    tmp_path, tokenizer, caplog, monkeypatch, refusal
):
    """Where `shared_prefix_loss=True` is refused, the default trains without it and says why."""
    args, train = default_trainer(tmp_path, tokenizer)
    if refusal == "reentrant checkpointing":
        args.gradient_checkpointing_kwargs = {"use_reentrant": True}
        expected = "non-reentrant"
    else:
        import rpt_trl.trainer.rpt_trainer as rpt_trainer_module

        def refuse(model):
            raise ValueError("shared_prefix_loss: this model keeps recurrent states")

        monkeypatch.setattr(rpt_trainer_module, "check_shared_prefix_model", refuse)
        expected = "recurrent states"
    with caplog.at_level(logging.INFO, logger="rpt_trl.trainer.rpt_trainer"):
        trainer = RPTTrainer(
            model=make_tiny_model(tokenizer), args=args, train_dataset=train, processing_class=tokenizer
        )
    assert trainer.args.shared_prefix_loss is False
    assert "shared_prefix_loss is off" in caplog.text and expected in caplog.text


@pytest.mark.parametrize(
    ("zero_stage", "checkpointing", "uses_peft", "model_as_path", "refused"),
    [
        (3, True, True, False, True),
        (2, True, True, False, False),
        (3, False, True, False, False),
        (3, True, False, False, False),
        (3, True, False, True, False),  # a model given by its path, as the recipes give it
    ],
)
def test_peft_under_zero3_with_checkpointing_is_refused_before_the_model_loads(
    tmp_path, tokenizer, monkeypatch, zero_stage, checkpointing, uses_peft, model_as_path, refused
):
    """GRPOTrainer makes gradient checkpointing reentrant for PEFT under ZeRO-3: that combination is refused before
    GRPOTrainer loads or wraps anything; the others go on to GRPOTrainer."""
    from peft import LoraConfig

    train = build_next_token_dataset(CORPUS, tokenizer, position_stride=9, max_context_tokens=24, show_progress=False)
    args = RPTConfig(
        output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=4, num_generations=4,
        shared_prefix_loss=True, gradient_checkpointing=checkpointing, report_to="none",
    )  # fmt: skip
    args.deepspeed_plugin = types.SimpleNamespace(zero_stage=zero_stage)  # as Accelerate's DeepSpeed config sets it

    class GRPOTrainerReached(Exception):
        pass

    def grpo_init(*args, **kwargs):
        raise GRPOTrainerReached

    monkeypatch.setattr(GRPOTrainer, "__init__", grpo_init)
    peft = {"peft_config": LoraConfig(r=4, target_modules=["q_proj"])} if uses_peft else {}
    expected = (
        pytest.raises(ValueError, match="PEFT under DeepSpeed ZeRO-3")
        if refused
        else pytest.raises(GRPOTrainerReached)
    )
    model = make_tiny_model(tokenizer)
    if model_as_path:
        model.save_pretrained(tmp_path / "policy")
        model = str(tmp_path / "policy")
    with expected:
        RPTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer, **peft)
    # The default is not refused: it turns the shared prefix off for that combination, before the model loads.
    args.shared_prefix_loss = None
    with pytest.raises(GRPOTrainerReached):
        RPTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer, **peft)
    assert args.shared_prefix_loss is (False if refused else None)


# Micro-batches of whole groups: the generation batch is shuffled by prompt, not by row.


def generation_batch(row_prompts: list[int], prompt_length: int = 4) -> dict:
    prompts = torch.arange(1, 1 + (max(row_prompts) + 1) * prompt_length).view(-1, prompt_length)
    rows = torch.tensor(row_prompts)
    return {
        "prompt_ids": prompts[rows],
        "prompt_mask": torch.ones(len(rows), prompt_length, dtype=torch.long),
        "completion_ids": torch.arange(len(rows))[:, None].repeat(1, 3),
        "advantages": torch.arange(len(rows), dtype=torch.float),
        "row_names": [f"row{i}" for i in range(len(rows))],
        "num_items_in_batch": torch.tensor(7),
        "pixel_values": None,
    }


def prompt_of(batch: dict) -> list[int]:
    return [int(row[0]) // 4 for row in batch["prompt_ids"]]


@pytest.mark.parametrize("row_prompts", [[0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3], [0, 1, 2, 0, 1, 2, 1, 0, 2, 3, 3, 3]])
def test_shuffle_keeps_the_rows_of_a_prompt_together(row_prompts):
    orders = set()
    for seed in range(12):
        torch.manual_seed(seed)
        batch = generation_batch(row_prompts)
        shuffled = shuffle_keeping_prompts_together(batch)
        rows = shuffled["advantages"].long().tolist()
        assert sorted(rows) == list(range(len(row_prompts)))  # a permutation of the rows
        assert shuffled["completion_ids"][:, 0].tolist() == rows  # the same one for every per-row value
        assert shuffled["row_names"] == [f"row{i}" for i in rows]
        assert torch.equal(shuffled["prompt_ids"], batch["prompt_ids"][rows])
        assert shuffled["num_items_in_batch"] == 7 and shuffled["pixel_values"] is None
        groups = prompt_of(shuffled)
        # Contiguous: once a prompt's rows end, it does not come back.
        assert len([g for i, g in enumerate(groups) if i == 0 or g != groups[i - 1]]) == len(set(groups))
        orders.add(tuple(dict.fromkeys(groups)))
    assert len(orders) > 3  # the groups' order is random


def test_trainer_micro_batches_hold_whole_groups(tmp_path, tokenizer, monkeypatch):
    train = build_next_token_dataset(CORPUS, tokenizer, position_stride=9, max_context_tokens=24, show_progress=False)
    args = RPTConfig(
        output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=4, num_generations=4,
        gradient_accumulation_steps=3, shared_prefix_loss=True, report_to="none",
    )  # fmt: skip
    trainer = RPTTrainer(model=make_tiny_model(tokenizer), args=args, train_dataset=train, processing_class=tokenizer)
    batch = generation_batch([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    del batch["row_names"]
    monkeypatch.setattr(trainer, "_generate_and_score_completions", lambda inputs: dict(batch))
    trainer.model.train()
    for seed in range(5):
        torch.manual_seed(seed)
        trainer._buffered_inputs = None
        trainer._prepare_inputs([])
        micro_batches = [prompt_of(inputs) for inputs in trainer._buffered_inputs]
        assert all(len(set(prompts)) == 1 for prompts in micro_batches), micro_batches
        assert sorted(p[0] for p in micro_batches) == [0, 1, 2]
    # Without shared_prefix_loss, TRL's own shuffle mixes the groups across micro-batches.
    trainer.args.shared_prefix_loss = False
    mixed = 0
    for seed in range(5):
        torch.manual_seed(seed)
        trainer._buffered_inputs = None
        trainer._prepare_inputs([])
        mixed += any(len(set(prompt_of(inputs))) > 1 for inputs in trainer._buffered_inputs)
    assert mixed > 0
