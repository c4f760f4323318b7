"""Proxy-model token entropy: exact against a float64 reference, windows, chunking, cache, tokenizer mapping."""

import copy
import json
import math
import subprocess
import sys
import types
import weakref
from pathlib import Path

import pytest
import torch
from conftest import ACCELERATE_TWO_PROCESSES, CORPUS, free_port, make_byte_level_tokenizer, subprocess_env
from hypothesis import given
from hypothesis import strategies as st

from rpt_trl import align_token_values, compute_token_entropy, document_entropy
from rpt_trl.data import entropy as entropy_module
from rpt_trl.data.entropy import plan_windows, positions_per_chunk
from rpt_trl.experiments.tiny import make_tiny_model


TEXTS = [*CORPUS, "x", "", "A longer text that repeats itself. " * 6]


@pytest.fixture(scope="module")
def tokenizer():
    return make_byte_level_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    model = make_tiny_model(tokenizer, seed=3).eval()
    with torch.no_grad():  # sharpen the random head so entropies spread over (0, ln 16) instead of sitting at ln 16
        model.get_output_embeddings().weight.mul_(4.0)
    return model


def reference_entropy(text, model, tokenizer, top_k=16, bos=None):
    """Plain PyTorch, one unpadded sequence, full logits, float64: the definition, written independently."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    prefix = [] if bos is None else [bos]
    if not ids:
        return []
    with torch.no_grad():
        logits = model(torch.tensor([prefix + ids])).logits[0].double()[len(prefix) :]
    values = [math.nan]
    for i in range(len(ids) - 1):
        row = logits[i] if top_k is None else torch.sort(logits[i], descending=True).values[:top_k]
        probs = torch.softmax(row, dim=-1)
        values.append(float(-(probs * torch.log(probs)).sum()))
    return values


def assert_close(actual, expected, atol=1e-5):
    assert len(actual) == len(expected)
    assert math.isnan(actual[0]) if actual else True
    for a, e in zip(actual[1:], expected[1:]):
        assert a == pytest.approx(e, abs=atol)


@pytest.mark.parametrize("top_k", [16, 1, None])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_equals_float64_reference_with_padding_and_unequal_lengths(model, tokenizer, top_k, batch_size):
    entropies = compute_token_entropy(TEXTS, model, tokenizer, top_k=top_k, batch_size=batch_size, show_progress=False)
    spread = [v for e in entropies for v in e[1:]]
    assert max(spread) - min(spread) > 0.5 or top_k == 1  # the test model's entropies are not all alike
    for text, values in zip(TEXTS, entropies):
        assert len(values) == len(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert_close(values, reference_entropy(text, model, tokenizer, top_k=top_k))
    if top_k == 1:
        assert all(v == 0.0 for e in entropies for v in e[1:])


def test_bos_is_context_only(model, tokenizer):
    bos = tokenizer.convert_tokens_to_ids("a")  # any token id serves as a BOS for this check
    tokenizer_with_bos = copy.deepcopy(tokenizer)
    tokenizer_with_bos.bos_token = "a"
    entropies = compute_token_entropy(TEXTS[:3], model, tokenizer_with_bos, add_bos=True, show_progress=False)
    for text, values in zip(TEXTS[:3], entropies):
        assert_close(values, reference_entropy(text, model, tokenizer, bos=bos))


@given(num_tokens=st.integers(0, 300), max_length=st.integers(2, 64), data=st.data())
def test_windows_score_every_token_once_with_enough_context(num_tokens, max_length, data):
    overlap = data.draw(st.integers(0, max_length - 1))
    windows = plan_windows(num_tokens, max_length, overlap)
    scored = [t for _, first, end in windows for t in range(first, end)]
    assert scored == list(range(1, num_tokens))
    for k, (start, first, end) in enumerate(windows):
        assert end - start <= max_length
        assert first - start == (1 if k == 0 else overlap) or (k == 0 and start == 0)


def test_sliding_windows_equal_a_single_pass_of_each_window(model, tokenizer):
    text = TEXTS[-1]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > 40
    whole = compute_token_entropy([text], model, tokenizer, max_length=len(ids), show_progress=False)[0]
    assert_close(whole, reference_entropy(text, model, tokenizer))  # fits in one window: the single pass itself

    sliding = compute_token_entropy(
        [text], model, tokenizer, max_length=16, window_overlap=6, batch_size=4, show_progress=False
    )[0]
    for start, first, end in plan_windows(len(ids), 16, 6):
        window_text = tokenizer.decode(ids[start:end])
        assert tokenizer(window_text, add_special_tokens=False)["input_ids"] == ids[start:end]
        expected = reference_entropy(window_text, model, tokenizer)
        for t in range(first, end):
            assert sliding[t] == pytest.approx(expected[t - start], abs=1e-5)
    assert any(abs(a - b) > 1e-4 for a, b in zip(sliding[17:], whole[17:]))  # shorter context, other values


def test_full_vocabulary_logits_exist_only_in_position_chunks(model, tokenizer, monkeypatch):
    head = model.get_output_embeddings()
    rows_seen = []
    hook = head.register_forward_hook(lambda module, inputs, output: rows_seen.append(output.shape[:-1].numel()))
    try:
        compute_token_entropy(TEXTS, model, tokenizer, batch_size=8, position_chunk_size=5, show_progress=False)
    finally:
        hook.remove()
    # The first two calls are the one-off 8-token check (model.forward, then head of decoder); then only chunks.
    assert rows_seen[:2] == [8, 8] and max(rows_seen[2:]) == 5
    total = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) - 1 for t in TEXTS if t)
    assert sum(rows_seen[2:]) == total


@pytest.mark.parametrize(
    ("vocabulary", "dtype", "top_k", "positions"),
    [
        (262_144, torch.float32, 16, 256),  # Gemma 3: a quarter of a 1,024-position window's 1 GiB
        (262_144, torch.bfloat16, 16, 170),  # the bf16 head output and its float32 copy
        (262_144, torch.float32, None, 64),  # full-vocabulary softmax temporaries
        (151_936, torch.float32, 16, 441),  # Qwen 2.5
        (2**30, torch.float32, 16, 1),  # never fewer than one
    ],
)
def test_chunks_are_sized_by_memory(vocabulary, dtype, top_k, positions):
    head = types.SimpleNamespace(weight=torch.empty((vocabulary, 0), dtype=dtype))
    model = types.SimpleNamespace(get_output_embeddings=lambda: head)
    assert positions_per_chunk(model, top_k) == positions


def test_default_chunks_fit_the_memory_budget_one_at_a_time(model, tokenizer, monkeypatch):
    vocabulary = model.get_output_embeddings().weight.shape[0]
    monkeypatch.setattr(entropy_module, "_CHUNK_BYTES", vocabulary * 4 * 6)  # six float32 rows of logits
    head, outputs = model.get_output_embeddings(), []

    def one_chunk_alive(module, inputs, output):
        # From the first chunk on (the 8-token check compares two logits), the previous logits are freed before
        # this chunk's exist.
        if len(outputs) >= 2:
            assert [index for index, previous in enumerate(outputs) if previous() is not None] == []
        outputs.append(weakref.ref(output))

    hook = head.register_forward_hook(one_chunk_alive)
    try:
        chunked = compute_token_entropy(TEXTS, model, tokenizer, batch_size=8, show_progress=False)
    finally:
        hook.remove()
    rows = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) - 1 for t in TEXTS if t]
    assert len(outputs) == 2 + math.ceil(sum(rows) / 6)  # after the 8-token check, chunks of six positions
    whole = compute_token_entropy(
        TEXTS, model, tokenizer, batch_size=8, position_chunk_size=10**6, show_progress=False
    )
    for text_chunked, text_whole in zip(chunked, whole, strict=True):
        assert_close(text_chunked, text_whole)  # float32 logits: the matrix product may round by its rows count


def test_cache_reads_back_and_notices_new_weights(model, tokenizer, tmp_path):
    calls = []
    hook = model.get_decoder().register_forward_hook(lambda *_: calls.append(1))
    try:
        first = compute_token_entropy(TEXTS, model, tokenizer, cache_dir=str(tmp_path), show_progress=False)
        scored_calls = len(calls)
        again = compute_token_entropy(TEXTS, model, tokenizer, cache_dir=str(tmp_path), show_progress=False)
        assert len(calls) == scored_calls  # read from the cache: no forward pass at all
        assert [v[1:] for v in again] == [v[1:] for v in first]
        other = make_tiny_model(tokenizer, seed=4).eval()
        fresh = compute_token_entropy(TEXTS, other, tokenizer, cache_dir=str(tmp_path), show_progress=False)
        assert fresh[0][1:] != first[0][1:]
        assert len(list(tmp_path.glob("entropy-*.npz"))) == 2
    finally:
        hook.remove()


def test_a_model_whose_logits_are_not_the_head_of_the_decoder_is_refused(model, tokenizer):
    class Scaled(type(model)):
        def forward(self, *args, **kwargs):
            output = super().forward(*args, **kwargs)
            output.logits = output.logits * 2
            return output

    scaled = Scaled(model.config).eval()
    scaled.load_state_dict(model.state_dict())
    with pytest.raises(ValueError, match="output head"):
        compute_token_entropy(TEXTS[:2], scaled, tokenizer, show_progress=False)


def test_bad_arguments(model, tokenizer):
    with pytest.raises(TypeError, match="list of strings"):
        compute_token_entropy("one text", model, tokenizer)
    with pytest.raises(ValueError, match="top_k"):
        compute_token_entropy(["a b"], model, tokenizer, top_k=0)
    with pytest.raises(ValueError, match="window_overlap"):
        compute_token_entropy(["a b"], model, tokenizer, max_length=8, window_overlap=8)
    with pytest.raises(TypeError, match="Text 1"):
        compute_token_entropy(["a b", None], model, tokenizer)


def test_align_same_tokenizer_is_identity(model, tokenizer):
    entropies = compute_token_entropy(TEXTS, model, tokenizer, show_progress=False)
    mapped, exact = align_token_values(TEXTS, entropies, tokenizer, tokenizer)
    assert exact == 1.0
    assert [m[1:] for m in mapped] == [e[1:] for e in entropies]


def test_align_across_tokenizers_by_character_offsets(tokenizer, sentencepiece_tokenizer):
    text = CORPUS[0]
    source = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    values = [float(k) for k in range(len(source))]  # value = source token index, so the mapping is readable
    mapped, _ = align_token_values([text], [values], tokenizer, sentencepiece_tokenizer)
    target = sentencepiece_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert len(mapped[0]) == len(target) and math.isnan(mapped[0][0])
    source_starts = [0] + [end for _, end in source[:-1]]
    target_starts = [0] + [end for _, end in target[:-1]]
    for t in range(1, len(target)):
        j = int(mapped[0][t])
        assert source_starts[j] <= target_starts[t]  # the source token that covers the target token's start
        assert j + 1 == len(source) or source_starts[j + 1] > target_starts[t]


def test_align_refuses_a_tokenizer_without_offsets(tokenizer):
    slow = types.SimpleNamespace(is_fast=False)  # what a Python (slow) tokenizer reports
    with pytest.raises(ValueError, match="character offsets"):
        align_token_values(["a b"], [[math.nan, 1.0]], tokenizer, slow)


def test_document_entropy_scores_the_builder_texts_in_the_dataset_tokenizer(model, tokenizer, sentencepiece_tokenizer):
    import datasets

    data = datasets.Dataset.from_dict({"problem": [CORPUS[0], "", CORPUS[3]], "solution": [CORPUS[1], None, "ok"]})
    entropies = document_entropy(data, sentencepiece_tokenizer, model, tokenizer, text_column=["problem", "solution"])
    assert entropies[1] == []
    for i in (0, 2):
        text = "\n\n".join(x for x in (data[i]["problem"], data[i]["solution"]) if x)
        n = len(sentencepiece_tokenizer(text, add_special_tokens=False)["input_ids"])
        scored = [v for v in entropies[i] if not math.isnan(v)]
        # NaN only where the dataset token starts inside the proxy's first token (which has no context)
        assert len(entropies[i]) == n and len(scored) >= n - 3
        assert all(0 <= v <= math.log(16) + 1e-9 for v in scored)


def test_two_process_sharded_scoring_equals_one_process(model, tokenizer, tmp_path):
    model.save_pretrained(tmp_path / "model")
    # Its own folder: next to a Qwen2 config.json, AutoTokenizer would load it as a Qwen2 tokenizer and split digits.
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    (tmp_path / "texts.json").write_text(json.dumps(TEXTS))
    worker = str(Path(__file__).with_name("_entropy_shard_worker.py"))
    inputs = [str(tmp_path / "model"), str(tmp_path / "tokenizer"), str(tmp_path / "texts.json")]
    # Both runs with one thread per process (torchrun's setting), so the only difference is the sharding.
    env = subprocess_env()
    launch = [*ACCELERATE_TWO_PROCESSES, "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port())]  # fmt: skip
    results = {}
    for name, command in [("sharded", launch), ("single", [sys.executable])]:
        output = str(tmp_path / f"{name}.json")
        finished = subprocess.run(
            [*command, worker, *inputs, output], env=env, capture_output=True, text=True, timeout=240
        )
        assert finished.returncode == 0, finished.stderr[-3000:]
        results[name] = json.loads(Path(output).read_text())
    assert results["sharded"]["num_processes"] == 2 and results["single"]["num_processes"] == 1
    assert json.dumps(results["sharded"]["entropies"]) == json.dumps(results["single"]["entropies"])  # bit for bit
    in_process = compute_token_entropy(TEXTS, model, tokenizer, batch_size=2, max_length=24, show_progress=False)
    for sharded, alone in zip(results["sharded"]["entropies"], in_process):
        assert_close(sharded, alone)


def test_vllm_prompt_logprobs_are_read_as_top_k_by_rank(model, tokenizer, monkeypatch):
    """The vLLM path, with vLLM's output objects imitated: the actual token is added beyond the top k when it is
    not among them, and position 0 has no distribution. Results must equal the transformers scorer's."""

    class Logprob(types.SimpleNamespace):
        pass

    class FakeLLM:
        def generate(self, prompts, params, use_tqdm):
            outputs = []
            for prompt in prompts:
                ids = prompt["prompt_token_ids"]
                with torch.no_grad():
                    log_probs = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
                prompt_logprobs = [None]
                for i in range(1, len(ids)):
                    ranked = torch.argsort(log_probs[i - 1], descending=True)
                    entries = {
                        int(t): Logprob(logprob=float(log_probs[i - 1, t]), rank=r + 1)
                        for r, t in enumerate(ranked[: params.prompt_logprobs])
                    }
                    actual_rank = int((ranked == ids[i]).nonzero()) + 1
                    entries.setdefault(ids[i], Logprob(logprob=float(log_probs[i - 1, ids[i]]), rank=actual_rank))
                    prompt_logprobs.append(dict(reversed(list(entries.items()))))  # order must not matter
                outputs.append(types.SimpleNamespace(prompt_logprobs=prompt_logprobs))
            return outputs

    FakeLLM.__module__ = "vllm.entrypoints.llm"
    fake_vllm = types.ModuleType("vllm")
    fake_vllm.SamplingParams = lambda **kwargs: types.SimpleNamespace(**kwargs)
    fake_inputs = types.ModuleType("vllm.inputs")
    fake_inputs.TokensPrompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    monkeypatch.setitem(sys.modules, "vllm.inputs", fake_inputs)

    through_vllm = compute_token_entropy(TEXTS, FakeLLM(), tokenizer, max_length=20, show_progress=False)
    direct = compute_token_entropy(TEXTS, model, tokenizer, max_length=20, show_progress=False)
    for a, b in zip(through_vllm, direct):
        assert_close(a, b)
    with pytest.raises(ValueError, match="top-k"):
        compute_token_entropy(TEXTS, FakeLLM(), tokenizer, top_k=None)


@pytest.mark.parametrize("top_k", [16, None])
def test_a_soft_capped_head_equals_the_models_own_logits(tokenizer, top_k):
    """Gemma's final soft-capping: with top_k the scorer caps only the top k logits (the cap rises monotonically),
    and the entropies are still those of the model's own capped logits."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8, sliding_window=4,
        layer_types=["sliding_attention", "full_attention"], final_logit_softcapping=1.5,
    )  # fmt: skip
    capped = Gemma3ForCausalLM(config).eval()
    with torch.no_grad():  # logits well past the cap, where capping changes the distribution
        capped.get_output_embeddings().weight.mul_(50.0)
    entropies = compute_token_entropy(TEXTS, capped, tokenizer, top_k=top_k, show_progress=False)
    for text, values in zip(TEXTS, entropies):
        assert_close(values, reference_entropy(text, capped, tokenizer, top_k=top_k))
    # The same model without its cap gives other entropies: the cap is applied, not skipped.
    capped.config.final_logit_softcapping = None
    uncapped = compute_token_entropy(TEXTS[:1], capped, tokenizer, top_k=top_k, show_progress=False)
    assert max(abs(a - b) for a, b in zip(uncapped[0][1:], entropies[0][1:])) > 1e-3


@pytest.mark.parametrize(
    ("rows", "width", "k"),
    [(7, 262144, 16), (5, 1000, 16), (3, 40000, 1), (4, 513, 16), (2, 9000, 16), (3, 8192, 16)],
)
def test_top_k_values_by_blocks_equal_topk(rows, width, k):
    """The blocked search returns the values `topk` returns, with ties and with widths that are no multiple of the
    block."""
    from rpt_trl.rewards.head_scorer import top_k_values

    generator = torch.Generator().manual_seed(width)
    logits = torch.randn(rows, width, generator=generator)
    logits[0, : 3 * k] = 4.5  # more equal maxima than k, in one block
    logits[-1, -1] = 9.0  # the largest value in the padded last block
    found = top_k_values(logits, k).sort(dim=-1).values
    torch.testing.assert_close(found, logits.topk(k, dim=-1).values.sort(dim=-1).values, rtol=0, atol=0)
