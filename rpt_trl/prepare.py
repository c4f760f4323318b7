"""Corpus -> prepared RPT dataset: entropy-filtered train split, difficulty-labelled eval split, card, Hub push.

`rpt-trl prepare` runs [`load_documents`], [`prepare_rpt_dataset`], [`save_prepared_dataset`] and, with
`--push-to-hub`, [`push_prepared_dataset`]. Every check that can fail (the output folder, Hub access, the input files,
the tokenizer) runs before the proxy model scores anything, and the output folder appears whole or not at all.
"""

import json
import logging
import math
import os
import random
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from importlib import resources
from importlib.metadata import version
from pathlib import Path
from typing import Any

import datasets

from .atomic_io import remove, stale_temporaries, temporary_name
from .data import DIFFICULTY_THRESHOLDS, build_next_token_dataset, document_texts
from .entropy import document_entropy
from .loading import load_documents


logger = logging.getLogger(__name__)

__all__ = ["load_documents", "prepare_rpt_dataset", "push_prepared_dataset", "save_prepared_dataset"]

DATASET_CARD_TEMPLATE = "rpt_dataset_card.md"
INFO_FILE = "prepare_info.json"


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
    *,
    text_column: str | Sequence[str] = "text",
    min_entropy: float = 0.5,
    eval_size: int = 200,
    eval_min_entropy: float = 0.5,
    difficulty_thresholds: Mapping[str, float] = DIFFICULTY_THRESHOLDS,
    seed: int = 0,
    dataset_kwargs: Mapping[str, Any] | None = None,
    scorer_kwargs: Mapping[str, Any] | None = None,
    show_progress: bool = True,
) -> tuple[datasets.DatasetDict, dict[str, Any]]:
    """Score a corpus with a proxy model and build the RPT train and eval splits.

    `eval_size` documents, drawn with `seed`, are held out whole for evaluation (the paper holds out 200 OmniMATH
    samples); the rest become training positions with entropy of at least `min_entropy` (the paper drops the
    low-entropy positions but does not give its threshold). Evaluation keeps positions with entropy of at least
    `eval_min_entropy` and labels them with the nested difficulty splits.

    Args:
        documents: The corpus (`datasets.Dataset` or list of strings).
        tokenizer: The policy's tokenizer: positions and context lengths are counted in its tokens.
        proxy_model: The scoring model (`transformers` or `vllm.LLM`).
        proxy_tokenizer: The proxy's tokenizer, if it differs from `tokenizer` (entropies are then mapped by
            character offsets; see [`align_token_values`]).
        text_column: As for [`build_next_token_dataset`].
        min_entropy: Training keeps positions with at least this entropy (nats, top-k).
        eval_size: Documents held out for evaluation; 0 for no eval split.
        eval_min_entropy: Evaluation keeps positions with at least this entropy.
        difficulty_thresholds: Split name -> threshold (entropy above it), nested.
        seed: Seed of the held-out draw.
        dataset_kwargs: More arguments for [`build_next_token_dataset`] (`template`, `prompt_format`,
            `positions`, `min_context_tokens`, ...).
        scorer_kwargs: Arguments for [`compute_token_entropy`] (`top_k`, `batch_size`, `max_length`, `cache_dir`).
        show_progress: Progress bars.

    Returns:
        A `DatasetDict` with `train` (and `eval`) and a dict describing what was kept, for the dataset card.
    """
    dataset_kwargs = dict(dataset_kwargs or {})
    scorer_kwargs = {"show_progress": show_progress, **(scorer_kwargs or {})}
    if isinstance(documents, datasets.Dataset):
        data = documents
    else:
        data = datasets.Dataset.from_dict({"text": list(documents)})
        text_column = "text"
    split_ids = plan_splits(
        data,
        tokenizer,
        text_column=text_column,
        eval_size=eval_size,
        min_entropy=min_entropy,
        eval_min_entropy=eval_min_entropy,
        seed=seed,
        dataset_kwargs=dataset_kwargs,
    )
    entropies = document_entropy(
        data, tokenizer, proxy_model, proxy_tokenizer, text_column=text_column, **scorer_kwargs
    )
    splits, info_splits = {}, {}
    for split, ids in split_ids.items():
        dataset, stats = build_next_token_dataset(
            data.select(ids),
            tokenizer,
            text_column=text_column,
            token_entropy=[entropies[i] for i in ids],
            min_entropy=min_entropy if split == "train" else eval_min_entropy,
            difficulty_thresholds=difficulty_thresholds,
            show_progress=show_progress,
            return_stats=True,
            **dataset_kwargs,
        )
        if not len(dataset):
            threshold = min_entropy if split == "train" else eval_min_entropy
            option = "--min-entropy" if split == "train" else "--eval-min-entropy"
            raise ValueError(
                f"The {split} split has no examples: no position of its {len(ids)} documents has entropy of at least "
                f"{threshold} ({asdict(stats)}). Lower {option}, or give more or longer documents. The entropies "
                "are cached, so a re-run with the same proxy and corpus does not score again."
            )
        # document_id is the index in the selection; point it back at the source corpus.
        dataset = dataset.map(_source_ids, batched=True, fn_kwargs={"source_ids": ids})
        splits[split] = dataset
        info_splits[split] = {
            "documents": len(ids),
            "examples": len(dataset),
            "difficulty": _difficulty_counts(dataset, difficulty_thresholds),
            "stats": asdict(stats),
        }
    info = {
        "text_column": [text_column] if isinstance(text_column, str) else list(text_column),
        "min_entropy": min_entropy,
        "eval_min_entropy": eval_min_entropy,
        "eval_documents": eval_size,
        "difficulty_thresholds": dict(difficulty_thresholds),
        "seed": seed,
        "top_k": scorer_kwargs.get("top_k", 16),
        "splits": info_splits,
        "settings": {
            **{k: v for k, v in dataset_kwargs.items() if isinstance(v, str | int | float | bool)},
            **{k: v for k, v in scorer_kwargs.items() if k not in ("show_progress", "cache_dir")},
        },
    }
    return datasets.DatasetDict(splits), info


def plan_splits(
    data: datasets.Dataset,
    tokenizer: Any,
    *,
    text_column: str | Sequence[str] = "text",
    eval_size: int = 200,
    min_entropy: float = 0.5,
    eval_min_entropy: float = 0.5,
    seed: int = 0,
    dataset_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, list[int]]:
    """Check everything that can be checked without the proxy model, and draw the held-out documents.

    `rpt-trl prepare` calls it before the proxy loads, and [`prepare_rpt_dataset`] before the proxy scores, so that
    an empty corpus, a bad threshold or template, or a split whose documents are all too short fails in seconds,
    not after hours of scoring.

    Args:
        data: The corpus.
        tokenizer: The policy's tokenizer.
        text_column: As for [`build_next_token_dataset`].
        eval_size: Documents held out for evaluation.
        min_entropy: Training threshold (checked to be a finite number).
        eval_min_entropy: Evaluation threshold (likewise).
        seed: Seed of the held-out draw.
        dataset_kwargs: More arguments for [`build_next_token_dataset`], tried on one document.

    Returns:
        Split name -> indices of its documents in `data`.
    """
    dataset_kwargs = dict(dataset_kwargs or {})
    texts = document_texts(data, text_column)
    usable = [i for i, text in enumerate(texts) if text and text.strip()]
    if not usable:
        raise ValueError(
            f"The corpus has no text: all {len(texts)} documents are empty in column(s) {text_column}. "
            "Check --text-column."
        )
    if eval_size < 0:
        raise ValueError(f"eval_size must be 0 or more, got {eval_size}.")
    if eval_size >= len(usable):
        raise ValueError(
            f"eval_size ({eval_size}) must leave training documents: the corpus has {len(usable)} non-empty ones."
        )
    for name, threshold in (("min_entropy", min_entropy), ("eval_min_entropy", eval_min_entropy)):
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
            raise ValueError(f"{name} must be a finite number of nats, got {threshold!r}.")
    held_out = set(random.Random(seed).sample(usable, eval_size))
    split_ids = {"train": [i for i in range(len(texts)) if i not in held_out]}
    if eval_size:
        split_ids["eval"] = sorted(held_out)
    _check_before_scoring(texts, split_ids, tokenizer, data, text_column, dataset_kwargs)
    return split_ids


def _check_before_scoring(
    texts: Sequence[str | None],
    split_ids: Mapping[str, Sequence[int]],
    tokenizer: Any,
    data: datasets.Dataset,
    text_column: str | Sequence[str],
    dataset_kwargs: Mapping[str, Any],
) -> None:
    """Fail before the proxy scores: a split whose documents are all too short, and bad builder settings."""
    min_context_tokens = dataset_kwargs.get("min_context_tokens", 16)
    first_long = {}
    for split, ids in split_ids.items():
        for start in range(0, len(ids), 256):  # stops at the first batch that holds a long enough document
            batch = [i for i in ids[start : start + 256] if texts[i] and texts[i].strip()]
            lengths = tokenizer([texts[i] for i in batch], add_special_tokens=False)["input_ids"] if batch else []
            long_enough = [i for i, ids_ in zip(batch, lengths) if len(ids_) > min_context_tokens]
            if long_enough:
                first_long[split] = long_enough[0]
                break
        else:
            raise ValueError(
                f"The {split} split would have no examples: none of its {len(ids)} documents has more than "
                f"min_context_tokens={min_context_tokens} tokens. Lower --min-context-tokens, or give longer documents."
            )
    # One document through the builder checks the template, format, stride and context settings.
    sample = first_long["train"]
    sample_kwargs = dict(dataset_kwargs)
    positions = sample_kwargs.get("positions")
    if positions is not None and not isinstance(positions, str | int):
        sample_kwargs["positions"] = [positions[sample]]
    build_next_token_dataset(
        data.select([sample]), tokenizer, text_column=text_column, show_progress=False, **sample_kwargs
    )


def render_dataset_card(info: Mapping[str, Any], repo_id: str | None = None) -> Any:
    """The dataset card (`huggingface_hub.DatasetCard`) from `model_card_templates/rpt_dataset_card.md`.

    `info` is what [`prepare_rpt_dataset`] returns, with `source`, `proxy_model`, `tokenizer` and `command` added.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    from .rpt_trainer import RPTTrainer

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
            paper_id=RPTTrainer._paper["id"],
            paper_title=RPTTrainer._paper["title"],
            citation=RPTTrainer._paper["citation"],
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
    dataset_dict: datasets.DatasetDict, info: Mapping[str, Any], output_dir: str, *, overwrite: bool = False
) -> None:
    """Write the splits (`save_to_disk`), `README.md` (the card) and `prepare_info.json`, all or nothing.

    Everything goes to a staging folder beside `output_dir`, renamed into place at the end. With `overwrite`, the
    old output is first renamed aside and deleted only once the new one is in place. A run killed at any point
    leaves the old output or the new one, whole; the next run (or [`check_output_dir`]) removes the leftovers and
    puts back an old output that was moved aside. Read it back with `datasets.load_from_disk(output_dir)`.
    """
    for split, dataset in dataset_dict.items():
        if not len(dataset):  # `load_from_disk` cannot read an empty split back
            raise ValueError(f"The {split} split is empty; nothing is written.")
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
        if target.exists():
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
