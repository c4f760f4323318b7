"""Completion-only scoring on a CPU (`rpt_trl.trainer.cpu_lm_head`): the same log-probabilities, entropies and gradients as
TRL's own scoring of every position, and active exactly on the TRL versions it was checked against."""

import functools
import logging

import pytest
import torch
import trl
import trl.trainer.utils as trl_utils
from conftest import CORPUS, make_byte_level_tokenizer, make_tiny_model
from trl import GRPOTrainer

from rpt_trl import RPTConfig, RPTTrainer, build_next_token_dataset
from rpt_trl.trainer import cpu_lm_head


FORMAT_TOKENS = ["<think>", "</think>", "\\boxed{"]
PROMPT_LENGTH, COMPLETION_LENGTH = 12, 6

pytestmark = pytest.mark.skipif(
    not cpu_lm_head.completion_scoring_applies(), reason=f"written against TRL {cpu_lm_head.TRL_VERSIONS_CHECKED}"
)


@pytest.fixture(scope="module")
def tokenizer():
    return make_byte_level_tokenizer(extra_tokens=FORMAT_TOKENS)


@pytest.fixture
def trainer(tmp_path, tokenizer):
    train = build_next_token_dataset(CORPUS, tokenizer, positions=9, max_context_tokens=24, show_progress=False)
    args = RPTConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=COMPLETION_LENGTH,
        entropy_coef=0.1,  # so that the entropies' gradient is compared too
        report_to="none",
        disable_tqdm=True,
    )
    return RPTTrainer(model=make_tiny_model(tokenizer), args=args, train_dataset=train, processing_class=tokenizer)


@pytest.fixture
def batch(tokenizer):
    """A GRPO batch as `_generate_and_score_completions` returns it: left-padded prompts, right-padded completions,
    advantages of both signs."""
    generator = torch.Generator().manual_seed(0)
    prompt_ids = torch.randint(2, len(tokenizer), (4, PROMPT_LENGTH), generator=generator)
    completion_ids = torch.randint(2, len(tokenizer), (4, COMPLETION_LENGTH), generator=generator)
    prompt_mask = torch.ones_like(prompt_ids)
    prompt_mask[1, :3] = prompt_mask[3, :5] = 0
    completion_mask = torch.ones_like(completion_ids)
    completion_mask[0, 4:] = completion_mask[2, 1:] = 0
    prompt_ids[prompt_mask == 0] = completion_ids[completion_mask == 0] = tokenizer.pad_token_id
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.tensor([1.0, -0.5, 0.25, -0.75]),
        "num_items_in_batch": completion_mask.sum(),
    }


@pytest.fixture
def projected_rows(monkeypatch):
    """The number of positions TRL's fused LM head projects onto the vocabulary, one entry per call."""
    rows = []
    kernel = trl_utils._ChunkedLogProbFunction

    class CountingKernel:
        @staticmethod
        def apply(hidden_states, *args):
            rows.append(hidden_states.shape[0])
            return kernel.apply(hidden_states, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", CountingKernel)
    return rows


def trl_scoring(trainer):
    """TRL's own `_get_per_token_logps_and_entropies`, bound to `trainer`, bypassing the override."""
    return functools.partial(GRPOTrainer._get_per_token_logps_and_entropies, trainer)


def score(trainer, batch, scoring=None):
    scoring = scoring or trainer._get_per_token_logps_and_entropies
    with torch.no_grad():
        logps, entropies, _ = scoring(
            trainer.model,
            torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1),
            torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1),
            COMPLETION_LENGTH,
            compute_entropy=True,
        )
    return logps, entropies


def loss_and_gradients(trainer, batch):
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # what `Trainer.train` sets before the first step
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.grad is not None}


def test_completion_log_probs_and_entropies_are_unchanged(trainer, batch, projected_rows):
    logps, entropies = score(trainer, batch)
    trl_logps, trl_entropies = score(trainer, batch, trl_scoring(trainer))

    # The override projected only the real completion tokens; TRL projected every position but the last.
    assert projected_rows == [int(batch["completion_mask"].sum()), 4 * (PROMPT_LENGTH + COMPLETION_LENGTH - 1)]
    mask = batch["completion_mask"].bool()
    assert logps.shape == trl_logps.shape == (4, COMPLETION_LENGTH)
    torch.testing.assert_close(logps[mask], trl_logps[mask], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(entropies[mask], trl_entropies[mask], rtol=1e-5, atol=1e-6)
    # Padding is scored 0 by both, so the tensors the loss reads are equal everywhere.
    torch.testing.assert_close(logps, trl_logps, rtol=1e-5, atol=1e-6)
    assert (logps[mask] < 0).all() and (entropies[mask] > 0).all()


def test_loss_gradients_are_unchanged(trainer, batch, projected_rows, monkeypatch):
    loss, gradients = loss_and_gradients(trainer, batch)
    with monkeypatch.context() as patch:
        patch.setattr(trainer, "_get_per_token_logps_and_entropies", trl_scoring(trainer))
        trl_loss, trl_gradients = loss_and_gradients(trainer, batch)

    assert projected_rows == [int(batch["completion_mask"].sum()), 4 * (PROMPT_LENGTH + COMPLETION_LENGTH - 1)]
    torch.testing.assert_close(loss, trl_loss, rtol=1e-5, atol=1e-7)
    assert gradients.keys() == trl_gradients.keys() and len(gradients) == len(list(trainer.model.parameters()))
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, trl_gradients[name], rtol=1e-4, atol=1e-6, msg=name)
    assert sum(float(g.abs().sum()) for g in gradients.values()) > 0  # a zero gradient would compare equal trivially


@pytest.mark.parametrize(
    ("trl_version", "active"),
    [
        ("1.16.0", True),
        ("1.16.3", True),
        ("1.16.0.dev0", False),
        ("1.15.2", False),
        ("1.17.0", False),
        ("2.0.0", False),
    ],
)
def test_active_on_cpu_only_for_the_checked_trl_versions(
    trainer, batch, projected_rows, monkeypatch, caplog, trl_version, active
):
    cpu_lm_head._applies.cache_clear()
    monkeypatch.setattr(trl, "__version__", trl_version)
    trl_decision = trl_utils._use_triton
    with caplog.at_level(logging.INFO, logger=cpu_lm_head.__name__):
        score(trainer, batch)
        score(trainer, batch)

    all_positions = 4 * (PROMPT_LENGTH + COMPLETION_LENGTH - 1)
    assert projected_rows == 2 * [int(batch["completion_mask"].sum()) if active else all_positions]
    assert cpu_lm_head.completion_scoring_applies() is active
    assert trl_utils._use_triton is trl_decision  # the swap does not outlive the call
    skipped = [r for r in caplog.records if "scores every position" in r.getMessage()]
    assert len(skipped) == (0 if active else 1)  # said once, not on every step
    if not active:
        assert trl_version in skipped[0].getMessage()


def test_other_devices_keep_trls_decision():
    cpu_lm_head._applies.cache_clear()
    trl_decision = trl_utils._use_triton
    with cpu_lm_head.completion_positions_only_on_cpu():
        assert trl_utils._use_triton(torch.device("cpu"))
        for device in ("cuda", "xpu", "meta", "mps"):
            assert trl_utils._use_triton(torch.device(device)) == trl_decision(torch.device(device))
    assert trl_utils._use_triton is trl_decision


@pytest.mark.parametrize(("softcap", "logit_scale", "temperature"), [(None, 1.0, 0.7), (5.0, 0.5, 1.3)])
def test_whole_head_scores_are_trls_in_float32(softcap, logit_scale, temperature):
    """`autocast_head_scores` against TRL's chunked function (chunks of 64 over a 300-token vocabulary), without an
    autocast: the same five outputs and the same gradients of hidden states and weights."""
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction

    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(10, 16, generator=generator)
    weight = torch.randn(300, 16, generator=generator)
    targets = torch.randint(0, 300, (10,), generator=generator)
    targets[3] = int((hidden[3] @ weight.T).argmax())  # one row whose target is its top token
    outputs = ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")

    def run(function):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        scores = function(h, w)
        (scores[0] * torch.linspace(-1, 1, 10)).sum().add(0.3 * scores[1].sum()).backward()
        return scores, h.grad, w.grad

    whole, whole_hidden, whole_weight = run(
        lambda h, w: cpu_lm_head.autocast_head_scores(h, w, None, targets, temperature, softcap, logit_scale, outputs)
    )
    trl_scores, trl_hidden, trl_weight = run(
        lambda h, w: ChunkedLogProbFunction.apply(h, w, None, targets, temperature, 64, softcap, logit_scale, outputs)
    )
    for mine, theirs in zip(whole[:4], trl_scores[:4], strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)
    assert torch.equal(whole[4], trl_scores[4]) and whole[4][3]
    torch.testing.assert_close(whole_hidden, trl_hidden, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(whole_weight, trl_weight, rtol=1e-4, atol=1e-5)
    assert float(whole_weight.abs().sum()) > 0


def test_whole_head_scores_only_what_is_asked():
    hidden, weight, targets = torch.randn(3, 8), torch.randn(20, 8), torch.tensor([1, 2, 3])
    log_probs, *others = cpu_lm_head.autocast_head_scores(hidden, weight, None, targets, 1.0, outputs=())
    assert log_probs.shape == (3,) and others == [None, None, None, None]


def test_bf16_scoring_on_cpu_takes_the_whole_head(tmp_path, tokenizer, trainer, batch, projected_rows, monkeypatch):
    """Under the trainer's bf16 autocast on a CPU the loss scores the whole head at once (TRL's chunked function is not
    called) and agrees with float32 scoring to bf16's precision; logits beyond `MAX_LOGITS` go to TRL's function."""
    train = build_next_token_dataset(CORPUS, tokenizer, position_stride=9, max_context_tokens=24, show_progress=False)
    args = RPTConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=True, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=COMPLETION_LENGTH, report_to="none", disable_tqdm=True,
    )  # fmt: skip
    bf16 = RPTTrainer(model=make_tiny_model(tokenizer), args=args, train_dataset=train, processing_class=tokenizer)
    kernel = trl_utils._ChunkedLogProbFunction
    logps, entropies = score(bf16, batch)  # TRL scores under the trainer's autocast
    assert projected_rows == []  # TRL's function (counted by the fixture) was not called
    assert trl_utils._ChunkedLogProbFunction is kernel  # the swap does not outlive the call
    float_logps, float_entropies = score(trainer, batch)  # the same weights in float32: TRL's function
    assert projected_rows == [int(batch["completion_mask"].sum())]
    mask = batch["completion_mask"].bool()
    torch.testing.assert_close(logps[mask], float_logps[mask], rtol=0.02, atol=0.05)
    torch.testing.assert_close(entropies[mask], float_entropies[mask], rtol=0.02, atol=0.05)
    monkeypatch.setattr(cpu_lm_head, "MAX_LOGITS", 1)
    score(bf16, batch)
    assert len(projected_rows) == 2
