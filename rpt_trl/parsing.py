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

The scan is one left-to-right pass of a regular expression made of fixed alternatives (no backtracking), so it
runs in time linear in the length of the completion.
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any


THINK_CLOSE = "</think>"
BOX_OPEN = "\\boxed{"

# Order matters: an escaped backslash must be consumed before it can escape a brace.
_BRACE_EVENTS = re.compile(r"\\\\|\\[{}]|\\boxed\{|[{}]")


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
    completion: str | Sequence[Mapping[str, Any]], *, require_think_close: bool = True
) -> str | None:
    r"""Extract the next-token prediction from a completion.

    Args:
        completion: The policy's completion, a string or a TRL conversational completion (list of message dicts).
        require_think_close: If `True` (the paper's format), only boxes after `</think>` count, and a completion
            without `</think>` has no prediction. If `False`, boxes count from `</think>` when it is present and
            from the start of the completion otherwise.

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
    think_close = text.find(THINK_CLOSE)
    if think_close >= 0:
        start = think_close + len(THINK_CLOSE)
    elif require_think_close:
        return None
    else:
        start = 0

    # Each open brace pushes the index where its box content starts, or -1 for a plain brace.
    open_braces: list[int] = []
    prediction = None
    for event in _BRACE_EVENTS.finditer(text, start):
        token = event.group()
        if token == "{":
            open_braces.append(-1)
        elif token == "}":
            if open_braces:  # an unmatched closing brace outside any box is just text
                content_start = open_braces.pop()
                if content_start >= 0:
                    prediction = text[content_start : event.start()]
        elif token == BOX_OPEN:
            open_braces.append(event.end())
        # escaped braces and backslashes are text
    return prediction


def can_be_boxed(answer: str) -> bool:
    r"""Whether `answer` survives the round trip `\boxed{answer}` -> [`extract_prediction`] unchanged.

    It is `False` for strings whose bare braces do not balance (`"}"`, `"}{"`, `"{"`) and for strings that end in
    an odd backslash (which would escape the closing brace). No completion can earn reward for such an answer.

    Example:
        >>> can_be_boxed(" size"), can_be_boxed("\\frac{"), can_be_boxed("\\frac{a}")
        (True, False, True)
    """
    return extract_prediction(f"{THINK_CLOSE}{BOX_OPEN}{answer}}}") == answer
