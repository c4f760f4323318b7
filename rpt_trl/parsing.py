r"""Pure string -> answer: pull the next-token prediction out of a completion.

The rule (RPT paper, Section 3.2; brace handling is this project's choice, the paper is silent):

- The prediction is the full content of the **last complete** `\boxed{...}` that follows `</think>`
  (the first `</think>` of the completion). Content is verbatim: leading and trailing spaces are kept.
- The box closes at the brace that balances its opening brace, so nested braces survive:
  `\boxed{\frac{a}{b}}` gives `\frac{a}{b}`.
- Escaped braces `\{` and `\}` and the escaped backslash `\\` do not count towards the balance; they are kept
  verbatim, as LaTeX writes them.
- A box that never closes is not an answer. When no box closes, the prediction is `None`.

Consequence: a ground-truth continuation whose every token-aligned prefix has unbalanced bare braces (a lone `}`
token, say) cannot be written inside a box. [`can_be_boxed`] tells which strings can; the dataset builder uses it
to skip (and count) positions that no answer could ever score.

The scan is one left-to-right pass of a regular expression made of fixed alternatives (no backtracking) with O(1)
work per brace and one slice at the end, so it runs in time linear in the length of the completion.
[`AnswerBoxTracker`] runs the same scan incrementally, for a generation loop that learns the completion token by
token (the answer-stop logits processor).
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any


THINK_CLOSE = "</think>"
BOX_OPEN = "\\boxed{"

# Order matters: an escaped backslash must be consumed before it can escape a brace.
_BRACE_EVENTS = re.compile(r"\\\\|\\[{}]|\\boxed\{|[{}]")
# Outside every box only the next box matters. The scan consumes a run of backslashes in pairs from its start, so
# `\boxed{` opens a box exactly when an odd run of backslashes ends in it (`\\boxed{` is an escape, then text).
_NEXT_BOX = re.compile(r"(?<!\\)(?:\\\\)*\\boxed\{")
# A backslash followed by a proper prefix of `boxed{` at the very end of the text seen so far.
_TRAILING_BOX_PREFIX = re.compile(r"\\(?:b(?:o(?:x(?:e(?:d)?)?)?)?)?\Z")


def completion_text(completion: str | Sequence[Mapping[str, Any]]) -> str:
    """Return the text of a completion, standard (a string) or conversational (a list of message dicts).

    For a conversational completion the text contents of the messages are concatenated in order; content given as a
    list of typed parts contributes its `"text"` parts.

    Args:
        completion: A string, or a list of messages such as `[{"role": "assistant", "content": "..."}]`.

    Raises:
        TypeError: If `completion` is neither.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence):
        parts = []
        for message in completion:
            if not isinstance(message, Mapping):
                raise TypeError(f"A conversational completion must be a list of message dicts, got {message!r}.")
            content = message.get("content") or ""
            if isinstance(content, str):
                parts.append(content)
            else:
                parts.extend(part.get("text", "") for part in content if part.get("type") == "text")
        return "".join(parts)
    raise TypeError(f"A completion must be a string or a list of message dicts, got {type(completion).__name__}.")


def split_thought(completion: str | Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """Split a completion at its first `</think>`: the thought before it, and the text after it.

    This is the one definition of "the thought" used wherever reasoning is measured (reward metrics, evaluation,
    reasoning-pattern counts).

    Args:
        completion: A string or a TRL conversational completion (list of message dicts).

    Returns:
        `(thought, answer_part)`; without `</think>` the whole completion is the thought and `answer_part` is `None`.

    Example:
        >>> split_thought("<think>a size fits</think> The answer.")
        ('<think>a size fits', ' The answer.')
        >>> split_thought("still thinking")
        ('still thinking', None)
    """
    text = completion_text(completion)
    think_close = text.find(THINK_CLOSE)
    if think_close < 0:
        return text, None
    return text[:think_close], text[think_close + len(THINK_CLOSE) :]


def extract_prediction(
    completion: str | Sequence[Mapping[str, Any]], *, require_think_close: bool = True, think_close: int | None = None
) -> str | None:
    r"""Extract the next-token prediction from a completion.

    Args:
        completion: The policy's completion, a string or a TRL conversational completion (list of message dicts).
        require_think_close: If `True` (the paper's format), only boxes after `</think>` count, and a completion
            without `</think>` has no prediction. If `False`, boxes count from `</think>` when it is present and
            from the start of the completion otherwise.
        think_close: Where the first `</think>` starts in the completion's text (-1: nowhere), when the caller has
            searched for it already (a reward that also counts the thought's tokens); searched for when `None`.

    Returns:
        The verbatim content of the last complete `\boxed{}` after `</think>`, or `None` when there is none.

    Example:
        >>> extract_prediction("<think>a size fits</think> The next token is \\boxed{ size}.")
        ' size'
        >>> extract_prediction("</think> \\boxed{\\frac{a}{b}}")
        '\\frac{a}{b}'
        >>> extract_prediction("\\boxed{ size}") is None
        True
    """
    text = completion_text(completion)
    span = prediction_span(text, require_think_close=require_think_close, think_close=think_close)
    if span is None:
        return None
    # One slice at the end: slicing at every closing brace would copy nested boxes again and again (quadratic).
    return text[span[0] : span[1]]


def prediction_span(
    text: str, *, require_think_close: bool = True, think_close: int | None = None
) -> tuple[int, int] | None:
    r"""Where [`extract_prediction`]'s answer lies in `text`: `(start, end)` character offsets of the content of the
    last complete `\boxed{}` after `</think>`, or `None` when there is no answer. `think_close` is as for
    [`extract_prediction`].

    Example:
        >>> prediction_span("</think> \\boxed{ size}")
        (16, 21)
    """
    if think_close is None:
        think_close = text.find(THINK_CLOSE)
    if think_close >= 0:
        start = think_close + len(THINK_CLOSE)
    elif require_think_close:
        return None
    else:
        start = 0
    balance = _BoxBalance()
    balance.scan(text, start)
    return balance.last_box


class _BoxBalance:
    r"""The state of a left-to-right brace scan: the open `\boxed{` boxes and the last box that closed.

    Each open box remembers where its content starts and how many plain braces were open around it, so the state is
    one counter plus one entry per open box, and each brace inside a box costs O(1); text outside every box is
    skipped by one regular-expression search for the next box. The scan can go on over more text later
    ([`AnswerBoxTracker`]) as long as the caller never splits an escape or a `\boxed{` between two calls.
    """

    __slots__ = ("last_box", "_plain_depth", "_open_boxes")

    def __init__(self) -> None:
        self.last_box: tuple[int, int] | None = None  # (start, end) of the last closed box's content
        self._plain_depth = 0  # plain braces open inside the innermost open box (or outside every box)
        self._open_boxes: list[tuple[int, int]] = []  # (content start, plain depth around the box), innermost last

    def scan(self, text: str, start: int = 0) -> None:
        """Consume the brace events of `text[start:]`; positions in `last_box` are indices into `text`.

        `start` must not split a run of backslashes (the scan pairs them from the run's start).
        """
        plain_depth, open_boxes = self._plain_depth, self._open_boxes
        position = start
        while True:
            if not open_boxes:  # plain braces outside every box change nothing: jump to the next box
                box = _NEXT_BOX.search(text, position)
                if box is None:
                    break
                open_boxes.append((box.end(), 0))
                plain_depth, position = 0, box.end()
            for event in _BRACE_EVENTS.finditer(text, position):
                token = event.group()
                if token == "{":
                    plain_depth += 1
                elif token == "}":
                    if plain_depth:
                        plain_depth -= 1
                    else:  # this brace balances the innermost box's opening brace
                        content_start, plain_depth = open_boxes.pop()
                        self.last_box = (content_start, event.start())
                        if not open_boxes:
                            position = event.end()
                            break
                elif token == BOX_OPEN:
                    open_boxes.append((event.end(), plain_depth))
                    plain_depth = 0
                # escaped braces and backslashes are text
            else:
                break
        self._plain_depth = plain_depth


class AnswerBoxTracker:
    r"""Incremental detector of a complete answer: fed a completion piece by piece, it says (in amortised linear
    time overall) whether a balanced `\boxed{...}` has closed (after `</think>` when require_think_close).

    After any sequence of [`feed`] calls, `closed` equals `extract_prediction(all_text_fed, require_think_close=...)
    is not None`, however the text was split: pieces may cut `</think>`, `\boxed{` or an escape anywhere. The
    tracker holds back at most the last few characters that could still become one of those, so each character is
    scanned a bounded number of times.

    With `require_think_close=True` the verdict never goes back to `False`. With `False`, as in
    [`extract_prediction`], a `</think>` that arrives after a closed box restarts the search after it.

    Args:
        require_think_close: As in [`extract_prediction`].

    Example:
        >>> tracker = AnswerBoxTracker()
        >>> [tracker.feed(piece) for piece in ["<think>x</thi", "nk> \\box", "ed{ si", "ze}"]]
        [False, False, False, True]
    """

    def __init__(self, *, require_think_close: bool = True):
        self.require_think_close = require_think_close
        self._think_closed = False
        self._think_tail = ""  # the last characters before `</think>` was found, which may start it
        self._pending = ""  # held-back text that may start an escape or `\boxed{`
        self._balance = _BoxBalance()

    @property
    def closed(self) -> bool:
        """Whether the text fed so far holds a complete answer."""
        return (self._think_closed or not self.require_think_close) and self._balance.last_box is not None

    def feed(self, text: str) -> bool:
        """Append `text` to the completion.

        Args:
            text: The next piece of the completion (any length, any split).

        Returns:
            `closed` after this piece.
        """
        if not self._think_closed:
            searched = self._think_tail + text
            found = searched.find(THINK_CLOSE)
            if found < 0:
                self._think_tail = searched[-(len(THINK_CLOSE) - 1) :]
                if not self.require_think_close:
                    self._scan(text)
                return self.closed
            # Boxes before the first `</think>` never count once it is there: start over after it.
            self._think_closed = True
            self._think_tail = ""
            self._pending = ""
            self._balance = _BoxBalance()
            text = searched[found + len(THINK_CLOSE) :]
        if self._balance.last_box is None:  # once a box has closed after `</think>`, nothing can undo it
            self._scan(text)
        return self.closed

    def _scan(self, text: str) -> None:
        buffer = self._pending + text
        self._balance.scan(buffer)
        # A trailing unpaired backslash, alone or followed by `b`, `bo`, ... `boxed`, holds no event yet, but more
        # text may turn it into an escape or a box: keep it back for the next piece. Backslashes pair from the start
        # of their run, and a run never reaches back past this buffer (a held-back backslash is in it).
        tail = _TRAILING_BOX_PREFIX.search(buffer, max(0, len(buffer) - len(BOX_OPEN) + 1))
        if tail is None:
            self._pending = ""
            return
        run_start = tail.start()
        while run_start > 0 and buffer[run_start - 1] == "\\":
            run_start -= 1
        self._pending = buffer[tail.start() :] if (tail.start() - run_start) % 2 == 0 else ""


def can_be_boxed(answer: str) -> bool:
    r"""Whether `answer` survives the round trip `\boxed{answer}` -> [`extract_prediction`] unchanged.

    It is `False` for strings whose bare braces do not balance (`"}"`, `"}{"`, `"{"`) and for strings that end in
    an odd backslash (which would escape the closing brace). No completion can earn reward for such an answer.

    Example:
        >>> can_be_boxed(" size"), can_be_boxed("\\frac{"), can_be_boxed("\\frac{a}")
        (True, False, True)
    """
    return extract_prediction(f"{THINK_CLOSE}{BOX_OPEN}{answer}}}") == answer
