"""Reinforcement Pre-Training, launchable with Accelerate.

    accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/rpt_14b.py

With no `--config`, the paper's 14B recipe next to this script is used
(`DeepSeek-R1-Distill-Qwen-14B/rpt/config_omnimath.yaml`); `--config` picks another YAML (1.5B, LoRA),
and flags override YAML values, e.g. `--max_steps 10 --output_dir runs/try`.
"""

import os
import sys

from rpt_trl.trainer.train import main, parse_args


DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "DeepSeek-R1-Distill-Qwen-14B", "rpt", "config_omnimath.yaml"
)


if __name__ == "__main__":
    main(*parse_args(sys.argv[1:], default_config=DEFAULT_CONFIG))
