"""The one document loader: every kind of source means one thing in `prepare`, `train` and evaluation, and bad
input is named by file, line and column (issue 13, items 3 and 4; issue 12, "one document loader")."""

import json
import logging

import datasets
import pytest

from rpt_trl.commands.evaluate import load_document_texts, load_rows
from rpt_trl.data.loading import DatasetSourceNotFoundError, load_documents, saved_dataset_kind
from rpt_trl.trainer.train import RPTScriptArguments, load_train_dataset


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_columns_come_from_every_file_not_the_first_row(tmp_path):
    # Issue 13, item 3: `a.txt` beside a 4-row `b.jsonl` used to turn 4 of 5 documents into "empty" ones.
    (tmp_path / "a.txt").write_text("A whole document.\nWith two lines.")
    write_jsonl(tmp_path / "b.jsonl", [{"text": f"row {i}", "source": "b"} for i in range(4)])
    loaded = load_documents(str(tmp_path), columns=["text"])
    assert loaded["text"] == ["A whole document.\nWith two lines.", "row 0", "row 1", "row 2", "row 3"]
    assert loaded["source"] == [None, "b", "b", "b", "b"]


def test_a_file_without_the_text_columns_is_named(tmp_path):
    (tmp_path / "a.txt").write_text("text only")
    write_jsonl(tmp_path / "b.jsonl", [{"problem": "p", "solution": "s"}])
    with pytest.raises(ValueError, match=r"a\.txt, the whole file: no column\(s\) \['problem', 'solution'\]"):
        load_documents(str(tmp_path), columns=["problem", "solution"])


def test_csv_in_a_folder_is_read_and_other_files_are_counted_in_a_warning(tmp_path, caplog):
    # Issue 13, item 3: a .csv inside a folder was skipped without a word.
    write_jsonl(tmp_path / "a.jsonl", [{"text": "from jsonl"}])
    (tmp_path / "b.csv").write_text('text,label\n"from, csv",1\n"two\nlines",2\n')
    (tmp_path / "notes.md").write_text("# not a document")
    with caplog.at_level(logging.WARNING, logger="rpt_trl.data.loading"):
        loaded = load_documents(str(tmp_path), columns=["text"])
    assert loaded["text"] == ["from jsonl", "from, csv", "two\nlines"]
    assert any("skipped 1 file(s)" in r.getMessage() and "notes.md" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        # Issue 13, item 4: pyarrow's own message named no file, line or column, even for a non-text column.
        ([{"text": "a", "year": 2020}, {"text": "b", "year": "unknown"}], r"b\.jsonl, line 2: column 'year' holds"),
        ([{"text": "a", "tags": ["x"]}, {"text": "b", "tags": {"k": 1}}], r"b\.jsonl, line 2: column 'tags'"),
        ([{"text": "a"}, {"text": 7}], r"b\.jsonl, line 2: column 'text' must hold text"),
    ],
)
def test_mixed_type_fields_name_file_line_and_column(tmp_path, rows, message):
    write_jsonl(tmp_path / "b.jsonl", rows)
    with pytest.raises(ValueError, match=message):
        load_documents(str(tmp_path / "b.jsonl"), columns=["text"])


def test_mixed_types_across_files_name_both(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "a", "id": 1}])
    (tmp_path / "b.csv").write_text("text,id\nb,x1\n")
    with pytest.raises(ValueError, match=r"b\.csv, line 2: column 'id' holds str 'x1', but .*a\.jsonl, line 1 holds"):
        load_documents(str(tmp_path))


def test_integers_and_floats_mix(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "a", "score": 1}, {"text": "b", "score": 2.5}])
    assert load_documents(str(tmp_path / "a.jsonl"))["score"] == [1.0, 2.5]


def test_bad_utf8_and_json_keep_file_and_line(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"fine\n\xff\xfe broken\n")
    with pytest.raises(ValueError, match=r"bad\.txt, line 2: invalid UTF-8"):
        load_documents(str(tmp_path / "bad.txt"))
    (tmp_path / "bad.json").write_text('[{"text": "a"},\n {"text": }]')
    with pytest.raises(ValueError, match=r"bad\.json, line 2: not valid JSON"):
        load_documents(str(tmp_path / "bad.json"))
    (tmp_path / "bad.csv").write_text("text\na,b\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 2: more fields"):
        load_documents(str(tmp_path / "bad.csv"))


def test_saved_dataset_and_dataset_dict_are_recognised_one_way(tmp_path):
    datasets.Dataset.from_dict({"text": ["one"]}).save_to_disk(str(tmp_path / "dataset"))
    splits = {"train": ["t"], "eval": ["e"]}
    datasets.DatasetDict({k: datasets.Dataset.from_dict({"text": v}) for k, v in splits.items()}).save_to_disk(
        str(tmp_path / "dict")
    )
    assert saved_dataset_kind(tmp_path / "dataset") == "Dataset"
    assert saved_dataset_kind(tmp_path / "dict") == "DatasetDict"
    assert saved_dataset_kind(tmp_path) is None
    assert load_documents(str(tmp_path / "dataset"))["text"] == ["one"]
    assert load_documents(str(tmp_path / "dict"))["text"] == ["t"]  # several splits: train by default
    assert load_documents(str(tmp_path / "dict"), split="eval")["text"] == ["e"]
    with pytest.raises(ValueError, match=r"no column\(s\) \['problem'\]; its columns are \['text'\]"):
        load_documents(str(tmp_path / "dataset"), columns=["problem"])
    with pytest.raises(ValueError, match="no split 'test'"):
        load_documents(str(tmp_path / "dict"), split="test")


def test_prepare_train_and_evaluation_read_the_same_source_the_same_way(tmp_path):
    # Issue 12: a .txt file was one document in prepare, one per line in evaluation, and load_dataset's lines in
    # training. Now it is one document everywhere.
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("line one\nline two")
    source = str(tmp_path / "docs" / "a.txt")
    expected = ["line one\nline two"]
    assert load_documents(source)["text"] == expected
    assert load_rows(source)["text"] == expected
    assert load_document_texts(source, ["text"]) == expected
    assert load_train_dataset(RPTScriptArguments(dataset_name=source))["text"] == expected
    assert load_train_dataset(RPTScriptArguments(dataset_name=str(tmp_path / "docs")))["text"] == expected


def test_a_missing_path_offline_is_not_found(tmp_path):
    with pytest.raises(DatasetSourceNotFoundError, match="not a local path"):
        load_documents(str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="Not files"):
        load_documents([str(tmp_path / "absent"), str(tmp_path)])


@pytest.mark.parametrize(
    "names, split, held_out, expected",
    [
        (["train", "eval"], None, True, "eval"),
        (["train", "test"], None, True, "test"),
        (["train", "validation"], None, True, "validation"),
        (["train", "test", "eval"], None, True, "eval"),
        (["train"], None, True, "train"),  # the only split
        (["train", "eval"], "train", True, "train"),  # asked for
        (["train", "eval"], None, False, "train"),  # training's default
        (["train", "other"], None, True, "no eval / test / validation split"),
        (["train", "eval"], "dev", True, "has no split 'dev'"),
    ],
)
def test_choose_split_prefers_the_held_out_split_for_evaluation(names, split, held_out, expected):
    from rpt_trl.data.loading import choose_split

    if expected.startswith(("no ", "has ")):
        with pytest.raises(ValueError, match=expected):
            choose_split(names, split, "data", held_out=held_out)
    else:
        assert choose_split(names, split, "data", held_out=held_out) == expected
