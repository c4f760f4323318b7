"""The tiny offline RPT recipe: the warm-started tiny policy of `rpt_trl.experiments.tiny` on its animal dataset, on CPU.

    accelerate launch --multi_gpu --num_processes 2 recipes/tiny/rpt_tiny.py

It runs the production training script's `main` (`rpt_trl.trainer.train.main`, as `recipes/rpt_14b.py` does) with a model
and dataset built here, so the production script carries no test flags. With no `--config`, `rpt/config_cpu.yaml`
next to this script is used; flags override its values. Used by the distributed tests and as a smoke test.
"""

import os
import sys

from rpt_trl.experiments.tiny import warm_started_world
from rpt_trl.trainer.train import main, parse_args


DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rpt", "config_cpu.yaml")


def run(argv: list[str]) -> object:
    """Parse `argv` (the tiny YAML by default), build the tiny world with the run's seed, train it."""
    script_args, training_args, model_args = parse_args(argv, default_config=DEFAULT_CONFIG)
    model, tokenizer, dataset, _ = warm_started_world(seed=training_args.seed)
    return main(script_args, training_args, model_args, model=model, processing_class=tokenizer, train_dataset=dataset)


if __name__ == "__main__":
    run(sys.argv[1:])
