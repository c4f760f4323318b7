"""The Hugging Face Hub round trip: check access before a run, push checkpoints to per-step branches in the
background, and pull a checkpoint revision back to resume from it.

Tokens come only from huggingface_hub (`hf auth login`, `HF_TOKEN`) or `args.hub_token`; they are passed to the
API and never logged or written anywhere.
"""

import logging
import os
import re
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token, snapshot_download
from transformers import TrainerCallback


logger = logging.getLogger(__name__)

REVISION_FORMAT = "step-{step:06d}"
STAGING_DIR = "_hub_staging"  # a leading underscore keeps it out of Trainer.push_to_hub's upload
_HUB_REFERENCE = re.compile(r"^(?P<repo_id>[A-Za-z0-9][\w.-]*/[\w.-]+)@(?P<revision>[\w.][\w./-]*)$")


class HubAccessError(RuntimeError):
    """The Hub cannot be used for this run (offline mode, no token, or a token that cannot write)."""


def hub_is_offline() -> bool:
    """Whether offline mode is on (`HF_HUB_OFFLINE` or `TRANSFORMERS_OFFLINE`, read now and at import)."""
    from_env = any(
        os.environ.get(name, "").strip().upper() in constants.ENV_VARS_TRUE_VALUES
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    return bool(constants.HF_HUB_OFFLINE) or from_env


def public_name(name_or_path: str) -> str:
    """What a public card or info file may say about a model or dataset: a Hub id as given, a local path by its
    last component only (a machine's paths are no one else's business, and no Hub link).

    Example:
        >>> public_name("KbsdJames/Omni-MATH"), public_name("/")
        ('KbsdJames/Omni-MATH', '/')
    """
    if os.path.isabs(name_or_path) or os.path.exists(name_or_path):
        return os.path.basename(os.path.normpath(name_or_path)) or name_or_path
    return name_or_path


def public_command(argv: list[str]) -> list[str]:
    """`argv` with every local path (`/a/b`, `--flag=/a/b`, or an existing relative path) cut to its last component.

    Example:
        >>> public_command(["prepare", "--output", "/data/me/out", "--cache-dir=/tmp/x", "--eval-size", "4"])
        ['prepare', '--output', 'out', '--cache-dir=x', '--eval-size', '4']
    """
    public = []
    for argument in argv:
        flag, equals, value = argument.partition("=")
        if equals and flag.startswith("--"):
            public.append(f"{flag}={public_name(value)}")
        else:
            public.append(public_name(argument))
    return public


def check_hub_access(token: str | None = None, *, api: HfApi | None = None) -> str:
    """Fail fast, before any model is loaded, when a run that pushes to the Hub could not push.

    Args:
        token: A token to use instead of the one huggingface_hub finds (`HF_TOKEN`, `hf auth login`).
        api: The client (tests pass a mock).

    Returns:
        The user name the token belongs to.

    Raises:
        HubAccessError: In offline mode, without a token, when the token is rejected or the Hub cannot be reached,
            or when the token is read-only.
    """
    if hub_is_offline():
        raise HubAccessError(
            "push_to_hub=True, but Hugging Face Hub offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE). "
            "Unset it to push, or set push_to_hub=False and upload the output directory later with "
            "`hf upload <org/name> <output_dir>`."
        )
    token = token or get_token()
    if not token:
        raise HubAccessError(
            "push_to_hub=True, but no Hugging Face token was found. Log in with `hf auth login` or set HF_TOKEN "
            "(a token with write access), or set push_to_hub=False."
        )
    api = api or HfApi()
    try:
        info = api.whoami(token=token)
    except Exception as error:  # network errors and HTTP 401 alike: say which, without the token
        raise HubAccessError(
            f"push_to_hub=True, but the Hub did not accept the token or could not be reached "
            f"({type(error).__name__}: {error}). Check the connection and `hf auth whoami`."
        ) from error
    role = ((info.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise HubAccessError(
            "push_to_hub=True, but the Hugging Face token is read-only. Create a token with write access "
            "(https://huggingface.co/settings/tokens) and log in with it."
        )
    return info.get("name", "")


def parse_hub_reference(reference: str) -> tuple[str, str] | None:
    """Split `"org/name@revision"` into `(repo_id, revision)`; `None` when `reference` is not written that way.

    Example:
        >>> parse_hub_reference("org/rpt-qwen@step-000500")
        ('org/rpt-qwen', 'step-000500')
        >>> parse_hub_reference("outputs/checkpoint-500") is None
        True
    """
    match = _HUB_REFERENCE.match(reference)
    if match is None or ".." in reference:
        return None
    return match.group("repo_id"), match.group("revision")


def download_checkpoint(
    repo_id: str,
    revision: str,
    *,
    local_root: str,
    allow_patterns: list[str] | None = None,
    token: str | None = None,
) -> str:
    """Download one revision of a Hub repository (e.g. a `step-000500` checkpoint branch) for resuming.

    The files land in `<local_root>/_hub_checkpoints/<org>--<name>--<revision>`: a leading underscore keeps the
    folder out of `Trainer.push_to_hub`'s upload.

    Args:
        repo_id: `"org/name"`.
        revision: Branch, tag or commit.
        local_root: Usually the run's output directory.
        allow_patterns: Only files matching these glob patterns (all files when `None`).
        token: Token for private repositories (huggingface_hub's own when `None`).

    Returns:
        The local folder.
    """
    local_dir = os.path.join(
        local_root, "_hub_checkpoints", f"{repo_id.replace('/', '--')}--{revision.replace('/', '--')}"
    )
    if hub_is_offline() and not os.path.isdir(local_dir):
        raise HubAccessError(
            f"Cannot download {repo_id}@{revision}: Hugging Face Hub offline mode is on (HF_HUB_OFFLINE). Unset it, "
            "or pass the local checkpoint folder instead."
        )
    logger.info("Downloading checkpoint %s@%s to %s", repo_id, revision, local_dir)
    return snapshot_download(
        repo_id, revision=revision, local_dir=local_dir, allow_patterns=allow_patterns, token=token
    )


def checkpoint_operations(checkpoint_dir: str) -> list[CommitOperationAdd]:
    """One `CommitOperationAdd` per file of `checkpoint_dir`, at its path relative to the folder (sorted)."""
    operations = []
    for root, _, files in os.walk(checkpoint_dir):
        for name in files:
            path = os.path.join(root, name)
            in_repo = os.path.relpath(path, checkpoint_dir).replace(os.sep, "/")
            operations.append(CommitOperationAdd(path_in_repo=in_repo, path_or_fileobj=path))
    return sorted(operations, key=lambda operation: operation.path_in_repo)


class CheckpointRevisionPusher(TrainerCallback):
    """Push every saved checkpoint to its own branch of a Hub repository, in the background.

    On each save, the checkpoint folder is committed to branch `step-{global_step:06d}` (created from `main` if
    needed) by one worker thread, so training goes on while it uploads and the pushes land in order. A failed push
    is retried `retries` times with exponential backoff; after the last try it is logged as a warning and recorded
    in `failures`, and training continues. Pending pushes are awaited at the end of training.

    The files are first hard-linked into `<output_dir>/_hub_staging/checkpoint-N` (no copy; the folder is removed
    once pushed), so that `save_total_limit` can rotate the checkpoint away while it uploads.

    Args:
        repo_id: `"org/name"` (e.g. `trainer.hub_model_id`).
        api: The client; a new `HfApi` when `None`.
        token: Token passed to each call (huggingface_hub's own when `None`); never logged.
        retries: Tries per checkpoint.
        backoff_seconds: Wait before the second try; doubled for each later one.
        revision_format: Branch name for a step.

    Example:
        >>> trainer.add_callback(CheckpointRevisionPusher(trainer.hub_model_id))  # doctest: +SKIP
    """

    def __init__(
        self,
        repo_id: str,
        *,
        api: HfApi | None = None,
        token: str | None = None,
        retries: int = 3,
        backoff_seconds: float = 5.0,
        revision_format: str = REVISION_FORMAT,
    ):
        if retries < 1:
            raise ValueError(f"retries must be at least 1, got {retries}.")
        self.repo_id = repo_id
        self.api = api or HfApi()
        self.token = token
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.revision_format = revision_format
        self.pushed: list[str] = []
        self.failures: list[tuple[str, str]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:  # links left by a run that was killed mid-push
            shutil.rmtree(os.path.join(args.output_dir, STAGING_DIR), ignore_errors=True)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        checkpoint_dir = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        staged_dir = _stage(checkpoint_dir, os.path.join(args.output_dir, STAGING_DIR))
        revision = self.revision_format.format(step=state.global_step)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rpt-hub-push")
        self._pending.append(
            self._executor.submit(self._push_staged, staged_dir, checkpoint_dir, revision, state.global_step)
        )

    def _push_staged(self, staged_dir: str, checkpoint_dir: str, revision: str, step: int) -> bool:
        try:
            return self.push(staged_dir, revision, step)
        finally:
            if staged_dir != checkpoint_dir:
                shutil.rmtree(staged_dir, ignore_errors=True)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.wait()

    def wait(self) -> None:
        """Block until every submitted push has finished (or failed and been reported)."""
        if self._pending:
            logger.info(
                "Waiting for %d checkpoint push(es) to the Hub to finish.", sum(not f.done() for f in self._pending)
            )
        for future in self._pending:
            future.result()
        self._pending = []
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self.failures:
            logger.warning(
                "%d checkpoint push(es) to %s failed: %s. The checkpoints are still on local disk.",
                len(self.failures),
                self.repo_id,
                ", ".join(revision for revision, _ in self.failures),
            )

    def push(self, checkpoint_dir: str, revision: str, step: int) -> bool:
        """Commit `checkpoint_dir` to branch `revision`, with retries. Returns whether it succeeded; never raises."""
        for attempt in range(1, self.retries + 1):
            try:
                operations = checkpoint_operations(checkpoint_dir)
                if not operations:
                    raise FileNotFoundError(f"{checkpoint_dir} has no files (deleted by save_total_limit?)")
                self.api.create_branch(self.repo_id, branch=revision, exist_ok=True, token=self.token)
                self.api.create_commit(
                    self.repo_id,
                    operations=operations,
                    commit_message=f"Checkpoint at step {step}",
                    revision=revision,
                    token=self.token,
                )
            except Exception as error:  # any failure of a background push must not reach training
                message = f"{type(error).__name__}: {error}"
                if attempt == self.retries:
                    logger.warning(
                        "Giving up pushing %s to %s@%s after %d tries (%s); training continues.",
                        checkpoint_dir,
                        self.repo_id,
                        revision,
                        attempt,
                        message,
                    )
                    self.failures.append((revision, message))
                    return False
                delay = self.backoff_seconds * 2 ** (attempt - 1)
                logger.warning(
                    "Push of %s to %s@%s failed (%s); retrying in %.0f s.",
                    checkpoint_dir,
                    self.repo_id,
                    revision,
                    message,
                    delay,
                )
                time.sleep(delay)
            else:
                logger.info("Pushed %s to %s@%s", checkpoint_dir, self.repo_id, revision)
                self.pushed.append(revision)
                return True
        return False


def _stage(checkpoint_dir: str, staging_root: str) -> str:
    """Hard-link the files of `checkpoint_dir` into `staging_root`; the checkpoint itself where links fail."""
    staged_dir = os.path.join(staging_root, os.path.basename(checkpoint_dir))
    try:
        shutil.rmtree(staged_dir, ignore_errors=True)
        shutil.copytree(checkpoint_dir, staged_dir, copy_function=os.link)
    except OSError as error:
        logger.info("Cannot hard-link %s for the push (%s); pushing it in place.", checkpoint_dir, error)
        shutil.rmtree(staged_dir, ignore_errors=True)
        return checkpoint_dir
    return staged_dir
