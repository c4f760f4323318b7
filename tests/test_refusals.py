"""Issue 21: settings that are honoured or refused, and columns that are checked before anything loads."""

import json
import logging

import datasets
import pytest
from test_prepare import corpus_file, proxy_dir, proxy_must_not_load, run_prepare  # noqa: F401

from rpt_trl import RPTConfig
from rpt_trl.data.builder import NextTokenSettings
from rpt_trl.numeric_fields import numeric_fields


def make(**kwargs):
    return RPTConfig(output_dir="unused", use_cpu=True, bf16=False, report_to="none", **kwargs)


# Item 3: YAML `thought_budget: true` became a budget of 1 token.
@pytest.mark.parametrize("name", sorted(numeric_fields(RPTConfig)))
def test_a_boolean_is_refused_for_every_numeric_config_field(name):
    assert numeric_fields(RPTConfig)[name] in (int, float)
    with pytest.raises(ValueError, match=rf"^{name} must be (an integer|a number), got the boolean True"):
        make(**{name: True})


@pytest.mark.parametrize("name", sorted(numeric_fields(NextTokenSettings)))
def test_a_boolean_is_refused_for_every_numeric_builder_setting(name):
    with pytest.raises(ValueError, match=rf"^{name} must be (an integer|a number), got the boolean False"):
        NextTokenSettings(**{name: False})


def test_the_numeric_fields_cover_the_rpt_fields_and_grpo_fields():
    fields = numeric_fields(RPTConfig)
    for name in ("thought_budget", "thought_budget_width", "max_context_tokens", "min_entropy", "temperature",
                 "reference_ema_decay", "dynamic_sampling_start_step", "max_steps", "learning_rate", "beta"):  # fmt: skip
        assert name in fields, name
    assert fields["thought_budget"] is int and fields["temperature"] is float


def test_yaml_true_for_the_thought_budget_is_refused(tmp_path):
    from rpt_trl.trainer.train import parse_args

    config = tmp_path / "config.yaml"
    config.write_text("output_dir: out\nuse_cpu: true\nthought_budget: true\n")
    with pytest.raises(ValueError, match="thought_budget must be an integer, got the boolean True"):
        parse_args(["--config", str(config)])


def test_a_fraction_is_refused_for_an_integer_field():
    with pytest.raises(ValueError, match=r"^max_steps must be an integer, got 1.7"):
        make(max_steps=1.7)


# Item 15: out-of-range sampling numbers.
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -1.0}, "temperature must be > 0"),
        ({"top_k": -1}, "top_k must be 0 .* or more"),
        ({"min_p": 1.5}, r"min_p must be in \[0, 1\]"),
        ({"min_p": -0.1}, r"min_p must be in \[0, 1\]"),
        ({"repetition_penalty": 0.0}, "repetition_penalty must be > 0"),
    ],
)
def test_out_of_range_sampling_numbers_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


# Item 5: the README's nested splits (easy holds medium holds hard) need thresholds that strictly increase.
@pytest.mark.parametrize("thresholds", [["1.5", "1.0", "0.5"], ["0.5", "0.5", "1.5"], ["0.5", "1.5", "1.0"]])
def test_difficulty_thresholds_out_of_order_are_refused(corpus_file, proxy_dir, tmp_path, thresholds):  # noqa: F811
    with pytest.raises(SystemExit, match=r"difficulty_thresholds must strictly increase \(easy < medium < hard"):
        run_prepare(corpus_file, proxy_dir, tmp_path / "out", "--difficulty-thresholds", *thresholds)
    assert not (tmp_path / "out").exists()


def test_the_builder_refuses_thresholds_out_of_order():
    from conftest import make_byte_level_tokenizer

    from rpt_trl import build_next_token_dataset

    with pytest.raises(ValueError, match="difficulty_thresholds must strictly increase"):
        build_next_token_dataset(
            ["a document long enough"], make_byte_level_tokenizer(), token_entropy=[[1.0] * 40],
            difficulty_thresholds={"easy": 1.5, "medium": 1.0, "hard": 0.5}, min_context_tokens=2,
        )  # fmt: skip


# Item 15: `--max_documents 0` said "all 0 documents are empty"; streaming was ignored.
def test_max_documents_zero_is_refused(corpus_file, proxy_dir, tmp_path, proxy_must_not_load):  # noqa: F811
    with pytest.raises(SystemExit, match=r"rpt-trl prepare: error: max_documents must be at least 1 \(omit it"):
        run_prepare(corpus_file, proxy_dir, tmp_path / "out", "--max-documents", "0")
    assert not (tmp_path / "out").exists()


def test_train_refuses_dataset_streaming(tmp_path):
    from rpt_trl.trainer.train import parse_args

    with pytest.raises(ValueError, match="dataset_streaming=True is not supported by rpt-trl train"):
        parse_args(
            ["--output_dir", str(tmp_path), "--use_cpu", "true", "--dataset_name", "x", "--dataset_streaming", "true"]
        )


def rows(**changes):
    """Three good next-token rows; `changes` maps a row index to the column values that replace its own."""
    table = [{"prompt": f"context {i}", "ground_truth": " cat", "ground_truth_boundaries": [4]} for i in range(3)]
    for index, values in changes.items():
        table[int(index.removeprefix("row"))].update(values)
    return table


BAD_COLUMNS = [
    # item 4: an empty boundary list made every answer score 0
    (rows(row2={"ground_truth_boundaries": []}), r"row 2: column 'ground_truth_boundaries' is empty"),
    # item 12: wrong types failed inside the first reward call, after the model loaded
    (
        [{**row, "ground_truth_boundaries": ["4"]} for row in rows()],
        r"row 0: column 'ground_truth_boundaries' must hold",
    ),
    (
        [{**row, "ground_truth_boundaries": "4"} for row in rows()],
        r"row 0: column 'ground_truth_boundaries' must be a list",
    ),
    ([{**row, "ground_truth": 7} for row in rows()], r"row 0: column 'ground_truth' must be text, got int 7"),
    (rows(row1={"ground_truth": None}), r"row 1: column 'ground_truth' must be text, got NoneType None"),
    (
        [{**row, "ground_truth_boundaries": [4.0]} for row in rows()],
        r"row 0: column 'ground_truth_boundaries' must hold",
    ),
]


@pytest.mark.parametrize(("table", "message"), BAD_COLUMNS)
@pytest.mark.parametrize("form", ["list", "Dataset", "IterableDataset"])
def test_the_shared_column_check_names_row_and_column(table, message, form):
    from rpt_trl.data.columns import check_next_token_columns

    if form == "Dataset":
        data = datasets.Dataset.from_list(table)
    elif form == "IterableDataset":
        data = datasets.IterableDataset.from_generator(lambda: iter(table))
    else:
        data = table
    with pytest.raises(ValueError, match=rf"^train_dataset, {message}"):
        check_next_token_columns(data, "train_dataset")
    check_next_token_columns(rows(), "train_dataset")  # good rows pass
    check_next_token_columns(datasets.Dataset.from_list(rows()), "train_dataset")


@pytest.mark.parametrize(("table", "message"), BAD_COLUMNS)
def test_the_trainer_refuses_bad_columns_before_the_model_loads(tmp_path, table, message):
    from rpt_trl import RPTTrainer

    args = RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", dynamic_sampling=False)
    with pytest.raises(ValueError, match=rf"^train_dataset, {message}"):  # a model that does not exist never loads
        RPTTrainer(model="no/such-model", args=args, train_dataset=datasets.Dataset.from_list(table))


# Item 14: beta > 0 makes TRL load a full second model, although the README says information_gain needs none.
def test_beta_with_information_gain_warns_about_the_second_model(caplog):
    with caplog.at_level(logging.WARNING, logger="rpt_trl.trainer.rpt_config"):
        make(reward="information_gain", prompt_template="information_gain", prompt_format="text", beta=0.0)
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="rpt_trl.trainer.rpt_config"):
        make(reward="information_gain", prompt_template="information_gain", prompt_format="text", beta=0.04)
    assert len(caplog.records) == 1 and "second, frozen copy of the model" in caplog.records[0].getMessage()


# Item 2: prompt settings were ignored on a dataset that already has prompts.
DOCUMENTS = ["The cat sat on the mat and looked at the dog across the room for a while."] * 2


def built(**settings):
    from conftest import make_byte_level_tokenizer

    from rpt_trl import build_next_token_dataset

    tokenizer = make_byte_level_tokenizer(DOCUMENTS)
    return build_next_token_dataset(DOCUMENTS, tokenizer, min_context_tokens=4, show_progress=False, **settings)


def trainer_with(dataset, tmp_path, **config):
    from rpt_trl import RPTTrainer

    args = RPTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", dynamic_sampling=False,
                     **config)  # fmt: skip
    return RPTTrainer(model="no/such-model", args=args, train_dataset=dataset)  # never loads: refused first


def test_information_gain_is_refused_on_boxed_v0_prompts(tmp_path):
    v0 = built()  # what `rpt-trl prepare` writes by default
    with pytest.raises(ValueError, match=r"^reward='information_gain' cannot train on train_dataset: .*'v0'"):
        trainer_with(
            v0, tmp_path, reward="information_gain", prompt_template="{context}", prompt_format="conversational"
        )
    with pytest.raises(
        ValueError, match=r"^reward='information_gain' scores .* prompt_template='v0' asks for a boxed"
    ):
        make(reward="information_gain")  # the default template is the boxed v0


def test_a_boxed_reward_is_refused_on_information_gain_prompts(tmp_path):
    prompts = built(prompt_template="information_gain", prompt_format="text")
    with pytest.raises(ValueError, match=r"^reward='prefix_match' scores the answer in .*'information_gain', which"):
        trainer_with(prompts, tmp_path, prompt_template="{context}", prompt_format="text")
    with pytest.raises(
        ValueError, match=r"^reward='dense' scores the answer .*prompt_template='information_gain' asks"
    ):
        trainer_with(prompts, tmp_path, reward="dense", prompt_template="information_gain", prompt_format="text")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"prompt_template": "few_shot"}, r"^train_dataset's prompts \(row 0\) were not built with prompt_template="
         r"'few_shot', but with prompt_template='v0'; .*rebuild it .* or set prompt_template to 'v0'"),
        ({"prompt_format": "text"}, r"^train_dataset's prompts are conversational, not prompt_format='text'"),
    ],
)  # fmt: skip
def test_prompt_settings_the_prompts_do_not_follow_are_refused(tmp_path, config, message):
    with pytest.raises(ValueError, match=message):
        trainer_with(built(), tmp_path, **config)


def test_default_prompt_settings_on_other_prompts_are_warned_about(tmp_path, caplog):
    few_shot = built(prompt_template="few_shot", prompt_format="text")
    with caplog.at_level(logging.WARNING), pytest.raises(OSError):  # reaches the model load: not refused
        trainer_with(few_shot, tmp_path, max_context_tokens=1000)
    messages = [record.getMessage() for record in caplog.records]
    assert any("not prompt_format='conversational'" in m for m in messages), messages
    assert any("not built with prompt_template='v0', but with prompt_template='few_shot'" in m for m in messages)
    assert any(m.startswith("max_context_tokens=1000 shape(s) examples built from raw") for m in messages)


def test_matching_prompt_settings_pass_silently(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="rpt_trl.data.prompt_settings"), pytest.raises(OSError):
        trainer_with(built(prompt_template="few_shot"), tmp_path, prompt_template="few_shot")
    assert not caplog.records


def test_train_refuses_a_chosen_setting_that_a_prepared_folder_was_not_built_with(tmp_path):
    from rpt_trl.trainer.train import RPTScriptArguments, load_train_dataset

    folder = tmp_path / "prepared"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows())}).save_to_disk(str(folder))
    settings = {"prompt_template": "v0", "prompt_format": "text", "max_context_tokens": 3840, "position_stride": 1}
    (folder / "prepare_info.json").write_text(json.dumps({"settings": settings}))
    script_args = RPTScriptArguments(dataset_name=str(folder))
    with pytest.raises(ValueError, match=r"^max_context_tokens=1024, but .*prepared was prepared with max_context_"
                                         r"tokens=3840 .*rebuild it with rpt-trl prepare --max_context_tokens 1024"):  # fmt: skip
        load_train_dataset(script_args, settings=NextTokenSettings(max_context_tokens=1024))
    with pytest.raises(ValueError, match=r"^prompt_template='few_shot', but .* with prompt_template='v0'"):
        load_train_dataset(script_args, settings=NextTokenSettings(prompt_template="few_shot"))
    same = NextTokenSettings(max_context_tokens=3840, prompt_format="text", position_stride=1)
    assert len(load_train_dataset(script_args, settings=same)) == 3  # the settings it was built with


@pytest.mark.parametrize(
    ("recorded", "refused"),
    [
        ({"position_filter": "all"}, True),
        ({}, True),  # prepared before position_filter existed: built from every position
        ({"position_filter": "word_in_context"}, False),
    ],
)
def test_train_refuses_a_position_filter_that_a_prepared_folder_was_not_built_with(tmp_path, recorded, refused):
    from rpt_trl.trainer.train import RPTScriptArguments, load_train_dataset

    folder = tmp_path / "prepared"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows())}).save_to_disk(str(folder))
    (folder / "prepare_info.json").write_text(json.dumps({"settings": {"max_context_tokens": 3840, **recorded}}))
    script_args = RPTScriptArguments(dataset_name=str(folder))
    chosen = NextTokenSettings(position_filter="word_in_context")
    if refused:
        with pytest.raises(ValueError, match=r"^position_filter='word_in_context', but .*prepared was prepared with "
                                             r"position_filter='all' .*rpt-trl prepare --position_filter word_in_c"):  # fmt: skip
            load_train_dataset(script_args, settings=chosen)
    else:
        assert len(load_train_dataset(script_args, settings=chosen)) == 3
    assert len(load_train_dataset(script_args, settings=NextTokenSettings())) == 3  # the default is never refused
