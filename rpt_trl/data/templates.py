r"""Prompt templates: how a context becomes a next-token reasoning prompt.

A template is a string with a `{context}` placeholder. It is filled with `str.replace`, not `str.format`, so the
braces of `\boxed{}` in a template need no escaping. Named templates:

- `"v0"`: the paper's template v0, verbatim (paper, Section 3.3 and Appendix). Used for all its main experiments.
- `"few_shot"`: this project's few-shot template, in the spirit of the paper's v6 (few-shot scored best on initial
  performance, Random@1 6.0 / Pass@8 19.0 vs 3.0 / 8.5 for v0). Its examples are varied (words, punctuation,
  numbers, a newline, LaTeX), the thoughts are short ("Next comes ..."), the context is quoted (which made a
  270M base model follow the format far more often in our probe), and it states the brace rule of
  [`extract_prediction`]. It ends with `<think>`, so a base model continues inside the thought: use it with
  `prompt_format="text"`.
- `"information_gain"`: the template of the information-gain reward (after RLP, arXiv 2510.01265): the context
  itself, then `<think>`. The policy thinks, closes with `</think>`, and the document goes on; the reward scores the
  real next token right after `</think>`, against a reference that reads the context alone (the prompt without its
  trailing `<think>`). No instruction and no box: the model keeps its own way of thinking. Use it with
  `prompt_format="text"` and `reward="information_gain"`.
- `"copy_word"`: for positions whose next token is a word of the context (`position_filter="word_in_context"`), for
  small base models: five examples from everyday prose whose answers are words of their own contexts, each with the
  one fixed thought "Copy the word that fits.", as in `rpt-trl demo`'s template (a 270M base model answered in this
  form in every completion, where richer thoughts were parroted). Use it with `prompt_format="text"`.
"""

CONTEXT_PLACEHOLDER = "{context}"

TEMPLATE_V0 = (
    "Complete the given text under '### Context' by predicting the next token, and wrap it in '\\boxed{}'. "
    "Please reason step by step to find the most probable next token as the final answer, and enclose it in "
    "\\boxed{} (note: the token may begin with a space, e.g., \\boxed{ para} or \\boxed{ =}; do not use \\text{}).\n"
    "### Context\n"
    "{context}"
)

TEMPLATE_FEW_SHOT = (
    "Predict the next token of the text. Think in a few words, then give the token in \\boxed{}. Keep a leading "
    "space if the token has one; braces inside \\boxed{} must balance.\n"
    "\n"
    'Text: "The cat sat on the"\n'
    "<think>Next comes a place.</think> \\boxed{ mat}\n"
    "\n"
    'Text: "Step 1: We add 12 and 30 to get"\n'
    "<think>Next comes the sum, 42.</think> \\boxed{ 42}\n"
    "\n"
    'Text: "She opened the door and said, \\"Hello"\n'
    "<think>Next comes a comma.</think> \\boxed{,}\n"
    "\n"
    'Text: "Step 2: He now has 15 - 7 = 8"\n'
    "<think>Next comes a period.</think> \\boxed{.}\n"
    "\n"
    'Text: "The area is $\\frac{1}{2}"\n'
    "<think>Next comes the base.</think> \\boxed{ b}\n"
    "\n"
    'Text: "We solve for x by dividing both"\n'
    "<think>Next comes the word sides.</think> \\boxed{ sides}\n"
    "\n"
    'Text: "Step 1: The price is $20.\n"\n'
    "<think>Next comes a new step.</think> \\boxed{Step}\n"
    "\n"
    'Text: "{context}"\n'
    "<think>"
)

TEMPLATE_INFORMATION_GAIN = "{context}<think>"

# Positions whose answer is a word the context already holds (`position_filter="word_in_context"`): the examples'
# answers are words of their own contexts, and the thought is one fixed short line, as in the demo's own template.
COPY_WORD_EXAMPLES = [
    ("The cat sat on the mat. Then the cat", " sat"),
    ("Ana has 7 pencils and buys 3 more. How many", " pencils"),
    ("The river rose all night, and by morning the", " river"),
    ("Add the sugar to the flour, then stir the sugar into the", " flour"),
    ("Mia shares 12 books among 3 friends. Each", " friend"),
]


def copy_word_template(examples: list[tuple[str, str]]) -> str:
    """A few-shot template whose examples answer a word of their own context, each after the one fixed thought
    "Copy the word that fits.": `"copy_word"` with everyday prose, and `rpt-trl demo`'s with arithmetic."""
    shots = "".join(
        f'Text: "{context}"\n<think>Copy the word that fits.</think> \\boxed{{{answer}}}\n\n'
        for context, answer in examples
    )
    return (
        "Predict the next token of the text. Think in a few words, then give the token in \\boxed{}. Keep a leading "
        "space if the token has one; braces inside \\boxed{} must balance.\n\n" + shots + 'Text: "{context}"\n<think>'
    )


TEMPLATE_COPY_WORD = copy_word_template(COPY_WORD_EXAMPLES)

TEMPLATES: dict[str, str] = {
    "v0": TEMPLATE_V0,
    "few_shot": TEMPLATE_FEW_SHOT,
    "information_gain": TEMPLATE_INFORMATION_GAIN,
    "copy_word": TEMPLATE_COPY_WORD,
}


def resolve_template(template: str) -> str:
    """Return the template text for a template name or a custom template string.

    Args:
        template: A name from `TEMPLATES` (`"v0"`, `"few_shot"`, `"information_gain"`) or any string containing `{context}`.

    Raises:
        ValueError: If `template` is neither.
    """
    if not isinstance(template, str):
        raise ValueError(
            f"A prompt template must be one of {sorted(TEMPLATES)} or a string containing '{CONTEXT_PLACEHOLDER}', "
            f"got {type(template).__name__} {template!r}."
        )
    if template in TEMPLATES:
        return TEMPLATES[template]
    if CONTEXT_PLACEHOLDER not in template:
        raise ValueError(
            f"A prompt template must be one of {sorted(TEMPLATES)} or a string containing '{CONTEXT_PLACEHOLDER}', "
            f"got {template[:80]!r}."
        )
    return template


def render_prompt(template: str, context: str) -> str:
    r"""Fill a template (a name or a custom string) with a context.

    Example:
        >>> render_prompt("### Context\n{context}", "x = {1, 2}")
        '### Context\nx = {1, 2}'
    """
    return resolve_template(template).replace(CONTEXT_PLACEHOLDER, context)


def template_context(text: str, template: str) -> str | None:
    """The context that `template` (a name or a string) was filled with to give `text`; `None` when `text` does not
    follow the template.

    Example:
        >>> template_context('Text: "the cat"', 'Text: "{context}"'), template_context("the cat", 'Text: "{context}"')
        ('the cat', None)
    """
    template = resolve_template(template)
    before = template[: template.index(CONTEXT_PLACEHOLDER)]
    after = template[template.rindex(CONTEXT_PLACEHOLDER) + len(CONTEXT_PLACEHOLDER) :]
    if len(text) < len(before) + len(after) or not (text.startswith(before) and text.endswith(after)):
        return None
    return text[len(before) : len(text) - len(after)]


def template_worked_answer(template: str) -> str | None:
    """What every worked example of the template writes after `<think>` up to its answer: the one thought they share,
    the closing tag and the box's opening. `None` for a template (a name or a string) without worked examples, whose
    examples think differently (`"few_shot"`), or whose prompts do not end inside `<think>`.

    Example:
        >>> template_worked_answer("copy_word")
        'Copy the word that fits.</think> \\\\boxed{'
    """
    text = resolve_template(template)
    head = text[: text.index(CONTEXT_PLACEHOLDER)]
    worked = {
        part.split("\\boxed{")[0] + "\\boxed{"
        for part in head.split("<think>")[1:]
        if "</think>" in part.split("\\boxed{")[0] and "\\boxed{" in part
    }
    if len(worked) != 1 or not text.endswith("<think>"):
        return None
    return worked.pop()
