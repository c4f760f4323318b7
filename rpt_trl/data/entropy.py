"""Proxy-model token entropy: which positions of a corpus are hard to predict.

The paper (Section 3.3, "Pre-Training Setting") scores every position of every OmniMATH document with a small proxy
model (R1-Distill-Qwen-1.5B) by the entropy of its next-token distribution over the top-16 tokens, trains on the
high-entropy positions, and splits evaluation positions into easy / medium / hard by entropy above 0.5 / 1.0 / 1.5.
Whether the top-16 probabilities are renormalised is not stated; here they are (so the entropy is that of a proper
distribution, at most ln 16 = 2.77 nats).

The scorer runs the decoder once per window of tokens, then applies the output head to the hidden states in chunks
of positions, so full-vocabulary logits never exist for more than `position_chunk_size` positions at a time: with a
262k vocabulary a whole 2k-token window of float32 logits would take 2.1 GB per document. The default chunk is sized
by memory (`_CHUNK_BYTES` for its logits and their temporaries), and one chunk's logits are freed before the next.
"""

import hashlib
import json
import logging
import math
import os
import shutil
import time
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..atomic_io import remove, stale_temporaries_in, write_file_atomically
from ..rewards.head_scorer import HeadScorer, entropy_from_logits
from .builder import document_texts, token_spans


logger = logging.getLogger(__name__)

CACHE_VERSION = 1
_TOKENIZE_BATCH = 256
# The memory one chunk of positions may take in the entropy scorer: its float32 logits and their temporaries. 256 MiB
# is 256 positions at Gemma 3's 262k vocabulary, enough rows for the head's matrix product to run at full speed on a
# CPU, and a fraction of a 2k-token window's logits (2 GiB).
_CHUNK_BYTES = 2**28


@dataclass
class _Window:
    text_index: int
    start: int  # first token of the window, in the text's tokenization
    first_scored: int  # first token whose entropy this window provides
    end: int  # one past the last token of the window


def plan_windows(num_tokens: int, max_length: int, window_overlap: int) -> list[tuple[int, int, int]]:
    """Split `num_tokens` tokens into `(start, first_scored, end)` windows of at most `max_length` tokens.

    Every token from 1 on is scored by exactly one window. A window after the first starts `window_overlap` tokens
    before the first token it scores, so each scored token keeps at least `window_overlap` tokens of left context.

    >>> plan_windows(10, 4, 2)
    [(0, 1, 4), (2, 4, 6), (4, 6, 8), (6, 8, 10)]
    """
    if not 0 <= window_overlap < max_length:
        raise ValueError(f"window_overlap must be in [0, max_length), got {window_overlap} with {max_length}.")
    if num_tokens <= 1:
        return []
    windows = [(0, 1, min(max_length, num_tokens))]
    while windows[-1][2] < num_tokens:
        first_scored = windows[-1][2]
        start = first_scored - window_overlap
        windows.append((start, first_scored, min(start + max_length, num_tokens)))
    return windows


def positions_per_chunk(model: Any, top_k: int | None = 16, chunk_bytes: int | None = None) -> int:
    """How many positions the entropy scorer sends through `model`'s output head at once: as many as fit in
    `chunk_bytes` (default 256 MiB) with their float32 logits, the head's own output where it computes in another dtype, and the
    full-vocabulary softmax temporaries when `top_k` is None.

    Example:
        >>> import torch
        >>> head = torch.nn.Linear(640, 262_144, bias=False)
        >>> model = type("Model", (), {"get_output_embeddings": lambda self: head})()
        >>> positions_per_chunk(model), positions_per_chunk(model, top_k=None)
        (256, 64)
    """
    weight = model.get_output_embeddings().weight
    bytes_per_logit = 4 + (weight.element_size() if weight.dtype != torch.float32 else 0)
    if top_k is None:  # log-softmax, its exponential and their product, over the whole vocabulary
        bytes_per_logit += 12
    return max(1, (chunk_bytes or _CHUNK_BYTES) // (weight.shape[0] * bytes_per_logit))


class _VLLMScorer:
    """vLLM's `prompt_logprobs`: the top-k log-probabilities at every prompt position, in one prefill."""

    def __init__(self, llm: Any, top_k: int | None, show_progress: bool):
        if top_k is None:
            raise ValueError("The vLLM backend returns top-k log-probabilities only; pass top_k (e.g. 16).")
        from vllm import SamplingParams

        self.llm = llm
        self.top_k = top_k
        self.show_progress = show_progress
        self.params = SamplingParams(max_tokens=1, prompt_logprobs=top_k, temperature=1.0)

    def score(self, rows: list[list[int]], wanted: list[range]) -> list[np.ndarray]:
        from vllm.inputs import TokensPrompt

        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=row) for row in rows], self.params, use_tqdm=self.show_progress
        )
        results = []
        for output, indices in zip(outputs, wanted):
            # prompt_logprobs[i + 1] is the distribution that predicts token i + 1; vLLM adds the actual token to
            # the top-k when it is not among them, so keep the k best by rank.
            entropies = []
            for i in indices:
                ranked = sorted(output.prompt_logprobs[i + 1].values(), key=lambda lp: lp.rank)[: self.top_k]
                logits = torch.tensor([lp.logprob for lp in ranked], dtype=torch.float64)
                entropies.append(float(entropy_from_logits(logits, None)))
            results.append(np.array(entropies, dtype=np.float64))
        return results


def _is_vllm(model: Any) -> bool:
    return type(model).__module__.startswith("vllm")


def _adds_bos(tokenizer: Any) -> bool:
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def _fingerprint(model: Any, tokenizer: Any, settings: dict[str, Any], texts: Sequence[str]) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    if _is_vllm(model):
        digest.update(repr(model.llm_engine.model_config.model).encode())
    else:
        digest.update(str(getattr(model.config, "_name_or_path", "")).encode())
        # Per-tensor sums change when any weight does; far cheaper than hashing every byte.
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}{float(tensor.double().sum())}".encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    digest.update((backend.to_str() if backend is not None else repr(tokenizer.get_vocab())).encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    return digest.hexdigest()[:32]


def _read_npz(path: str, names: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The arrays of an `.npz` cache file; `None`, with a warning, when it is unreadable (then it is deleted)."""
    try:
        with np.load(path) as stored:
            arrays = {name: stored[name] for name in names}
        if int(arrays["lengths"].sum()) != len(arrays["values"]):
            raise ValueError("its lengths do not add up to its values")
    except Exception as error:  # a truncated or foreign file: zipfile, EOF, key and value errors alike
        logger.warning(
            "Entropy cache file %s is unreadable (%s: %s); deleting it, its entries are scored again.",
            path,
            type(error).__name__,
            error,
        )
        # missing_ok: under `accelerate launch` every process reads the same shards and may find the same bad one.
        Path(path).unlink(missing_ok=True)
        return None
    return arrays


def _split_values(values: np.ndarray, lengths: np.ndarray) -> list[list[float]]:
    return [chunk.tolist() for chunk in np.split(values, np.cumsum(lengths)[:-1])] if len(lengths) else []


def _load_cache(path: str) -> list[list[float]] | None:
    if not os.path.exists(path):
        return None
    arrays = _read_npz(path, ("values", "lengths"))
    return None if arrays is None else _split_values(arrays["values"], arrays["lengths"])


def _save_cache(path: str, entropies: list[list[float]]) -> None:
    lengths = np.array([len(e) for e in entropies], dtype=np.int64)
    values = np.array([v for e in entropies for v in e], dtype=np.float64)
    # Atomic: a killed run never leaves a half-written cache entry, and the next run removes its temporary.
    write_file_atomically(path, lambda file: np.savez(file, values=values, lengths=lengths))


class _ShardCheckpoints:
    """Scored windows saved into `<cache entry>.parts/` as scoring goes, so an interrupted run resumes.

    Each shard file holds the windows of some batches, keyed by the batch's index in the plan that every process
    builds the same way (same texts, settings and model: the cache key), so a resumed run, with any number of
    processes, skips the batches that any earlier process finished.
    """

    def __init__(self, folder: str | None, checkpoint_seconds: float, process_index: int):
        self.folder = folder
        self.checkpoint_seconds = checkpoint_seconds
        self.process_index = process_index
        self.pending: list[tuple[int, int, int, list[float]]] = []  # (batch, text, first scored, values)
        self.last_save = time.monotonic()
        self.done: dict[int, list[tuple[int, int, list[float]]]] = {}
        if folder is not None and os.path.isdir(folder):
            for stale in stale_temporaries_in(folder, "tmp"):
                remove(stale)
            for name in sorted(os.listdir(folder)):
                if name.endswith(".npz"):
                    self._read(os.path.join(folder, name))

    def _read(self, path: str) -> None:
        arrays = _read_npz(path, ("batch", "text", "first", "lengths", "values"))
        if arrays is None:
            return
        chunks = _split_values(arrays["values"], arrays["lengths"])
        for batch, text, first, values in zip(arrays["batch"], arrays["text"], arrays["first"], chunks):
            self.done.setdefault(int(batch), []).append((int(text), int(first), values))

    def add(self, batch_index: int, scored: list[tuple[int, int, list[float]]]) -> None:
        if self.folder is None:
            return
        self.pending.extend((batch_index, text, first, values) for text, first, values in scored)
        if time.monotonic() - self.last_save >= self.checkpoint_seconds:
            self.save()

    def save(self) -> None:
        if self.folder is None or not self.pending:
            return
        batches, texts, firsts, chunks = zip(*self.pending)
        arrays = {
            "batch": np.array(batches, dtype=np.int64),
            "text": np.array(texts, dtype=np.int64),
            "first": np.array(firsts, dtype=np.int64),
            "lengths": np.array([len(chunk) for chunk in chunks], dtype=np.int64),
            "values": np.array([v for chunk in chunks for v in chunk], dtype=np.float64),
        }
        name = f"process{self.process_index:03d}-batch{batches[-1]:08d}.npz"
        write_file_atomically(os.path.join(self.folder, name), lambda file: np.savez(file, **arrays))
        self.pending = []
        self.last_save = time.monotonic()


def compute_token_entropy(
    texts: Sequence[str],
    model: Any,
    tokenizer: Any,
    *,
    top_k: int | None = 16,
    batch_size: int = 8,
    max_length: int = 2048,
    window_overlap: int | None = None,
    position_chunk_size: int | None = None,
    add_bos: bool | None = None,
    cache_dir: str | None = None,
    checkpoint_seconds: float = 60.0,
    show_progress: bool = True,
) -> list[list[float]]:
    """Entropy of a proxy model's next-token distribution at every token of every text.

    Args:
        texts: The documents.
        model: A causal language model (`transformers`), or a `vllm.LLM` to score with vLLM's `prompt_logprobs`.
        tokenizer: The model's tokenizer. Positions are its tokens of each text, without special tokens.
        top_k: Entropy over the top_k most likely tokens, renormalised to sum to 1 (the paper's top-16); `None`
            for the full vocabulary.
        batch_size: Windows per forward pass.
        max_length: Tokens per window (including a BOS token when one is prepended). Longer texts are scored in
            sliding windows.
        window_overlap: In sliding windows, every token keeps at least this many tokens of left context. Defaults
            to a quarter of `max_length`.
        position_chunk_size: Positions whose full-vocabulary logits exist at once; bounds peak memory. Defaults to
            as many as fit in 256 MiB with their temporaries ([`positions_per_chunk`]): 256 positions for a 262k
            vocabulary in float32.
        add_bos: Prepend the BOS token to every window, as context only. Defaults to what the tokenizer does itself
            (Gemma and Llama add one, Qwen does not).
        cache_dir: If set, results are stored there, keyed by the model's weights, the tokenizer, the settings and
            the texts, and a re-run with the same inputs reads them instead of scoring again. While scoring, what
            is scored is saved there in shards, so an interrupted run resumes where it stopped. An unreadable cache
            file is reported, deleted and scored again.
        checkpoint_seconds: With `cache_dir`, save a shard of scored windows at most this often.
        show_progress: Show a progress bar with tokens per second.

    Returns:
        One list per text with one float per token: entry t is the entropy in nats of the distribution that
        predicts token t from tokens before it. Entry 0 has no context and is NaN.

    Under `accelerate launch` with several processes, each process scores every n-th text and the results are
    gathered in the texts' order, so every process returns what a single process would.

    Example:
        >>> entropy = compute_token_entropy(["The derivative of x^2 is 2x."], model, tokenizer)  # doctest: +SKIP
        >>> len(entropy[0]) == len(tokenizer("The derivative of x^2 is 2x.", add_special_tokens=False).input_ids)
        True
    """
    position_chunk_size, add_bos, window_overlap = _checked_settings(
        texts, model, tokenizer, top_k, batch_size, max_length, window_overlap, position_chunk_size, add_bos
    )
    prefix = [tokenizer.bos_token_id] if add_bos else []
    capacity = max_length - len(prefix)

    from accelerate import PartialState

    state = PartialState()
    settings = {
        "version": CACHE_VERSION,
        "top_k": top_k,
        "max_length": max_length,
        "window_overlap": window_overlap,
        "add_bos": add_bos,
    }
    cache_path = None
    if cache_dir is not None:
        cache_path = _cache_entry(cache_dir, model, tokenizer, settings, texts, state)
        cached = _load_cache(cache_path)
        if cached is not None and len(cached) == len(texts):
            logger.info("Token entropy read from the cache (%s).", os.path.basename(cache_path))
            return cached

    scorer, token_ids = _scorer_and_token_ids(
        model, tokenizer, texts, top_k, position_chunk_size, prefix, show_progress and state.is_main_process
    )
    batches = _plan_batches(token_ids, capacity, window_overlap, batch_size)
    checkpoints = _ShardCheckpoints(
        None if cache_path is None else cache_path[: -len(".npz")] + ".parts", checkpoint_seconds, state.process_index
    )
    scored = _score_my_batches(batches, token_ids, prefix, scorer, checkpoints, state, show_progress)
    return _gathered_entropies(scored, token_ids, cache_path, checkpoints.folder, state)


def _checked_settings(
    texts: Sequence[str],
    model: Any,
    tokenizer: Any,
    top_k: int | None,
    batch_size: int,
    max_length: int,
    window_overlap: int | None,
    position_chunk_size: int | None,
    add_bos: bool | None,
) -> tuple[int | None, bool, int]:
    """`compute_token_entropy`'s arguments checked, with their defaults resolved: `(position_chunk_size, add_bos,
    window_overlap)`."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string.")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be a positive integer or None, got {top_k}.")
    if position_chunk_size is None and not _is_vllm(model):
        position_chunk_size = positions_per_chunk(model, top_k)
    if batch_size < 1 or (position_chunk_size is not None and position_chunk_size < 1):
        raise ValueError("batch_size and position_chunk_size must be positive.")
    add_bos = _adds_bos(tokenizer) if add_bos is None else add_bos
    prefix_length = 1 if add_bos else 0
    if max_length < prefix_length + 2:
        raise ValueError(f"max_length ({max_length}) leaves no room for a context and a token to predict.")
    capacity = max_length - prefix_length
    window_overlap = capacity // 4 if window_overlap is None else window_overlap
    if not 0 <= window_overlap < capacity:
        raise ValueError(f"window_overlap must be at least 0 and below max_length, got {window_overlap}.")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"Text {index} is {type(text).__name__}, not a string.")
    return position_chunk_size, add_bos, window_overlap


def _cache_entry(
    cache_dir: str, model: Any, tokenizer: Any, settings: dict[str, Any], texts: Sequence[str], state: Any
) -> str:
    """The cache file of these inputs; the main process first removes temporaries that killed runs left behind."""
    key = _fingerprint(model, tokenizer, settings, texts)
    cache_path = os.path.join(cache_dir, f"entropy-{key}.npz")
    if state.is_main_process:
        for stale in stale_temporaries_in(cache_dir, "tmp"):
            remove(stale)
    return cache_path


def _scorer_and_token_ids(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    top_k: int | None,
    position_chunk_size: int | None,
    prefix: list[int],
    show_progress: bool,
) -> tuple[Any, list[list[int]]]:
    """The scorer for `model` (vLLM's or the output head's) and the texts' token ids; the head scorer is first
    checked against the model's own forward pass on a few tokens."""
    scorer = (
        _VLLMScorer(model, top_k, show_progress) if _is_vllm(model) else HeadScorer(model, top_k, position_chunk_size)
    )
    token_ids = _tokenize(tokenizer, texts)
    if isinstance(scorer, HeadScorer):
        probe = next((ids for ids in token_ids if len(ids) > 1), None)
        if probe is not None:
            scorer.check_against_forward(prefix + probe[:8])
    return scorer, token_ids


def _tokenize(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    return [
        ids
        for batch_start in range(0, len(texts), _TOKENIZE_BATCH)
        for ids in tokenizer(list(texts[batch_start : batch_start + _TOKENIZE_BATCH]), add_special_tokens=False)[
            "input_ids"
        ]
    ]


def _plan_batches(
    token_ids: list[list[int]], capacity: int, window_overlap: int, batch_size: int
) -> list[list[_Window]]:
    windows = [
        _Window(i, start, first, end)
        for i, ids in enumerate(token_ids)
        for start, first, end in plan_windows(len(ids), capacity, window_overlap)
    ]
    windows.sort(key=lambda w: w.end - w.start, reverse=True)  # similar lengths share a batch: little padding
    return [windows[b : b + batch_size] for b in range(0, len(windows), batch_size)]


def _score_my_batches(
    batches: list[list[_Window]],
    token_ids: list[list[int]],
    prefix: list[int],
    scorer: Any,
    checkpoints: _ShardCheckpoints,
    state: Any,
    show_progress: bool,
) -> list[tuple[int, int, list[float]]]:
    """This process's share of the batches, scored: `(text index, first scored token, entropies)` per window,
    including those an earlier, interrupted run saved in `checkpoints`."""
    # Every process builds the same batches and takes every n-th one, so each window is computed in exactly the
    # batch (and padding) a single process would use: sharded results are bit-for-bit the single-process ones.
    mine = list(range(len(batches)))[state.process_index :: state.num_processes]
    scored = [entry for index in mine for entry in checkpoints.done.get(index, [])]
    resumed = {index for index in mine if index in checkpoints.done}
    if resumed:
        logger.info("Resuming token entropy: %d of %d batches were scored by an earlier run.", len(resumed), len(mine))
    mine = [index for index in mine if index not in resumed]
    progress = tqdm(
        total=sum(w.end - w.first_scored for index in mine for w in batches[index]),
        desc="Scoring token entropy",
        unit="tok",
        unit_scale=True,
        disable=not (show_progress and state.is_main_process),
    )
    for index in mine:
        batch = batches[index]
        rows = [prefix + token_ids[w.text_index][w.start : w.end] for w in batch]
        # Hidden index j (in the row) predicts row token j + 1, i.e. text token w.start + j + 1 - len(prefix).
        wanted = [range(w.first_scored - w.start + len(prefix) - 1, w.end - w.start + len(prefix) - 1) for w in batch]
        batch_scored = [
            (window.text_index, window.first_scored, values.tolist())
            for window, values in zip(batch, scorer.score(rows, wanted))
        ]
        scored.extend(batch_scored)
        checkpoints.add(index, batch_scored)
        progress.update(sum(len(values) for _, _, values in batch_scored))
    checkpoints.save()
    progress.close()
    return scored


def _gathered_entropies(
    scored: list[tuple[int, int, list[float]]],
    token_ids: list[list[int]],
    cache_path: str | None,
    shard_folder: str | None,
    state: Any,
) -> list[list[float]]:
    """Every process's scored windows, gathered into one list of entropies per text and written to the cache."""
    from accelerate.utils import gather_object

    if state.num_processes > 1:
        scored = gather_object(scored)
    entropies = [[math.nan] * len(ids) for ids in token_ids]
    for text_index, first_scored, values in scored:
        entropies[text_index][first_scored : first_scored + len(values)] = values
    if cache_path is not None and state.is_main_process:
        _save_cache(cache_path, entropies)
        # The whole entry is written: its shards are no longer needed.
        shutil.rmtree(shard_folder, ignore_errors=True)
    if state.num_processes > 1:
        state.wait_for_everyone()
    return entropies


def _offsets(tokenizer: Any, texts: Sequence[str], role: str) -> list[list[tuple[int, int]]]:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"The {role} tokenizer ({type(tokenizer).__name__}) does not return character offsets, which are needed "
            "to map entropies between tokenizers; load a fast tokenizer (AutoTokenizer, use_fast=True)."
        )
    return tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]


def align_token_values(
    texts: Sequence[str],
    values: Sequence[Sequence[float]],
    source_tokenizer: Any,
    target_tokenizer: Any,
) -> tuple[list[list[float]], float]:
    """Map per-token values (e.g. entropies) from one tokenizer's positions to another's, by character offsets.

    A target token whose text starts exactly where a source token starts takes that token's value (the two
    predictions share their context). Otherwise it takes the value of the source token that covers its first
    character: the proxy's uncertainty about the stretch of text the target token begins in. With the same
    tokenizer on both sides the mapping is the identity.

    Returns:
        The mapped values, one list per text with one float per target token, and the fraction of target tokens
        that matched a source token boundary exactly.
    """
    source_offsets = _offsets(source_tokenizer, texts, "proxy")
    target_offsets = _offsets(target_tokenizer, texts, "dataset")
    mapped, exact, total = [], 0, 0
    for text_values, source, target in zip(values, source_offsets, target_offsets):
        if len(text_values) != len(source):
            raise ValueError(
                f"Got {len(text_values)} values for a text of {len(source)} proxy tokens; the values must come from "
                "the source tokenizer's tokenization of the same texts."
            )
        source_starts = token_spans(source)[0] if source else []
        out: list[float] = []
        target_starts = token_spans(target)[0] if target else []
        for k, start in enumerate(target_starts):
            j = bisect_right(source_starts, start) - 1
            if j >= 0 and source_starts[j] == start:
                exact += 1
                # Tokens inside one character share a start; pair the n-th of each side's run.
                first = bisect_left(source_starts, start)
                j = min(first + k - bisect_left(target_starts, start), j)
            out.append(float(text_values[j]) if j >= 0 else math.nan)
        if out:
            out[0] = math.nan  # the first token never has context, whatever the source says
        total += len(out)
        mapped.append(out)
    return mapped, (exact / total if total else float("nan"))


def document_entropy(
    data: Any,
    tokenizer: Any,
    proxy_model: Any,
    proxy_tokenizer: Any | None = None,
    *,
    text_column: str | Sequence[str] = "text",
    **scorer_kwargs: Any,
) -> list[list[float]]:
    """Proxy entropies for `build_next_token_dataset(data, tokenizer, token_entropy=...)`.

    Scores the documents exactly as the dataset builder reads them (the same text columns, joined the same way)
    with the proxy model, then maps the values to `tokenizer`'s positions by character offsets when the proxy's
    tokenizer is a different one (see [`align_token_values`]).

    Args:
        data: A `datasets.Dataset` or a list of strings, as for [`build_next_token_dataset`].
        tokenizer: The dataset's (policy's) tokenizer.
        proxy_model: The scoring model (`transformers` or `vllm.LLM`).
        proxy_tokenizer: The proxy's tokenizer; defaults to `tokenizer`.
        text_column: As for [`build_next_token_dataset`].
        **scorer_kwargs: Passed to [`compute_token_entropy`] (`top_k`, `batch_size`, `max_length`, `cache_dir`, ...).

    Returns:
        One list per document (empty for an empty document) with one entropy per `tokenizer` token.
    """
    proxy_tokenizer = tokenizer if proxy_tokenizer is None else proxy_tokenizer
    texts = document_texts(data, text_column)
    scored = [i for i, text in enumerate(texts) if text and text.strip()]
    values = compute_token_entropy([texts[i] for i in scored], proxy_model, proxy_tokenizer, **scorer_kwargs)
    if not _same_tokenizer(proxy_tokenizer, tokenizer):
        values, exact = align_token_values([texts[i] for i in scored], values, proxy_tokenizer, tokenizer)
        logger.info(
            "Entropies mapped to the dataset tokenizer: %.1f%% of positions on a shared boundary.", 100 * exact
        )
    entropies: list[list[float]] = [[] for _ in texts]
    for i, text_values in zip(scored, values):
        entropies[i] = text_values
    return entropies


def _same_tokenizer(first: Any, second: Any) -> bool:
    if first is second:
        return True
    backends = [getattr(t, "backend_tokenizer", None) for t in (first, second)]
    return all(b is not None for b in backends) and backends[0].to_str() == backends[1].to_str()
