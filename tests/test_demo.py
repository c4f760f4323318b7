"""The demo's seams on a tiny model: RPT training with its learning curve -> the next-token baseline at RPT's budget
-> the comparison -> report.md, results.json and the PNGs, as `rpt-trl demo` writes them."""

import functools

import pytest

from rpt_trl import build_next_token_dataset, models
from rpt_trl.cli import main
from rpt_trl.experiments.arithmetic_demo import (
    DEMO_TEMPLATE,
    DemoSettings,
    arithmetic_corpus,
    demo_splits,
    demo_verdict,
    mixed_verdict,
    run_demo,
)
from rpt_trl.experiments.tiny import make_tiny_model, make_tiny_tokenizer
from rpt_trl.results import load_results


# 12 held-out documents hold 14 targeted positions under the tiny tokenizer, which splits most words into pieces.
SMALL = DemoSettings(corpus_documents=24, held_out_documents=12, eval_positions=12, all_positions=8,
                     curve_positions=6, curve_every=1, train_steps=2, prompts_per_step=2, num_generations=2,
                     max_completion_length=8, block_size=32, use_vllm=False)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    tokenizer = make_tiny_tokenizer()
    make_tiny_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_demo_end_to_end_on_a_tiny_model(tiny_model_dir, tmp_path, monkeypatch):
    from rpt_trl.evaluation.callback import NextTokenAccuracyCallback

    curve_steps = []
    evaluate = NextTokenAccuracyCallback.evaluate
    monkeypatch.setattr(NextTokenAccuracyCallback, "evaluate",
                        lambda self, model, step=None: curve_steps.append(step) or evaluate(self, model, step))  # fmt: skip
    results = run_demo(tmp_path, model_name=str(tiny_model_dir), settings=SMALL)
    assert curve_steps == [0, 1, 2, 1, 2]  # the base model's point, shared by both runs, is scored once
    written = load_results([tmp_path / "results.json"])  # the project's results schema
    assert len(written) == len(results) == 16  # 4 models x 2 modes x 2 sets of positions
    systems = {(r["dataset"], r["label"], r["mode"]) for r in written}
    assert len(systems) == 16
    assert {r["label"] for r in written} == {"base", "next-token", "rpt", "rpt+ntp"}
    targeted = [r for r in written if r["dataset"] == "held-out targeted positions"]
    assert {r["overall"]["n"] for r in targeted} == {12}
    demo = written[0]["demo"]
    # Matched compute: the baseline took RPT's optimizer steps and its token count to within half a micro-batch.
    by_label = {r["label"]: r for r in targeted}
    rpt, baseline = by_label["rpt"]["training"], by_label["next-token"]["training"]
    assert (
        rpt["optimizer_steps"]
        == baseline["optimizer_steps"]
        == by_label["rpt+ntp"]["training"]["optimizer_steps"]
        == 2
    )
    assert by_label["rpt+ntp"]["training"]["tokens_seen"] > rpt["tokens_seen"]  # its contexts are counted too
    # The mixed objective's own questions, asked of its results.
    mixed = {r["mode"]: {d["reference"] for d in r["differences"]} for r in targeted if r["label"] == "rpt+ntp"}
    assert mixed == {"reasoning": {"base:reasoning", "rpt:reasoning"}, "standard": {"next-token:standard"}}
    assert baseline["tokens_seen"] == demo["budget"]["total_tokens"]
    assert abs(baseline["tokens_seen"] - rpt["tokens_seen"]) <= 2 * 32 * 2 / 2  # half a micro-batch of 2 blocks a step
    assert [p["step"] for p in demo["learning_curve"]] == [0, 1, 2]
    curves = [run["learning_curve"] for run in demo["runs"].values()]
    report = (tmp_path / "report.md").read_text()
    assert [p["step"] for p in curves[1]] == [0, 1, 2] and curves[1][0] == curves[0][0]
    # The policy's entropy on the curve's fixed positions, at every point, is in the report beside the steps'.
    assert all(p["entropy"] > 0 for curve in curves for p in curve)
    first, last = curves[0][0]["entropy"], curves[0][-1]["entropy"]
    assert f"on the 6 fixed held-out positions {first:.3f} at step 0, {last:.3f} at step 2" in report
    assert len(demo["train_log"]) == 2 and demo["generation"] == "transformers"
    assert set(demo["runs"]) == {"rpt", "rpt+ntp"} and all(len(r["train_log"]) == 2 for r in demo["runs"].values())
    assert "**Verdict.** " in report and "RPT did not beat the next-token baseline" in report
    assert "**The mixed objective.** rpt+ntp in reasoning mode" in report and "The goal (both) was" in report
    assert "| step | rpt: mixed, generated |" in report and "`rpt+ntp`: " in report
    for png in ("comparison.png", "comparison_all_positions.png", "learning_curve.png"):
        assert (tmp_path / png).stat().st_size > 10_000


def test_demo_without_the_all_positions_sample(tiny_model_dir, tmp_path):
    """`all_positions=0` (the default) scores the targeted positions only; the report says how to add the sample."""
    settings = DemoSettings(**{**SMALL.__dict__, "all_positions": 0, "train_steps": 1, "eval_positions": 6,
                               "curve_positions": 3, "curve_every": 20})  # fmt: skip
    results = run_demo(tmp_path, model_name=str(tiny_model_dir), settings=settings)
    assert len(results) == 8 and {r["dataset"] for r in results} == {"held-out targeted positions"}
    report = (tmp_path / "report.md").read_text()
    assert "Not scored in this run" in report and "rpt-trl demo --all_positions 48" in report
    assert not (tmp_path / "comparison_all_positions.png").exists()
    assert [p["step"] for p in results[0]["demo"]["learning_curve"]] == [0, 1]  # the start and the end
    with pytest.raises(ValueError, match="all_positions must be at least 0"):
        DemoSettings(all_positions=-1)


def _target(differences):
    return [{"label": "rpt", "mode": "reasoning", "differences": [
        {"reference": ref, "estimate": e, "low": lo, "high": hi, "significant": lo > 0 or hi < 0}
        for ref, (e, lo, hi) in differences.items()]}]  # fmt: skip


def test_demo_verdict_wording():
    beats = _target({"base:reasoning": (0.1, 0.05, 0.15), "next-token:standard": (0.08, 0.01, 0.15),
                     "next-token:reasoning": (0.09, 0.02, 0.16), "base:standard": (-0.05, -0.1, 0.0)})  # fmt: skip
    lines = demo_verdict(beats)
    assert lines[0].startswith("RPT raised the model's reasoning-mode accuracy above the base model's (+10.0 points")
    assert lines[1].startswith("RPT beat the next-token baseline at matched compute, in both")
    assert "RPT's reasoning-mode accuracy is -5.0 points" in lines[2]
    loses = _target({"base:reasoning": (0.02, -0.03, 0.07), "next-token:standard": (-0.2, -0.3, -0.1),
                     "next-token:reasoning": (0.09, 0.02, 0.16), "base:standard": (-0.3, -0.4, -0.2)})  # fmt: skip
    lines = demo_verdict(loses)
    assert lines[0].startswith("RPT's reasoning-mode accuracy did not differ measurably from the base model's")
    assert lines[1].startswith("RPT did not beat the next-token baseline at matched compute (next-token:standard: "
                               "-20.0 points")  # fmt: skip


def test_mixed_verdict_wording():
    def results(reasoning, standard):
        return [{"label": "rpt+ntp", "mode": mode, "differences": [
            {"system": f"rpt+ntp:{mode}", "reference": ref, "estimate": e, "low": lo, "high": hi,
             "significant": lo > 0 or hi < 0}]} for mode, ref, (e, lo, hi) in
            (("reasoning", "base:reasoning", reasoning), ("standard", "next-token:standard", standard))]  # fmt: skip

    reached = mixed_verdict(results((0.1, 0.05, 0.15), (-0.02, -0.06, 0.02)))
    assert reached[0].startswith(
        "rpt+ntp in reasoning mode is significantly above the base model's reasoning mode (+10.0"
    )
    assert reached[1].startswith("rpt+ntp in standard mode is not significantly below")
    assert reached[2] == "The goal (both) was reached."
    missed = mixed_verdict(results((0.1, 0.05, 0.15), (-0.1, -0.15, -0.05)))
    assert missed[1].startswith("rpt+ntp in standard mode is significantly below") and "not reached" in missed[2]
    assert "is not significantly above" in mixed_verdict(results((0.02, -0.02, 0.06), (0.0, -0.01, 0.01)))[0]


def test_demo_rejects_bad_settings_before_loading_anything(tmp_path):
    with pytest.raises(SystemExit, match="eval_positions must be positive"):
        main(["demo", "--output_dir", str(tmp_path), "--eval_positions", "0"])
    assert not any(tmp_path.iterdir())


def test_the_demo_configures_the_template_its_prompts_were_built_with(caplog):
    """The demo's RPT run names its own template, so the prompt-settings check neither warns nor refuses."""
    import logging

    from rpt_trl import RPTConfig
    from rpt_trl.data.prompt_settings import check_prompt_settings
    from rpt_trl.experiments.arithmetic_demo import demo_splits, rpt_training_fields

    settings = DemoSettings()
    splits = demo_splits(make_tiny_tokenizer(), eval_positions=4)
    config = RPTConfig(output_dir="unused", **rpt_training_fields(settings, on_cpu=True))
    with caplog.at_level(logging.WARNING, logger="rpt_trl"):
        check_prompt_settings(splits.train, config, "train_dataset", reward=config.reward)
    assert [r.getMessage() for r in caplog.records if "prompt" in r.getMessage()] == []


# What follows `{context}` in the demo's template: the old filter searched the context with it attached.
TEMPLATE_TAIL = DEMO_TEMPLATE[DEMO_TEMPLATE.rindex("{context}") + len("{context}") :]


def old_word_in_context(row, *, with_template_tail):
    """The demo's filter before `position_filter` existed, re-implemented from its definition: the first ground-truth
    token is a word of two or more characters, with a letter or digit, found in the text after the last `Text: "`
    of the prompt (the context, followed by the template's tail, which `with_template_tail=False` cuts off)."""
    searched = row["prompt"].rsplit('Text: "', 1)[-1]
    if not with_template_tail:
        assert searched.endswith(TEMPLATE_TAIL)
        searched = searched[: -len(TEMPLATE_TAIL)]
    word = row["ground_truth"].encode("utf-8")[: row["ground_truth_boundaries"][0]].decode("utf-8").strip()
    return len(word) > 1 and any(ch.isalnum() for ch in word) and word in searched


def old_demo_splits(tokenizer, *, seed, eval_positions, all_positions, with_template_tail):
    """`demo_splits` as it was: every position built, then the held-out split, the filter and the shuffles. Returns
    the train rows, the eval rows, the sample of all held-out positions, and the number of positions built."""
    corpus = arithmetic_corpus(num_documents=DemoSettings().corpus_documents, seed=seed)
    everything = build_next_token_dataset(
        corpus, tokenizer, prompt_template=DEMO_TEMPLATE, prompt_format="text", min_context_tokens=12,
        max_context_tokens=48, max_ground_truth_tokens=8, show_progress=False,
    )  # fmt: skip
    held_out = set(range(DemoSettings().held_out_documents))
    targeted = [old_word_in_context(row, with_template_tail=with_template_tail) for row in everything]
    rows = list(enumerate(everything["document_id"]))
    eval_set = everything.select([i for i, doc in rows if targeted[i] and doc in held_out]).shuffle(seed=seed)
    train_set = everything.select([i for i, doc in rows if targeted[i] and doc not in held_out]).shuffle(seed=seed)
    sample = everything.select([i for i, doc in rows if doc in held_out]).shuffle(seed=seed + 1)
    return (
        train_set.to_list(),
        eval_set.select(range(min(eval_positions, len(eval_set)))).to_list(),
        sample.select(range(min(all_positions, len(sample)))).to_list(),
        len(everything),
    )


@functools.cache
def demo_tokenizer(name):
    if name == "gemma":
        folder = models.embedded_model_dir()
        if not (folder / models.MARKER_FILE).is_file():
            pytest.skip("the embedded Gemma 3 270M is not converted on this machine (`rpt-trl demo` converts it)")
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(folder))
    if name == "tiny":
        return make_tiny_tokenizer()  # pieces of words: a token can be a substring of the template's tail
    from rpt_trl.experiments.tiny import make_byte_level_tokenizer

    return make_byte_level_tokenizer(arithmetic_corpus(64) * 2, vocab_size=600)  # the corpus's words whole


@pytest.mark.parametrize("name", ["gemma", "tiny", "arithmetic_words"])
@pytest.mark.parametrize("seed", [0, 1])
def test_demo_splits_keep_the_rows_of_the_demos_old_filter(name, seed):
    """The demo's train and targeted eval splits, now built with `position_filter="word_in_context"`, are the rows the
    demo's own filter chose, row for row and in order; the sample of all answerable positions is unfiltered.

    The old filter searched the context with the template's tail (`"` + newline + `<think>`) attached, so a word
    piece such as "th" counted as "in the context" because of `<think>`. Under the demo's tokenizer (Gemma) that never
    happens and the splits are exactly the old ones; under a tokenizer of word pieces the new splits are the old
    filter's on the context alone."""
    tokenizer = demo_tokenizer(name)
    settings = DemoSettings(seed=seed)
    train, eval_rows, sample, built = old_demo_splits(
        tokenizer, seed=seed, eval_positions=settings.eval_positions, all_positions=settings.all_positions,
        with_template_tail=name != "tiny",
    )  # fmt: skip
    assert len(train) > 20 and len(eval_rows) > 10 and len(sample) == settings.all_positions
    splits = demo_splits(tokenizer, seed=seed, eval_positions=len(eval_rows), all_positions=settings.all_positions)
    assert splits.train.to_list() == train
    assert splits.eval.to_list() == eval_rows
    assert splits.all_positions.to_list() == sample
    assert splits.stats.filtered_out_positions == built - splits.stats.examples > 0
    if name != "tiny":
        assert len(eval_rows) == settings.eval_positions  # the demo's 256 targeted positions
    else:  # the rows that only the template's tail let in, and nothing else, are gone
        old_train, *_ = old_demo_splits(
            tokenizer, seed=seed, eval_positions=0, all_positions=0, with_template_tail=True
        )
        gone = [row for row in old_train if row not in train]
        assert gone and not any(old_word_in_context(row, with_template_tail=False) for row in gone)
        assert len(old_train) - len(gone) == len(train)


def test_fewer_eval_positions_shrink_the_learning_curve_to_them():
    """`rpt-trl demo --eval_positions 16` must not fail on the curve's 32 positions, a flag the command lacks."""
    from rpt_trl.experiments.arithmetic_demo import DemoSettings, demo_settings

    assert demo_settings(eval_positions=16).curve_positions == 16
    assert demo_settings(eval_positions=100).curve_positions == DemoSettings().curve_positions == 32
    assert demo_settings(eval_positions=100, curve_positions=8).curve_positions == 8
    with pytest.raises(ValueError, match="must not exceed eval_positions"):
        demo_settings(eval_positions=16, curve_positions=20)
