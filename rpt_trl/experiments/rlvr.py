r"""Follow-on RLVR (paper, Section 4.3, Table 2): plain GRPO with a math-answer reward, from an RPT checkpoint.

The paper fine-tunes R1-Distill-Qwen-14B and RPT-14B with RL on hard Skywork-OR1 math questions (256 train, 200
test) and reports that RPT is the better start (56.3 -> 58.3 against 51.2 -> 52.7). This module prepares such a
split and trains with `trl.GRPOTrainer` and TRL's `reasoning_accuracy_reward` (math-verify on the text after
`</think>`), so a user can run the same comparison from both checkpoints. Needs `pip install "rpt-trl[rlvr]"`.

The paper does not say how its hard questions were chosen. Here: questions of the `math` split whose solve count
by a reference model (Skywork's `extra_info.model_difficulty`, number of correct answers) is at most
`max_reference_solved`, shuffled with `seed`, the first `num_train` for training and the next `num_test` held out.
"""

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import datasets
from trl import GRPOConfig, GRPOTrainer, ModelConfig, ScriptArguments, TrlParser, get_peft_config


logger = logging.getLogger(__name__)


@dataclass
class RLVRScriptArguments(ScriptArguments):
    """Script arguments of the RLVR recipe: everything in `trl.ScriptArguments`, plus

    reference_model (`str`, *optional*, defaults to `"DeepSeek-R1-Distill-Qwen-32B"`):
        Key of `extra_info.model_difficulty` used to pick hard questions.
    max_reference_solved (`int`, *optional*):
        Keep questions the reference model solved at most this many times; `None` keeps all.
    num_train (`int`, *optional*, defaults to `256`):
        Training questions (the paper's 256).
    num_test (`int`, *optional*, defaults to `200`):
        Held-out questions after the training ones (the paper's 200).
    """

    dataset_name: str | None = field(default="Skywork/Skywork-OR1-RL-Data", metadata={"help": "Hub id or dir."})
    dataset_train_split: str = field(default="math", metadata={"help": "Split holding the math questions."})
    reference_model: str = field(
        default="DeepSeek-R1-Distill-Qwen-32B", metadata={"help": "Key of extra_info.model_difficulty."}
    )
    max_reference_solved: int | None = field(
        default=None, metadata={"help": "Keep questions the reference model solved at most this many times."}
    )
    num_train: int = field(default=256, metadata={"help": "Training questions (the paper's 256)."})
    num_test: int = field(default=200, metadata={"help": "Held-out questions (the paper's 200)."})


def ground_truth_answer(reward_model: dict[str, Any]) -> str:
    """The reference answer of a Skywork-OR1 row: `reward_model["ground_truth"]`, a string or a JSON list of them.

    >>> ground_truth_answer({"ground_truth": '["\\\\frac{1}{2}"]'})
    '\\\\frac{1}{2}'
    >>> ground_truth_answer({"ground_truth": "42"})
    '42'
    """
    truth = reward_model["ground_truth"]
    if isinstance(truth, str) and truth.startswith("["):
        try:
            parsed = json.loads(truth)
        except json.JSONDecodeError:
            return truth
        if isinstance(parsed, list) and parsed:
            return str(parsed[0])
    return str(truth)


def prepare_split(dataset: datasets.Dataset, script_args: RLVRScriptArguments, seed: int) -> datasets.DatasetDict:
    """Hard questions as `prompt` (conversational) + `solution`, split into `train` and `test`."""
    if script_args.max_reference_solved is not None:
        reference, limit = script_args.reference_model, script_args.max_reference_solved
        dataset = dataset.filter(lambda info: info["model_difficulty"][reference] <= limit, input_columns="extra_info")
    needed = script_args.num_train + script_args.num_test
    if len(dataset) < needed:
        raise ValueError(
            f"Only {len(dataset)} questions pass the difficulty filter, {needed} are needed (num_train + num_test); "
            "raise max_reference_solved or lower num_train / num_test."
        )
    dataset = dataset.shuffle(seed=seed).select(range(needed))
    dataset = dataset.map(
        lambda row: {"prompt": row["prompt"], "solution": ground_truth_answer(row["reward_model"])},
        remove_columns=[c for c in dataset.column_names if c != "prompt"],
    )
    return datasets.DatasetDict(
        train=dataset.select(range(script_args.num_train)),
        test=dataset.select(range(script_args.num_train, needed)),
    )


def make_parser() -> TrlParser:
    """The parser of `recipes/rlvr.py`: `(RLVRScriptArguments, GRPOConfig, ModelConfig)`."""
    return TrlParser((RLVRScriptArguments, GRPOConfig, ModelConfig))


def main(script_args: RLVRScriptArguments, training_args: GRPOConfig, model_args: ModelConfig) -> GRPOTrainer:
    """Prepare the hard split, train GRPO with the math-answer reward, evaluate on the held-out questions."""
    from trl.import_utils import is_math_verify_available

    if not is_math_verify_available():
        raise ImportError('The RLVR recipe scores answers with math-verify: pip install "rpt-trl[rlvr]".')
    from trl.rewards import reasoning_accuracy_reward

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raw = datasets.load_dataset(
        script_args.dataset_name, name=script_args.dataset_config, split=script_args.dataset_train_split
    )
    splits = prepare_split(raw, script_args, training_args.seed)
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    trainer = GRPOTrainer(
        model=model_args.model_name_or_path,
        reward_funcs=reasoning_accuracy_reward,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["test"],
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    return trainer
