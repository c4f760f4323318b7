"""Issue 21, items 6 and 8: one check for every output path (not an input, not containing one, writable, replacing
only what it may), and one lock per output, so that two writers of one folder cannot mix or replace each other."""

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import subprocess_env
from test_prepare import corpus_file, proxy_dir, run_prepare  # noqa: F401

from rpt_trl.output_paths import check_output_path, is_results_file, lock_path, output_lock


RESULT = {"model": "m", "dataset": "d", "mode": "standard", "overall": {"accuracy": 0.5, "n": 2}, "splits": {}}


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "results.json").write_text(json.dumps(RESULT))
    (tmp_path / "cache").mkdir()
    (tmp_path / "other").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("output", "kind", "message"),
    [
        ("corpus/a.jsonl", "file", r"^--output .*a\.jsonl is the input .*a\.jsonl; choose an output outside"),
        ("corpus", "folder", r"^--output .*corpus is the input .*corpus; choose"),
        (".", "folder", r"^--output \S+ contains the input .*corpus, which writing it would destroy"),
        ("cache/..", "folder", r"^--output .* contains the input"),
        ("corpus/a.jsonl/x.json", "file", r"^--output .* cannot be created: .*a\.jsonl is a file, not a folder"),
        ("other", "file", r"^--output .*other is a folder; give a file name"),
        ("results.json", "folder", r"^--output .*results\.json is a file; give a folder"),
    ],
)
def test_an_output_that_is_or_holds_an_input_is_refused_and_nothing_is_created(inputs, output, kind, message):
    before = sorted(p.relative_to(inputs) for p in inputs.rglob("*"))
    with pytest.raises(ValueError, match=message):
        check_output_path(inputs / output, [inputs / "corpus", inputs / "corpus" / "a.jsonl", inputs / "cache"],
                          kind=kind)  # fmt: skip
    assert sorted(p.relative_to(inputs) for p in inputs.rglob("*")) == before


def test_a_results_file_replaces_only_an_earlier_results_file(inputs):
    check_output_path(inputs / "results.json", [], replaceable=is_results_file)  # an earlier result: fine
    check_output_path(inputs / "new" / "results.json", [], replaceable=is_results_file)  # absent: fine
    (inputs / "list.json").write_text(json.dumps([RESULT, RESULT]))
    assert is_results_file(inputs / "list.json")
    for name, content in [("notes.json", '{"a": 1}'), ("data.jsonl", '{"text": "x"}\n{"text": "y"}\n'),
                          ("empty.json", "[]"), ("binary.json", b"\xff\xfe")]:  # fmt: skip
        path = inputs / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        assert not is_results_file(path), name
        with pytest.raises(ValueError, match=rf"^--output .*{name} exists and may not be replaced"):
            check_output_path(path, [], replaceable=is_results_file)
        assert path.read_bytes() == (content if isinstance(content, bytes) else content.encode())


def test_an_output_without_write_permission_is_refused_up_front(inputs, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # the tests run as root, who may write anywhere
    with pytest.raises(ValueError, match=r"^--output_dir .*run is not writable \(no write permission on .*"):
        check_output_path(inputs / "deep" / "run", [], kind="folder", flag="--output_dir")
    assert not (inputs / "deep").exists()


HOLDER = """
import sys, time
from rpt_trl.output_paths import output_lock
with output_lock(sys.argv[1]):
    open(sys.argv[2], "w").close()
    time.sleep(120)
"""


@pytest.fixture
def held_by_another_process(tmp_path):
    """Start a process that holds the lock of a path, and wait until it does; kill it afterwards."""
    processes = []

    def hold(path):
        ready = tmp_path / f"ready-{len(processes)}"
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(ready)], env=subprocess_env())
        processes.append(process)
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert process.poll() is None and time.monotonic() < deadline, "the lock holder did not start"
            time.sleep(0.1)

    yield hold
    for process in processes:
        process.kill()
        process.wait()


def test_the_lock_refuses_a_second_writer_and_leaves_nothing_behind(tmp_path, held_by_another_process):
    output = tmp_path / "out"
    with output_lock(output):
        assert lock_path(output).exists()
        with pytest.raises(ValueError, match=r"^--output .*out is being written by another process"):
            with output_lock(output):
                pass
    assert os.listdir(tmp_path) == []
    held_by_another_process(output)
    with pytest.raises(ValueError, match="is being written by another process"):
        with output_lock(output):
            pass


# Item 6: `prepare --overwrite` with --output equal to, or a parent of, --dataset deleted the corpus.
@pytest.mark.parametrize("where", ["parent", "same"])
def test_prepare_never_overwrites_its_input(corpus_file, proxy_dir, tmp_path, where):  # noqa: F811
    folder = tmp_path / "corpus"
    folder.mkdir()
    corpus = folder / "omnimath.jsonl"
    corpus.write_text(corpus_file.read_text())
    (folder / "unrelated.txt").write_text("mine")
    output = folder if where == "parent" else corpus
    with pytest.raises(SystemExit, match=r"^rpt-trl prepare: error: --output .*corpus.* (is|contains) the input"):
        run_prepare(corpus, proxy_dir, output, "--overwrite")
    assert corpus.read_text() == corpus_file.read_text() and (folder / "unrelated.txt").read_text() == "mine"


def test_prepare_never_overwrites_its_cache(corpus_file, proxy_dir, tmp_path):  # noqa: F811
    (tmp_path / "out" / "cache").mkdir(parents=True)
    (tmp_path / "out" / "cache" / "entropy-1.npz").write_bytes(b"scores")
    arguments = ["prepare", "--dataset", str(corpus_file), "--proxy-model", str(proxy_dir), "--output",
                 str(tmp_path / "out"), "--cache_dir", str(tmp_path / "out" / "cache"), "--overwrite"]  # fmt: skip
    from rpt_trl.cli import main

    with pytest.raises(SystemExit, match=r"--output .*out contains the input .*cache"):
        main(arguments)
    assert (tmp_path / "out" / "cache" / "entropy-1.npz").read_bytes() == b"scores"


# Item 8: two `prepare` runs into one new folder both exited 0, and the later one replaced the earlier one.
def test_a_second_prepare_into_a_folder_being_written_fails_at_once(
    corpus_file,  # noqa: F811
    proxy_dir,  # noqa: F811
    tmp_path,
    held_by_another_process,
):
    output = tmp_path / "out"
    held_by_another_process(output)
    started = time.monotonic()
    with pytest.raises(SystemExit, match=r"^rpt-trl prepare: error: --output .*out is being written by another"):
        run_prepare(corpus_file, proxy_dir, output)
    assert time.monotonic() - started < 30 and not output.exists()


def test_prepare_refuses_at_the_rename_a_folder_that_was_filled_meanwhile(corpus_file, proxy_dir, tmp_path,  # noqa: F811
                                                                        monkeypatch):  # fmt: skip
    from rpt_trl.data import prepare

    output = tmp_path / "out"
    render = prepare.render_dataset_card

    def other_writer_meanwhile(*args, **kwargs):  # a writer that takes no lock fills the folder during the save
        output.mkdir(exist_ok=True)
        (output / "theirs.txt").write_text("theirs")
        return render(*args, **kwargs)

    monkeypatch.setattr(prepare, "render_dataset_card", other_writer_meanwhile)
    with pytest.raises(SystemExit, match=r"out was written by someone else while this run prepared it"):
        run_prepare(corpus_file, proxy_dir, output)
    assert os.listdir(output) == ["theirs.txt"] and sorted(os.listdir(tmp_path)) == ["out"]


# Item 8: two `train --resume_from_checkpoint true` on one output folder mixed their checkpoints.
def train_arguments(tmp_path, output_dir, *extra):
    from rpt_trl.trainer.train import parse_args

    return parse_args(["--output_dir", str(output_dir), "--use_cpu", "true", "--bf16", "false", "--report_to", "none",
                       "--model_name_or_path", str(tmp_path / "no-model"), *extra])  # fmt: skip


def test_a_second_train_into_a_folder_being_written_fails_at_once(tmp_path, held_by_another_process):
    from rpt_trl.trainer.train import main

    output_dir = tmp_path / "run"
    held_by_another_process(output_dir)
    with pytest.raises(ValueError, match=r"^--output_dir .*run is being written by another process"):
        main(*train_arguments(tmp_path, output_dir, "--resume_from_checkpoint", "true"))


def test_train_refuses_an_output_dir_that_holds_its_dataset(tmp_path):
    from rpt_trl.trainer.train import main

    (tmp_path / "work" / "data").mkdir(parents=True)
    (tmp_path / "work" / "data" / "train.jsonl").write_text('{"text": "x"}\n')
    arguments = train_arguments(tmp_path, tmp_path / "work", "--dataset_name", str(tmp_path / "work" / "data"))
    with pytest.raises(ValueError, match=r"^--output_dir .*work contains the input .*data, which writing it would"):
        main(*arguments)
