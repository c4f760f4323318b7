"""Hub round trip without network: access checks, background checkpoint pushes (mocked HfApi), pulls and resumes."""

import logging
import shutil
import threading
from types import SimpleNamespace
from unittest import mock

import httpx2
import pytest
import torch
from conftest import make_tiny_model
from huggingface_hub.errors import HfHubHTTPError

from rpt_trl import RPTConfig, RPTTrainer
from rpt_trl.experiments.tiny import animal_corpus, last_word_dataset, make_tiny_tokenizer
from rpt_trl.hub import (
    CheckpointRevisionPusher,
    HubAccessError,
    check_hub_access,
    checkpoint_operations,
    download_checkpoint,
    parse_hub_reference,
)
from rpt_trl.hub import access as hub  # the module whose globals (get_token, constants, time) the tests patch
from rpt_trl.trainer.checkpoints import resolve_resume_checkpoint


SECRET = "hf_SECRETtoken123"


def http_error(status, message):
    request = httpx2.Request("POST", "https://huggingface.co/api/models/org/rpt-tiny/commit/main")
    return HfHubHTTPError(message, response=httpx2.Response(status, request=request))


@pytest.fixture
def online(monkeypatch):
    """Pretend offline mode is off (the suite itself runs with HF_HUB_OFFLINE=1)."""
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


@pytest.fixture(scope="module")
def tiny():
    tokenizer = make_tiny_tokenizer()
    return tokenizer, last_word_dataset(tokenizer, animal_corpus()[:8])


def cpu_args(output_dir, **overrides):
    values = dict(
        output_dir=str(output_dir), use_cpu=True, bf16=False, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=6, max_steps=3, save_steps=1, logging_steps=1, report_to="none", disable_tqdm=True,
    )  # fmt: skip
    values.update(overrides)
    return RPTConfig(**values)


def test_offline_mode_is_refused_before_anything_else(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubAccessError, match="offline mode is on"):
        check_hub_access(SECRET, api=mock.Mock())


def test_missing_token_says_how_to_log_in(online, monkeypatch):
    monkeypatch.setattr(hub, "get_token", lambda: None)
    api = mock.Mock()
    with pytest.raises(HubAccessError, match=r"no Hugging Face token.*hf auth login.*HF_TOKEN"):
        check_hub_access(api=api)
    api.whoami.assert_not_called()


@pytest.mark.parametrize(
    ("whoami", "message"),
    [
        (mock.Mock(side_effect=http_error(401, "401 Client Error: Unauthorized")), "did not accept the token"),
        (mock.Mock(side_effect=ConnectionError("Name or service not known")), "could not be reached"),
        (mock.Mock(return_value={"name": "me", "auth": {"accessToken": {"role": "read"}}}), "read-only"),
    ],
)
def test_rejected_or_read_only_token_is_a_clear_error_without_the_token(online, whoami, message):
    with pytest.raises(HubAccessError, match=message) as error:
        check_hub_access(SECRET, api=mock.Mock(whoami=whoami))
    assert SECRET not in str(error.value)
    whoami.assert_called_once_with(token=SECRET)


def test_write_token_passes(online, monkeypatch):
    monkeypatch.setattr(hub, "get_token", lambda: SECRET)
    api = mock.Mock(whoami=mock.Mock(return_value={"name": "me", "auth": {"accessToken": {"role": "write"}}}))
    assert check_hub_access(api=api) == "me"


def test_trainer_with_push_to_hub_fails_before_loading_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = cpu_args(tmp_path, push_to_hub=True, hub_model_id="org/rpt-tiny")
    loader = mock.Mock(side_effect=AssertionError("the model must not be loaded"))
    with (
        mock.patch("rpt_trl.trainer.rpt_trainer.load_training_tokenizer", loader),
        pytest.raises(HubAccessError, match="offline"),
    ):
        RPTTrainer(model="org/not-loaded", args=args, train_dataset=None)
    loader.assert_not_called()


def test_push_checkpoint_revisions_needs_push_to_hub(tmp_path):
    with pytest.raises(ValueError, match="set push_to_hub=True"):
        cpu_args(tmp_path, push_checkpoint_revisions=True)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("org/rpt-qwen@step-000500", ("org/rpt-qwen", "step-000500")),
        ("Org.Name/model_v2.1@main", ("Org.Name/model_v2.1", "main")),
        ("org/name@refs/pr/3", ("org/name", "refs/pr/3")),
        ("org/name@0123abcd", ("org/name", "0123abcd")),
        ("org/name", None),  # a revision is required: "org/name" could be a local path
        ("outputs/checkpoint-500", None),
        ("/abs/org/name@step-1", None),
        ("org/name@", None),
        ("org/name@../../etc", None),
        ("org/sub/name@main", None),
    ],
)
def test_parse_hub_reference(reference, expected):
    assert parse_hub_reference(reference) == expected


def make_checkpoint_folder(path):
    (path / "nested").mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.pt", "trainer_state.json", "nested/extra.json"):
        (path / name).write_text(name)
    return path


def test_checkpoint_operations_map_every_file_to_its_relative_path(tmp_path):
    folder = make_checkpoint_folder(tmp_path / "checkpoint-2")
    operations = checkpoint_operations(str(folder))
    assert [op.path_in_repo for op in operations] == [
        "model.safetensors", "nested/extra.json", "optimizer.pt", "trainer_state.json"
    ]  # fmt: skip
    assert [op.path_or_fileobj for op in operations] == [str(folder / op.path_in_repo) for op in operations]


def save_event(output_dir, step):
    return SimpleNamespace(output_dir=str(output_dir)), SimpleNamespace(global_step=step, is_world_process_zero=True)


def test_pusher_commits_each_checkpoint_to_its_step_branch_in_the_background(tmp_path):
    make_checkpoint_folder(tmp_path / "checkpoint-2")
    make_checkpoint_folder(tmp_path / "checkpoint-500")
    release = threading.Event()
    uploaded = {}

    def create_commit(repo_id, *, operations, revision, **kwargs):
        release.wait(10)
        uploaded[revision] = {op.path_in_repo: open(op.path_or_fileobj).read() for op in operations}

    api = mock.Mock()
    api.create_commit.side_effect = create_commit
    pusher = CheckpointRevisionPusher("org/rpt-tiny", api=api, token=SECRET)
    pusher.on_save(*save_event(tmp_path, 2), control=None)
    pusher.on_save(*save_event(tmp_path, 500), control=None)
    assert pusher.pushed == []  # on_save returned while the first upload is still in flight
    # save_total_limit may delete a checkpoint while it uploads: the staged hard links keep its files.
    shutil.rmtree(tmp_path / "checkpoint-2")
    release.set()
    pusher.on_train_end(None, None, None)
    assert pusher.pushed == ["step-000002", "step-000500"] and pusher.failures == []
    assert api.create_branch.call_args_list == [
        mock.call("org/rpt-tiny", branch="step-000002", exist_ok=True, token=SECRET),
        mock.call("org/rpt-tiny", branch="step-000500", exist_ok=True, token=SECRET),
    ]
    first = api.create_commit.call_args_list[0]
    assert first.args == ("org/rpt-tiny",)
    assert first.kwargs["revision"] == "step-000002" and first.kwargs["commit_message"] == "Checkpoint at step 2"
    assert first.kwargs["token"] == SECRET
    assert first.kwargs["operations"][0].path_or_fileobj == str(
        tmp_path / "_hub_staging" / "checkpoint-2" / "model.safetensors"
    )
    assert uploaded["step-000002"] == {
        "model.safetensors": "model.safetensors", "nested/extra.json": "nested/extra.json",
        "optimizer.pt": "optimizer.pt", "trainer_state.json": "trainer_state.json",
    }  # fmt: skip
    assert list((tmp_path / "_hub_staging").iterdir()) == []  # the links are gone once pushed


def test_pusher_retries_with_backoff_then_succeeds(tmp_path, monkeypatch):
    make_checkpoint_folder(tmp_path / "checkpoint-4")
    sleeps = []
    monkeypatch.setattr(hub.time, "sleep", sleeps.append)
    api = mock.Mock()
    api.create_commit.side_effect = [http_error(502, "502 Bad Gateway"), ConnectionError("reset"), None]
    pusher = CheckpointRevisionPusher("org/rpt-tiny", api=api, retries=3, backoff_seconds=2.0)
    assert pusher.push(str(tmp_path / "checkpoint-4"), "step-000004", 4) is True
    assert api.create_commit.call_count == 3 and sleeps == [2.0, 4.0]
    assert pusher.pushed == ["step-000004"] and pusher.failures == []


def test_failing_pushes_are_reported_and_training_runs_to_the_end(tmp_path, tiny, caplog):
    tokenizer, dataset = tiny
    api = mock.Mock()
    api.create_commit.side_effect = http_error(503, "503 Service Unavailable")
    pusher = CheckpointRevisionPusher("org/rpt-tiny", api=api, retries=2, backoff_seconds=0.0)
    trainer = RPTTrainer(
        model=make_tiny_model(tokenizer), args=cpu_args(tmp_path), train_dataset=dataset, processing_class=tokenizer,
        callbacks=[pusher],
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="rpt_trl.hub"):
        trainer.train()
    assert trainer.state.global_step == 3
    assert api.create_commit.call_count == 6  # 3 checkpoints x 2 tries
    assert [revision for revision, _ in pusher.failures] == ["step-000001", "step-000002", "step-000003"]
    assert all("503 Service Unavailable" in message for _, message in pusher.failures)
    messages = [record.getMessage() for record in caplog.records]
    assert sum("Giving up pushing" in m and "training continues" in m for m in messages) == 3
    assert any("3 checkpoint push(es) to org/rpt-tiny failed" in m for m in messages)


def test_resume_from_a_hub_revision_downloads_it_and_continues(tmp_path, tiny, monkeypatch):
    tokenizer, dataset = tiny
    first = RPTTrainer(
        model=make_tiny_model(tokenizer), args=cpu_args(tmp_path / "first", max_steps=2, save_steps=2),
        train_dataset=dataset, processing_class=tokenizer,
    )  # fmt: skip
    first.train()
    downloads = []

    def fake_snapshot_download(repo_id, *, revision, local_dir, allow_patterns, token):
        downloads.append((repo_id, revision, local_dir))
        shutil.copytree(tmp_path / "first" / "checkpoint-2", local_dir)
        return local_dir

    monkeypatch.setattr(hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    second = RPTTrainer(
        model=make_tiny_model(tokenizer, seed=1), args=cpu_args(tmp_path / "second", max_steps=3, save_steps=10),
        train_dataset=dataset, processing_class=tokenizer,
    )  # fmt: skip
    second.train(resume_from_checkpoint="org/rpt-tiny@step-000002")
    local_dir = str(tmp_path / "second" / "_hub_checkpoints" / "org--rpt-tiny--step-000002")
    assert downloads == [("org/rpt-tiny", "step-000002", local_dir)]
    assert second.state.global_step == 3
    assert [e["step"] for e in second.state.log_history if "reward" in e] == [1, 2, 3]  # steps 1-2 from the Hub

    # Resuming loaded the Hub weights (the second model started from another seed), then trained one more step.
    resumed = RPTTrainer(
        model=make_tiny_model(tokenizer, seed=1), args=cpu_args(tmp_path / "third", max_steps=2),
        train_dataset=dataset, processing_class=tokenizer,
    )  # fmt: skip
    resumed._load_from_checkpoint(local_dir)
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.parameters(), first.model.parameters()))


def test_hub_resume_offline_and_bad_references_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = cpu_args(tmp_path)
    with pytest.raises(HubAccessError, match=r"Cannot download org/name@step-000002: .*offline"):
        resolve_resume_checkpoint("org/name@step-000002", args)
    with pytest.raises(ValueError, match="neither a local folder nor a Hub checkpoint revision"):
        resolve_resume_checkpoint("no/such/checkpoint-3", args)
    with pytest.raises(HubAccessError):
        download_checkpoint("org/name", "main", local_root=str(tmp_path))


def test_models_load_from_safetensors_only_and_without_remote_code(tmp_path, tiny):
    tokenizer, dataset = tiny
    model = make_tiny_model(tokenizer)
    pickled = tmp_path / "pickled"
    model.config.architectures = ["Qwen2ForCausalLM"]
    model.config.save_pretrained(pickled)
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    tokenizer.save_pretrained(pickled)
    args = cpu_args(tmp_path / "out")
    assert args.trust_remote_code is False
    with pytest.raises(OSError, match="model.safetensors"):
        RPTTrainer(model=str(pickled), args=args, train_dataset=dataset, processing_class=tokenizer)
    assert args.model_init_kwargs == {"use_safetensors": True}

    safe = tmp_path / "safe"
    model.save_pretrained(safe)
    trainer = RPTTrainer(model=str(safe), args=cpu_args(tmp_path / "out2"), train_dataset=dataset,
                         processing_class=tokenizer)  # fmt: skip
    assert torch.equal(trainer.model.get_input_embeddings().weight, model.get_input_embeddings().weight)
