"""`rpt-trl prepare`: corpus files -> entropy-filtered splits on disk (and the Hub push, offline), then training."""

import json
import logging
import math
import os

import datasets
import pytest
import torch
from conftest import first_token_of, is_word_of, make_byte_level_tokenizer
from huggingface_hub import DatasetCard

from rpt_trl import RPTConfig, RPTTrainer
from rpt_trl.cli import main
from rpt_trl.data import prepare
from rpt_trl.experiments.arithmetic_demo import arithmetic_corpus
from rpt_trl.experiments.tiny import make_tiny_model


def omnimath_rows(num_documents=14, seed=0):
    """Rows in OmniMATH's format (domain, difficulty, problem, solution, answer, source)."""
    rows = []
    for k, document in enumerate(arithmetic_corpus(num_documents, seed=seed)):
        problem, solution = document.split("\nSolution: ")
        rows.append(
            {
                "domain": ["Mathematics -> Arithmetic"],
                "difficulty": 1.0 + k % 3,
                "problem": problem.removeprefix("Problem: "),
                "solution": solution,
                "answer": solution.rsplit(" ", 1)[-1].rstrip("."),
                "source": "generated",
            }
        )
    if num_documents > 5:
        rows[3]["problem"], rows[3]["solution"] = "   ", "\n"  # a whitespace-only document: skipped and counted
        rows[5]["problem"], rows[5]["solution"] = "Tiny.", None  # shorter than the minimum context: skipped, counted
    return rows


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "omnimath.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in omnimath_rows()))
    return path


@pytest.fixture(scope="module")
def proxy_dir(tmp_path_factory):
    """A tiny proxy (model and tokenizer in one folder, as on the Hub) with a sharpened head, so entropies spread."""
    tokenizer = make_byte_level_tokenizer([row["solution"] or "" for row in omnimath_rows()] * 3)
    model = make_tiny_model(tokenizer, seed=1)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(4.0)
    folder = tmp_path_factory.mktemp("proxy")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run_prepare(corpus_file, proxy_dir, output, *extra):
    main(
        [
            "prepare", "--dataset", str(corpus_file), "--text-column", "problem", "solution",
            "--proxy-model", str(proxy_dir), "--eval-size", "4", "--min-entropy", "1.0",
            "--prompt-format", "text", "--min-context-tokens", "8", "--no-cache", "--output", str(output), *extra,
        ]
    )  # fmt: skip


@pytest.fixture(scope="module")
def prepared(corpus_file, proxy_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("out") / "rpt-omnimath"
    run_prepare(corpus_file, proxy_dir, output)
    return output


def test_prepare_writes_filtered_train_and_labelled_eval_splits(prepared):
    splits = datasets.load_from_disk(str(prepared))
    assert set(splits) == {"train", "eval"}
    info = json.loads((prepared / "prepare_info.json").read_text())
    train, evaluation = splits["train"], splits["eval"]
    assert len(train) > 20 and len(evaluation) > 5
    assert min(train["entropy"]) >= 1.0 and min(evaluation["entropy"]) >= 0.5
    assert set(train["document_id"]).isdisjoint(evaluation["document_id"])  # documents held out whole
    assert len(set(evaluation["document_id"])) <= 4
    for row in evaluation:
        assert row["difficulty"] == [
            n for n, t in {"easy": 0.5, "medium": 1.0, "hard": 1.5}.items() if row["entropy"] > t
        ]
    assert info["splits"]["train"]["examples"] == len(train)
    assert info["splits"]["eval"]["difficulty"] == {
        name: sum(name in d for d in evaluation["difficulty"]) for name in ("easy", "medium", "hard")
    }
    skipped = {
        k: info["splits"]["train"]["stats"][k] + info["splits"]["eval"]["stats"][k]
        for k in ("empty_documents", "short_documents")
    }
    assert skipped == {"empty_documents": 1, "short_documents": 1}
    assert info["splits"]["train"]["stats"]["low_entropy_positions"] > 0
    assert "rpt-trl prepare --dataset" in info["command"]


def test_prepare_with_a_position_filter_keeps_the_unfiltered_rows_whose_next_token_is_a_word_of_the_context(
    corpus_file, proxy_dir, prepared, tmp_path
):
    from rpt_trl.data.templates import template_context

    output = tmp_path / "filtered"
    run_prepare(corpus_file, proxy_dir, output, "--position_filter", "word_in_context")
    unfiltered, filtered = (datasets.load_from_disk(str(folder)) for folder in (prepared, output))
    info, unfiltered_info = (json.loads((folder / "prepare_info.json").read_text()) for folder in (output, prepared))
    assert (info["settings"]["position_filter"], unfiltered_info["settings"]["position_filter"]) == (
        "word_in_context",
        "all",
    )
    for split in ("train", "eval"):
        rows = unfiltered[split].to_list()
        expected = [row for row in rows if is_word_of(first_token_of(row), template_context(row["prompt"], "v0"))]
        assert 0 < len(expected) < len(rows)
        assert filtered[split].to_list() == expected  # the same entropies, split and order: only the filter differs
        assert info["splits"][split]["stats"]["filtered_out_positions"] == len(rows) - len(expected)
        assert unfiltered_info["splits"][split]["stats"]["filtered_out_positions"] == 0
    card = DatasetCard.load(output / "README.md").text
    train_stats = info["splits"]["train"]["stats"]
    assert "left out by `position_filter`" in card and "| `position_filter` | `word_in_context` |" in card
    assert f"| {train_stats['low_entropy_positions']} | {train_stats['filtered_out_positions']} |" in card


def test_the_dataset_card_states_source_proxy_thresholds_and_counts(prepared):
    card = DatasetCard.load(prepared / "README.md")
    assert {"rpt", "trl"} <= set(card.data.tags)
    assert card.data.configs[0]["data_files"] == [
        {"split": "train", "path": "data/train-*.parquet"},
        {"split": "eval", "path": "data/eval-*.parquet"},
    ]
    info = json.loads((prepared / "prepare_info.json").read_text())
    for text in ("omnimath.jsonl", "problem + solution", "top-16", "at least\n1.0", "`hard`: entropy above 1.5"):
        assert text.replace("\n", " ") in card.text.replace("\n", " ")
    train = info["splits"]["train"]
    assert f"| train | {train['documents']} | {train['examples']} | {train['difficulty']['easy']} |" in card.text


def test_the_prepared_dataset_trains_with_rpt_trainer_unchanged(prepared, proxy_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train = datasets.load_from_disk(str(prepared))["train"]
    tokenizer = AutoTokenizer.from_pretrained(proxy_dir)
    model = AutoModelForCausalLM.from_pretrained(proxy_dir)
    args = RPTConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, max_steps=2, per_device_train_batch_size=4,
        num_generations=4, max_completion_length=8, logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True, prompt_format="text",
    )  # fmt: skip
    trainer = RPTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "rpt/next_token_accuracy" in entry]
    assert len(logged) == 2 and all(0.0 <= entry["rpt/answer_rate"] <= 1.0 for entry in logged)


def test_push_builds_one_commit_with_parquet_shards_card_and_info(prepared, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_SecretThatMustNotLeak")
    splits = datasets.load_from_disk(str(prepared))
    info = json.loads((prepared / "prepare_info.json").read_text())
    calls = []

    class FakeApi:  # records what would go to the Hub, and reads the shards while they exist
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def create_commit(self, repo_id, operations, **kwargs):
            files = {}
            for op in operations:
                source = op.path_or_fileobj
                files[op.path_in_repo] = (
                    datasets.Dataset.from_parquet(source) if op.path_in_repo.endswith(".parquet") else bytes(source)
                )
            calls.append(("create_commit", repo_id, kwargs, files))
            return type("Commit", (), {"commit_url": f"https://huggingface.co/datasets/{repo_id}/commit/abc"})()

    url = prepare.push_prepared_dataset(splits, info, "org/rpt-omnimath", private=True, api=FakeApi())
    assert url.endswith("/commit/abc")
    assert calls[0] == ("create_repo", "org/rpt-omnimath", {"repo_type": "dataset", "private": True, "exist_ok": True})
    _, repo_id, kwargs, files = calls[1]
    assert kwargs["repo_type"] == "dataset"
    assert sorted(files) == [
        "README.md", "data/eval-00000-of-00001.parquet", "data/train-00000-of-00001.parquet", "prepare_info.json",
    ]  # fmt: skip
    for split in ("train", "eval"):
        pushed = files[f"data/{split}-00000-of-00001.parquet"]
        assert pushed["position"] == splits[split]["position"] and pushed["entropy"] == splits[split]["entropy"]
    assert 'load_dataset("org/rpt-omnimath")' in files["README.md"].decode()
    for name in ("README.md", "prepare_info.json"):
        assert b"SecretThatMustNotLeak" not in files[name]


def test_push_is_refused_before_any_work_when_offline(corpus_file, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    output = tmp_path / "never"
    with pytest.raises(SystemExit, match="HF_HUB_OFFLINE"):
        run_prepare(corpus_file, tmp_path / "no-such-model", output, "--push-to-hub", "org/name")
    assert not output.exists()


def test_push_is_refused_without_a_login(corpus_file, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("rpt_trl.hub.access.get_token", lambda: None)
    with pytest.raises(SystemExit, match="no Hugging Face token was found"):
        run_prepare(corpus_file, tmp_path / "no-such-model", tmp_path / "never", "--push-to-hub", "org/name")


def test_invalid_utf8_is_reported_with_file_and_line_and_nothing_is_written(proxy_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    rows = [json.dumps(row).encode() + b"\n" for row in omnimath_rows(4)]
    rows[2] = rows[2].replace(b"has", b"h\xff\xfes")
    bad.write_bytes(b"".join(rows))
    output = tmp_path / "out"
    with pytest.raises(SystemExit, match=r"bad\.jsonl, line 3: invalid UTF-8"):
        run_prepare(bad, proxy_dir, output)
    assert not output.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_a_non_empty_output_folder_is_refused_before_scoring(corpus_file, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="already exists and is not empty"):
        run_prepare(corpus_file, tmp_path / "no-such-model", output)
    assert (output / "keep.txt").read_text() == "mine"


def test_a_failure_while_writing_leaves_nothing_behind(prepared, tmp_path, monkeypatch):
    splits = datasets.load_from_disk(str(prepared))
    info = json.loads((prepared / "prepare_info.json").read_text())

    def broken_card(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(prepare, "render_dataset_card", broken_card)
    with pytest.raises(OSError, match="disk full"):
        prepare.save_prepared_dataset(splits, info, str(tmp_path / "out"))
    assert list(tmp_path.iterdir()) == []


def test_load_documents_reads_files_folders_and_saved_datasets(tmp_path):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("First document.\nSecond line.")
    (tmp_path / "files" / "b.json").write_text(json.dumps([{"text": "From JSON."}]))
    datasets.Dataset.from_dict({"text": ["From parquet."]}).to_parquet(str(tmp_path / "files" / "c.parquet"))
    loaded = prepare.load_documents(str(tmp_path / "files"))
    assert loaded["text"] == ["First document.\nSecond line.", "From JSON.", "From parquet."]

    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": ["saved"]})}).save_to_disk(
        str(tmp_path / "saved")
    )
    assert prepare.load_documents(str(tmp_path / "saved"))["text"] == ["saved"]
    with pytest.raises(ValueError, match="no split 'train'"):
        prepare.load_documents(str(tmp_path / "saved"), split="train")
    with pytest.raises(ValueError, match="Hub is offline"):
        prepare.load_documents("KbsdJames/Omni-MATH")
    (tmp_path / "notes.md").write_text("# a")
    with pytest.raises(ValueError, match="Unsupported file type"):
        prepare.load_documents([str(tmp_path / "notes.md")])
    (tmp_path / "broken.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(ValueError, match=r"broken\.jsonl, line 2: not valid JSON"):
        prepare.load_documents(str(tmp_path / "broken.jsonl"))


def test_eval_size_must_leave_training_documents(proxy_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(proxy_dir)
    model = AutoModelForCausalLM.from_pretrained(proxy_dir)
    with pytest.raises(ValueError, match="must leave training documents"):
        prepare.prepare_rpt_dataset(["one document", "two documents", " "], tokenizer, model, eval_size=2)


@pytest.mark.parametrize("bad", [["--eval-size", "-1"], ["--difficulty-thresholds", "1", "2"]])
def test_bad_arguments_are_reported(corpus_file, proxy_dir, tmp_path, bad):
    with pytest.raises(SystemExit):
        run_prepare(corpus_file, proxy_dir, tmp_path / "out", *bad)
    assert not (tmp_path / "out").exists()


def test_entropy_is_cached_between_runs(corpus_file, proxy_dir, tmp_path):
    cache = tmp_path / "cache"
    args = ["--cache-dir", str(cache)]
    main(["prepare", "--dataset", str(corpus_file), "--text-column", "problem", "solution", "--proxy-model",
          str(proxy_dir), "--eval-size", "2", "--prompt-format", "text", "--output", str(tmp_path / "a"), *args])  # fmt: skip
    stamp = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert len(stamp) == 1
    main(["prepare", "--dataset", str(corpus_file), "--text-column", "problem", "solution", "--proxy-model",
          str(proxy_dir), "--eval-size", "2", "--prompt-format", "text", "--output", str(tmp_path / "b"), *args])  # fmt: skip
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamp
    first, second = (datasets.load_from_disk(str(tmp_path / name))["train"] for name in "ab")
    assert first["entropy"] == second["entropy"] and not any(math.isnan(v) for v in first["entropy"])
    assert os.listdir(tmp_path / "a") == os.listdir(tmp_path / "b")


# Issue 13: bad input fails before the proxy loads or writes nothing; no machine paths in public files.


@pytest.fixture
def proxy_must_not_load(monkeypatch):
    from transformers import AutoModelForCausalLM

    def refuse(*args, **kwargs):
        raise AssertionError("the proxy model was loaded before the input was checked")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuse)


@pytest.mark.parametrize(
    ("rows", "extra", "message"),
    [
        # item 1: a corpus of only short documents used to write an unloadable dataset and exit 0
        ([{"problem": "Hi", "solution": "."}] * 6, [], "would have no examples: none of its"),
        # item 6: template, stride, context and threshold errors came after the whole corpus was scored
        (None, ["--template", "no placeholder"], "template"),
        (None, ["--min-context-tokens", "20", "--max-context-tokens", "10"], "max_context_tokens"),
        (None, ["--min-entropy", "nan"], "min_entropy must be a finite number"),
        # a position filter that keeps nothing: only one-character tokens and whitespace
        (
            [{"problem": "1 2 3 4 5 6 7 8 9", "solution": "9 8 7 6 5 4 3 2 1"}] * 6,
            ["--position_filter", "word_in_context"],
            r"^rpt-trl prepare: error: The train split would have no examples: position_filter='word_in_context' keeps",
        ),
        # item 13: a corpus without text was reported as "eval_size must leave training documents"
        ([{"problem": "", "solution": None}] * 6, [], "The corpus has no text"),
    ],
)
def test_bad_input_fails_before_the_proxy_loads_and_writes_nothing(
    rows, extra, message, corpus_file, proxy_dir, tmp_path, proxy_must_not_load
):
    source = corpus_file
    if rows is not None:
        source = tmp_path / "corpus.jsonl"
        source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(SystemExit, match=message):
        run_prepare(source, proxy_dir, tmp_path / "out", *extra)
    assert not (tmp_path / "out").exists()


def test_an_unknown_position_filter_flag_is_refused_by_the_parser(
    corpus_file, proxy_dir, tmp_path, proxy_must_not_load, capsys
):
    with pytest.raises(SystemExit):
        run_prepare(corpus_file, proxy_dir, tmp_path / "out", "--position_filter", "words")
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        "rpt-trl prepare: error: argument --position_filter/--position-filter: invalid choice: 'words' (choose from "
        "'all', 'word_in_context')"
    )
    assert not (tmp_path / "out").exists()


def test_a_split_emptied_by_the_entropy_threshold_is_an_error_not_an_unloadable_dataset(
    corpus_file, proxy_dir, tmp_path
):
    # Issue 13, item 1: `--eval-size 1 --min-entropy 3.0` exited 0, and `load_from_disk` then raised IndexError.
    with pytest.raises(SystemExit, match=r"The eval split has no examples.*Lower --eval_min_entropy"):
        run_prepare(corpus_file, proxy_dir, tmp_path / "out", "--eval-min-entropy", "50")
    with pytest.raises(SystemExit, match=r"The train split has no examples.*Lower --min_entropy"):
        run_prepare(corpus_file, proxy_dir, tmp_path / "out", "--min-entropy", "50")
    assert not (tmp_path / "out").exists() and os.listdir(tmp_path) == []


def test_the_trainer_refuses_an_empty_dataset_before_the_model_loads(tmp_path):
    # Issue 13, item 1: an empty dataset trained 0 steps and exited normally.
    args = RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    empty = datasets.Dataset.from_dict({"prompt": [], "ground_truth": [], "ground_truth_boundaries": []})
    with pytest.raises(ValueError, match="train_dataset has no examples"):
        RPTTrainer(model="no/such-model", args=args, train_dataset=empty)


def test_iterable_datasets_are_checked_before_step_one(tmp_path):
    # Issue 13, item 12: a generator dataset without the columns failed only at step 1; raw documents had no fix.
    args = RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", dynamic_sampling=False)
    wrong = datasets.IterableDataset.from_generator(lambda: iter([{"question": "q"}]))
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['prompt'"):
        RPTTrainer(model="no/such-model", args=args, train_dataset=wrong)
    raw = datasets.IterableDataset.from_generator(lambda: iter([{"text": "a document"}]))
    with pytest.raises(ValueError, match="raw documents.*build_next_token_dataset"):
        RPTTrainer(model="no/such-model", args=args, train_dataset=raw)


def test_no_machine_paths_in_the_card_or_the_info_file(prepared, tmp_path):
    # Issue 13, item 9: the card and prepare_info.json recorded the command line's absolute paths.
    for name in ("README.md", "prepare_info.json"):
        text = (prepared / name).read_text()
        assert str(prepared.parent) not in text and "/tmp" not in text, name
    info = json.loads((prepared / "prepare_info.json").read_text())
    assert "--output rpt-omnimath" in info["command"] and "--dataset omnimath.jsonl" in info["command"]


def test_smaller_items_give_clear_errors(tmp_path, caplog):
    # Issue 13, item 13.
    from rpt_trl import build_next_token_dataset
    from rpt_trl.trainer.train import check_inputs

    tokenizer = make_byte_level_tokenizer()
    documents = ["A document that is long enough to hold a few positions of context."]
    with pytest.raises(ValueError, match=r"positions\[0\] must hold token indices \(integers\), got \[20.0\]"):
        build_next_token_dataset(documents, tokenizer, positions=[[20.0]], min_context_tokens=2)
    with pytest.raises(ValueError, match="A prompt template must be one of .* got NoneType None"):
        build_next_token_dataset(documents, tokenizer, template=None)
    with pytest.raises(ValueError, match="text_column (must name at least one|names no) column"):
        build_next_token_dataset(datasets.Dataset.from_dict({"text": documents}), tokenizer, text_column=[])
    # a missing model path: one line, not a 71-line traceback
    from trl import ModelConfig

    with pytest.raises(FileNotFoundError, match="is not an existing folder"):
        check_inputs(ModelConfig(model_name_or_path=str(tmp_path / "no-model")))
    with pytest.raises(SystemExit, match="rpt-trl train: error: .*no-model.* is not an existing folder"):
        main(["train", "--model_name_or_path", str(tmp_path / "no-model"), "--output_dir", str(tmp_path / "o"),
              "--use_cpu", "true", "--bf16", "false", "--report_to", "none"])  # fmt: skip
    # an in-memory model that names no checkpoint, with raw documents and no tokenizer
    model = make_tiny_model(tokenizer)
    model.config._name_or_path = ""
    args = RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none")
    with pytest.raises(ValueError, match="pass processing_class=tokenizer"):
        RPTTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_dict({"text": documents}))


def test_the_output_folder_gets_the_usual_permissions(tmp_path):
    # Issue 13, item 13: the staging folder came from mkdtemp, so the output folder had mode 0700.
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"prompt": ["a"]})})
    info = {
        "text_column": ["text"], "min_entropy": 0.5, "eval_min_entropy": 0.5, "eval_documents": 0,
        "difficulty_thresholds": {"easy": 0.5}, "seed": 0, "top_k": 16, "settings": {},
        "splits": {"train": {"documents": 1, "examples": 1, "difficulty": {"easy": 0}, "stats": {}}},
    }  # fmt: skip
    prepare.save_prepared_dataset(splits, info, str(tmp_path / "out"))
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask


def test_max_length_beyond_the_proxy_context_is_warned(proxy_dir, caplog):
    from rpt_trl.data.prepare import _warn_if_longer_than_the_proxy

    with caplog.at_level(logging.WARNING, logger="rpt_trl"):
        _warn_if_longer_than_the_proxy(str(proxy_dir), 4096)
    assert any("exceeds the proxy's context of 1024 tokens" in r.getMessage() for r in caplog.records)


def test_evaluate_explains_errors_without_a_traceback(tmp_path):
    with pytest.raises(SystemExit, match="rpt-trl evaluate: error: .*not a local path"):
        main(["evaluate", "next-token", "--dataset", str(tmp_path / "absent"), "--mode", "standard",
              "--output", str(tmp_path / "r.json")])  # fmt: skip


def test_standard_evaluation_finds_the_prepared_documents_by_itself(prepared, corpus_file, proxy_dir, tmp_path):
    """No --documents for a split written by `rpt-trl prepare`: the texts it recorded are used, and score exactly
    as the source documents passed by hand."""
    (tmp_path / "docs.jsonl").write_text(
        "".join(json.dumps({"text": f"{row['problem']}\n\n{row['solution']}" if row["solution"] else row["problem"]})
                + "\n" for row in omnimath_rows())
    )  # fmt: skip
    common = ["evaluate", "next-token", "--model", str(proxy_dir), "--dataset", str(prepared / "eval"), "--mode",
              "standard", "--limit", "12"]  # fmt: skip
    main([*common, "--output", str(tmp_path / "recorded.json")])
    main([*common, "--documents", str(tmp_path / "docs.jsonl"), "--output", str(tmp_path / "given.json")])
    recorded, given = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("recorded", "given"))
    assert recorded["overall"] == given["overall"] and recorded["overall"]["n"] == 12
    with pytest.raises(SystemExit, match="Pass --model: .* local tokenizer"):  # the proxy here is a local folder
        main([*common[:2], *common[4:], "--output", str(tmp_path / "no-model.json")])
    datasets.load_from_disk(str(prepared / "eval")).save_to_disk(str(tmp_path / "copy"))  # no prepare_info.json
    common[5] = str(tmp_path / "copy")
    with pytest.raises(SystemExit, match="Pass --documents"):
        main([*common, "--output", str(tmp_path / "copy.json")])
