"""The reasoning-length budget: factors at the budget's boundaries, token counts from the policy's completion ids,
every reward variant wrapped, metrics, config and YAML."""

import pytest

from rpt_trl import RPTConfig, RPTTrainer
from rpt_trl.experiments.tiny import make_tiny_model, make_tiny_tokenizer, tiny_training_config, warm_started_world
from rpt_trl.rewards import REWARD_FUNCTIONS, prefix_match_reward
from rpt_trl.rewards.thought_budget import ThoughtBudgetReward, thought_budget_factors, with_thought_budget


BUDGET = 6
TRUTH, BOUNDARIES = " meow", [5]


@pytest.fixture(scope="module")
def tokenizer():
    return make_tiny_tokenizer()


class TextTokenizingForbidden:
    """The policy's tokenizer, except that tokenising text raises: counts must come from the completion ids."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __call__(self, *args, **kwargs):
        raise AssertionError("the thought was tokenised again instead of counted from completion_ids")


def completion(tokenizer, thought_tokens, answer):
    """Completion text and ids whose thought (everything before `</think>`, `<think>` included) has exactly
    `thought_tokens` tokens of the policy's tokenizer."""
    think, close = tokenizer.convert_tokens_to_ids(["<think>", "</think>"])
    filler = tokenizer.encode(" meow", add_special_tokens=False)
    assert len(filler) == 1
    ids = [think] + filler * (thought_tokens - 1) + [close] + tokenizer.encode(f" \\boxed{{{answer}}}")
    ids.append(tokenizer.eos_token_id)  # trailing EOS is not part of the thought
    return tokenizer.decode(ids, skip_special_tokens=True), ids


@pytest.mark.parametrize(
    ("penalty", "width", "expected"),
    [
        # thought tokens: budget - 1, budget, budget + 1, budget + 3, 2 * budget, 2 * budget + 1
        ("linear", None, [1.0, 1.0, 1 - 1 / BUDGET, 1 - 3 / BUDGET, 0.0, 0.0]),
        ("linear", 2, [1.0, 1.0, 0.5, 0.0, 0.0, 0.0]),
        ("step", None, [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]),
    ],
)
def test_correct_answers_lose_reward_only_past_the_budget(tokenizer, penalty, width, expected):
    lengths = [BUDGET - 1, BUDGET, BUDGET + 1, BUDGET + 3, 2 * BUDGET, 2 * BUDGET + 1]
    pairs = [completion(tokenizer, n, " meow") for n in lengths]
    texts, ids = [t for t, _ in pairs], [i for _, i in pairs]
    shaped = ThoughtBudgetReward(
        prefix_match_reward, budget=BUDGET, penalty=penalty, width=width, tokenizer=TextTokenizingForbidden(tokenizer)
    )
    rewards = shaped(
        completions=texts, completion_ids=ids, ground_truth=[TRUTH] * 6, ground_truth_boundaries=[BOUNDARIES] * 6
    )
    assert rewards == pytest.approx(expected)
    assert thought_budget_factors(lengths, BUDGET, penalty, width) == pytest.approx(expected)


def test_wrong_answers_and_none_are_never_changed(tokenizer):
    def reward(completions, **kwargs):  # a reward with negative values and an unscored completion
        return [-0.5, 0.0, None]

    texts, ids = zip(*(completion(tokenizer, 3 * BUDGET, " woof") for _ in range(3)))
    shaped = ThoughtBudgetReward(reward, budget=BUDGET, penalty="step", tokenizer=tokenizer)
    assert shaped(completions=list(texts), completion_ids=list(ids)) == [-0.5, 0.0, None]


def test_metrics_over_budget_fraction_and_penalty(tokenizer):
    pairs = [
        completion(tokenizer, n, answer)
        for n, answer in [(BUDGET, " meow"), (BUDGET + 3, " meow"), (BUDGET + 3, " moo"), (2, " moo")]
    ]
    metrics = {}
    shaped = ThoughtBudgetReward(prefix_match_reward, budget=BUDGET, tokenizer=tokenizer)
    rewards = shaped(
        completions=[t for t, _ in pairs], completion_ids=[i for _, i in pairs], ground_truth=[TRUTH] * 4,
        ground_truth_boundaries=[BOUNDARIES] * 4, log_metric=metrics.__setitem__,
    )  # fmt: skip
    assert rewards == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert metrics["rpt/over_budget_fraction"] == 0.5
    assert metrics["rpt/budget_penalty"] == pytest.approx(0.5 / 4)


@pytest.mark.parametrize("name", list(REWARD_FUNCTIONS))
def test_every_registered_reward_is_wrapped_and_keeps_its_name(tmp_path, name):
    args = RPTConfig(
        output_dir=str(tmp_path), reward=name, thought_budget=BUDGET, report_to="none", use_cpu=True, bf16=False
    )
    [wrapped] = with_thought_budget([REWARD_FUNCTIONS[name]], args, tokenizer=None)
    assert isinstance(wrapped, ThoughtBudgetReward) and wrapped.__name__ == REWARD_FUNCTIONS[name].__name__


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"thought_budget": 0}, ">= 1"),
        ({"thought_budget": 8, "thought_budget_penalty": "cubic"}, "linear"),
        ({"thought_budget": 8, "thought_budget_penalty": "step", "thought_budget_width": 4}, "only shapes the linear"),
        ({"thought_budget_width": 4}, "set thought_budget"),
        ({"thought_budget": 8, "thought_budget_width": 0}, ">= 1"),
    ],
)
def test_bad_budget_settings_are_refused(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        RPTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, **overrides)


def test_reward_models_cannot_be_shaped(tmp_path, tokenizer):
    args = RPTConfig(output_dir=str(tmp_path), thought_budget=4, report_to="none", use_cpu=True, bf16=False)
    with pytest.raises(ValueError, match="reward models"):
        with_thought_budget([make_tiny_model(tokenizer)], args, tokenizer)


def test_trainer_shapes_its_reward_and_logs_budget_metrics(tmp_path):
    model, tokenizer, dataset, _ = warm_started_world()
    # The warm-started thought `<think>hm</think>` is 2 tokens: a budget of 1 puts every completion over it.
    args = tiny_training_config(str(tmp_path), max_steps=1, thought_budget=1, thought_budget_penalty="step")
    trainer = RPTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    assert isinstance(trainer.reward_funcs[0], ThoughtBudgetReward)
    trainer.train()
    [logged] = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert logged["rpt/over_budget_fraction"] > 0.9
    assert logged["reward"] <= 1 - logged["rpt/over_budget_fraction"] + 1e-6  # step: over budget earns 0
    assert logged["rpt/budget_penalty"] == pytest.approx(
        logged["rpt/next_token_accuracy"] - logged["reward"], abs=1e-6
    )
    trainer.create_model_card()
    card = (tmp_path / "README.md").read_text()
    assert "| `thought_budget` | `1` |" in card and "| `thought_budget_penalty` | `step` |" in card


def test_budget_and_curriculum_from_recipe_yaml(tmp_path):
    from rpt_trl.trainer.train import parse_args

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path}\nuse_cpu: true\nbf16: false\nreport_to: [none]\nreward: first_token\n"
        "thought_budget: 512\nthought_budget_penalty: step\ncurriculum: entropy\n"
    )
    _, args, _ = parse_args(["--config", str(recipe)])
    assert (args.reward, args.thought_budget, args.thought_budget_penalty, args.curriculum) == (
        "first_token", 512, "step", "entropy",
    )  # fmt: skip
    _, args, _ = parse_args(
        ["--config", str(recipe), "--thought_budget_penalty", "linear", "--thought_budget_width", "64"]
    )
    assert (args.thought_budget_penalty, args.thought_budget_width) == ("linear", 64)


class ModelBoundReward:
    """A reward that the trainer recognises by its class and binds to itself (as rewards that read the policy are)."""

    def __init__(self):
        self.trainer = None

    def bind(self, trainer):
        self.trainer = trainer

    def __call__(self, completions, **kwargs):
        return [1.0] * len(completions)


def test_wrapper_binds_names_and_unwraps_like_the_reward_it_wraps(tokenizer):
    import functools
    import pickle

    from trl.trainer.utils import get_callable_name

    from rpt_trl.rewards.thought_budget import unwrapped_reward

    inner = ModelBoundReward()
    shaped = ThoughtBudgetReward(inner, budget=BUDGET, tokenizer=tokenizer)
    assert type(shaped) is ThoughtBudgetReward and not isinstance(shaped, ModelBoundReward)  # no faked class
    assert unwrapped_reward(shaped) is inner and unwrapped_reward(ThoughtBudgetReward(shaped, budget=3)) is inner
    shaped.bind("the trainer")
    assert inner.trainer == "the trainer" and shaped.trainer == "the trainer"
    partial = ThoughtBudgetReward(functools.partial(prefix_match_reward, require_think_close=False), budget=BUDGET)
    assert partial.keywords == {"require_think_close": False}
    assert get_callable_name(partial) == "prefix_match_reward"  # TRL names the wrapped reward
    restored = pickle.loads(pickle.dumps(partial))
    assert (
        type(restored) is ThoughtBudgetReward and restored.budget == BUDGET and restored.keywords == partial.keywords
    )
