"""bf16 mixed precision on a CPU: generation casts the weights once per call, every part of the demo computes in the
precision asked for, and the baseline's faster loss is the same loss."""

import pytest
import torch
from conftest import CORPUS, make_byte_level_tokenizer, make_tiny_model
from torch.utils._python_dispatch import TorchDispatchMode

from rpt_trl import RPTConfig, RPTTrainer, build_next_token_dataset
from rpt_trl.evaluation.compare import compare_models
from rpt_trl.experiments.arithmetic_demo import DemoSettings, demo_bf16, rpt_training_fields
from rpt_trl.experiments.next_token_baseline import encode_documents, matched_budget, train_next_token_baseline
from rpt_trl.models import cpu_has_native_bf16
from rpt_trl.trainer.generation import install_generation_autocast


FORMAT_TOKENS = ["<think>", "</think>", "\\boxed{"]


@pytest.fixture(scope="module")
def tokenizer():
    return make_byte_level_tokenizer(extra_tokens=FORMAT_TOKENS)


class WeightCasts(TorchDispatchMode):
    """Counts the float32 -> bf16 copies of `model`'s weights (what autocast makes before a bf16 matrix product)."""

    def __init__(self, model):
        super().__init__()
        self.shapes = {tuple(p.shape) for p in model.parameters()}
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        source = args[0] if args else None
        if (
            func is torch.ops.aten._to_copy.default
            and kwargs.get("dtype") == torch.bfloat16
            and isinstance(source, torch.Tensor)
            and source.dtype == torch.float32
            and tuple(source.shape) in self.shapes
        ):
            self.count += 1
        return func(*args, **kwargs)


def _autocast_each_forward(model):
    """What Accelerate does to a model under mixed precision: each `forward` call in its own autocast context."""
    forward = model.forward

    def wrapped(*args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return forward(*args, **kwargs)

    model.forward = wrapped


def _greedy(model, tokenizer, new_tokens=6):
    with torch.no_grad():
        return model.generate(input_ids=torch.tensor([[5, 6, 7, 8]]), max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)  # fmt: skip


def test_generation_autocast_casts_each_weight_once_per_call(tokenizer):
    model = make_tiny_model(tokenizer)
    _autocast_each_forward(model)
    with WeightCasts(model) as per_token:
        expected = _greedy(model, tokenizer)
    install_generation_autocast(model, lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    with WeightCasts(model) as per_call:
        tokens = _greedy(model, tokenizer)
    matrices = per_call.count
    assert 0 < matrices <= len(list(model.parameters()))
    assert per_token.count == 6 * matrices  # one forward pass per new token, each casting every weight again
    assert torch.equal(tokens, expected)  # the same precision: only the repeated casts are gone


def _trainer(tmp_path, tokenizer, **overrides):
    dataset = build_next_token_dataset(CORPUS, tokenizer)
    args = RPTConfig(
        output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=6, max_steps=1, logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True, **overrides,
    )  # fmt: skip
    return RPTTrainer(model=make_tiny_model(tokenizer), args=args, train_dataset=dataset, processing_class=tokenizer)


@pytest.mark.parametrize("bf16", [True, False])
def test_rpt_trainer_rollouts_cast_the_weights_once_under_bf16(tmp_path, tokenizer, bf16):
    trainer = _trainer(tmp_path, tokenizer, bf16=bf16)
    with WeightCasts(trainer.model) as casts:
        _greedy(trainer.model, tokenizer)
    if bf16:
        assert 0 < casts.count <= len(list(trainer.model.parameters()))
    else:
        assert casts.count == 0


def test_callback_and_band_probe_run_in_the_trainers_precision(tmp_path, tokenizer):
    from rpt_trl.evaluation.callback import NextTokenAccuracyCallback

    trainer = _trainer(tmp_path, tokenizer, bf16=True, band_sampling=True, band_probe_positions=4)
    seen = []
    trainer.model.register_forward_pre_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    rows = build_next_token_dataset(CORPUS, tokenizer).select(range(3))
    callback = NextTokenAccuracyCallback(trainer, rows, eval_steps=1, batch_size=3)
    with WeightCasts(trainer.model) as casts:
        callback.evaluate(trainer.model, step=0)
    assert seen and all(seen)
    assert 0 < casts.count <= len(list(trainer.model.parameters()))  # one context for the whole evaluation
    seen.clear()
    trainer.refresh_band_probe()
    assert seen and all(seen)


@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, None])
def test_compare_models_scores_every_model_and_mode_in_the_given_precision(tokenizer, autocast_dtype):
    rows = list(build_next_token_dataset(CORPUS, tokenizer).select(range(4)))
    seen = []
    models = {"a": make_tiny_model(tokenizer, seed=1), "b": make_tiny_model(tokenizer, seed=2)}
    for model in models.values():
        model.register_forward_pre_hook(lambda *_: seen.append(torch.get_autocast_dtype("cpu")
                                                               if torch.is_autocast_enabled("cpu") else None))  # fmt: skip

    def generator(model):
        def generate(prompts, num_samples):
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
            return [["<think>t</think> \\boxed{x}"] * num_samples for _ in prompts]

        return generate

    results = compare_models(models, rows, tokenizer=tokenizer, generator=generator, documents=CORPUS,
                             autocast_dtype=autocast_dtype, num_resamples=50)  # fmt: skip
    assert len(results) == 4
    assert len(seen) >= 4 and set(seen) == {autocast_dtype}


def test_model_loss_baseline_is_the_fused_heads_loss(tmp_path, tokenizer):
    """The baseline through the model's own loss and through TRL's fused head: the same losses, the same weights."""
    encoded = encode_documents(CORPUS, tokenizer)
    budget = matched_budget(4 * 16 * 2, 2, block_size=16, micro_batch_size=2)  # 2 steps of 2 micro-batches
    assert budget.gradient_accumulation_steps == 2
    trained = {}
    for fused in (True, False):
        trainer = train_next_token_baseline(
            make_tiny_model(tokenizer), tokenizer, encoded, budget, output_dir=str(tmp_path / str(fused)),
            learning_rate=1e-3, use_cpu=True, bf16=False, disable_tqdm=True, fused_lm_head=fused,
        )  # fmt: skip
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        trained[fused] = (losses, [p.detach().clone() for p in trainer.model.parameters()])
    assert len(trained[True][0]) == 2
    assert trained[False][0] == pytest.approx(trained[True][0], rel=1e-5)
    for fused_weight, model_weight in zip(trained[True][1], trained[False][1], strict=True):
        torch.testing.assert_close(model_weight, fused_weight, rtol=1e-4, atol=1e-5)  # Adam steps of 1e-3
    start = [p.detach() for p in make_tiny_model(tokenizer).parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(start, trained[False][1]))  # it trained


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"), [(True, False, True), (False, True, True), (False, False, False)]
)
def test_native_bf16_is_avx512_bf16_or_amx(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert cpu_has_native_bf16() is expected


def test_native_bf16_is_false_where_torch_cannot_tell(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert cpu_has_native_bf16() is False


@pytest.mark.parametrize("native", [True, False])
def test_demo_precision_follows_the_setting_then_the_hardware(monkeypatch, native):
    import rpt_trl.models

    monkeypatch.setattr(rpt_trl.models, "cpu_has_native_bf16", lambda: native)
    assert demo_bf16(DemoSettings(), on_cpu=True) is native
    assert rpt_training_fields(DemoSettings(), on_cpu=True)["bf16"] is native
    for chosen in (True, False):
        assert demo_bf16(DemoSettings(bf16=chosen), on_cpu=True) is chosen
        assert rpt_training_fields(DemoSettings(bf16=chosen), on_cpu=True)["bf16"] is chosen
    assert "bf16" not in rpt_training_fields(DemoSettings(), on_cpu=False)  # on a GPU: TRL's default
