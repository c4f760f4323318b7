"""Shared fixtures: tokenizers and tiny models built locally, so no test touches the network."""

import io
import os


# Before anything imports huggingface_hub, which reads them once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The CLI keeps freed memory on a CPU (rpt_trl.host_memory); in the test process malloc stays as it is.
os.environ.setdefault("RPT_TRL_KEEP_FREED_MEMORY", "0")

import socket  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from rpt_trl.experiments import tiny  # noqa: E402
from rpt_trl.experiments.tiny import make_tiny_model  # noqa: E402, F401  (re-exported for the tests)


REPO_ROOT = Path(__file__).resolve().parents[1]
# `accelerate launch` with two processes: on a machine without GPUs, torchrun with the gloo backend.
ACCELERATE_TWO_PROCESSES = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_rank_records(out_dir: Path, logs: str, world_size: int = 2) -> list[dict]:
    """The `rank{N}.json` records that each rank of a launched run wrote, with the run's output on a missing one."""
    import json

    records = []
    for rank in range(world_size):
        path = out_dir / f"rank{rank}.json"
        assert path.exists(), f"rank {rank} wrote no result; output:\n{logs[-4000:]}"
        records.append(json.loads(path.read_text()))
    return records


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a test's subprocess: this checkout importable, offline, one thread per process."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        **extra,
    )
    return env


CORPUS = [
    "The size of the box is 12.5 cm, and its area is 30 square centimetres.",
    "Step 1: We add 12 and 30 to get 42.\nStep 2: 42 \\times 2 = 84, so the answer is $\\frac{84}{2} = 42$.",
    "中文字符 and emoji 🎉🚀 text, café naïve résumé, Ελληνικά, 日本語のテキスト。",
    "Let $f(x) = x^{2} + 1$. Then $f'(x) = 2x$ and $\\{1, 2\\}$ is a set.",
    "Hello, how are you? I am fine, thank you.\n\nA new paragraph starts here.",
]


def first_token_of(row):
    """The first ground-truth token of a built row, cut at its first byte boundary; `None` when it has none."""
    boundaries = row["ground_truth_boundaries"]
    return row["ground_truth"].encode("utf-8")[: boundaries[0]].decode("utf-8") if boundaries else None


def is_word_of(token, context):
    """The demo's rule, written out independently: two or more characters, one alphanumeric, seen in the context."""
    if token is None:
        return False
    stripped = token.strip()
    return len(stripped) >= 2 and sum(ch.isalnum() for ch in stripped) > 0 and context.find(stripped) != -1


CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def make_byte_level_tokenizer(corpus=CORPUS, vocab_size=400, extra_tokens=()):
    """A byte-level BPE tokenizer on the test corpus, with GPT-2's trimmed offsets and a chat template."""
    tokenizer = tiny.make_byte_level_tokenizer(
        list(corpus) * 4, vocab_size=vocab_size, extra_tokens=list(extra_tokens), trim_offsets=True
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_sentencepiece_tokenizer(tmp_dir, corpus=CORPUS, vocab_size=400):
    """A real SentencePiece BPE model with byte fallback, loaded as a fast Llama tokenizer."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(corpus) * 20),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=0.99,
        add_dummy_prefix=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=3,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (tmp_dir / "tokenizer.model").write_bytes(model.getvalue())
    tokenizer = LlamaTokenizer.from_pretrained(str(tmp_dir))
    assert tokenizer.is_fast
    return tokenizer


@pytest.fixture(scope="session")
def byte_level_tokenizer():
    return make_byte_level_tokenizer()


@pytest.fixture(scope="session")
def sentencepiece_tokenizer(tmp_path_factory):
    return make_sentencepiece_tokenizer(tmp_path_factory.mktemp("spm"))


@pytest.fixture(params=["byte_level", "sentencepiece"])
def any_tokenizer(request, byte_level_tokenizer, sentencepiece_tokenizer):
    return {"byte_level": byte_level_tokenizer, "sentencepiece": sentencepiece_tokenizer}[request.param]


# The engine lane (`make test-engines`, run by CI) sets this: there a missing engine is a failure, not a skip.
ENGINES_REQUIRED = os.environ.get("RPT_TRL_REQUIRE_ENGINES") == "1"


def require_engine(module: str) -> None:
    """Skip the calling test module when `module` (vllm, deepspeed) is not importable, with the reason printed in
    pytest's summary; in the engine lane, fail instead."""
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        return
    reason = f"{module} is not installed here (the engine lane installs it: make test-engines)"
    if ENGINES_REQUIRED:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)
