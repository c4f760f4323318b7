r"""Prompt templates: how a context becomes a next-token reasoning prompt.

A template is a string with a `{context}` placeholder. It is filled with `str.replace`, not `str.format`, so the
braces of `\boxed{}` in a template need no escaping. Named templates:

- `"v0"`: the paper's template v0, verbatim (paper, Section 3.3 and Appendix). Used for all its main experiments.
- `"few_shot"`: this project's few-shot template, in the spirit of the paper's v6 (few-shot scored best on initial
  performance, Random@1 6.0 / Pass@8 19.0 vs 3.0 / 8.5 for v0). Its examples are varied (words, punctuation,
  numbers, a newline, LaTeX), the thoughts are short, and it states the brace rule of [`extract_prediction`]. It
  ends with `<think>`, so a base model continues inside the thought: use it with `prompt_format="text"`.
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
    "Predict the next token of each text. Think in a few words, then write </think> and the token in \\boxed{}. "
    "Keep a leading space if the token has one. Braces inside \\boxed{} must balance.\n"
    "\n"
    "Text: The cat sat on the\n"
    "<think>A place to sit comes next.</think> \\boxed{ mat}\n"
    "\n"
    "Text: Step 1: 12 + 30 = 42.\n"
    "Step 2: 42 \\times 2 =\n"
    "<think>42 times 2 is 84.</think> \\boxed{ 84}\n"
    "\n"
    "Text: First, we simplify the fraction\n"
    "<think>A formula or a colon follows.</think> \\boxed{:}\n"
    "\n"
    "Text: The area is $\\frac{1}{2}\n"
    "<think>The base times height follows.</think> \\boxed{ b}\n"
    "\n"
    "Text: Hello, how are\n"
    "<think>A common greeting.</think> \\boxed{ you}\n"
    "\n"
    "Text: {context}\n"
    "<think>"
)

TEMPLATES: dict[str, str] = {"v0": TEMPLATE_V0, "few_shot": TEMPLATE_FEW_SHOT}


def resolve_template(template: str) -> str:
    """Return the template text for a template name or a custom template string.

    Args:
        template: A name from `TEMPLATES` (`"v0"`, `"few_shot"`) or any string containing `{context}`.

    Raises:
        ValueError: If `template` is neither.
    """
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
