"""Corpus -> prepared RPT dataset: entropy-filtered train split, difficulty-labelled eval split, card, Hub push.

`rpt-trl prepare` runs [`load_documents`], [`prepare_rpt_dataset`], [`save_prepared_dataset`] and, with
`--push-to-hub`, [`push_prepared_dataset`]. Every check that can fail (the output folder, Hub access, the input files,
the tokenizer) runs before the proxy model scores anything, and the output folder appears whole or not at all.
"""

import contextlib
import json
import logging
import math
import os
import random
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from importlib.metadata import version
from pathlib import Path
from typing import Any

import datasets

from ..atomic_io import remove, stale_temporaries, temporary_name
from ..hub.model_card import PAPER
from ..output_paths import check_output_path, output_lock
from .builder import (
    DIFFICULTY_THRESHOLDS,
    NextTokenSettings,
    build_next_token_dataset,
    check_difficulty_thresholds,
    document_texts,
    resolve_settings,
)
from .entropy import document_entropy
from .loading import load_documents
from .prompt_settings import INFO_FILE


logger = logging.getLogger(__name__)

__all__ = ["load_documents", "prepare_rpt_dataset", "push_prepared_dataset", "save_prepared_dataset"]

DATASET_CARD_TEMPLATE = "rpt_dataset_card.md"
DOCUMENTS_FILE = "documents.jsonl"
# The training entropy filter when `min_entropy` is unset, and the evaluation split's: the paper drops low-entropy
# positions without giving its threshold; 0.5 is also where its Easy split starts.
DEFAULT_MIN_ENTROPY = 0.5


def _source_ids(batch: dict[str, list], source_ids: Sequence[int]) -> dict[str, list[int]]:
    return {"document_id": [source_ids[i] for i in batch["document_id"]]}


def _difficulty_counts(dataset: datasets.Dataset, thresholds: Mapping[str, float]) -> dict[str, int]:
    labels = dataset["difficulty"] if len(dataset) else []
    return {name: sum(name in row for row in labels) for name in thresholds}


def prepare_rpt_dataset(
    documents: datasets.Dataset | Sequence[str],
    tokenizer: Any,
    proxy_model: Any,
    proxy_tokenizer: Any | None = None,
    settings: NextTokenSettings | None = None,
    *,
    eval_size: int = 200,
    eval_min_entropy: float = DEFAULT_MIN_ENTROPY,
    difficulty_thresholds: Mapping[str, float] = DIFFICULTY_THRESHOLDS,
    seed: int = 0,
    scorer_kwargs: Mapping[str, Any] | None = None,
    show_progress: bool = True,
    split_ids: Mapping[str, list[int]] | None = None,
    **setting_overrides: Any,
) -> tuple[datasets.DatasetDict, dict[str, Any]]:
    """Score a corpus with a proxy model and build the RPT train and eval splits.

    `eval_size` documents, drawn with `seed`, are held out whole for evaluation (the paper holds out 200 OmniMATH
    samples); the rest become training positions with entropy of at least `settings.min_entropy` (the paper drops
    the low-entropy positions but does not give its threshold; unset, this project's 0.5). Evaluation keeps positions
    with entropy of at least `eval_min_entropy` and labels them with the nested difficulty splits.

    Args:
        documents: The corpus (`datasets.Dataset` or list of strings).
        tokenizer: The policy's tokenizer: positions and context lengths are counted in its tokens.
        proxy_model: The scoring model (`transformers` or `vllm.LLM`).
        proxy_tokenizer: The proxy's tokenizer, if it differs from `tokenizer` (entropies are then mapped by
            character offsets; see [`align_token_values`]).
        settings: The [`NextTokenSettings`] of the examples (template, text column(s), lengths, stride, the training
            entropy filter `min_entropy`).
        eval_size: Documents held out for evaluation; 0 for no eval split.
        eval_min_entropy: Evaluation keeps positions with at least this entropy.
        difficulty_thresholds: Split name -> threshold (entropy above it), nested.
        seed: Seed of the held-out draw.
        scorer_kwargs: Arguments for [`compute_token_entropy`] (`top_k`, `batch_size`, `max_length`, `cache_dir`).
        show_progress: Progress bars.
        split_ids: The plan [`plan_splits`] returned for these arguments, when the caller already checked the input
            with it (so that it runs once); `None` plans here.
        **setting_overrides: [`NextTokenSettings`] fields by name, overriding `settings`.

    Returns:
        A `DatasetDict` with `train` (and `eval`) and a dict describing what was kept, for the dataset card.
    """
    settings = resolve_settings(settings, dict(setting_overrides))
    if settings.min_entropy is None:
        settings.min_entropy = DEFAULT_MIN_ENTROPY
    scorer_kwargs = {"show_progress": show_progress, **(scorer_kwargs or {})}
    if isinstance(documents, datasets.Dataset):
        data = documents
    else:
        data = datasets.Dataset.from_dict({"text": list(documents)})
        settings.text_column = ["text"]
    if split_ids is None:
        split_ids = plan_splits(
            data, tokenizer, settings, eval_size=eval_size, eval_min_entropy=eval_min_entropy, seed=seed
        )
    entropies = document_entropy(
        data, tokenizer, proxy_model, proxy_tokenizer, text_column=settings.text_column, **scorer_kwargs
    )
    splits, info_splits = {}, {}
    for split, ids in split_ids.items():
        min_entropy = settings.min_entropy if split == "train" else eval_min_entropy
        splits[split], info_splits[split] = _build_split(
            split, data.select(ids), ids, [entropies[i] for i in ids], tokenizer, settings, min_entropy,
            difficulty_thresholds, show_progress,
        )  # fmt: skip
    info = _prepare_info(
        settings, eval_min_entropy, eval_size, difficulty_thresholds, seed, scorer_kwargs, info_splits
    )
    return datasets.DatasetDict(splits), info


def _build_split(
    split: str,
    data: datasets.Dataset,
    ids: list[int],
    token_entropy: list[list[float]],
    tokenizer: Any,
    settings: NextTokenSettings,
    min_entropy: float,
    difficulty_thresholds: Mapping[str, float],
    show_progress: bool,
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """One split's examples from its documents `data` (`ids` in the source corpus), and what it kept."""
    dataset, stats = build_next_token_dataset(
        data,
        tokenizer,
        settings,
        token_entropy=token_entropy,
        difficulty_thresholds=difficulty_thresholds,
        show_progress=show_progress,
        return_stats=True,
        min_entropy=min_entropy,
    )
    if not len(dataset):
        option = "--min_entropy" if split == "train" else "--eval_min_entropy"
        kept = "" if settings.position_filter == "all" else f" kept by position_filter={settings.position_filter!r}"
        raise ValueError(
            f"The {split} split has no examples: no position{kept} of its {len(ids)} documents has entropy of at "
            f"least {min_entropy} ({asdict(stats)}). Lower {option}, or give more or longer documents. The entropies "
            "are cached, so a re-run with the same proxy and corpus does not score again."
        )
    # document_id is the index in the selection; point it back at the source corpus.
    dataset = dataset.map(_source_ids, batched=True, fn_kwargs={"source_ids": ids})
    split_info = {
        "documents": len(ids),
        "examples": len(dataset),
        "difficulty": _difficulty_counts(dataset, difficulty_thresholds),
        "stats": asdict(stats),
    }
    return dataset, split_info


def _prepare_info(
    settings: NextTokenSettings,
    eval_min_entropy: float,
    eval_size: int,
    difficulty_thresholds: Mapping[str, float],
    seed: int,
    scorer_kwargs: Mapping[str, Any],
    info_splits: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """What was kept and the settings it was built with, for `prepare_info.json` and the card."""
    example_settings = {k: v for k, v in asdict(settings).items() if k not in ("text_column", "min_entropy")}
    return {
        "text_column": list(settings.text_column),
        "min_entropy": settings.min_entropy,
        "eval_min_entropy": eval_min_entropy,
        "eval_documents": eval_size,
        "difficulty_thresholds": dict(difficulty_thresholds),
        "seed": seed,
        "top_k": scorer_kwargs.get("top_k", 16),
        "splits": info_splits,
        "settings": {
            **example_settings,
            **{k: v for k, v in scorer_kwargs.items() if k not in ("show_progress", "cache_dir")},
        },
    }


def plan_splits(
    data: datasets.Dataset,
    tokenizer: Any,
    settings: NextTokenSettings,
    *,
    eval_size: int = 200,
    eval_min_entropy: float = DEFAULT_MIN_ENTROPY,
    seed: int = 0,
) -> dict[str, list[int]]:
    """Check everything that can be checked without the proxy model, and draw the held-out documents.

    [`run_prepare`] calls it before the proxy loads, and [`prepare_rpt_dataset`] before the proxy scores, so that an
    empty corpus, a bad threshold, or a split whose documents are all too short fails in seconds, not after hours of
    scoring.

    Args:
        data: The corpus.
        tokenizer: The policy's tokenizer.
        settings: The [`NextTokenSettings`] of the examples (tried on one document).
        eval_size: Documents held out for evaluation.
        eval_min_entropy: Evaluation threshold (checked to be a finite number, as `settings.min_entropy`).
        seed: Seed of the held-out draw.

    Returns:
        Split name -> indices of its documents in `data`.
    """
    texts = document_texts(data, settings.text_column)
    usable = [i for i, text in enumerate(texts) if text and text.strip()]
    if not usable:
        raise ValueError(
            f"The corpus has no text: all {len(texts)} documents are empty in column(s) {settings.text_column}. "
            "Check --text_column."
        )
    if eval_size < 0:
        raise ValueError(f"eval_size must be 0 or more, got {eval_size}.")
    if eval_size >= len(usable):
        raise ValueError(
            f"eval_size ({eval_size}) must leave training documents: the corpus has {len(usable)} non-empty ones."
        )
    for name, threshold in (("min_entropy", settings.min_entropy), ("eval_min_entropy", eval_min_entropy)):
        if threshold is None and name == "min_entropy":
            continue
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
            raise ValueError(f"{name} must be a finite number of nats, got {threshold!r}.")
    held_out = set(random.Random(seed).sample(usable, eval_size))
    split_ids = {"train": [i for i in range(len(texts)) if i not in held_out]}
    if eval_size:
        split_ids["eval"] = sorted(held_out)
    _check_before_scoring(texts, split_ids, tokenizer, data, settings)
    return split_ids


def _check_before_scoring(
    texts: Sequence[str | None],
    split_ids: Mapping[str, Sequence[int]],
    tokenizer: Any,
    data: datasets.Dataset,
    settings: NextTokenSettings,
) -> None:
    """Fail before the proxy scores: a split whose documents are all too short, and settings the builder refuses."""
    first_long = {}
    for split, ids in split_ids.items():
        for start in range(0, len(ids), 256):  # stops at the first batch that holds a long enough document
            batch = [i for i in ids[start : start + 256] if texts[i] and texts[i].strip()]
            lengths = tokenizer([texts[i] for i in batch], add_special_tokens=False)["input_ids"] if batch else []
            long_enough = [i for i, ids_ in zip(batch, lengths) if len(ids_) > settings.min_context_tokens]
            if long_enough:
                first_long[split] = long_enough[0]
                break
        else:
            raise ValueError(
                f"The {split} split would have no examples: none of its {len(ids)} documents has more than "
                f"min_context_tokens={settings.min_context_tokens} tokens. Lower --min_context_tokens, or give longer "
                "documents."
            )
    # One document through the builder (without the entropy filter, which needs scores) checks the settings.
    build_next_token_dataset(
        data.select([first_long["train"]]), tokenizer, settings, show_progress=False, min_entropy=None
    )
    if settings.position_filter != "all":
        for split, ids in split_ids.items():
            _check_position_filter_keeps_some(split, data.select(ids), tokenizer, settings)


def _check_position_filter_keeps_some(
    split: str, data: datasets.Dataset, tokenizer: Any, settings: NextTokenSettings
) -> None:
    """Refuse a split in which `position_filter` keeps no position; stops at the first batch where it keeps one."""
    stats = None
    for start in range(0, len(data), 256):
        batch = data.select(range(start, min(start + 256, len(data))))
        built, stats = build_next_token_dataset(
            batch, tokenizer, settings, show_progress=False, return_stats=True, min_entropy=None
        )
        if len(built):
            return
    raise ValueError(
        f"The {split} split would have no examples: position_filter={settings.position_filter!r} keeps none of the "
        f"positions of its {len(data)} documents (the last batch: {asdict(stats)}). Use --position_filter all, or "
        "give other documents."
    )


def render_dataset_card(info: Mapping[str, Any], repo_id: str | None = None) -> Any:
    """The dataset card (`huggingface_hub.DatasetCard`) from `model_card_templates/rpt_dataset_card.md`.

    `info` is what [`prepare_rpt_dataset`] returns, with `source`, `proxy_model`, `tokenizer` and `command` added.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    source = str(info.get("source", "documents"))
    source_is_hub = bool(info.get("source_is_hub"))
    name = repo_id or info.get("name") or "rpt-dataset"
    card_data = DatasetCardData(
        pretty_name=f"RPT next-token reasoning: {name.split('/')[-1]}",
        license=info.get("license"),
        tags=["rpt", "trl", "reinforcement-pre-training", "next-token-reasoning"],
        task_categories=["text-generation"],
        source_datasets=[source] if source_is_hub else None,
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"data/{split}-*.parquet"} for split in info["splits"]],
            }
        ],
    )
    template = resources.files("rpt_trl.model_card_templates").joinpath(DATASET_CARD_TEMPLATE)
    with resources.as_file(template) as template_path:
        return DatasetCard.from_template(
            card_data,
            template_path=str(template_path),
            repo_id=repo_id or "<your dataset>",
            source=source,
            source_is_hub=source_is_hub,
            proxy_model=info.get("proxy_model", "<proxy model>"),
            tokenizer=info.get("tokenizer", "<tokenizer>"),
            command=info.get("command", "rpt_trl.prepare_rpt_dataset(...)"),
            paper_id=PAPER["id"],
            paper_title=PAPER["title"],
            citation=PAPER["citation"],
            rpt_trl_version=version("rpt-trl"),
            **{k: info[k] for k in ("text_column", "top_k", "min_entropy", "eval_min_entropy", "splits", "settings")},
            eval_documents=info["eval_documents"],
            difficulty_thresholds=info["difficulty_thresholds"],
        )


def check_output_dir(output_dir: str, overwrite: bool = False) -> None:
    """Refuse, before any work, to write into a folder that already holds something (unless `overwrite`).

    First, what an interrupted [`save_prepared_dataset`] left beside the folder is cleaned up: a half-written new
    dataset is removed, and a previous dataset that was moved aside but not yet replaced is put back.
    """
    recover_interrupted_save(output_dir)
    path = Path(output_dir)
    if path.exists() and (not path.is_dir() or any(path.iterdir())) and not overwrite:
        raise ValueError(f"{output_dir} already exists and is not empty; choose another --output or pass --overwrite.")


def recover_interrupted_save(output_dir: str) -> None:
    """Undo what a killed [`save_prepared_dataset`] left: its staging folder, and an old output moved aside."""
    target = Path(output_dir).resolve()
    for staging in stale_temporaries(target, _STAGING_TAG):
        logger.warning("Removing %s, a dataset that an interrupted run did not finish writing.", staging.name)
        remove(staging)
    for previous in stale_temporaries(target, _PREVIOUS_TAG):
        if target.exists():  # the swap finished; only the deletion of the old output did not
            remove(previous)
        else:
            logger.warning("An interrupted run had moved %s aside to replace it; putting it back.", target.name)
            previous.rename(target)


_STAGING_TAG, _PREVIOUS_TAG = "rpt-new", "rpt-old"


def save_prepared_dataset(
    dataset_dict: datasets.DatasetDict,
    info: Mapping[str, Any],
    output_dir: str,
    *,
    overwrite: bool = False,
    documents: Sequence[str | None] | None = None,
) -> None:
    """Write the splits (`save_to_disk`), `README.md` (the card) and `prepare_info.json`, all or nothing.

    Everything goes to a staging folder beside `output_dir`, renamed into place at the end. With `overwrite`, the
    old output is first renamed aside and deleted only once the new one is in place. A run killed at any point
    leaves the old output or the new one, whole; the next run (or [`check_output_dir`]) removes the leftovers and
    puts back an old output that was moved aside. Read it back with `datasets.load_from_disk(output_dir)`.

    Args:
        documents: The source texts, indexed by the examples' `document_id`; written to `DOCUMENTS_FILE` (one JSON
            object `{"text": ...}` a line) and named in the info, so that standard-mode evaluation finds them.
    """
    for split, dataset in dataset_dict.items():
        if not len(dataset):  # `load_from_disk` cannot read an empty split back
            raise ValueError(f"The {split} split is empty; nothing is written.")
    if documents is not None:
        info = {**info, "documents_file": DOCUMENTS_FILE}
    check_output_dir(output_dir, overwrite)
    target = Path(output_dir).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_name(target, _STAGING_TAG)
    previous = temporary_name(target, _PREVIOUS_TAG)
    try:
        staging.mkdir()
        dataset_dict.save_to_disk(str(staging))
        render_dataset_card(info, info.get("repo_id")).save(str(staging / "README.md"))
        (staging / INFO_FILE).write_text(json.dumps(info, indent=2, default=str))
        if documents is not None:
            with open(staging / DOCUMENTS_FILE, "w") as handle:
                handle.writelines(json.dumps({"text": text or ""}, ensure_ascii=False) + "\n" for text in documents)
        if target.exists():
            if not overwrite and (not target.is_dir() or any(target.iterdir())):
                # Another writer that holds no lock (an older rpt-trl, a copy) filled it since the first check.
                raise ValueError(
                    f"{output_dir} was written by someone else while this run prepared it; nothing is replaced. "
                    "Choose another --output, or pass --overwrite."
                )
            target.rename(previous)
        staging.rename(target)
    except BaseException:
        if previous.exists() and not target.exists():
            previous.rename(target)
        if staging.exists():
            remove(staging)
        raise
    if previous.exists():
        remove(previous)


def dataset_push_operations(
    dataset_dict: datasets.DatasetDict,
    info: Mapping[str, Any],
    repo_id: str,
    workdir: str,
    *,
    max_shard_bytes: int = 500 * 1024 * 1024,
) -> list[Any]:
    """The files of one Hub commit: parquet shards per split under `data/`, the card and `prepare_info.json`.

    Shards are written into `workdir`, which must outlive the commit.
    """
    from huggingface_hub import CommitOperationAdd

    operations = []
    for split, dataset in dataset_dict.items():
        num_shards = max(1, math.ceil(dataset.data.nbytes / max_shard_bytes))
        for index in range(num_shards):
            name = f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
            path = os.path.join(workdir, name)
            dataset.shard(num_shards, index, contiguous=True).to_parquet(path)
            operations.append(CommitOperationAdd(path_in_repo=f"data/{name}", path_or_fileobj=path))
    card = str(render_dataset_card(info, repo_id))
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode()))
    info_bytes = json.dumps(info, indent=2, default=str).encode()
    operations.append(CommitOperationAdd(path_in_repo=INFO_FILE, path_or_fileobj=info_bytes))
    return operations


def push_prepared_dataset(
    dataset_dict: datasets.DatasetDict,
    info: Mapping[str, Any],
    repo_id: str,
    *,
    private: bool | None = None,
    api: Any | None = None,
) -> str:
    """Push a prepared dataset and its card to the Hub in one commit; returns the commit's URL.

    The token comes from huggingface_hub's own login or the `HF_TOKEN` variable; it is never logged or written.
    Load it back with `datasets.load_dataset(repo_id)`.
    """
    from huggingface_hub import HfApi

    api = api or HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        operations = dataset_push_operations(dataset_dict, info, repo_id, workdir)
        commit = api.create_commit(
            repo_id=repo_id,
            repo_type="dataset",
            operations=operations,
            commit_message=f"RPT dataset: {', '.join(f'{s} {len(d)}' for s, d in dataset_dict.items())} examples",
        )
    url = getattr(commit, "commit_url", str(commit))
    logger.info("Pushed %s: %s", repo_id, url)
    return url


@dataclass
class PrepareArguments:
    """Arguments of `rpt-trl prepare` besides the [`NextTokenSettings`]: source, entropy scoring, splits, output.

    Flags are the field names in snake_case (`--proxy_model`), as TRL's scripts take them; the kebab-case spelling
    (`--proxy-model`) is accepted too. A YAML file given with `--config` sets the same names.
    """

    dataset: list[str] = field(
        metadata={"help": "A Hub id, a saved dataset folder, or jsonl / json / parquet / txt files."}
    )
    proxy_model: str = field(metadata={"help": "Hub id or local path of the scoring model."})
    output: str = field(metadata={"help": "Folder for the splits, README.md and prepare_info.json."})
    split: str | None = field(
        default=None, metadata={"help": "Split of a Hub or saved dataset (default: the only one, or train)."}
    )
    max_documents: int | None = field(
        default=None, metadata={"help": "Use only the first N documents (at least 1; omit for all)."}
    )
    tokenizer: str | None = field(
        default=None, metadata={"help": "The policy's tokenizer (positions are its tokens); default: the proxy's."}
    )
    top_k: int = field(default=16, metadata={"help": "Entropy over the top-k tokens, renormalised (paper: 16)."})
    batch_size: int = field(default=8, metadata={"help": "Windows per forward pass."})
    max_length: int = field(default=2048, metadata={"help": "Tokens per window; longer texts slide."})
    window_overlap: int | None = field(default=None, metadata={"help": "Minimum left context in sliding windows."})
    dtype: str = field(
        default="auto",
        metadata={"help": "Proxy weights' dtype.", "choices": ["auto", "float32", "bfloat16", "float16"]},
    )
    vllm: bool = field(default=False, metadata={"help": "Score with vLLM's prompt_logprobs (GPU, needs vllm)."})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Entropy cache (default: the rpt-trl cache folder)."}
    )
    no_cache: bool = field(default=False, metadata={"help": "Always rescore."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow the proxy's own modelling code."})
    eval_size: int = field(default=200, metadata={"help": "Documents held out for evaluation (paper: 200)."})
    eval_min_entropy: float = field(
        default=DEFAULT_MIN_ENTROPY, metadata={"help": "Evaluation keeps positions with at least this entropy."}
    )
    difficulty_thresholds: list[float] = field(
        default_factory=lambda: list(DIFFICULTY_THRESHOLDS.values()),
        metadata={"help": "EASY MEDIUM HARD: nested splits, entropy above each (paper: 0.5 1.0 1.5)."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the held-out documents."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output folder."})
    push_to_hub: str | None = field(default=None, metadata={"help": "Also push to this Hub dataset repo (org/name)."})
    private: bool = field(default=False, metadata={"help": "Create the Hub repo private."})

    def __post_init__(self):
        if isinstance(self.dataset, str):
            self.dataset = [self.dataset]
        if len(self.difficulty_thresholds) != len(DIFFICULTY_THRESHOLDS):
            raise ValueError(
                f"difficulty_thresholds takes {len(DIFFICULTY_THRESHOLDS)} values "
                f"({', '.join(DIFFICULTY_THRESHOLDS)}), got {self.difficulty_thresholds}."
            )
        check_difficulty_thresholds(dict(zip(DIFFICULTY_THRESHOLDS, self.difficulty_thresholds)))
        if self.eval_size < 0:
            raise ValueError(f"eval_size must be 0 or more, got {self.eval_size}.")
        if self.max_documents is not None and self.max_documents < 1:
            raise ValueError(
                f"max_documents must be at least 1 (omit it for all documents), got {self.max_documents}."
            )


def _warn_if_longer_than_the_proxy(proxy_path: str, max_length: int) -> None:
    from transformers import AutoConfig

    context = getattr(AutoConfig.from_pretrained(proxy_path), "max_position_embeddings", None)
    if context is not None and max_length > context:
        logger.warning(
            "--max_length %d exceeds the proxy's context of %d tokens: its entropies past position %d are not "
            "trustworthy. Lower --max_length to %d or less.",
            max_length,
            context,
            context,
            context,
        )


def run_prepare(arguments: PrepareArguments, settings: NextTokenSettings, command: str) -> None:
    """`rpt-trl prepare`: every check first, then scoring, building, writing and pushing.

    The output may not be, or contain, an input or the entropy cache (even with `--overwrite`), and the main process
    holds its lock ([`output_lock`]) from the first check to the final rename, so that a second `prepare` into the
    same folder fails at once instead of replacing this one's output.

    Args:
        arguments: Source, scoring, splits and output.
        settings: How positions become examples; `settings.min_entropy` is the training split's entropy filter.
        command: The command line, recorded in `prepare_info.json` and the card.
    """
    import torch
    from accelerate import PartialState

    inputs = [*arguments.dataset, arguments.proxy_model, arguments.tokenizer, _cache_dir(arguments)]
    check_output_path(arguments.output, inputs, kind="folder", flag="--output")
    state = PartialState(cpu=not torch.cuda.is_available())
    lock = output_lock(arguments.output, flag="--output") if state.is_main_process else contextlib.nullcontext()
    with lock:
        _run_prepare(arguments, settings, command)


def _cache_dir(arguments: PrepareArguments) -> str | None:
    from ..models import default_cache_dir

    return None if arguments.no_cache else (arguments.cache_dir or os.path.join(default_cache_dir(), "entropy"))


def _run_prepare(arguments: PrepareArguments, settings: NextTokenSettings, command: str) -> None:
    documents, tokenizer, proxy_tokenizer, split_ids, proxy_path = _checked_inputs(arguments, settings)
    proxy, state = _load_proxy(arguments, proxy_path)
    dataset_dict, info = prepare_rpt_dataset(
        documents,
        tokenizer,
        proxy,
        proxy_tokenizer,
        settings,
        eval_size=arguments.eval_size,
        eval_min_entropy=arguments.eval_min_entropy,
        difficulty_thresholds=dict(zip(DIFFICULTY_THRESHOLDS, arguments.difficulty_thresholds)),
        seed=arguments.seed,
        split_ids=split_ids,
        scorer_kwargs={
            "top_k": arguments.top_k,
            "batch_size": arguments.batch_size,
            "max_length": arguments.max_length,
            "window_overlap": arguments.window_overlap,
            "cache_dir": _cache_dir(arguments),
        },
    )
    if not state.is_main_process:
        return
    _write_and_push(arguments, command, documents, dataset_dict, info)


def _checked_inputs(
    arguments: PrepareArguments, settings: NextTokenSettings
) -> tuple[datasets.Dataset, Any, Any, dict[str, list[int]], str]:
    """Every check before the proxy loads: the output folder, Hub access, the documents, the tokenizers and the
    split plan. Returns `(documents, tokenizer, proxy_tokenizer, split_ids, proxy_path)`."""
    from transformers import AutoTokenizer

    from ..hub import check_hub_access
    from ..models import resolve_model

    check_output_dir(arguments.output, arguments.overwrite)
    if arguments.push_to_hub:
        check_hub_access()
    sources = arguments.dataset
    documents = load_documents(
        sources[0] if len(sources) == 1 else sources, split=arguments.split, columns=settings.text_column
    )
    if arguments.max_documents is not None:
        documents = documents.select(range(min(arguments.max_documents, len(documents))))
    proxy_path = resolve_model(arguments.proxy_model)  # the embedded model's name works offline
    tokenizer_path = resolve_model(arguments.tokenizer) if arguments.tokenizer else proxy_path
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{tokenizer_path}: the tokenizer returns no character offsets; use a fast one.")
    proxy_tokenizer = AutoTokenizer.from_pretrained(proxy_path) if arguments.tokenizer else tokenizer
    split_ids = plan_splits(  # before the proxy loads
        documents, tokenizer, settings, eval_size=arguments.eval_size, eval_min_entropy=arguments.eval_min_entropy,
        seed=arguments.seed,
    )  # fmt: skip
    _warn_if_longer_than_the_proxy(proxy_path, arguments.max_length)
    return documents, tokenizer, proxy_tokenizer, split_ids, proxy_path


def _load_proxy(arguments: PrepareArguments, proxy_path: str) -> tuple[Any, Any]:
    """The scoring model (a `vllm.LLM` with `--vllm`), on this process's device, and the process state."""
    import torch
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM

    state = PartialState(cpu=not torch.cuda.is_available())
    if arguments.vllm:
        from vllm import LLM

        proxy = LLM(
            proxy_path,
            dtype=arguments.dtype,
            max_logprobs=arguments.top_k,
            trust_remote_code=arguments.trust_remote_code,
        )
    else:
        dtype = "auto" if arguments.dtype == "auto" else getattr(torch, arguments.dtype)
        proxy = AutoModelForCausalLM.from_pretrained(
            proxy_path, dtype=dtype, trust_remote_code=arguments.trust_remote_code, use_safetensors=True
        )
        proxy.to(state.device).eval()
    return proxy, state


def _write_and_push(
    arguments: PrepareArguments,
    command: str,
    documents: datasets.Dataset,
    dataset_dict: datasets.DatasetDict,
    info: dict[str, Any],
) -> None:
    """Record where the data came from in `info`, write the output folder and push it with `--push_to_hub`."""
    from ..hub import public_name

    sources = arguments.dataset
    # Names for the card: a Hub id as given, a local folder by its name only (no machine paths in a public card).
    proxy_name, tokenizer_name = map(
        public_name, (arguments.proxy_model, arguments.tokenizer or arguments.proxy_model)
    )
    source_is_hub = len(sources) == 1 and not os.path.exists(sources[0])
    info.update(
        source=", ".join(public_name(source) for source in sources),
        source_is_hub=source_is_hub,
        proxy_model=proxy_name,
        tokenizer=tokenizer_name,
        tokenizer_is_hub=tokenizer_name == (arguments.tokenizer or arguments.proxy_model),  # not a local folder
        repo_id=arguments.push_to_hub,
        command=command,
    )
    texts = document_texts(documents, info["text_column"])
    save_prepared_dataset(dataset_dict, info, arguments.output, overwrite=arguments.overwrite, documents=texts)
    for split, counts in info["splits"].items():
        logger.info(
            "%s: %d examples from %d documents, %s",
            split,
            counts["examples"],
            counts["documents"],
            counts["difficulty"],
        )
    if arguments.push_to_hub:
        push_prepared_dataset(dataset_dict, info, arguments.push_to_hub, private=arguments.private or None)
