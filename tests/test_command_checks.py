"""Issue 21: every `rpt-trl` command that writes checks its output with the one shared check (not an input, not
holding one), and every command checks its arguments, columns and output before it loads a model; the errors a
user sees are one line naming the flag, file, column or row."""

import json
import re

import pytest

from rpt_trl import cli


ROW = {"prompt": "The cat", "ground_truth": " sat", "ground_truth_boundaries": [4]}
RESULT = {"model": "m", "dataset": "d", "mode": "standard", "overall": {"accuracy": 0.5, "n": 2}, "splits": {}}


@pytest.fixture
def no_model_loads(monkeypatch):
    """Every model, tokenizer and config loader raises: a command that reaches one has checked too late."""
    import transformers

    from rpt_trl import models

    def refuse(*args, **kwargs):
        raise AssertionError("a model, tokenizer or config was loaded before the input was checked")

    for name in ("AutoModelForCausalLM", "AutoTokenizer", "AutoConfig", "AutoModel"):
        monkeypatch.setattr(getattr(transformers, name), "from_pretrained", refuse)
    monkeypatch.setattr(models, "ensure_embedded_model", refuse)


@pytest.fixture
def world(tmp_path):
    """The inputs of every command, in one folder: positions, documents, a model folder, a result, completions."""
    data = tmp_path / "inputs"
    data.mkdir()
    (data / "positions.jsonl").write_text(json.dumps(ROW) + "\n")
    (data / "documents.jsonl").write_text(json.dumps({"text": "The cat sat."}) + "\n")
    (data / "bench.jsonl").write_text(json.dumps({"question": "q?", "options": ["a", "b"], "answer": "A"}) + "\n")
    (data / "result.json").write_text(json.dumps(RESULT))
    (data / "completions.jsonl").write_text(json.dumps({"completion": "x", "ground_truth": " sat"}) + "\n")
    model = data / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return data


# (command line with {data} for the inputs' folder, {out} for the output, the flag that names the output)
WRITERS = {
    "prepare": ("prepare --dataset {data}/documents.jsonl --proxy_model {data}/model --output {out}", "--output"),
    "train": (
        "train --dataset_name {data}/positions.jsonl --model_name_or_path {data}/model --use_cpu true --bf16 false "
        "--output_dir {out}",
        "--output_dir",
    ),
    "evaluate next-token standard": (
        "evaluate next-token --dataset {data}/positions.jsonl --documents {data}/documents.jsonl --model "
        "{data}/model --mode standard --output {out}",
        "--output",
    ),
    "evaluate next-token reasoning": (
        "evaluate next-token --dataset {data}/positions.jsonl --model {data}/model --mode reasoning --output {out}",
        "--output",
    ),
    "evaluate next-token --save_completions": (
        "evaluate next-token --dataset {data}/positions.jsonl --model {data}/model --mode reasoning "
        "--output {data}/../r.json --save_completions {out}",
        "--save_completions",
    ),
    "evaluate compare": (
        "evaluate compare --models base={data}/model --dataset {data}/positions.jsonl --documents "
        "{data}/documents.jsonl --output {out}",
        "--output",
    ),
    "evaluate zero-shot": (
        "evaluate zero-shot --benchmark {data}/bench.jsonl --model {data}/model --output {out}",
        "--output",
    ),  # fmt: skip
    "evaluate scaling": ("evaluate scaling --results {data}/result.json --compute 1 --output {out}", "--output"),
    "evaluate patterns": ("evaluate patterns --completions a={data}/completions.jsonl --output {out}", "--output"),
    "evaluate table": ("evaluate table {data}/result.json --output {out}", "--output"),
    "ablate": ("ablate --model {data}/model --dataset {data}/positions.jsonl --output_dir {out}", "--output_dir"),
    "demo": ("demo --model {data}/model --output_dir {out}", "--output_dir"),
}
# For each command, an input it reads that the output may not be: the output is that input, or its folder.
OUTPUT_IS_INPUT = {
    "prepare": "documents.jsonl", "train": "positions.jsonl", "evaluate next-token standard": "documents.jsonl",
    "evaluate next-token reasoning": "positions.jsonl", "evaluate next-token --save_completions": "positions.jsonl",
    "evaluate compare": "positions.jsonl", "evaluate zero-shot": "bench.jsonl", "evaluate scaling": "result.json",
    "evaluate patterns": "completions.jsonl", "evaluate table": "result.json", "ablate": "positions.jsonl",
    "demo": "model",
}  # fmt: skip


def run(command: str, **paths) -> str:
    """Run one command line; the one-line error it exits with (it must exit with one)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(command.format(**{k: str(v) for k, v in paths.items()}).split())
    message = str(exit_info.value.code)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("where", ["is", "holds"])
@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_writing_command_refuses_an_output_that_is_or_holds_an_input(name, where, world, no_model_loads):
    command, flag = WRITERS[name]
    out = world / OUTPUT_IS_INPUT[name] if where == "is" else world
    before = {p: p.read_bytes() for p in world.rglob("*") if p.is_file()}
    message = run(command, data=world, out=out)
    assert message.startswith(f"rpt-trl {name.split()[0]}: error: {flag} "), message
    assert (" is the input " if where == "is" else " contains the input ") in message, message
    assert {p: p.read_bytes() for p in world.rglob("*") if p.is_file()} == before  # nothing written


def test_the_writers_table_covers_every_command():
    from rpt_trl.commands import evaluate, get_commands

    names = {command.__name__.rsplit(".", 1)[-1] for command in get_commands()}
    covered = {name.split()[0] for name in WRITERS} | {name.split()[1] for name in WRITERS if " " in name}
    assert names <= covered and set(evaluate.COMMANDS) <= covered


@pytest.mark.parametrize("name", ["evaluate next-token reasoning", "evaluate compare", "evaluate zero-shot",
                                  "evaluate table", "evaluate scaling", "evaluate patterns"])  # fmt: skip
def test_a_results_output_replaces_only_an_earlier_results_file(name, world, tmp_path, no_model_loads):
    command, _ = WRITERS[name]
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    message = run(command, data=world, out=notes)
    assert "--output" in message and "exists and may not be replaced" in message, message
    assert notes.read_text() == '{"mine": 1}'


@pytest.fixture
def bad_inputs(world):
    """Positions whose row 1 cannot score, and a saved dataset without rows."""
    import datasets

    good = dict(ROW)
    (world / "bad.jsonl").write_text(
        json.dumps(good) + "\n" + json.dumps({**ROW, "ground_truth_boundaries": []}) + "\n"
    )
    datasets.Dataset.from_dict({key: [] for key in ROW}).save_to_disk(str(world / "empty"))
    (world / "steps.yaml").write_text("max_steps: 1.7\n")
    (world / "dora.yaml").write_text("use_peft: true\nuse_dora: true\n")
    (world / "filter.yaml").write_text("position_filter: words\n")
    return world


TRAIN = "train --model_name_or_path {data}/model --use_cpu true --bf16 false --output_dir {tmp}/out "
NEXT = "evaluate next-token --model {data}/model --output {tmp}/r.json --mode reasoning "
ABLATE = "ablate --model {data}/model --dataset {data}/positions.jsonl --eval_split train --output_dir {tmp}/ab "
COMPARE = "evaluate compare --dataset {data}/positions.jsonl --modes reasoning --output {tmp}/r.json "
EMPTY_BOUNDARIES = r"row 1: column 'ground_truth_boundaries' is empty"
# (command line, the one-line error it must give before any model loads)
CHECKED_FIRST = [
    (TRAIN + "--dataset_name {data}/bad.jsonl", r"^rpt-trl train: error: .*row 1: column 'ground_truth_boundaries'"),
    (TRAIN + "--dataset_name {data}/positions.jsonl --config {data}/steps.yaml", r"^rpt-trl train: error: .*max_steps"),
    (TRAIN + "--dataset_name {data}/positions.jsonl --use_vllm true", r"^rpt-trl train: error: use_vllm=True needs vLLM"),
    (TRAIN + "--dataset_name {data}/documents.jsonl --config {data}/filter.yaml",
     r"^rpt-trl train: error: position_filter must be one of 'all', 'word_in_context' .*got 'words'"),
    ("prepare --dataset {data}/documents.jsonl --proxy_model {data}/model --output {tmp}/out --config {data}/filter.yaml",
     r"^rpt-trl prepare: error: position_filter must be one of 'all', 'word_in_context' .*got 'words'"),
    (NEXT + "--dataset {data}/bad.jsonl", r"^rpt-trl evaluate: error: --dataset .*bad\.jsonl, " + EMPTY_BOUNDARIES),
    (NEXT + "--dataset {data}/empty", r"^rpt-trl evaluate: error: .*empty is a saved dataset without rows"),
    (NEXT + "--dataset {data}/positions.jsonl --batch_size 0", r"error: --batch_size must be at least 1, got 0"),
    (NEXT + "--dataset {data}/positions.jsonl --temperature -1", r"error: --temperature must be a finite number >= 0"),
    (NEXT + "--dataset {data}/positions.jsonl --pass_k 0", r"error: --pass_k 0: pass@k needs 1 <= k <= --num_samples"),
    (NEXT + "--dataset {data}/positions.jsonl --backend vllm", r"error: --backend vllm needs vLLM"),
    (COMPARE + "--models base=/nonexistent", r"error: --models base: /nonexistent is not an existing folder"),
    (COMPARE + "--models base={data}/positions.jsonl", r"error: --models base: .*positions\.jsonl is a file; a model"),
    (COMPARE + "--models a=b={data}/model", r"error: --models 'a=b=.*': label 'a', path 'b=.*', which does not exist"),
    (COMPARE + "--models base={data}/model --confidence 1.5", r"error: --confidence must be strictly between 0 and 1"),
    (COMPARE + "--models base={data}/model --num_resamples 0", r"error: --num_resamples must be at least 1, got 0"),
    (COMPARE + "--models base={data}/model --max_new_tokens 0", r"error: --max_new_tokens must be at least 1, got 0"),
    (COMPARE + "--models base={data}/model --num_samples 0", r"error: --num_samples must be at least 1, got 0"),
    (COMPARE + "--models base={data}/model --batch_size 0", r"error: --batch_size must be at least 1, got 0"),
    (COMPARE + "--models base={data}/model --pass_k 0 5", r"error: --pass_k 0: pass@k needs 1 <= k <= --num_samples"),
    (COMPARE + "--models base={data}/model --pass_k 5", r"error: --pass_k 5: pass@k needs 1 <= k <= --num_samples \(1\)"),
    (COMPARE + "--models base={data}/model --temperature -1", r"error: --temperature must be a finite number >= 0"),
    ("evaluate compare --dataset {data}/bad.jsonl --modes reasoning --models base={data}/model --output {tmp}/r.json",
     r"^rpt-trl evaluate: error: --dataset .*bad\.jsonl, " + EMPTY_BOUNDARIES),
    ("evaluate zero-shot --benchmark {data}/bench.jsonl --model {data}/model --output {tmp}/r.json --temperature -1",
     r"error: --temperature must be a finite number >= 0"),
    ("ablate --model {data}/model --dataset {data}/bad.jsonl --eval_dataset {data}/positions.jsonl --eval_split train "
     "--output_dir {tmp}/ab", r"^rpt-trl ablate: error: --dataset, " + EMPTY_BOUNDARIES),
    ("ablate --variants ../../x:reward=dense --output_dir {tmp}/ab", r"^rpt-trl ablate: error: .*'\.\./\.\./x' is not a plain name"),
    ("ablate --variants x:reward=dense,reward=first_token --output_dir {tmp}/ab", r"error: .*sets 'reward' twice"),
    ("ablate --variants x:use_vllm=true --output_dir {tmp}/ab", r"^rpt-trl ablate: error: Variant 'x': use_vllm=True needs vLLM"),
    (ABLATE + "--variants x:lora_r=0", r"^rpt-trl ablate: error: Variant 'x:lora_r=0': lora_r takes a positive integer"),
    (ABLATE + "--variants x:lora_alpha=8", r"^rpt-trl ablate: error: Variant 'x': lora_alpha needs lora_r"),
    (ABLATE + "--variants x:lora_rank=8", r"^rpt-trl ablate: error: .*'lora_rank' is not an RPTConfig field or a LoRA"),
    (ABLATE + "--config {data}/dora.yaml", r"^rpt-trl ablate: error: --config .*dora\.yaml: use_dora=True is not taken"),
    ("demo --model {data}/model --use_vllm --output_dir {tmp}/out", r"^rpt-trl demo: error: --use_vllm needs vLLM"),
    ("prepare --dataset {data}/documents.jsonl --proxy_model {data}/model --output {data}/model/..",
     r"^rpt-trl prepare: error: --output .*model/\.\. contains the input"),
]  # fmt: skip


@pytest.mark.parametrize(("command", "message"), CHECKED_FIRST, ids=[c[1][-40:] for c in CHECKED_FIRST])
def test_arguments_columns_and_outputs_are_checked_before_any_model_loads(
    command, message, bad_inputs, tmp_path, no_model_loads
):
    assert re.search(message, run(command, data=bad_inputs, tmp=tmp_path)), message
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.json").exists() and not (tmp_path / "ab").exists()


@pytest.mark.parametrize(
    "command",
    [
        "evaluate compare --models base={data}/model --dataset {data}/positions.jsonl --modes reasoning --output {out}",
        "evaluate next-token --model {data}/model --dataset {data}/positions.jsonl --mode reasoning --output {out}",
        "evaluate table {data}/result.json --output {out}",
        "ablate --model {data}/model --dataset {data}/positions.jsonl --output_dir {out}",
        "prepare --dataset {data}/documents.jsonl --proxy_model {data}/model --output {out}",
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_any_work(command, world, tmp_path, no_model_loads,
                                                                      monkeypatch):  # fmt: skip
    import os

    monkeypatch.setattr(os, "access", lambda path, mode: False)  # the tests run as root, who may write anywhere
    message = run(command, data=world, out=tmp_path / "new" / "r.json")
    assert re.search(r"error: --output(_dir)? .*r\.json is not writable", message), message


def test_compare_refuses_models_with_different_tokenizers_before_any_model_loads(world, tmp_path, monkeypatch):
    # Issue 21, item 13: the second model's tokenizer failed with IndexError after the first model was scored.
    from transformers import AutoModelForCausalLM

    from rpt_trl.experiments.tiny import make_tiny_tokenizer

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the tokenizers were compared")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuse)
    for name, extra in (("a", []), ("b", ["<|other|>"])):
        (world / name).mkdir()
        (world / name / "config.json").write_text("{}")
        tokenizer = make_tiny_tokenizer()
        tokenizer.add_tokens(extra)
        tokenizer.save_pretrained(world / name)
    command = ("evaluate compare --models a={data}/a b={data}/b --dataset {data}/positions.jsonl --modes reasoning "
               "--output {tmp}/r.json")  # fmt: skip
    message = run(command, data=world, tmp=tmp_path)
    assert re.search(r"^rpt-trl evaluate: error: --models b has another tokenizer than a \(\d+ against \d+ tokens\)",
                     message), message  # fmt: skip
    assert not (tmp_path / "r.json").exists()
