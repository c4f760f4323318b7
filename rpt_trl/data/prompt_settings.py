r"""Prompt settings against prompts that already exist: honoured, or refused (or warned about) before training.

`prompt_template`, `prompt_format` and the position settings build prompts from raw documents. A dataset that
already has a `prompt` column (a `rpt-trl prepare` output) keeps its own prompts, so a setting that differs would be
silently ignored, and a reward could train on prompts written for another one (`information_gain` on the boxed v0
prompts). Which template built a dataset is read from the prompts themselves, so that it works for every source
(a saved folder, the Hub, an in-memory dataset): a prompt built with a template starts with the template's text before
`{context}` and ends with its text after it. The named templates are recognised the same way, the most specific
first; `information_gain`'s (`{context}<think>`) only when no prompt carries the `\boxed{}` instruction that the boxed
templates give.

What is refused and what is warned about:

- a prompt template or format that the prompts were not built with: refused when the setting differs from its
  default (the user chose it), warned about when it is the default (nobody chose it);
- a reward against the template of the prompts: `information_gain` on prompts of a boxed template (`v0`,
  `few_shot`), and a boxed reward on `information_gain` prompts, which ask for no box: always refused;
- the position settings (`max_context_tokens`, ...), which prompts do not record: warned about when not the default.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import fields
from itertools import islice
from typing import Any

import datasets

from .builder import NextTokenSettings
from .templates import (
    TEMPLATE_FEW_SHOT,
    TEMPLATE_V0,
    TEMPLATES,
    resolve_template,
    template_context,
)


logger = logging.getLogger(__name__)

# Prompts that are compared with the template: one template builds all of a dataset's prompts.
PROMPTS_CHECKED = 32
# Most specific first: the few-shot prompts also end with `<think>`, like the information-gain ones.
RECOGNITION_ORDER = ("few_shot", "v0", "information_gain")
BOXED_TEMPLATES = {"v0": TEMPLATE_V0, "few_shot": TEMPLATE_FEW_SHOT}
# Settings that shape examples built from documents and that prompts do not show.
POSITION_SETTINGS = (
    "position_stride",
    "min_context_tokens",
    "max_context_tokens",
    "max_ground_truth_tokens",
    "skip_unanswerable_positions",
    "position_filter",
)
# Settings added after `rpt-trl prepare` first recorded its settings: a dataset that does not record one was built as
# its default builds now.
_RECORDED_SINCE = {"position_filter": "all"}
_BOX_INSTRUCTION = "\\boxed{}"
INFO_FILE = "prepare_info.json"  # what `rpt-trl prepare` records beside the splits


def prompt_text(prompt: Any) -> str | None:
    """The text of a prompt: a string as is, a conversation's last message's content; `None` for anything else."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        content = prompt[-1].get("content")
        return content if isinstance(content, str) else None
    return None


def matches_template(text: str, template: str) -> bool:
    """Whether `text` can be `template` (a name or a string) filled with some context.

    >>> matches_template("Hello world<think>", "information_gain"), matches_template("Hello", "information_gain")
    (True, False)
    """
    return template_context(text, template) is not None


def recognise_template(texts: Sequence[str]) -> str | None:
    """The named template (`"few_shot"`, `"v0"`, `"information_gain"`) that built every one of `texts`, or `None`."""
    if not texts:
        return None
    for name in RECOGNITION_ORDER:
        if all(matches_template(text, name) for text in texts):
            if name == "information_gain" and any(_BOX_INSTRUCTION in text for text in texts):
                continue
            return name
    return None


def check_reward_template(reward: str, prompt_template: str) -> None:
    """Refuse a reward with a template whose prompts it cannot score (the config's own settings, before any data).

    Args:
        reward: The reward's name (`RPTConfig.reward`).
        prompt_template: A template name or string.
    """
    template = resolve_template(prompt_template)
    if reward == "information_gain" and template in BOXED_TEMPLATES.values():
        raise ValueError(
            f"reward='information_gain' scores the real next token after </think>, but prompt_template="
            f"{prompt_template!r} asks for a boxed answer: set prompt_template='information_gain' and "
            "prompt_format='text' (and build the dataset with them)."
        )
    if reward != "information_gain" and template == TEMPLATES["information_gain"]:
        raise ValueError(
            f"reward={reward!r} scores the answer in \\boxed{{}}, but prompt_template='information_gain' asks for no "
            "box: use reward='information_gain', or a boxed template (prompt_template='v0' or 'few_shot')."
        )


def _sample_prompts(dataset: Any) -> list[Any]:
    if isinstance(dataset, datasets.Dataset):
        return dataset[:PROMPTS_CHECKED]["prompt"] if "prompt" in dataset.column_names else []
    rows = (
        islice(dataset, PROMPTS_CHECKED)
        if isinstance(dataset, datasets.IterableDataset)
        else dataset[:PROMPTS_CHECKED]
    )
    return [row["prompt"] for row in rows if isinstance(row, dict) and "prompt" in row]


def check_prompt_settings(dataset: Any, settings: NextTokenSettings, name: str, *, reward: str | None = None) -> None:
    """Refuse (or warn about) prompt settings that `dataset`'s existing prompts do not follow (module docstring).

    Args:
        dataset: Examples with a `prompt` column (a `Dataset`, an `IterableDataset` or a list of rows); the first
            `PROMPTS_CHECKED` prompts are compared.
        settings: The run's settings (an `RPTConfig` is one).
        name: How the message names the dataset (`"train_dataset"`).
        reward: The reward's name, to refuse prompts built for another reward's template; `None` skips that check.

    Raises:
        ValueError: One line naming the setting, what the prompts are, and how to fix it.

    Example:
        >>> rows = [{"prompt": "Complete the given text under '### Context' ..."}]
        >>> check_prompt_settings(rows, NextTokenSettings(prompt_template="information_gain", prompt_format="text"),
        ...                       "train_dataset")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: train_dataset's prompts (row 0) were not built with prompt_template='information_gain'; ...
    """
    prompts = _sample_prompts(dataset)
    texts = [prompt_text(prompt) for prompt in prompts]
    if not prompts or any(text is None for text in texts):
        return  # the column check names a prompt of another type
    defaults = NextTokenSettings()
    recognised = recognise_template(texts)
    fix = "the dataset already has prompts, so the setting is not used: rebuild it (rpt-trl prepare) with the setting,"
    kind = "text" if isinstance(prompts[0], str) else "conversational"
    if kind != settings.prompt_format:
        message = (
            f"{name}'s prompts are {kind}, not prompt_format={settings.prompt_format!r}; {fix} or set "
            f"prompt_format={kind!r}."
        )
        _refuse_or_warn(settings.prompt_format != defaults.prompt_format, message)
    unmatched = next((i for i, text in enumerate(texts) if not matches_template(text, settings.prompt_template)), None)
    if unmatched is not None:
        built = f", but with prompt_template={recognised!r}" if recognised else ""
        use = repr(recognised) if recognised else "the template they were built with"
        message = (
            f"{name}'s prompts (row {unmatched}) were not built with prompt_template={_shown(settings.prompt_template)}"
            f"{built}; {fix} or set prompt_template to {use}."
        )
        _refuse_or_warn(settings.prompt_template != defaults.prompt_template, message)
    if reward is not None and recognised is not None:
        _check_reward_prompts(reward, recognised, name)
    changed = [f.name for f in fields(NextTokenSettings) if f.name in POSITION_SETTINGS]
    changed = [n for n in changed if getattr(settings, n) != getattr(defaults, n)]
    if changed:
        logger.warning(
            "%s shape(s) examples built from raw documents; %s already has prompts, so they are not used. Rebuild the "
            "dataset with them (rpt-trl prepare), or drop them.",
            ", ".join(f"{n}={getattr(settings, n)!r}" for n in changed),
            name,
        )


def _shown(template: str) -> str:
    return (
        repr(template) if template in TEMPLATES else f"{template[:40]!r}..." if len(template) > 40 else repr(template)
    )


def _value(value: Any) -> str:
    return _shown(value) if isinstance(value, str) else repr(value)


def _refuse_or_warn(refuse: bool, message: str) -> None:
    if refuse:
        raise ValueError(message)
    logger.warning(message)


def _check_reward_prompts(reward: str, recognised: str, name: str) -> None:
    if reward == "information_gain" and recognised in BOXED_TEMPLATES:
        raise ValueError(
            f"reward='information_gain' cannot train on {name}: its prompts were built with prompt_template="
            f"{recognised!r}, which asks for a boxed answer. Rebuild it with rpt-trl prepare --prompt_template "
            "information_gain --prompt_format text."
        )
    if reward != "information_gain" and recognised == "information_gain":
        raise ValueError(
            f"reward={reward!r} scores the answer in \\boxed{{}}, but {name}'s prompts were built with "
            "prompt_template='information_gain', which asks for no box: use reward='information_gain', or rebuild "
            "the dataset with a boxed template (--prompt_template v0)."
        )


def check_recorded_settings(recorded: Mapping[str, Any], settings: NextTokenSettings, source: str) -> None:
    """Refuse a chosen (not default) setting that differs from the one a prepared dataset records it was built with.

    Args:
        recorded: The `settings` of the dataset's `prepare_info.json` (what `rpt-trl prepare` used).
        settings: The run's settings.
        source: The dataset, as the message names it.

    Example:
        >>> recorded = {"max_context_tokens": 3840}
        >>> check_recorded_settings(recorded, NextTokenSettings(max_context_tokens=1024), "data")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: max_context_tokens=1024, but data was prepared with max_context_tokens=3840 (its ...
    """
    defaults = NextTokenSettings()
    recorded = {**_RECORDED_SINCE, **recorded}
    for name in ("prompt_template", "prompt_format", *POSITION_SETTINGS):
        chosen, default = getattr(settings, name), getattr(defaults, name)
        if name in recorded and chosen != default and chosen != recorded[name]:
            raise ValueError(
                f"{name}={_value(chosen)}, but {source} was prepared with {name}={_value(recorded[name])} (its "
                f"{INFO_FILE}): rebuild it with rpt-trl prepare --{name} {chosen}, or drop the setting."
            )
