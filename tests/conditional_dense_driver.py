"""One rank of a 2-process check of `conditional_dense` with a group split across processes: launched by
test_model_rewards_distributed.py. Each rank scores its half of a fixed batch with the real cross-process gather and
writes its rewards to `rank{N}.json`.

Usage: accelerate launch --multi_gpu --num_processes 2 tests/conditional_dense_driver.py <out_dir>
"""

import json
import os
import sys
from types import SimpleNamespace

from accelerate import Accelerator

from rpt_trl.experiments.tiny import make_tiny_model, make_tiny_tokenizer
from rpt_trl.rewards.model_rewards import ConditionalDenseReward


RIGHT, WRONG = "<think>hm</think> \\boxed{ meow}", "<think>hm</think> \\boxed{ woof}"
# Three groups of 4 over 12 rollouts; rank 0 holds rows 0-5, rank 1 rows 6-11, so group 1 (rows 4-7) is split.
# Group 0: no right rollout. Group 1: right only at row 7, on rank 1. Group 2: right at row 8 only.
COMPLETIONS = [WRONG] * 4 + [WRONG, WRONG, WRONG, RIGHT] + [RIGHT, WRONG, WRONG, WRONG]
NUM_GENERATIONS = 4


def batch() -> dict:
    return dict(
        prompts=["the cat says"] * len(COMPLETIONS),
        completions=COMPLETIONS,
        ground_truth=[" meow"] * len(COMPLETIONS),
        ground_truth_boundaries=[[5]] * len(COMPLETIONS),
    )


if __name__ == "__main__":
    out_dir = sys.argv[1]
    accelerator = Accelerator(cpu=True)
    tokenizer = make_tiny_tokenizer()
    model = make_tiny_model(tokenizer, seed=3).eval()  # the same weights on every rank
    trainer = SimpleNamespace(
        accelerator=accelerator,
        model=model,
        num_generations=NUM_GENERATIONS,
        num_generations_eval=NUM_GENERATIONS,
        args=SimpleNamespace(per_device_train_batch_size=6, gradient_checkpointing_kwargs=None),
        processing_class=tokenizer,
        chat_template_kwargs=None,
    )
    reward = ConditionalDenseReward().bind(trainer)
    local = len(COMPLETIONS) // accelerator.num_processes
    rows = slice(accelerator.process_index * local, (accelerator.process_index + 1) * local)
    logged = {}
    rewards = reward(**{k: v[rows] for k, v in batch().items()}, log_metric=logged.__setitem__)
    record = {"rank": accelerator.process_index, "world_size": accelerator.num_processes, "rewards": rewards}
    record["groups_with_correct"] = logged["rpt/groups_with_correct"]
    with open(os.path.join(out_dir, f"rank{accelerator.process_index}.json"), "w") as file:
        json.dump(record, file)
    # Leave together: a rank that exits while the other's gloo threads still run can abort it.
    accelerator.wait_for_everyone()
    accelerator.end_training()
    from driver_exit import exit_without_teardown

    exit_without_teardown()
