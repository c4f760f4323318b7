"""A thought's length in tokens, read from the completion ids that TRL passes to every reward.

The thought is the text before the first `</think>` ([`split_thought`]). Its tokens are the completion's tokens up
to the one that holds the first character of `</think>`; that token counts too when it also holds characters of the
thought, as SentencePiece tokenizers merge them (Gemma 3: `.</`, ` </`, `)</`, `}</`). So a thought that ends in `.`
counts the `.` once, as its own tokenisation `tokenizer(thought)` does.

The token is found from the end: the answer after `</think>` is short. Each token's UTF-8 bytes in a decoded text are
looked up in a table built once per tokenizer. The ids that follow the tag's first token (Gemma: `think`, `>`) are
searched for near the end, after a token that ends as the tag's first token does (`</`). Where they are not found,
the bytes of the tokens from the end are summed until they cover the text from `</think>` on, and the token reached
must hold the start of the tag. A completion whose text is not the decoding of its ids there (ids of another
tokenizer, a decoder that cleans up spaces) gets `None`, and its caller counts it another way.

Of the text, the count needs where the first tag starts, the bytes from there on and whether a second tag follows
([`ThinkTags`]); the reward takes them in the pass that searches each text for the tag ([`find_think_tags`]), and the
count of a batch ([`thought_tokens_in_ids`]) then reads the ids alone.
"""

import re
import weakref
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

from ..parsing import THINK_CLOSE, completion_text


_BYTE_FALLBACK_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_THINK_CLOSE_BYTES = THINK_CLOSE.encode("utf-8")


def _byte_level_alphabet() -> dict[str, int]:
    """The character that stands for each byte in a byte-level BPE vocabulary (GPT-2's scheme), mapped to the byte.

    Printable Latin-1 bytes stand for themselves; the other bytes, in order, for the characters from U+0100 on.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    alphabet = {chr(byte): byte for byte in printable}
    alphabet.update({chr(256 + index): byte for index, byte in enumerate(others)})
    return alphabet


class TokenBytes:
    """The UTF-8 bytes that each token id adds to a decoded text in the middle of a sequence, computed once per id.

    Special tokens add nothing (TRL decodes completions with `skip_special_tokens=True`). A token that decodes to part
    of a character is read as the raw byte it stands for (SentencePiece byte fallback `<0xE4>`, or a byte-level BPE
    token); one that cannot be read that way is `None`.

    Args:
        tokenizer: A Hugging Face tokenizer.
    """

    def __init__(self, tokenizer: Any):
        # Weak: the tables are kept per tokenizer in a WeakKeyDictionary, whose values must not keep their keys alive.
        self._tokenizer = weakref.ref(tokenizer)
        # The ids read so far; `None` for one that cannot be read. Indexing the table reads a missing id.
        self.pieces: dict[int, bytes | None] = dict.fromkeys(tokenizer.all_special_ids, b"")
        # Decoded after a plain letter, a token shows the leading space that SentencePiece strips at the start.
        self._anchor = tokenizer.encode("a", add_special_tokens=False)
        self._anchor_text = tokenizer.decode(self._anchor, skip_special_tokens=True)
        decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
        self._byte_level = _byte_level_alphabet() if type(decoder).__name__ == "ByteLevel" else None
        # The ids read so far that end as the tag's first token does, to the bytes before that end (the thought's
        # part of the token): one lookup where the tag is searched for, instead of reading the bytes and comparing.
        # Noted once the tag's pattern is known (finding it reads ids).
        self.tag_holders: dict[int, int] = {}
        self.tag_follow: list[int] | None = None
        self.tag_follow, self.tag_offset, self.tag_first = self._tag_pattern(tokenizer)
        for token_id, piece in self.pieces.items():
            self._note_holder(token_id, piece)

    def _tag_pattern(self, tokenizer: Any) -> tuple[list[int] | None, int, bytes]:
        """The ids that follow the first token of `</think>` (that token may hold the thought's last characters),
        1, and the bytes that first token ends with; or `[</think>'s id]`, 0 and its bytes where it is one token."""
        tag = tokenizer.encode(THINK_CLOSE, add_special_tokens=False)
        if len(tag) == 1 and self[tag[0]] == _THINK_CLOSE_BYTES:
            return tag, 0, _THINK_CLOSE_BYTES
        for split in range(1, len(tag)):  # past a leading space token that a SentencePiece dummy prefix may add
            follow_bytes = b"".join(self[token_id] or b"\0" for token_id in tag[split:])
            if len(follow_bytes) < len(_THINK_CLOSE_BYTES) and _THINK_CLOSE_BYTES.endswith(follow_bytes):
                return tag[split:], 1, _THINK_CLOSE_BYTES[: -len(follow_bytes)]
        return None, 0, b""

    def __getitem__(self, token_id: int) -> bytes | None:
        found = self.pieces.get(token_id, self)
        if found is self:
            found = self.pieces[token_id] = self._read(token_id)
            self._note_holder(token_id, found)
        return found

    def _note_holder(self, token_id: int, piece: bytes | None) -> None:
        if piece is not None and self.tag_follow and piece.endswith(self.tag_first):
            self.tag_holders[token_id] = len(piece) - len(self.tag_first)

    def _read(self, token_id: int) -> bytes | None:
        tokenizer = self._tokenizer()
        text = tokenizer.decode([*self._anchor, token_id], skip_special_tokens=True)
        if text.startswith(self._anchor_text) and "\ufffd" not in text:
            return text[len(self._anchor_text) :].encode("utf-8")
        token = tokenizer.convert_ids_to_tokens(token_id)
        byte_fallback = _BYTE_FALLBACK_TOKEN.fullmatch(token)
        if byte_fallback:
            return bytes([int(byte_fallback.group(1), 16)])
        if self._byte_level is not None and all(char in self._byte_level for char in token):
            return bytes(self._byte_level[char] for char in token)
        return None


_TABLES: "weakref.WeakKeyDictionary[Any, TokenBytes]" = weakref.WeakKeyDictionary()


def token_bytes(tokenizer: Any) -> TokenBytes:
    """The [`TokenBytes`] table of `tokenizer`, shared by every call with the same tokenizer object."""
    table = _TABLES.get(tokenizer)
    if table is None:
        table = _TABLES[tokenizer] = TokenBytes(tokenizer)
    return table


class ThinkTags(NamedTuple):
    """What the count reads of each completion's text ([`find_think_tags`]): found in the pass that searches each
    text for `</think>`, while the text is at hand, so that the count then reads the ids alone."""

    closes: list[int]
    """Where the first `</think>` starts, -1 where there is none (as [`think_close_positions`] gives)."""
    tail_bytes: list[int]
    """The UTF-8 bytes from the first `</think>` to the end of the text (0 where there is no tag)."""
    repeated: list[bool]
    """Whether another `</think>` follows the first."""


def find_think_tags(completions: Sequence[Any], think_closes: Sequence[int] | None = None) -> ThinkTags:
    """The [`ThinkTags`] of `completions` (strings or TRL conversational completions); `think_closes`: where their
    first `</think>` starts, when the caller has searched, else searched for here.

    Example:
        >>> find_think_tags(["a</think>b</think>", "<think>中</think>é", "no tag"])
        ThinkTags(closes=[1, 8, -1], tail_bytes=[17, 10, 0], repeated=[True, False, False])
    """
    closes: list[int] = []
    tail_bytes: list[int] = []
    repeated: list[bool] = []
    known = [None] * len(completions) if think_closes is None else think_closes
    for completion, think_close in zip(completions, known):
        text = completion if type(completion) is str else completion_text(completion)
        if think_close is None:
            think_close = text.find(THINK_CLOSE)
        closes.append(think_close)
        if think_close < 0:
            tail_bytes.append(0)
            repeated.append(False)
            continue
        tail_text = text[think_close:]  # the answer part: short, and ASCII even where the thought is not
        tail_bytes.append(len(tail_text) if tail_text.isascii() else len(tail_text.encode("utf-8")))
        repeated.append(tail_text.find(THINK_CLOSE, 1) >= 0)
    return ThinkTags(closes, tail_bytes, repeated)


def thought_tokens_from_ids(text: str, think_close: int, ids: Sequence[int], table: TokenBytes) -> int | None:
    """The number of thought tokens in `ids`, the token ids of `text`, whose first `</think>` starts at character
    `think_close` (see the module docstring); `None` when `text` is not the decoding of `ids` around `</think>`.

    Example:
        >>> from transformers import AutoTokenizer  # doctest: +SKIP
        >>> tokenizer = AutoTokenizer.from_pretrained("google/gemma-3-270m")  # doctest: +SKIP
        >>> text = "<think>It is 4.</think> \\boxed{4}"  # doctest: +SKIP
        >>> ids = tokenizer.encode(text, add_special_tokens=False)  # doctest: +SKIP
        >>> tokenizer.convert_ids_to_tokens(ids)[:10]  # doctest: +SKIP
        ['<', 'think', '>', 'It', '▁is', '▁', '4', '.</', 'think', '>']
        >>> thought_tokens_from_ids(text, text.find("</think>"), ids, token_bytes(tokenizer))  # doctest: +SKIP
        8
    """
    return thought_tokens_in_ids(find_think_tags([text], [think_close]), [ids], table)[0]


def thought_tokens_in_ids(
    think_tags: ThinkTags, completion_ids: Sequence[Sequence[int]], table: TokenBytes, trailing: Collection[int] = ()
) -> list[int | None]:
    """[`thought_tokens_from_ids`] for a batch, from the completions' [`ThinkTags`]: one loop over the ids, the
    table's lookups bound once (the reward's hot path).

    A completion without `</think>` is all thought: its ids count but for the `trailing` ids (EOS, padding) at their
    end.
    """
    follow, offset = table.tag_follow, table.tag_offset
    if follow:  # compared as first (found in C), last and middle ids: Gemma's have no middle, and no slice is copied
        follow_first, follow_middle, follow_last, last = follow[0], follow[1:-1], follow[-1], len(follow) - 1
    holders = table.tag_holders
    counts: list[int | None] = []
    append = counts.append
    for think_close, tail, repeated, ids in zip(*think_tags, completion_ids):
        if think_close < 0:
            append(_untrailed_length(ids, trailing))
            continue
        start = None
        # The ids that follow the tag's first token, searched for in C: every token adds a byte at least, so the first
        # tag starts within the last `tail` ids (and an EOS or two). With one tag in the text it is the only match,
        # and the answer's tokens hold about three bytes: look there first, as each id looked at is a memory access.
        if follow:
            for window in (tail,) if repeated else (tail // 3, tail):
                search_from = len(ids) - window - 4
                try:
                    follows = ids.index(follow_first, search_from if search_from > offset else offset)
                    if ids[follows + last] != follow_last:
                        continue
                except (ValueError, AttributeError, IndexError):
                    continue
                if not follow_middle or ids[follows + 1 : follows + last] == follow_middle:
                    thought_part = holders.get(ids[follows - offset])  # None: not the tag's, or not read yet
                    if thought_part is not None:
                        start = follows - offset
                        break
        if start is None:  # not found so (or ids not read yet): sum the bytes of the tokens from the end
            found = _tag_start_by_bytes(tail, ids, table)
            if found is None:
                append(None)
                continue
            start, thought_part = found
        # `thought_part`: the bytes of the thought in the token that holds the start of the tag.
        if not thought_part:
            append(start)
        else:  # a leading space that the decoder strips at the start of the text is not the thought's
            append(start + 1 if think_close else None)
    return counts


def _untrailed_length(ids: Sequence[int], trailing: Collection[int]) -> int:
    end = len(ids)
    while end and ids[end - 1] in trailing:
        end -= 1
    return end


def _tag_start_by_bytes(tail: int, ids: Sequence[int], table: TokenBytes) -> tuple[int, int] | None:
    """Where `</think>` starts in `ids` and the thought's bytes in that token, found by summing the bytes of the
    tokens from the end until they cover the `tail` bytes."""
    covered, start = 0, len(ids)
    while covered < tail and start:
        start -= 1
        piece = table[ids[start]]
        if piece is None:
            return None
        covered += len(piece)
    if covered < tail:
        return None
    tag_part = piece[covered - tail :]
    if not (_THINK_CLOSE_BYTES.startswith(tag_part) or tag_part.startswith(_THINK_CLOSE_BYTES)):
        return None
    return start, covered - tail
