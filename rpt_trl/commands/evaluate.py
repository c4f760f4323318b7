"""`rpt-trl evaluate`: the evaluation commands' parsers and runners, shared by `evaluation/*.py`.

Every runner writes the result JSON (schema in `results.py`), a Markdown table next to it (`.md`) and a PNG chart
(`.png`), and prints the table.
"""

import argparse
import functools
import importlib.util
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets

from ..data.builder import document_texts
from ..data.columns import check_next_token_columns
from ..data.loading import load_documents, load_split
from ..data.prepare import INFO_FILE
from ..evaluation.compare import compare_models, parse_system, training_record, write_comparison
from ..evaluation.multiple_choice import (
    MULTIPLE_CHOICE_TEMPLATE,
    normalize_row,
    render_question,
    score_choices,
    summarize_choices,
)
from ..evaluation.next_token import (
    TEMPERATURE,
    mean_reasoning_length,
    prompt_text,
    reasoning_scores,
    reasoning_summary,
    standard_scores,
    summarize,
    transformers_generator,
    vllm_generator,
    vllm_server_generator,
)
from ..evaluation.reasoning_patterns import count_patterns, plot_patterns, read_completions
from ..evaluation.scaling import compute_from_trainer_state, fit_splits, plot_scaling
from ..models import check_model_source, load_model, load_tokenizer, resolve_dtype, resolve_model
from ..output_paths import check_output_path, is_results_file, output_lock
from ..results import load_results, plot_results, results_markdown, save_result


logger = logging.getLogger(__name__)

SPLIT_HELP = (
    "Split of a saved DatasetDict or Hub dataset (default: its held-out split, the first of eval / test / validation "
    "it has, or its only split; never train unless asked). The outputs name the split scored."
)
HUB_BENCHMARKS = {"mmlu-pro": ("TIGER-Lab/MMLU-Pro", "test"), "supergpqa": ("m-a-p/SuperGPQA", "train")}


def load_rows(name: str, split: str | None = None) -> datasets.Dataset:
    """A dataset through the one document loader ([`rpt_trl.data.loading.load_documents`]): a `save_to_disk` folder
    (`DatasetDict` or `Dataset`), a folder of files, a JSON / JSONL / Parquet / CSV / TXT file, or a Hub id."""
    return load_documents(name, split=split)


def load_held_out_rows(name: str, split: str | None = None) -> tuple[datasets.Dataset, str | None]:
    """The rows evaluation scores, and the name of their split: `split` when given, else the held-out split of a
    `DatasetDict` (`eval`, `test` or `validation`; never `train` silently), `None` for data without splits."""
    return load_split(name, split=split, held_out=True)


def load_document_texts(
    name: str, text_column: list[str], split: str | None = None, *, held_out: bool = False
) -> list[str]:
    """Source documents, joined from `text_column` as `build_next_token_dataset` joins them (a `.txt` file is one
    document, as everywhere)."""
    documents, _ = load_split(name, split=split, columns=text_column, held_out=held_out)
    return [text or "" for text in document_texts(documents, text_column)]


def _prepared_info(dataset: str, key: str, flag: str) -> Any:
    """What `rpt-trl prepare` recorded about `dataset` (its folder or one of its split folders) under `key`.

    A recorded file name is returned as a path inside the prepared folder.
    """
    for folder in (Path(dataset), Path(dataset).parent):
        info_path = folder / INFO_FILE
        if info_path.is_file():
            value = json.loads(info_path.read_text()).get(key)
            if value is not None:
                return str(folder / value) if key.endswith("_file") else value
    raise ValueError(
        f"Pass {flag}: {dataset} is not a dataset written by `rpt-trl prepare` (no {INFO_FILE} recording {key!r} in "
        "it or its parent folder)."
    )


def _prepared_model(dataset: str) -> str:
    """The Hub model whose tokenizer `rpt-trl prepare` built `dataset` with (a local one is recorded by name only)."""
    name = _prepared_info(dataset, "tokenizer", "--model")
    if _prepared_info(dataset, "tokenizer_is_hub", "--model") is not True:
        raise ValueError(f"Pass --model: {dataset} was built with a local tokenizer, recorded only as {name!r}.")
    return name


def _checked(command: str) -> Callable[[Callable[[argparse.Namespace], Any]], Callable[[argparse.Namespace], Any]]:
    """Run an evaluation runner only after its arguments and outputs are checked ([`check_arguments`],
    [`check_outputs`]), with its output locked ([`output_lock`]) while it runs: nothing loads or scores before."""

    def wrap(run: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], Any]:
        @functools.wraps(run)
        def checked(args: argparse.Namespace) -> Any:
            check_arguments(args, command)
            check_outputs(args, command)
            with output_lock(args.output, flag="--output"):
                return run(args)

        return checked

    return wrap


def check_arguments(args: argparse.Namespace, command: str) -> None:
    """Refuse numbers no run can use, before anything loads: one line naming the flag."""
    positive = ["limit", "num_samples", "max_new_tokens", "batch_size", "num_resamples", "vllm_max_model_length"]
    for name in positive:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be at least 1, got {value}.")
    temperature = getattr(args, "temperature", None)
    if temperature is not None and not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"--temperature must be a finite number >= 0 (0: greedy), got {temperature}.")
    confidence = getattr(args, "confidence", None)
    if confidence is not None and not 0 < confidence < 1:
        raise ValueError(f"--confidence must be strictly between 0 and 1 (e.g. 0.95), got {confidence}.")
    utilization = getattr(args, "vllm_gpu_memory_utilization", None)
    if utilization is not None and not 0 < utilization <= 1:
        raise ValueError(f"--vllm_gpu_memory_utilization must be in (0, 1], got {utilization}.")
    num_samples = getattr(args, "num_samples", None)
    for k in getattr(args, "pass_k", None) or []:
        if not 1 <= k <= num_samples:
            raise ValueError(f"--pass_k {k}: pass@k needs 1 <= k <= --num_samples ({num_samples}).")
    if getattr(args, "backend", None) == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ValueError(
            "--backend vllm needs vLLM, which is not installed: install it, or use --backend transformers."
        )
    for name, value in _models(args, command):
        check_model_source(value, name)


def _models(args: argparse.Namespace, command: str) -> list[tuple[str, str]]:
    """The models a command loads, each with the flag that names it."""
    if command == "compare":
        return [(f"--models {label}", path) for label, path in _label_pairs(args.models, "--models")]
    if command in ("next-token", "zero-shot") and args.model is not None:
        return [("--model", args.model)]
    return []


def _inputs(args: argparse.Namespace, command: str) -> list[str | None]:
    """Every local path a command reads, which its outputs may not be or hold."""
    inputs = [getattr(args, name, None) for name in ("dataset", "documents", "model", "tokenizer", "benchmark")]
    inputs += [path for _, path in _models(args, command)]
    inputs += list(getattr(args, "results", None) or [])
    if command == "patterns":
        inputs += [path for _, path in _label_pairs(args.completions, "--completions")]
    if command == "zero-shot":
        inputs.append(args.template)
    return inputs


def check_outputs(args: argparse.Namespace, command: str) -> None:
    """Refuse, before any work, an output that is or holds an input, cannot be written, or would replace a file that
    is not an earlier output of the same kind ([`check_output_path`]); the same for the `.md` and `.png` beside it
    and for `--save_completions`."""
    inputs = _inputs(args, command)
    output = Path(args.output)
    check_output_path(output, inputs, kind="file", flag="--output", replaceable=EARLIER_OUTPUT[command])
    for suffix in (".md", ".png"):
        if output.with_suffix(suffix) != output:
            check_output_path(output.with_suffix(suffix), inputs, kind="file", flag=f"--output's {suffix} file")
    if getattr(args, "save_completions", None):
        check_output_path(
            args.save_completions, [*inputs, args.output], kind="file", flag="--save_completions",
            replaceable=_is_completions_file,
        )  # fmt: skip


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _is_completions_file(path: Path) -> bool:
    """An earlier `--save_completions` file: JSON lines, each with an item, a completion and a score."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return all(isinstance(r, dict) and {"item", "completion", "score"} <= set(r) for r in records)


# What an existing output of each command may be to be replaced: an earlier output of the same kind.
EARLIER_OUTPUT: dict[str, Callable[[Path], bool]] = {
    "next-token": is_results_file,
    "zero-shot": is_results_file,
    "compare": is_results_file,
    "scaling": lambda path: isinstance(report := _json(path), dict) and {"points", "fits"} <= set(report),
    "patterns": lambda path: (
        isinstance(stats := _json(path), dict)
        and all(isinstance(entry, dict) and "per_1k_tokens" in entry for entry in stats.values())
    ),
    "table": lambda path: path.suffix == ".md" and path.read_text(errors="replace").startswith(TABLE_HEADINGS),
}
TABLE_HEADINGS = ("Next-token accuracy (%) on", "Zero-shot multiple choice, accuracy (%) on")


def _write_outputs(result: dict[str, Any], output: str | Path) -> None:
    output = Path(output)
    save_result(result, output)
    table = results_markdown([result])
    output.with_suffix(".md").write_text(table)
    plot_results([result], output.with_suffix(".png"))
    print(table)
    print(f"Wrote {output}, {output.with_suffix('.md')}, {output.with_suffix('.png')} ({result['wall_time_s']} s)")


def _generator(args: argparse.Namespace, tokenizer: Any, path: str, load: Any = None):
    """The sampler the arguments ask for; the transformers model is loaded (by `load`, default `load_model`) only
    when it is the one used."""
    import importlib.util

    import torch

    backend = args.backend
    if backend == "auto":
        backend = "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "transformers"
    sampling = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "seed": args.seed}
    if backend in ("vllm", "vllm-server"):
        if backend == "vllm":
            generate = vllm_generator(
                path, dtype=resolve_dtype(args.dtype), gpu_memory_utilization=args.vllm_gpu_memory_utilization,
                max_model_len=args.vllm_max_model_length, **sampling,
            )  # fmt: skip
        else:
            generate = vllm_server_generator(args.vllm_server_url, tokenizer, **sampling)
        return lambda prompts, k: generate([prompt_text(p, tokenizer) for p in prompts], k)
    model = load(path) if load else load_model(path, dtype=args.dtype)
    return transformers_generator(model, tokenizer, batch_size=args.batch_size, **sampling)


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--num_samples", "--num-samples", type=int, default=1, help="Completions per item (mean accuracy, pass@k)."
    )
    parser.add_argument("--pass_k", "--pass-k", type=int, nargs="*", default=[], help="Extra k values for pass@k.")
    parser.add_argument(
        "--max_new_tokens", "--max-new-tokens", type=int, default=1024, help="Completion budget (the paper: 8,192)."
    )
    parser.add_argument(
        "--temperature", type=float, default=TEMPERATURE, help=f"Sampling temperature (the paper: {TEMPERATURE})."
    )
    parser.add_argument("--batch_size", "--batch-size", type=int, default=8, help="Prompts per generation batch.")
    parser.add_argument("--backend", choices=["auto", "transformers", "vllm", "vllm-server"], default="auto",
                        help="'auto': vLLM when installed and on a GPU, else transformers; 'vllm' also runs on vLLM's "
                             "CPU build; 'vllm-server': a running `trl vllm-serve` at --vllm_server_url.")  # fmt: skip
    parser.add_argument("--vllm_server_url", "--vllm-server-url", default="http://127.0.0.1:8000",
                        help="The vLLM server for --backend vllm-server.")  # fmt: skip
    parser.add_argument("--vllm_gpu_memory_utilization", "--vllm-gpu-memory-utilization", type=float, default=0.9,
                        help="--backend vllm: share of GPU memory for the engine; on vLLM's CPU build, the share of "
                             "CPU memory it reserves (lower it when other processes hold memory).")  # fmt: skip
    parser.add_argument("--vllm_max_model_length", "--vllm-max-model-length", type=int, default=None,
                        help="--backend vllm: the engine's context length (default: the model's).")  # fmt: skip
    parser.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        default="auto",
        help="Weights' dtype for both backends; 'auto': bfloat16 on a GPU, float32 on a CPU.",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--save_completions", "--save-completions", default=None, help="Write every completion to this JSONL file."
    )


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="Hub id or local path of the model to evaluate (next-token: default, the Hub model whose tokenizer "
        "`rpt-trl prepare` built the dataset with, from its prepare_info.json).",
    )
    parser.add_argument("--label", default=None, help="Name of the model in tables (default: last part of --model).")
    parser.add_argument("--split", default=None, help=SPLIT_HELP)
    parser.add_argument("--limit", type=int, default=None, help="Evaluate only the first N items.")
    parser.add_argument("--output", required=True, help="Result JSON; the .md table and .png chart go next to it.")


def next_token_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description="Next-token accuracy (the paper's Table 1).")
    add_common_arguments(parser)
    parser.add_argument("--dataset", required=True, help="A dataset built by build_next_token_dataset (dir or id).")
    parser.add_argument("--mode", choices=["standard", "reasoning"], required=True)
    parser.add_argument("--documents", default=None,
                        help="Standard mode: the source documents the dataset was built from (dataset dir, file or "
                             "id; a .txt file is one document). Default for a split of a dataset written "
                             "by `rpt-trl prepare`: the documents it recorded.")  # fmt: skip
    parser.add_argument(
        "--text_column", "--text-column", nargs="+", default=["text"], help="Text column(s) of --documents."
    )
    parser.add_argument("--no_think_close", "--no-think-close", action="store_true",
                        help="Reasoning mode: count a box even without </think> (require_think_close=False).")  # fmt: skip
    add_generation_arguments(parser)
    return parser


@_checked("next-token")
def run_next_token(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate next-token accuracy in standard or reasoning mode and write the outputs."""
    started = time.perf_counter()
    examples, split = _positions(args)
    rows = list(examples)
    model = args.model or _prepared_model(args.dataset)
    check_model_source(model, "--model")
    tokenizer, name, path = load_tokenizer(model)
    result: dict[str, Any] = {"model": name, "dataset": args.dataset, "split": split, "mode": args.mode}
    if args.mode == "standard":
        if args.documents is not None:
            documents = load_document_texts(args.documents, args.text_column, args.split, held_out=True)
        else:  # recorded by `rpt-trl prepare` next to its splits
            documents_file = _prepared_info(args.dataset, "documents_file", "--documents")
            documents = load_document_texts(documents_file, ["text"])
        scores = standard_scores(load_model(path, dtype=args.dtype), tokenizer, rows, documents)
        result["overall"], result["splits"] = summarize(rows, scores)
        result["documents"] = args.documents or "recorded by rpt-trl prepare"
    else:
        generate = _generator(args, tokenizer, path)
        completions, rewards, predictions = reasoning_scores(
            rows, generate, num_samples=args.num_samples, require_think_close=not args.no_think_close
        )
        result["overall"], result["splits"] = reasoning_summary(rows, rewards, predictions, pass_k=args.pass_k)
        result["mean_reasoning_tokens"] = mean_reasoning_length(completions, tokenizer)
        result["settings"] = {
            "num_samples": args.num_samples, "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature, "seed": args.seed, "require_think_close": not args.no_think_close,
        }  # fmt: skip
        if args.save_completions:
            _save_completions(args.save_completions, rows, completions, predictions, rewards)
    if args.label:
        result["label"] = args.label
    result["wall_time_s"] = round(time.perf_counter() - started, 1)
    _write_outputs(result, args.output)
    return result


def _save_completions(path: str, rows: list, completions: list, predictions: list, scores: list) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for index, (row_completions, row_predictions, row_scores) in enumerate(zip(completions, predictions, scores)):
            for completion, prediction, score in zip(row_completions, row_predictions, row_scores):
                record = {"item": index, "completion": completion, "prediction": prediction, "score": score}
                for key in ("ground_truth", "answer"):  # next-token rows, multiple-choice rows
                    if key in rows[index]:
                        record[key] = rows[index][key]
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def compare_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        description="The paper's comparison: models in standard and reasoning mode on the same positions, with "
        "bootstrap intervals over positions and a verdict on each difference."
    )
    parser.add_argument("--models", nargs="+", required=True,
                        help="LABEL=PATH pairs (Hub ids or local checkpoints), e.g. base=google/gemma-3-270m "
                             "sft=out/next-token rpt=out/rpt. They must share the dataset's tokenizer.")  # fmt: skip
    parser.add_argument("--dataset", required=True, help="Held-out next-token rows (a dataset dir, file or id).")
    parser.add_argument("--documents", default=None,
                        help="Standard mode: the documents the rows were built from (default for a split written by "
                             "`rpt-trl prepare`: the documents it recorded).")  # fmt: skip
    parser.add_argument(
        "--text_column", "--text-column", nargs="+", default=["text"], help="Text column(s) of --documents."
    )
    parser.add_argument("--modes", nargs="+", choices=["standard", "reasoning"], default=["standard", "reasoning"])
    parser.add_argument("--target", default=None,
                        help="LABEL:MODE compared with every other system (default: the last model, reasoning).")  # fmt: skip
    parser.add_argument("--confidence", type=float, default=0.95, help="Coverage of the bootstrap intervals.")
    parser.add_argument("--num_resamples", "--num-resamples", type=int, default=2000, help="Bootstrap resamples.")
    parser.add_argument("--split", default=None, help=SPLIT_HELP)
    parser.add_argument("--limit", type=int, default=None, help="Evaluate only the first N positions.")
    parser.add_argument("--no_think_close", "--no-think-close", action="store_true",
                        help="Reasoning mode: count a box even without </think>.")  # fmt: skip
    parser.add_argument("--output", required=True, help="Results JSON (a list); the .md table and .png go next to it.")
    add_generation_arguments(parser)
    return parser


@_checked("compare")
def run_compare(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Score every model in every mode on the same rows, compare the target with the rest, and write the outputs."""
    from functools import cache

    models = dict(_label_pairs(args.models, "--models"))
    if args.target:
        label, _ = parse_system(args.target)
        if label not in models:
            raise ValueError(f"--target {args.target!r} names no model of --models ({list(models)}).")
    examples, split = _positions(args)
    documents = None
    if "standard" in args.modes:
        source = args.documents or _prepared_info(args.dataset, "documents_file", "--documents")
        text_column = args.text_column if args.documents else ["text"]
        documents = load_document_texts(source, text_column, args.split, held_out=True)
    tokenizer = _shared_tokenizer(models)
    paths = {label: resolve_model(name) for label, name in models.items()}
    load = cache(lambda path: load_model(path, dtype=args.dtype))
    results = compare_models(
        paths, list(examples), tokenizer=tokenizer, generator=lambda path: _generator(args, tokenizer, path, load),
        load=load, documents=documents, modes=args.modes, target=args.target, num_samples=args.num_samples,
        dataset=args.dataset, training={label: training_record(path) for label, path in paths.items()},
        require_think_close=not args.no_think_close, confidence=args.confidence, num_resamples=args.num_resamples,
        seed=args.seed,
    )  # fmt: skip
    for result in results:
        result["model"] = models[result["label"]]
        result["split"] = split
    print(write_comparison(results, args.output))
    print(f"Wrote {args.output} and its .md table and .png chart")
    return results


def _positions(args: argparse.Namespace) -> tuple[datasets.Dataset, str | None]:
    """The held-out next-token rows to score (at most `--limit`), refused when empty or not scorable
    ([`check_next_token_columns`], naming the row and column) before any model loads."""
    examples, split = load_held_out_rows(args.dataset, args.split)
    where = f"--dataset {args.dataset}" + (f" (split {split!r})" if split else "")
    if len(examples) == 0:
        raise ValueError(f"{where} has no rows to score.")
    if args.limit is not None:
        examples = examples.select(range(min(args.limit, len(examples))))
    check_next_token_columns(examples, where)
    return examples, split


def _shared_tokenizer(models: dict[str, str]) -> Any:
    """The one tokenizer every model of `--models` shares (each loads its own; models are compared on the same
    tokenized positions, so they must agree), refused before any model loads when one differs."""
    tokenizers = {label: load_tokenizer(name)[0] for label, name in models.items()}
    (first, tokenizer), *others = tokenizers.items()
    for label, other in others:
        if other.get_vocab() != tokenizer.get_vocab():
            raise ValueError(
                f"--models {label} has another tokenizer than {first} ({len(other)} against {len(tokenizer)} "
                "tokens); compare models that share the dataset's tokenizer."
            )
    return tokenizer


def _label_pairs(pairs: list[str], flag: str) -> list[tuple[str, str]]:
    """`["a=x", "b=y"]` -> `[("a", "x"), ("b", "y")]`, with distinct labels."""
    parsed = []
    for pair in pairs:
        label, separator, value = pair.partition("=")
        if not separator or not label or not value:
            raise ValueError(f"{flag} takes LABEL=PATH pairs, got {pair!r}.")
        if "=" in value and not Path(value).exists():  # the label ends at the first '='; only a real path holds one
            raise ValueError(
                f"{flag} {pair!r}: label {label!r}, path {value!r}, which does not exist; a label may not hold '='."
            )
        parsed.append((label, value))
    labels = [label for label, _ in parsed]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{flag} repeats a label: {labels}.")
    return parsed


def zero_shot_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description="Zero-shot multiple choice in reasoning mode.")
    add_common_arguments(parser)
    parser.add_argument("--benchmark", required=True,
                        help="'mmlu-pro', 'supergpqa' (their Hub datasets), a Hub id, or a local file / dataset dir.")  # fmt: skip
    parser.add_argument(
        "--category_column", "--category-column", default=None, help="Column to report accuracy by (default: auto)."
    )
    parser.add_argument(
        "--prompt_format",
        "--prompt-format",
        choices=["conversational", "text"],
        default="conversational",
        help="'text' for base models: the prompt is plain text ending in '<think>'.",
    )
    parser.add_argument("--template", default=MULTIPLE_CHOICE_TEMPLATE,
                        help="Prompt template with {question} and {options}, or the path of a file holding one.")  # fmt: skip
    add_generation_arguments(parser)
    return parser


@_checked("zero-shot")
def run_zero_shot(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate multiple-choice accuracy overall and per category and write the outputs."""
    started = time.perf_counter()
    name, split = HUB_BENCHMARKS.get(args.benchmark.lower(), (args.benchmark, args.split))
    raw, split = load_held_out_rows(name, split)
    if args.limit is not None:
        raw = raw.select(range(min(args.limit, len(raw))))
    rows = [normalize_row(row, category_column=args.category_column) for row in raw]
    template = Path(args.template).read_text() if Path(args.template).is_file() else args.template
    if "{question}" not in template or "{options}" not in template:
        raise ValueError("--template must contain {question} and {options} (or name a file that does).")
    prompts: list[Any] = [render_question(row, template) for row in rows]
    if args.prompt_format == "text":
        prompts = [p + "<think>" for p in prompts]
    else:
        prompts = [[{"role": "user", "content": p}] for p in prompts]
    if args.model is None:
        raise ValueError("Pass --model: the Hub id or local path of the model to evaluate.")
    tokenizer, model_name, path = load_tokenizer(args.model)
    completions = _generator(args, tokenizer, path)(prompts, args.num_samples)
    scores, letters = score_choices(rows, completions)
    overall, categories = summarize_choices(rows, scores, letters)
    result: dict[str, Any] = {
        "model": model_name, "dataset": name, "split": split, "benchmark": Path(args.benchmark).stem,
        "mode": "multiple_choice",
        "overall": overall, "splits": {}, "categories": categories,
        "mean_reasoning_tokens": mean_reasoning_length(completions, tokenizer),
        "settings": {"num_samples": args.num_samples, "max_new_tokens": args.max_new_tokens,
                     "temperature": args.temperature, "seed": args.seed, "prompt_format": args.prompt_format},
    }  # fmt: skip
    if args.label:
        result["label"] = args.label
    if args.save_completions:
        _save_completions(
            args.save_completions,
            rows,
            completions,
            letters,
            [[float(x == row["answer"]) for x in found] for row, found in zip(rows, letters)],
        )
    result["wall_time_s"] = round(time.perf_counter() - started, 1)
    _write_outputs(result, args.output)
    return result


def scaling_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description="Fit P(C) = A / C^alpha + P* per split over checkpoints.")
    parser.add_argument("--results", nargs="+", required=True,
                        help="One next-token result JSON per checkpoint (its 'model' is the checkpoint dir).")  # fmt: skip
    parser.add_argument("--compute", type=float, nargs="*", default=None,
                        help="Training compute per result; default: 6 * parameters * tokens from each checkpoint's "
                             "trainer_state.json.")  # fmt: skip
    parser.add_argument(
        "--num_parameters", "--num-parameters", type=int, default=None, help="Model size (default: counted)."
    )
    parser.add_argument("--output", required=True, help="Fit JSON; the .png plot and .md table go next to it.")
    return parser


@_checked("scaling")
def run_scaling(args: argparse.Namespace) -> dict[str, Any]:
    """Fit the scaling law per split (and overall) and write the fit, a table and the plot."""
    results = load_results(args.results)
    if args.compute and len(args.compute) != len(results):
        raise ValueError(f"--compute has {len(args.compute)} values for {len(results)} results.")
    compute = args.compute or [compute_from_trainer_state(r["model"], args.num_parameters) for r in results]
    points = []
    for c, result in zip(compute, results):
        accuracies = {split: group["accuracy"] for split, group in result["splits"].items()}
        points.append((c, {**accuracies, "all": result["overall"]["accuracy"]}))
    points.sort(key=lambda point: point[0])
    fits = fit_splits(points)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {"points": [{"compute": c, "accuracy": a} for c, a in points], "fits": fits}
    output.write_text(json.dumps(report, indent=2) + "\n")
    plot_scaling(points, fits, output.with_suffix(".png"))
    lines = ["| split | A | alpha | P* (%) | R² | points |", "| --- | --- | --- | --- | --- | --- |"]
    for split, fit in fits.items():
        if "error" in fit:
            lines.append(f"| {split} | fit failed: {fit['error']} | | | | |")
        else:
            flag = " (at the search bound: the points do not follow the law)" if fit["alpha_at_bound"] else ""
            lines.append(f"| {split} | {fit['A']:.4g} | {fit['alpha']:.4f}{flag} | {100 * fit['P_star']:.2f} | "
                         f"{fit['r_squared']:.4f} | {fit['num_points']} |")  # fmt: skip
    table = "\n".join(lines) + "\n"
    output.with_suffix(".md").write_text(table)
    print(table)
    return report


def patterns_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description="Reasoning-pattern counts per 1,000 reasoning tokens.")
    parser.add_argument("--completions", nargs="+", required=True,
                        help="LABEL=PATH pairs: completion JSONL files from --save-completions, one per model.")  # fmt: skip
    parser.add_argument("--tokenizer", default=None, help="Count tokens with this tokenizer (default: words).")
    parser.add_argument("--output", required=True, help="Counts JSON; the .png chart goes next to it.")
    return parser


@_checked("patterns")
def run_patterns(args: argparse.Namespace) -> dict[str, Any]:
    tokenizer = load_tokenizer(args.tokenizer)[0] if args.tokenizer else None
    stats = {}
    for label, path in _label_pairs(args.completions, "--completions"):
        stats[label] = count_patterns(read_completions(path), tokenizer=tokenizer)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(stats, indent=2) + "\n")
    plot_patterns(stats, output.with_suffix(".png"))
    families = list(next(iter(stats.values()))["per_1k_tokens"])
    print("| model | " + " | ".join(families) + " | reasoning tokens |")
    print("| --- |" + " --- |" * (len(families) + 1))
    for label, entry in stats.items():
        rates = " | ".join(f"{entry['per_1k_tokens'][f]:.1f}" for f in families)
        print(f"| {label} | {rates} | {entry['reasoning_tokens']} |")
    return stats


def table_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description="One comparison table from several result files.")
    parser.add_argument("results", nargs="+", help="Result JSON files (e.g. base and RPT checkpoint).")
    parser.add_argument("--output", required=True, help="Markdown file; the .png chart goes next to it.")
    return parser


@_checked("table")
def run_table(args: argparse.Namespace) -> str:
    results = load_results(args.results)
    table = results_markdown(results)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(table)
    plot_results(results, output.with_suffix(".png"))
    print(table)
    return table


COMMANDS = {
    "next-token": (next_token_parser, run_next_token, "Next-token accuracy, standard or reasoning mode (Table 1)."),
    "zero-shot": (zero_shot_parser, run_zero_shot, "Zero-shot multiple choice (MMLU-Pro, SuperGPQA)."),
    "scaling": (scaling_parser, run_scaling, "Fit accuracy against training compute over checkpoints."),
    "patterns": (patterns_parser, run_patterns, "Count reasoning-pattern keywords in completions."),
    "compare": (compare_parser, run_compare, "Compare models in both modes on the same positions, with intervals."),
    "table": (table_parser, run_table, "Combine result files into the Table-1-style and zero-shot tables."),
}


def make_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `rpt-trl evaluate <command>`."""
    evaluate = subparsers.add_parser("evaluate", help="Evaluate models: next-token accuracy, zero-shot, scaling.")
    commands = evaluate.add_subparsers(dest="evaluate_command", required=True)
    for name, (make, _, help_text) in COMMANDS.items():
        make(commands.add_parser(name, help=help_text, description=help_text))
    return evaluate


def main(args: argparse.Namespace) -> Any:
    """Run `rpt-trl evaluate <command>` from parsed flags."""
    return COMMANDS[args.evaluate_command][1](args)
