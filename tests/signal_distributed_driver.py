"""Train the tiny world on 2 processes with every group split across them, and write what each rank logged: launched
by test_signal_distributed.py.

Band sampling is on: its pass-rate tracker must end in the same state on both ranks. Rank 0 earns reward 1 and
rank 1 reward 0, so each group is uniform on each process and mixed as a whole: a measure
taken before gathering would say 0, the right one 1.

Usage: accelerate launch --multi_gpu --num_processes 2 tests/signal_distributed_driver.py <out_dir>
"""

import json
import os
import sys

import torch

from rpt_trl import RPTTrainer
from rpt_trl.experiments.tiny import tiny_training_config, warm_started_world
from rpt_trl.parsing import extract_prediction
from rpt_trl.trainer.signal import DISTINCT_ANSWERS, SIGNAL_GENERATED, SIGNAL_TRAINED


class RankReward:
    __name__ = "rank_reward"

    def __init__(self):
        self.predictions = []  # per call, this rank's parsed answers
        self.prompts = []  # per call, this rank's prompts

    def __call__(self, completions, prompts, **kwargs):
        self.predictions.append([extract_prediction(c) for c in completions])
        self.prompts.append(list(prompts))
        return [1.0 if torch.distributed.get_rank() == 0 else 0.0] * len(completions)


if __name__ == "__main__":
    out_dir = sys.argv[1]
    model, tokenizer, dataset, _ = warm_started_world(seed=0)
    args = tiny_training_config(
        os.path.join(out_dir, "run"), per_device_train_batch_size=2, num_generations=4, max_steps=2,
        dynamic_sampling=False, seed=0, band_sampling=True,
    )  # fmt: skip
    reward = RankReward()
    trainer = RPTTrainer(
        model=model, reward_funcs=reward, args=args, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.train()
    logged = [e for e in trainer.state.log_history if SIGNAL_GENERATED in e]
    record = {
        "rank": trainer.accelerator.process_index,
        "generated": [e[SIGNAL_GENERATED] for e in logged],
        "trained": [e[SIGNAL_TRAINED] for e in logged],
        "distinct_answers": [e[DISTINCT_ANSWERS] for e in logged],
        "frac_reward_zero_std": [e["frac_reward_zero_std"] for e in logged],
        "predictions": reward.predictions,
        "prompts": reward.prompts,
        "band_passes": trainer.band_tracker.passes.tolist(),
        "band_trials": trainer.band_tracker.trials.tolist(),
    }
    with open(os.path.join(out_dir, f"rank{record['rank']}.json"), "w") as file:
        json.dump(record, file)
    from driver_exit import exit_without_teardown

    exit_without_teardown()
