import dataclasses

import pytest

from rpt_trl import RPTConfig


def make(**kwargs):
    return RPTConfig(output_dir="unused", use_cpu=True, bf16=False, report_to="none", **kwargs)


def test_paper_defaults():
    # RPT paper, Section 4.1 / ../shared/RPT_METHOD.md "Training".
    args = make()
    assert args.learning_rate == 1e-6
    assert args.num_generations == 8
    assert args.temperature == 0.8
    assert args.max_completion_length == 8192
    assert args.beta == 0.0
    assert args.epsilon == 0.2
    assert args.weight_decay == 0.01
    assert (args.adam_beta1, args.adam_beta2) == (0.9, 0.999)
    assert args.prompt_template == "v0" and args.reward == "prefix_match" and args.require_think_close


def test_every_rpt_field_has_help():
    base = {f.name for f in dataclasses.fields(RPTConfig.__mro__[1])}
    own = [f for f in dataclasses.fields(RPTConfig) if f.name not in base]
    assert len(own) >= 10
    for f in dataclasses.fields(RPTConfig):
        if f.name in {o.name for o in own} or f.name in {"temperature", "max_completion_length", "weight_decay"}:
            assert f.metadata.get("help"), f.name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt_template": "no placeholder"}, "prompt_template"),
        ({"prompt_format": "chat"}, "prompt_format"),
        ({"reward": "dense_v2"}, "reward must be one of"),
        ({"text_column": []}, "text_column"),
        ({"position_stride": 0}, "position_stride"),
        ({"min_context_tokens": 0}, "min_context_tokens"),
        ({"max_context_tokens": 4, "min_context_tokens": 8}, "max_context_tokens"),
        ({"max_ground_truth_tokens": 0}, "max_ground_truth_tokens"),
        ({"position_filter": "words"}, "position_filter must be one of 'all', 'word_in_context'"),
        ({"stop_after_answer": True, "use_transformers_continuous_batching": True}, "continuous batching"),
        ({"stop_after_answer": True, "use_transformers_paged": True}, "continuous batching"),
        # issue 13, item 11: values GRPOConfig accepts but that cannot train
        ({"temperature": 0.0}, "temperature must be > 0.*small value such as 0.1"),
        ({"temperature": -1.0}, "temperature must be > 0"),
        ({"max_completion_length": 0}, "max_completion_length must be at least 1"),
        ({"per_device_train_batch_size": 0}, "per_device_train_batch_size must be at least 1"),
        ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps must be at least 1"),
        ({"top_p": 0.0}, "top_p must be in"),
        ({"top_p": 1.5}, "top_p must be in"),
        ({"learning_rate": -1e-6}, "learning_rate must be >= 0"),
        ({"num_generations": 0}, "num_generations must be at least 2"),
        ({"num_generations": 1}, "num_generations must be at least 2"),
    ],
)
def test_bad_values_raise_with_a_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_text_column_string_becomes_list():
    assert make(text_column="problem").text_column == ["problem"]


def test_hub_token_is_kept_for_the_run_but_not_pickled():
    import copy
    import io

    import torch

    args = make(hub_token="hf_NotToBeWritten")
    buffer = io.BytesIO()
    torch.save(args, buffer)  # what Trainer writes to every training_args.bin
    assert b"hf_NotToBeWritten" not in buffer.getvalue()
    loaded = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    assert loaded.hub_token is None and loaded.learning_rate == args.learning_rate
    assert args.hub_token == "hf_NotToBeWritten"  # the run still pushes with it
    assert copy.deepcopy(args).hub_token == copy.copy(args).hub_token == "hf_NotToBeWritten"
