"""Follow-on RLVR from an RPT checkpoint (paper, Table 2): plain GRPO with a math-answer reward.

    accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/rlvr.py \
        --config recipes/DeepSeek-R1-Distill-Qwen-14B/rlvr/config_skywork.yaml --model_name_or_path <RPT checkpoint>

Run it twice, from the RPT checkpoint and from the base model, to compare the starts as the paper does.
Needs `pip install "rpt-trl[rlvr]"` (math-verify).
"""

import os
import sys

from rpt_trl.experiments.rlvr import main, make_parser


DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "DeepSeek-R1-Distill-Qwen-14B", "rlvr", "config_skywork.yaml"
)


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--config" not in argv:
        argv = ["--config", DEFAULT_CONFIG, *argv]
    main(*make_parser().parse_args_and_config(argv))
