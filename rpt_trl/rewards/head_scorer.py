"""The output-head scorer shared by the entropy filter and the model rewards."""

from collections.abc import Sequence
from itertools import accumulate
from typing import Any

import numpy as np
import torch


# Logits per output-head chunk: the chunk size in positions is this over the vocabulary size (2**28 float32 logits
# are 1 GiB).
LOGITS_PER_CHUNK = 2**28


# Columns per block of [`top_k_values`]'s first pass.
TOP_K_BLOCK = 512


def top_k_values(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest values of each row (in no order), as `logits.topk(k).values`, for rows much wider than k.

    Each row is cut into blocks of [`TOP_K_BLOCK`] columns, and only the k blocks with the largest maxima are searched:
    a block holding one of the k largest values has a maximum at least the k-th largest value, and at most k blocks
    do. So one max-reduction reads the whole row, and the search reads k blocks, where `topk` itself searches all of
    a 262k-wide row.
    """
    rows, width = logits.shape
    blocks = -(-width // TOP_K_BLOCK)
    if blocks <= k:
        return logits.topk(k, dim=-1, sorted=False).values
    if width % TOP_K_BLOCK:
        logits = torch.nn.functional.pad(logits, (0, blocks * TOP_K_BLOCK - width), value=float("-inf"))
    blocked = logits.view(rows, blocks, TOP_K_BLOCK)
    best_blocks = blocked.amax(dim=-1).topk(k, dim=-1, sorted=False).indices
    candidates = blocked.gather(1, best_blocks[..., None].expand(-1, -1, TOP_K_BLOCK)).view(rows, -1)
    return candidates.topk(k, dim=-1, sorted=False).values


def entropy_from_logits(logits: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """Entropy in nats of each row's distribution, over its top_k logits renormalised (all logits if None)."""
    if top_k is not None and top_k < logits.shape[-1]:
        logits = logits.topk(top_k, dim=-1, sorted=False).values.double()
    log_probs = torch.log_softmax(logits.float() if logits.dtype != torch.float64 else logits, dim=-1)
    return -(log_probs.exp() * log_probs).sum(dim=-1).double()


class HeadScorer:
    """A causal LM split in two: the decoder once per batch of rows, then the output head (with Gemma's final
    softcap) on chunks of positions, so that a large vocabulary's logits never exist for a whole batch at once.

    The entropy filter ([`rpt_trl.data.entropy`]) scores every position's entropy with it; the model rewards
    ([`next_token_log_probs`]) score the log-probability of one token.

    Args:
        model: A causal language model whose logits are its output head applied to its decoder's last hidden state.
        top_k: Entropy over the top-k logits renormalised (`None`: all of them).
        position_chunk_size: Positions per output-head chunk.
    """

    def __init__(self, model: Any, top_k: int | None, position_chunk_size: int):
        self.model = model
        self.decoder = model.get_decoder()
        self.head = model.get_output_embeddings()
        if self.head is None:
            raise ValueError(f"{type(model).__name__} has no output head; pass a causal language model.")
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        self.top_k = top_k
        self.position_chunk_size = position_chunk_size
        self.device = next(model.parameters()).device

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self._capped(self.head(hidden).float())

    def _capped(self, logits: torch.Tensor) -> torch.Tensor:
        """Gemma's final soft cap, if the model has one."""
        if not self.softcap:
            return logits
        if torch.is_grad_enabled():
            return torch.tanh(logits / self.softcap) * self.softcap
        return logits.div_(self.softcap).tanh_().mul_(self.softcap)  # in place: two fewer full-vocabulary temporaries

    def entropies(self, hidden: torch.Tensor) -> torch.Tensor:
        """Entropy of each row's next-token distribution; its logits are freed when this returns."""
        logits = self.head(hidden).float()
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            # The soft cap rises monotonically, so the top k logits before it are the top k after it: cap only those.
            logits = top_k_values(logits, self.top_k).double()
        return entropy_from_logits(self._capped(logits), self.top_k).cpu()

    @torch.inference_mode()
    def check_against_forward(self, token_ids: list[int]) -> None:
        """Refuse a model whose logits are not `head(decoder(x))` (plus Gemma's softcap), before any real work."""
        input_ids = torch.tensor([token_ids], device=self.device)
        expected = self.model(input_ids=input_ids).logits.float()
        hidden = self.decoder(input_ids=input_ids).last_hidden_state
        actual = self.logits(hidden)
        scale = expected.abs().max().clamp(min=1.0)
        if not torch.allclose(actual, expected, atol=1e-3 * float(scale), rtol=1e-3):
            raise ValueError(
                f"{type(self.model).__name__}'s logits are not its output head applied to its decoder's last hidden "
                "state, so the chunked entropy scorer cannot reproduce them. Use a standard causal language model."
            )

    def hidden_states(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """The decoder's last hidden states of right-padded `rows` (batch, longest row, hidden size)."""
        width = max(len(r) for r in rows)
        input_ids = torch.zeros((len(rows), width), dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, row in enumerate(rows):  # right padding: a causal model's earlier positions never see it
            input_ids[b, : len(row)] = torch.as_tensor(row)
            attention_mask[b, : len(row)] = 1
        return self.decoder(
            input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
        ).last_hidden_state

    @torch.inference_mode()
    def score(self, rows: list[list[int]], wanted: list[range]) -> list[np.ndarray]:
        """Entropy at hidden index i predicting token i + 1, for i in `wanted[row]`, for each row of token ids."""
        hidden = self.hidden_states(rows)
        width = hidden.shape[1]
        flat_index = torch.tensor([b * width + i for b, indices in enumerate(wanted) for i in indices])
        flat_hidden = hidden.reshape(-1, hidden.shape[-1])
        values = torch.empty(len(flat_index), dtype=torch.float64)
        for chunk_start in range(0, len(flat_index), self.position_chunk_size):
            chunk = flat_index[chunk_start : chunk_start + self.position_chunk_size].to(self.device)
            # Through a method, so that this chunk's logits are gone before the next chunk's exist.
            values[chunk_start : chunk_start + len(chunk)] = self.entropies(flat_hidden.index_select(0, chunk))
        return np.split(values.numpy(), list(accumulate(len(w) for w in wanted))[:-1])
