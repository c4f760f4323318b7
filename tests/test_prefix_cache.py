"""The shared-prefix cache of training rollouts (`rpt_trl.trainer.prefix_cache`): the same completions as plain
generation, through RPTTrainer's generation path, with the answer stop, and never from stale weights."""

import importlib.util
from pathlib import Path

import pytest
import torch
from conftest import CORPUS, make_byte_level_tokenizer, make_tiny_model
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

from rpt_trl import RPTConfig, RPTTrainer, build_next_token_dataset
from rpt_trl.experiments.tiny import make_tiny_tokenizer
from rpt_trl.trainer.generation import install_answer_stop
from rpt_trl.trainer.prefix_cache import MIN_SHARED_PREFIX, install_prefix_cache, shared_prefix_length


TEMPLATE = "Example: the cat sat on the mat, so the answer is \\boxed{ mat}. Example: one plus one is two. "


@pytest.fixture(scope="module")
def tokenizer():
    return make_byte_level_tokenizer(extra_tokens=["<think>", "</think>", "\\boxed{"])


def prompt_ids(tokenizer, num_generations=1):
    """Prompts that share a long template and then differ, in their own text and in length."""
    owns = ["The size of the", "Step 1: We add 12 and", "café", "Ελληνικά and a much longer tail of its own text"]
    ids = [tokenizer(TEMPLATE + own, add_special_tokens=False)["input_ids"] for own in owns]
    assert shared_prefix_length(ids) >= MIN_SHARED_PREFIX
    assert max(map(len, ids)) - min(map(len, ids)) > 8  # padding sits between the prefix and the own tokens
    return [row for row in ids for _ in range(num_generations)]


def left_padded(ids, pad_id):
    width = max(map(len, ids))
    input_ids = torch.tensor([[pad_id] * (width - len(row)) + row for row in ids])
    return {"input_ids": input_ids, "attention_mask": (torch.arange(width) >= width - torch.tensor(
        [[len(row)] for row in ids])).long()}  # fmt: skip


def tiny_gemma3(tokenizer, sliding_window, seed=3):
    """Gemma 3's mix of sliding-window and global layers at toy size, with logit soft-capping."""
    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8, sliding_window=sliding_window,
        layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        final_logit_softcapping=30.0, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return Gemma3ForCausalLM(config).eval()


def generate(model, tokenizer, ids, **kwargs):
    torch.manual_seed(0)
    return model.generate(**left_padded(ids, tokenizer.pad_token_id), max_new_tokens=12, **kwargs)


@pytest.mark.parametrize("do_sample", [False, True])
def test_cached_generate_returns_the_plain_output(tokenizer, do_sample):
    plain, cached = make_tiny_model(tokenizer, seed=3), make_tiny_model(tokenizer, seed=3)
    prefix_cache = install_prefix_cache(cached, tokenizer.pad_token_id)
    ids = prompt_ids(tokenizer, num_generations=2)
    expected = generate(plain, tokenizer, ids, do_sample=do_sample, top_k=0)
    assert torch.equal(generate(cached, tokenizer, ids, do_sample=do_sample, top_k=0), expected)
    assert torch.equal(generate(cached, tokenizer, ids[2:], do_sample=do_sample, top_k=0)[:, -12:],
                       generate(plain, tokenizer, ids[2:], do_sample=do_sample, top_k=0)[:, -12:])  # fmt: skip
    assert prefix_cache.prefills == 1  # the second batch (a refill round) reused the template's cache
    assert prefix_cache.prompt_prefill_rows == 4 + 3  # each batch's distinct prompts, once each


def test_a_refill_round_that_shares_less_of_the_prefix_reuses_its_start(tokenizer):
    plain, cached = make_tiny_model(tokenizer, seed=3), make_tiny_model(tokenizer, seed=3)
    prefix_cache = install_prefix_cache(cached, tokenizer.pad_token_id)
    first = [tokenizer(TEMPLATE + own, add_special_tokens=False)["input_ids"] for own in ["The sun is", "The size"]]
    refill = prompt_ids(tokenizer)
    assert shared_prefix_length(refill) < shared_prefix_length(first)  # "The s" is shared by the first round only
    for ids in (first, refill, first):
        assert torch.equal(
            generate(cached, tokenizer, ids, do_sample=False), generate(plain, tokenizer, ids, do_sample=False)
        )
    assert prefix_cache.prefills == 1


def test_the_cache_is_recomputed_after_the_weights_change(tokenizer):
    plain, cached = make_tiny_model(tokenizer, seed=3), make_tiny_model(tokenizer, seed=3)
    prefix_cache = install_prefix_cache(cached, tokenizer.pad_token_id)
    ids = prompt_ids(tokenizer)
    before = generate(cached, tokenizer, ids, do_sample=False)
    torch.manual_seed(1)
    with torch.no_grad():  # an optimizer step's in-place update, the same on both copies
        for p_plain, p_cached in zip(plain.parameters(), cached.parameters()):
            step = 0.5 * torch.randn_like(p_plain)
            p_plain.add_(step)
            p_cached.add_(step)
    after = generate(cached, tokenizer, ids, do_sample=False)
    assert not torch.equal(after, before)  # the change matters, so a stale prefix would show
    assert torch.equal(after, generate(plain, tokenizer, ids, do_sample=False))
    assert prefix_cache.prefills == 2


def test_a_new_optimizer_step_recomputes_the_prefix(tokenizer):
    model, step = make_tiny_model(tokenizer, seed=3), [0]
    prefix_cache = install_prefix_cache(model, tokenizer.pad_token_id, step=lambda: step[0])
    ids = prompt_ids(tokenizer)
    generate(model, tokenizer, ids, do_sample=False)
    generate(model, tokenizer, ids, do_sample=False)
    step[0] += 1  # weights that changed where no parameter shows it (ZeRO-3 gathers them anew)
    generate(model, tokenizer, ids, do_sample=False)
    assert prefix_cache.prefills == 2


def test_the_answer_stop_ends_cached_completions_where_plain_ones_end(tokenizer):
    answer = tokenizer("</think> \\boxed{ size} and more words after", add_special_tokens=False)["input_ids"]

    class Follow:  # drives every row along `answer`, from where its completion starts
        width = None

        def __call__(self, input_ids, scores):
            self.width = self.width or input_ids.shape[1]
            step = input_ids.shape[1] - self.width
            forced = torch.full_like(scores, float("-inf"))
            forced[:, answer[min(step, len(answer) - 1)]] = 0.0
            return forced

    outputs = []
    for prefix_cache in (False, True):
        model = make_tiny_model(tokenizer, seed=3)
        if prefix_cache:
            install_prefix_cache(model, tokenizer.pad_token_id)
        install_answer_stop(model, tokenizer)
        outputs.append(generate(model, tokenizer, prompt_ids(tokenizer), logits_processor=[Follow()], do_sample=False))
    assert torch.equal(outputs[0], outputs[1])
    close = tokenizer("</think> \\boxed{ size}", add_special_tokens=False)["input_ids"]
    completion = outputs[1][0, max(map(len, prompt_ids(tokenizer))) :].tolist()
    assert completion[: len(close) + 1] == close + [tokenizer.eos_token_id]


@pytest.mark.parametrize("stop_after_answer", [False, True])
@pytest.mark.parametrize("temperature", [1e-6, 1.0])  # near-greedy, and sampled under a fixed seed
def test_rpt_trainer_rollouts_are_the_same_with_the_cache(tmp_path, tokenizer, stop_after_answer, temperature):
    train = build_next_token_dataset(CORPUS, tokenizer, position_stride=9, max_context_tokens=24, show_progress=False)
    completions = {}
    for rollout_prefix_cache in (False, True):
        args = RPTConfig(
            output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=8, num_generations=2,
            max_completion_length=12, temperature=temperature, stop_after_answer=stop_after_answer,
            rollout_prefix_cache=rollout_prefix_cache, report_to="none", save_strategy="no",
        )  # fmt: skip
        trainer = RPTTrainer(
            model=make_tiny_model(tokenizer, seed=3), args=args, train_dataset=train, processing_class=tokenizer
        )
        torch.manual_seed(0)
        completions[rollout_prefix_cache], _ = trainer._generate_single_turn(prompt_ids(tokenizer, 2), None, {}, 2)
    assert trainer.rollout_prefix_cache.prefills == 1  # the cached path ran
    assert trainer.rollout_prefix_cache.prompt_prefill_rows == 4  # the 4 prompts' 2 rollouts shared their prefill
    assert completions[True] == completions[False]
    assert len({tuple(c) for c in completions[True]}) > 1


class FirstScores:
    """Keeps the scores of the first generated token, which are the logits of each row's last prompt token."""

    scores = None

    def __call__(self, input_ids, scores):
        self.scores = scores.clone() if self.scores is None else self.scores
        return scores


def greedy_with_first_scores(model, tokenizer, ids):
    first = FirstScores()
    output = generate(model, tokenizer, ids, do_sample=False, logits_processor=[first])
    return output, first.scores


def repeated_prompts(tokenizer):
    """Four prompts of different lengths, repeated in no particular order (rows 0 and 5 carry the same prompt)."""
    distinct = prompt_ids(tokenizer)
    return [distinct[i] for i in (0, 2, 1, 3, 2, 0, 3, 1, 0, 3)], len(distinct)


# The plain model of each case, and the cached one: Gemma 3 with a window over the whole prompt, where the prefix
# cache's layout is exact; one shorter than the prompt, where it is compared with today's path, whose layout it keeps.
DEDUPE_CASES = {
    "qwen2": lambda tokenizer: make_tiny_model(tokenizer, seed=3),
    "gemma3": lambda tokenizer: tiny_gemma3(tokenizer, sliding_window=128),
}


def assert_generates_as(cached, reference, tokenizer, ids):
    """The same greedy output token for token, and the first step's scores within float tolerance."""
    output, scores = greedy_with_first_scores(cached, tokenizer, ids)
    expected, expected_scores = greedy_with_first_scores(reference, tokenizer, ids)
    assert torch.equal(output, expected)
    torch.testing.assert_close(scores, expected_scores, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", DEDUPE_CASES)
def test_repeated_prompts_are_prefilled_once_each(tokenizer, case):
    reference, cached = DEDUPE_CASES[case](tokenizer), DEDUPE_CASES[case](tokenizer)
    prefix_cache = install_prefix_cache(cached, tokenizer.pad_token_id)
    ids, distinct = repeated_prompts(tokenizer)
    assert_generates_as(cached, reference, tokenizer, ids)
    assert (prefix_cache.prefills, prefix_cache.prompt_prefill_rows) == (1, distinct)
    # A refill round with the same weights keeps the prefix; its prompts are prefilled anew.
    refill = ids[1:5]
    assert torch.equal(greedy_with_first_scores(cached, tokenizer, refill)[0],
                       greedy_with_first_scores(reference, tokenizer, refill)[0])  # fmt: skip
    assert (prefix_cache.prefills, prefix_cache.prompt_prefill_rows) == (1, distinct + 3)


def test_a_batch_with_a_gap_that_outgrows_a_sliding_window_is_generated_plainly(tokenizer):
    # With the gap after the prefix, a window of 8 columns would hide from a short row prompt tokens that left
    # padding shows it: the cache must not be used (the outputs differed in 58 tokens when it was).
    plain, cached = tiny_gemma3(tokenizer, sliding_window=8), tiny_gemma3(tokenizer, sliding_window=8)
    prefix_cache = install_prefix_cache(cached, tokenizer.pad_token_id)
    ids, _ = repeated_prompts(tokenizer)
    assert_generates_as(cached, plain, tokenizer, ids)
    assert (prefix_cache.prefills, prefix_cache.prompt_prefill_rows) == (0, 0)
    # Rows of one length have no gap: the prefix serves them, and they match plain generation.
    same_length = [row for row in ids if len(row) == len(ids[0])]
    assert torch.equal(greedy_with_first_scores(cached, tokenizer, same_length)[0],
                       greedy_with_first_scores(plain, tokenizer, same_length)[0])  # fmt: skip
    assert prefix_cache.prefills == 1


def test_a_batch_without_repeats_prefills_its_prompts_in_generate(tokenizer):
    plain, cached = make_tiny_model(tokenizer, seed=3), make_tiny_model(tokenizer, seed=3)
    prefix_cache = install_prefix_cache(cached, tokenizer.pad_token_id)
    assert_generates_as(cached, plain, tokenizer, prompt_ids(tokenizer))
    assert (prefix_cache.prefills, prefix_cache.prompt_prefill_rows) == (1, 0)


def test_the_rollout_benchmark_runs_its_configurations_on_a_tiny_model(tmp_path, capsys):
    tokenizer = make_tiny_tokenizer()
    make_tiny_model(tokenizer).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "rollout_prefix_cache.py"
    spec = importlib.util.spec_from_file_location("rollout_prefix_cache_benchmark", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    threads = torch.get_num_threads()
    try:
        benchmark.main(["--model", str(tmp_path), "--rounds", "1"])
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.splitlines()
    counts = "prefixes computed 1 in 1 steps; prompts prefilled after the prefix {} in 2 rounds"
    assert f"prefix: identical sampled completions 32 / 32; {counts.format(0)}" in lines
    assert f"dedupe: identical sampled completions 32 / 32; {counts.format(4)}" in lines  # 2 prompts, 2 rounds
