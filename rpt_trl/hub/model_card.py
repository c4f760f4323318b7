"""The RPT model card: rendered from the template shipped with the package, with the config, the evaluation results
(a table and `model-index` metadata, in the schema of `rpt_trl.results`) and the training curves (a table and a PNG)
taken from `trainer.state.log_history`.
"""

import logging
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from importlib import resources
from importlib.metadata import version
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..plotting import pyplot
from ..results import card_table, result_groups, validate_result


logger = logging.getLogger(__name__)

CURVE_COLUMNS = (
    "reward",
    "rpt/next_token_accuracy",
    "rpt/answer_rate",
    "rpt/reasoning_tokens",
    "rpt/dense_probability",
    "rpt/groups_with_correct",
    "rpt/info_gain",
)
# What the training-procedure section says each `RPTConfig.reward` is.
REWARD_DESCRIPTIONS = {
    "prefix_match": "next-token prefix matching (1 when the answer is a byte prefix of the continuation ending on a "
    "token boundary, else 0)",
    "first_token": "first-token matching (1 only when the answer is exactly the first ground-truth token)",
    "dense": "the paper's dense variant (Appendix A): 1 when the answer is correct, else the policy's probability of "
    "the first ground-truth token at the answer position",
    "conditional_dense": "the paper's conditional dense variant (Appendix A): the dense reward in groups with at "
    "least one correct rollout, 0 in the others",
    "information_gain": "an information gain after RLP (arXiv 2510.01265): log p(first ground-truth token | context, "
    "thought) minus its log-probability under an exponential moving average of the policy that reads no thought",
}
TRAINING_CURVES_PNG = "training_curves.png"
MODEL_CARD_TEMPLATE = "rpt_model_card.md"
TAGS = ("trl", "rpt", "grpo")
PAPER = {
    "title": "Reinforcement Pre-Training",
    "id": "2506.08007",
    "citation": textwrap.dedent("""\
        @article{dong2025reinforcement,
            title        = {{Reinforcement Pre-Training}},
            author       = {Qingxiu Dong and Li Dong and Yao Tang and Tianzhu Ye and Yutao Sun and Zhifang Sui and Furu Wei},
            year         = 2025,
            eprint       = {arXiv:2506.08007},
        }"""),
}
"""The paper, as TRL trainers cite theirs (`RPTTrainer._paper`); the model and dataset cards cite it."""


def is_this_model(result: Mapping[str, Any], names: Sequence[str | None]) -> bool:
    """Whether an evaluation result is about the card's model: its `model` is absent, one of `names`, or a local
    path ending in one of them. Other results (a base model, say) are comparisons: shown, not claimed."""
    model = result.get("model")
    names = [name for name in names if name]
    return not model or model in names or os.path.basename(os.path.normpath(str(model))) in names


def model_index_results(
    eval_results: Sequence[Mapping[str, Any]], names: Sequence[str | None] = ()
) -> list[EvalResult]:
    """`model-index` entries for the card metadata: one accuracy per run and group (overall, easy, medium, hard),
    for the runs that evaluated this model (see [`is_this_model`]; all runs when `names` is empty)."""
    entries = []
    for result in eval_results:
        if names and not is_this_model(result, names):
            continue
        task = "multiple-choice" if result["mode"] == "multiple_choice" else "next-token-prediction"
        for name, group in result_groups(result):
            if group.get("accuracy") is None or not group.get("n"):
                continue
            entries.append(
                EvalResult(
                    task_type=task,
                    task_name="Multiple choice" if task == "multiple-choice" else "Next-token prediction",
                    dataset_type=str(result["dataset"]),
                    dataset_name=str(result["dataset"]),
                    metric_type="accuracy",
                    metric_name=f"{name} accuracy ({result['mode']})",
                    metric_value=float(group["accuracy"]),
                )
            )
    return entries


def training_curve_rows(log_history: Sequence[dict[str, Any]], max_rows: int = 20) -> list[dict[str, Any]]:
    """The logged reward metrics per step, thinned evenly to at most `max_rows` rows (always keeping the last)."""
    logged = [entry for entry in log_history if "reward" in entry and "step" in entry]
    if len(logged) > max_rows:
        stride = math.ceil(len(logged) / max_rows)
        logged = logged[::stride][: max_rows - 1] + [logged[-1]]
    rows = []
    for entry in logged:
        row = {"step": entry["step"]}
        row.update({column: _fmt(entry[column]) for column in CURVE_COLUMNS if column in entry})
        rows.append(row)
    return rows


def plot_training_curves(log_history: Sequence[dict[str, Any]], path: str) -> str | None:
    """Plot reward, answer rate and the share of groups with a learning signal per step to `path` (PNG). Returns
    the path, or `None` with no data."""
    logged = [entry for entry in log_history if "reward" in entry and "step" in entry]
    if not logged:
        return None
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # optimizer steps are whole numbers
    steps = [entry["step"] for entry in logged]
    curves = (
        ("reward", "reward"),
        ("rpt/answer_rate", "answer rate"),
        ("rpt/signal_share/generated", "groups with a learning signal"),  # rpt_trl.trainer.signal
    )
    for column, label in curves:
        if all(column in entry for entry in logged):
            axis.plot(steps, [entry[column] for entry in logged], label=label, marker="." if len(steps) < 50 else None)
    axis.set_xlabel("step")
    axis.set_ylim(-0.02, 1.02)
    axis.set_title("RPT training")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _fmt(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def render_model_card(
    *,
    base_model: str | None,
    model_name: str,
    hub_model_id: str | None,
    dataset_name: str | None,
    tags: list[str],
    args: Any,
    eval_results: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
    license: str | None = None,
    log_history: list[dict[str, Any]] | None = None,
    curves_png: str | None = None,
) -> ModelCard:
    """Render the RPT model card from the template shipped with the package (`model_card_templates/`).

    Args:
        base_model: Hub id of the base model (`None` for a local one: no machine paths in a public card).
        model_name: Name of the trained model.
        hub_model_id: Hub id it is pushed to, if any.
        dataset_name: Hub id of the training dataset.
        tags: Extra tags.
        args: The run's [`RPTConfig`]; its task and optimisation settings fill the hyperparameter table.
        eval_results: Evaluation results in the schema of `rpt_trl.results`; a table and `model-index` metadata.
        license: License identifier for the metadata.
        log_history: `trainer.state.log_history`; its reward metrics per step become the training-curve table.
        curves_png: Path of the training-curve image, relative to the card.

    Raises:
        ValueError: If an evaluation result departs from the schema (naming it and the key).
    """
    if isinstance(eval_results, Mapping):
        eval_results = [eval_results]
    eval_results = list(eval_results or [])
    for index, result in enumerate(eval_results):
        validate_result(result, where=f"eval_results[{index}]")
    card_data = ModelCardData(
        base_model=base_model,
        datasets=dataset_name,
        eval_results=model_index_results(eval_results, [model_name, hub_model_id]) or None,
        library_name="transformers",
        license=license,
        model_name=model_name,
        tags=sorted({"generated_from_trainer", *TAGS, *tags}),
    )
    curve_rows = training_curve_rows(log_history or [])
    template = resources.files("rpt_trl.model_card_templates").joinpath(MODEL_CARD_TEMPLATE)
    with resources.as_file(template) as template_path:
        return ModelCard.from_template(
            card_data,
            template_path=str(template_path),
            base_model=base_model,
            model_name=model_name,
            hub_model_id=hub_model_id or model_name,
            dataset_name=dataset_name,
            paper_id=PAPER["id"],
            paper_title=PAPER["title"],
            citation=PAPER["citation"],
            hyperparameters=_card_hyperparameters(args),
            reward_description=REWARD_DESCRIPTIONS.get(getattr(args, "reward", "prefix_match"), "a custom reward"),
            eval_table=card_table(eval_results) if eval_results else None,
            curve_rows=curve_rows,
            curve_columns=[c for c in CURVE_COLUMNS if any(c in row for row in curve_rows)],
            curves_png=curves_png,
            rpt_trl_version=version("rpt-trl"),
            trl_version=version("trl"),
            transformers_version=version("transformers"),
            pytorch_version=version("torch"),
            datasets_version=version("datasets"),
        )


def _card_hyperparameters(args: Any) -> dict[str, Any]:
    names = [
        "prompt_template", "prompt_format", "reward", "require_think_close", "max_context_tokens",
        "max_ground_truth_tokens", "learning_rate", "weight_decay", "num_generations", "temperature",
        "max_completion_length", "beta", "epsilon", "loss_type", "per_device_train_batch_size",
        "gradient_accumulation_steps", "max_steps", "num_train_epochs", "seed",
    ]  # fmt: skip
    values = {name: getattr(args, name) for name in names}
    if args.reward == "information_gain":
        values["reference_ema_decay"] = args.reference_ema_decay
        values["reference_ema_device"] = args.reference_ema_device
    # A custom template (the built-in ones are named, a custom one holds the `{context}` placeholder): name it,
    # don't paste it.
    if "{context}" in args.prompt_template:
        values["prompt_template"] = "custom"
    # Shaping and ordering that change what was learned: recorded when on (getattr: a plain GRPOConfig lacks them).
    if getattr(args, "thought_budget", None) is not None:
        values["thought_budget"] = args.thought_budget
        values["thought_budget_penalty"] = args.thought_budget_penalty
        if args.thought_budget_penalty == "linear":
            values["thought_budget_width"] = args.thought_budget_width or args.thought_budget
    if getattr(args, "curriculum", None) is not None:
        values["curriculum"] = args.curriculum
    return values
