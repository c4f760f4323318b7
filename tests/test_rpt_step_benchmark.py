"""`benchmarks/rpt_step.py --whole_step` on a tiny model: every configuration takes real RPT steps in turn, on the
same positions with the same completions, and the summary says where each step's time went."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from rpt_trl.experiments.tiny import make_tiny_model, make_tiny_tokenizer


BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "rpt_step.py"
LABELS = ["today", "+prefix cache", "+shared prefix loss", "+empty-batch skip"]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("rpt_step_benchmark", BENCHMARK)
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


@pytest.fixture
def keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_whole_step_runs_every_configuration_on_the_same_rollouts(tiny_model_dir, keep_torch_threads, capsys):
    benchmark = load_benchmark()
    summary = benchmark.main(["--whole_step", "--model", str(tiny_model_dir), "--repeats", "2"])
    printed = capsys.readouterr().out
    assert json.loads(printed[: printed.rindex("}") + 1]) == json.loads(json.dumps(summary))  # the JSON, then a table
    assert [line.split(" | ")[0] for line in printed.splitlines()[-4:]] == [f"| {label}" for label in LABELS]

    configurations = summary["configurations"]
    assert list(configurations) == LABELS and summary["torch_threads"] == [1]  # --threads' default, in every run
    options = [tuple(c["options"].values()) for c in configurations.values()]  # read back from each trainer
    assert options == [(False, False, False), (True, False, False), (True, True, False), (True, True, True)]
    today = configurations["today"]
    assert today["paired_ratios_to_today"] == [1.0, 1.0] and today["prefix_prefills"] is None
    for label, result in configurations.items():
        # The comparison is fair: every round of every step drew the same positions and sampled the same completions.
        assert result["same_positions_as_today"] == [True, True], label
        assert result["same_completions_as_today"] == [True, True], label
        assert result["generation_rounds"] == today["generation_rounds"]
        assert all(rounds in (1, 2, 3) for rounds in today["generation_rounds"])  # the demo's cap: two refill rounds
        assert len(result["step_seconds"]) == len(result["trl_step_time"]) == 2 and min(result["step_seconds"]) > 0
        shares = result["part_shares"]
        assert all(share >= 0 for share in shares.values()), (label, shares)  # the timed calls nest as assumed
        assert sum(shares.values()) == pytest.approx(1.0, abs=0.01) and shares["generation"] > 0
        if label != "today":
            assert result["prefix_prefills"] >= 1  # the rollouts used the prefix cache
    # The tiny policy never answers: no batch has a signal, and only the last configuration skips its loss.
    assert all(c["trained_signal_share"] == [0.0, 0.0] for c in configurations.values())
    # The demo's loss holds an entropy bonus (adaptive entropy control), which depends on more than the advantages:
    # the skip must not apply, and every configuration runs its backward.
    assert all(c["skipped_backward"] in ([None, None], [0.0, 0.0]) for c in configurations.values())
    assert configurations["+empty-batch skip"]["part_shares"]["backward"] > 0


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--whole_step", "--max_refills", "-1"], "--max_refills must be at least 0"),
        (["--whole_step", "--repeats", "0"], "--repeats must be at least 1"),
        (["--max_refills", "2"], "apply to --whole_step only"),
        (["--whole_step", "--shapes", "demo"], "give one of them"),
        (["--whole_step", "--model", "./no/such/model"], "--model: ./no/such/model is not an existing folder"),
    ],
)
def test_whole_step_refuses_bad_flags_before_loading(arguments, message, capsys):
    with pytest.raises(SystemExit):
        load_benchmark().main(arguments)
    assert message in capsys.readouterr().err
