"""`benchmarks/demo_entropy.py` on a tiny model: the demo's run and each variant train from the same base model, the
variant's settings reach its trainer, and the entropy curve and the paired accuracy are reported for each."""

import importlib.util
import json
from pathlib import Path

import pytest

from rpt_trl.experiments.tiny import make_tiny_model, make_tiny_tokenizer


BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_entropy.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("demo_entropy_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    tokenizer = make_tiny_tokenizer()
    make_tiny_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_the_demo_and_a_variant_on_the_same_base_model(tiny_model_dir, tmp_path, capsys):
    output = tmp_path / "screen.json"
    results = load_benchmark().main([
        "--model", str(tiny_model_dir), "--variants", "hot:temperature=2.0,scale_rewards=none", "--steps", "2",
        "--positions", "6", "--curve_positions", "6", "--output", str(output),
    ])  # fmt: skip
    assert list(results) == ["demo", "hot"] and json.loads(output.read_text()) == json.loads(json.dumps(results))
    demo, hot = results["demo"], results["hot"]
    assert hot["change"] == {"temperature": 2.0, "scale_rewards": "none"}
    for run in (demo, hot):
        assert [p["step"] for p in run["curve"]] == [0, 1, 2] and len(run["signal_shares"]) == 2
        assert run["entropy_kept"] == pytest.approx(run["curve"][-1]["entropy"] / run["curve"][0]["entropy"])
    # The same base model, but the variant's trainer samples and measures at its own temperature.
    assert hot["curve"][0]["entropy"] > demo["curve"][0]["entropy"]
    assert demo["vs_demo"] == {"estimate": 0.0, "low": 0.0, "high": 0.0}
    table = capsys.readouterr().out.splitlines()[-2:]
    assert [line.split(" | ")[0] for line in table] == ["| demo", "| hot"]


@pytest.mark.parametrize(("flags", "message"), [
    (["--variants", "demo:beta=0.1"], "given twice"),
    (["--variants", "x:lora_r=8"], "LoRA settings need"),
    (["--variants", "x:beta=0.1", "--steps", "0"], "must be positive"),
    (["--variants", "x:max_steps=3"], "every variant shares"),
])  # fmt: skip
def test_bad_flags_are_refused_before_any_model_loads(flags, message, capsys):
    with pytest.raises(SystemExit):
        load_benchmark().main(["--model", "no-such-model", *flags])
    assert message in capsys.readouterr().err
