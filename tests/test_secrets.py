"""No Hub token is written or uploaded, however the user gives it.

The token is planted in each way a user can give it (the `HF_TOKEN` environment variable, the `--hub_token` flag and
the YAML config of `rpt-trl train --config`). A short tiny-world run then pushes to a mocked Hub: every checkpoint
to its own branch, and the final model. The token must appear in no file under the output folder, in no file the
uploads carry, and in no log line, while the mocked Hub sees it on every call (the run could use it).
"""

import concurrent.futures
import logging
import os
from pathlib import Path

import huggingface_hub
import pytest
import yaml

from rpt_trl import cli
from rpt_trl.experiments.tiny import animal_corpus, make_tiny_model, make_tiny_tokenizer


TOKEN = "hf_PlantedSecretToken0123456789abcdef"
TINY = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "rpt" / "config_cpu.yaml"


class MockHub:
    """Records what each upload carries (file bytes, read at call time) and which tokens the calls used."""

    def __init__(self):
        self.uploaded: dict[str, bytes] = {}
        self.tokens_used: list[str | None] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        hub = self

        def create_repo(self, repo_id, *, token=None, **kwargs):
            hub.tokens_used.append(token)
            return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

        def create_branch(self, repo_id, *, branch, token=None, **kwargs):
            hub.tokens_used.append(token)

        def create_commit(self, repo_id, operations, *, token=None, revision=None, **kwargs):
            hub.tokens_used.append(token)
            for operation in operations:
                with open(operation.path_or_fileobj, "rb") as file:
                    hub.uploaded[f"{revision}:{operation.path_in_repo}"] = file.read()

        def upload_folder(self, *, folder_path, token=None, run_as_future=False, revision=None, **kwargs):
            hub.tokens_used.append(token)
            for root, _, files in os.walk(folder_path):
                for name in files:
                    path = os.path.join(root, name)
                    with open(path, "rb") as file:
                        hub.uploaded[f"{revision}:{os.path.relpath(path, folder_path)}"] = file.read()
            if run_as_future:
                done = concurrent.futures.Future()
                done.set_result(None)
                return done
            return None

        for name, function in [
            ("create_repo", create_repo),
            ("create_branch", create_branch),
            ("create_commit", create_commit),
            ("upload_folder", upload_folder),
        ]:
            monkeypatch.setattr(huggingface_hub.HfApi, name, function)
        # The login check asks the Hub (whoami); it is tested in test_hub.py.
        monkeypatch.setattr("rpt_trl.trainer.rpt_trainer.check_hub_access", lambda token=None, **kwargs: "me")


@pytest.fixture(scope="module")
def tiny_model_and_documents(tmp_path_factory):
    """A saved random tiny model and a folder of raw documents: the run builds its examples as a user's would."""
    folder = tmp_path_factory.mktemp("tiny")
    tokenizer = make_tiny_tokenizer()
    make_tiny_model(tokenizer).save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    documents = folder / "documents"
    documents.mkdir()
    (documents / "documents.jsonl").write_text("".join(f'{{"text": "{line}"}}\n' for line in animal_corpus()[:8]))
    return folder / "model", documents


@pytest.mark.parametrize("way", ["environment", "hub_token flag", "config yaml"])
def test_planted_token_is_never_written_nor_uploaded(way, tiny_model_and_documents, tmp_path, monkeypatch, caplog):
    hub = MockHub()
    hub.install(monkeypatch)
    output_dir = tmp_path / "run"
    config = yaml.safe_load(TINY.read_text())
    model_dir, documents = tiny_model_and_documents
    config.pop("tiny_world", None)
    config.update(
        model_name_or_path=str(model_dir),
        dataset_name=str(documents),
        min_context_tokens=2,
        max_completion_length=8,
        output_dir=str(output_dir),
        max_steps=2,
        save_strategy="steps",
        save_steps=1,
        push_to_hub=True,
        hub_model_id="me/rpt-secret",
        push_checkpoint_revisions=True,
        hub_strategy="checkpoint",  # the Trainer's own checkpoint upload too
        dynamic_sampling=False,
    )
    argv = []
    monkeypatch.delenv("HF_TOKEN", raising=False)
    if way == "environment":
        monkeypatch.setenv("HF_TOKEN", TOKEN)
    elif way == "hub_token flag":
        argv = ["--hub_token", TOKEN]
    else:
        config["hub_token"] = TOKEN
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))

    with caplog.at_level(logging.DEBUG):
        cli.main(["train", "--config", str(config_path), *argv])

    if way != "environment":  # the run did use the token it was given
        assert TOKEN in hub.tokens_used
    written = [path for path in output_dir.rglob("*") if path.is_file()]
    assert any(path.name == "training_args.bin" for path in written)
    assert any(key.startswith("step-000001:") for key in hub.uploaded)  # a checkpoint went to its branch
    assert any(key.endswith("training_args.bin") for key in hub.uploaded)
    leaking = [str(path.relative_to(output_dir)) for path in written if TOKEN.encode() in path.read_bytes()]
    assert leaking == []
    assert [key for key, content in hub.uploaded.items() if TOKEN.encode() in content] == []
    assert TOKEN not in caplog.text
    # Issue 13, item 9: a local dataset used to appear in the card as `datasets: /abs/path` (a broken Hub link).
    card = (output_dir / "README.md").read_text()
    assert str(tmp_path) not in card and str(model_dir.parent) not in card
    assert not list(tmp_path.glob("**/*.tmp"))
