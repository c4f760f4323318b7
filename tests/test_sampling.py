"""The inverse-CDF sampler (`rpt_trl.trainer.sampling`): `torch.multinomial`'s distribution, with the warpers
`generate` applies, through a model's `generate` and RPTTrainer's rollouts."""

import math

import pytest
import torch
from conftest import CORPUS, make_byte_level_tokenizer, make_tiny_model
from transformers import GenerationConfig

import rpt_trl.trainer.sampling as sampling
from rpt_trl import RPTConfig, RPTTrainer, build_next_token_dataset
from rpt_trl.trainer.sampling import (
    SAMPLING_BLOCK,
    as_greedy_call,
    install_inverse_cdf_sampling,
    sample_next_tokens,
)


@pytest.fixture(scope="module")
def tokenizer():
    return make_byte_level_tokenizer(extra_tokens=["<think>", "</think>", "\\boxed{"])


def draw_counts(scores, draws, chunk=4000):
    """How often each token is drawn in `draws` rows of `scores` (one row of logits)."""
    counts = torch.zeros(scores.shape[-1], dtype=torch.float64)
    for start in range(0, draws, chunk):
        rows = min(chunk, draws - start)
        tokens = sample_next_tokens(scores.expand(rows, -1))
        counts += torch.bincount(tokens, minlength=scores.shape[-1]).double()
    return counts


def assert_frequencies(counts, probs):
    """Each token's count within 5 standard deviations of its expectation, and a chi-square over the tokens
    expected 5 times or more within 6 standard deviations of its degrees of freedom."""
    draws = counts.sum()
    expected = draws * probs
    spread = (draws * probs * (1 - probs)).sqrt().clamp(min=1.0)
    assert float(((counts - expected).abs() / spread).max()) < 5
    frequent = expected >= 5
    chi2 = float((((counts - expected) ** 2)[frequent] / expected[frequent]).sum())
    dof = int(frequent.sum()) - 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof), (chi2, dof)


def test_each_token_is_drawn_at_its_probability():
    torch.manual_seed(0)
    vocab = 2 * SAMPLING_BLOCK + 300  # three blocks, the last one padded
    scores = torch.randn(vocab) * 2.5
    scores[torch.randperm(vocab)[:400]] = float("-inf")  # excluded tokens, as top-k or top-p leave them
    probs = torch.softmax(scores.double(), dim=-1)
    counts = draw_counts(scores.unsqueeze(0), 60_000)
    assert counts[torch.isinf(scores)].sum() == 0
    assert_frequencies(counts, probs)


def test_tokens_at_the_blocks_edges_are_drawn_at_their_probability():
    """Mass on the last token of a block, the first of the next, and the vocabulary's last token, where an
    off-by-one in the block or the offset would move it."""
    vocab = 2 * SAMPLING_BLOCK + 5
    scores = torch.full((vocab,), float("-inf"))
    edges = [0, SAMPLING_BLOCK - 1, SAMPLING_BLOCK, 2 * SAMPLING_BLOCK, vocab - 1]
    scores[edges] = torch.tensor([0.0, 1.0, -0.5, 0.3, 0.8])
    torch.manual_seed(1)
    counts = draw_counts(scores.unsqueeze(0), 40_000)
    assert set(counts.nonzero().flatten().tolist()) == set(edges)
    assert_frequencies(counts, torch.softmax(scores.double(), dim=-1))


def test_a_single_allowed_token_is_always_drawn_and_an_empty_row_is_refused():
    scores = torch.full((3, 5000), float("-inf"))
    scores[0, 4999], scores[1, 0], scores[2, 1024] = 3.0, -50.0, 0.0
    for _ in range(20):
        assert sample_next_tokens(scores).tolist() == [4999, 0, 1024]
    with pytest.raises(ValueError, match="no token with a positive"):
        sample_next_tokens(torch.full((2, 10), float("-inf")))


def test_the_same_seed_draws_the_same_tokens():
    scores = torch.randn(16, 3000)
    torch.manual_seed(7)
    first = sample_next_tokens(scores)
    torch.manual_seed(7)
    assert torch.equal(sample_next_tokens(scores), first)


def sampling_config(tokenizer, **settings):
    return GenerationConfig(do_sample=True, max_new_tokens=1, pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=tokenizer.eos_token_id, **settings)  # fmt: skip


def first_tokens(model, tokenizer, config, rows):
    ids = tokenizer(["The cat sat on the"] * rows, return_tensors="pt")
    return model.generate(**ids, generation_config=config)[:, -1]


@pytest.mark.parametrize(
    ("settings", "own"),
    [
        ({"temperature": 1.0, "top_k": 0, "top_p": 1.0}, {}),
        ({"temperature": 0.7, "top_k": 6, "top_p": 0.9, "min_p": 0.02}, {}),
        # Left unset by the call: the model's own min-p, and transformers' default top-k of 50, as `generate` fills them.
        ({"temperature": 1.3}, {"min_p": 0.05}),
    ],
)
def test_generate_draws_what_multinomial_sampling_draws(tokenizer, settings, own):
    """The first generated token's frequencies, plain `generate(do_sample=True)` against the installed sampler: the
    same tokens (the warpers' support) and frequencies within a two-sample chi-square's bounds."""
    plain, fast = make_tiny_model(tokenizer, seed=5).eval(), make_tiny_model(tokenizer, seed=5).eval()
    for model in (plain, fast):
        for name, value in own.items():
            setattr(model.generation_config, name, value)
    install_inverse_cdf_sampling(fast)
    config = sampling_config(tokenizer, **settings)
    torch.manual_seed(0)
    counts = [torch.bincount(first_tokens(m, tokenizer, config, 6000), minlength=len(tokenizer)).double()
              for m in (plain, fast)]  # fmt: skip
    support = [set(c.nonzero().flatten().tolist()) for c in counts]
    if settings.get("top_k") or own:  # a small support: both draw from the same tokens
        assert support[1] == support[0]
        assert len(support[1]) <= (settings.get("top_k") or 50)
    both = (counts[0] + counts[1]) >= 10
    chi2 = float(((counts[0] - counts[1]) ** 2 / (counts[0] + counts[1]).clamp(min=1))[both].sum())
    dof = int(both.sum()) - 1
    assert dof >= 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof), (chi2, dof)


def test_a_nearly_greedy_temperature_generates_the_greedy_completion(tokenizer):
    """Over many steps: the installed sampler, at a temperature that leaves the argmax all the mass, writes the greedy
    completion token for token (so the greedy call and the sampler's scores are wired right)."""
    model = make_tiny_model(tokenizer, seed=5).eval()
    ids = tokenizer(["The cat sat on the", "Step 1: We add 12 and"], return_tensors="pt", padding=True)
    greedy = model.generate(**ids, do_sample=False, max_new_tokens=16, pad_token_id=tokenizer.pad_token_id)
    install_inverse_cdf_sampling(model)
    config = sampling_config(tokenizer, temperature=1e-6, top_k=0, top_p=1.0)
    config.max_new_tokens = 16
    assert torch.equal(model.generate(**ids, generation_config=config), greedy)


def test_the_greedy_call_keeps_the_callers_config_but_the_sampling(tokenizer):
    """Only `do_sample` and the warpers change: `generate` completes the rest as it would have (a `max_length` filled
    in from transformers' defaults beside the caller's `max_new_tokens` made it warn at every call)."""
    model = make_tiny_model(tokenizer, seed=5)
    config = GenerationConfig(do_sample=True, temperature=0.7, top_k=0, top_p=1.0, max_new_tokens=24, pad_token_id=0)
    greedy, processors = sampling.greedy_sampling_call(model, config)
    changed = {k for k, v in greedy.to_dict().items() if config.to_dict().get(k) != v}
    assert changed == {"do_sample", "temperature", "top_k", "top_p"}
    assert greedy.max_length is None and greedy.max_new_tokens == 24
    assert [type(p).__name__ for p in processors] == ["TemperatureLogitsWarper", "InverseCDFSampler"]


@pytest.mark.parametrize(
    "settings",
    [{"do_sample": False}, {"num_beams": 2}, {"num_return_sequences": 2}, {"typical_p": 0.9},
     {"output_scores": True, "return_dict_in_generate": True}],
)  # fmt: skip
def test_calls_the_sampler_does_not_replace_are_left_to_generate(tokenizer, settings):
    config = GenerationConfig(**{"do_sample": True, **settings})
    assert as_greedy_call(config) is None


def test_rpt_trainer_rollouts_sample_through_it(tmp_path, tokenizer, monkeypatch):
    """The trainer's rollouts call the sampler when `inverse_cdf_sampling` is on (the default), and not when off."""
    train = build_next_token_dataset(CORPUS, tokenizer, position_stride=9, max_context_tokens=24, show_progress=False)
    calls = []
    original = sampling.sample_next_tokens
    monkeypatch.setattr(sampling, "sample_next_tokens", lambda scores: calls.append(scores.shape) or original(scores))
    for flag in (True, False):
        calls.clear()
        args = RPTConfig(
            output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=4, num_generations=2,
            max_completion_length=6, inverse_cdf_sampling=flag, report_to="none", save_strategy="no",
        )  # fmt: skip
        trainer = RPTTrainer(
            model=make_tiny_model(tokenizer, seed=3), args=args, train_dataset=train, processing_class=tokenizer
        )
        prompts = [tokenizer("The cat sat on the", add_special_tokens=False)["input_ids"]] * 4
        completions, _ = trainer._generate_single_turn(prompts, None, {}, 2)
        assert len(completions) == 4
        assert bool(calls) == flag
        assert all(shape[0] == 4 for shape in calls)  # one draw per rollout and step
