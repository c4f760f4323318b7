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
"""

import re
import weakref
from collections.abc import Sequence
from typing import Any

from ..parsing import THINK_CLOSE


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
        self.tag_follow, self.tag_offset, self.tag_first = self._tag_pattern(tokenizer)

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
        return found

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
    tail_text = text[think_close:]  # the answer part: short, and ASCII even where the thought is not
    tail = len(tail_text) if tail_text.isascii() else len(tail_text.encode("utf-8"))
    follow, offset = table.tag_follow, table.tag_offset
    # The ids that follow the tag's first token, searched for in C: every token adds a byte at least, so the first
    # tag starts within the last `tail` ids (and an EOS or two). With one tag in the text it is the only match, and
    # the answer's tokens hold about three bytes: look there first, as each id looked at is a memory access.
    if not follow:
        windows = ()
    elif tail_text.find(THINK_CLOSE, 1) < 0:
        windows = (tail // 3, tail)
    else:
        windows = (tail,)
    for window in windows:
        try:
            follows = ids.index(follow[0], max(offset, len(ids) - window - 4))
        except (ValueError, AttributeError):
            continue
        if ids[follows : follows + len(follow)] == follow:
            first = table.pieces.get(ids[follows - offset])
            if first is not None and first.endswith(table.tag_first):
                start, thought_part = follows - offset, len(first) - len(table.tag_first)
                break
    else:  # not found so (or ids not read yet): sum the bytes of the tokens from the end
        found = _tag_start_by_bytes(tail, ids, table)
        if found is None:
            return None
        start, thought_part = found
    # `thought_part`: the bytes of the thought in the token that holds the start of the tag.
    if thought_part and not think_close:  # a leading space that the decoder strips at the start of the text
        return None
    return start + 1 if thought_part else start


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
