"""What keeping freed memory buys a CPU run: the demo with `malloc` as glibc sets it, and with `keep_freed_memory`.

    python benchmarks/cpu_freed_memory.py [--rounds 1] [--train_steps 6] [--eval_positions 16] [--output out.json]

Each round runs `rpt-trl demo` twice in subprocesses, one after the other: with `RPT_TRL_KEEP_FREED_MEMORY=0`
(glibc's `malloc` unmaps every large freed block; the baseline) and without it (the CLI's default on a machine
without CUDA: freed blocks are kept and reused, and released every few optimizer steps; `rpt_trl.host_memory`). Both
arms run the same code, seed and settings, so their training logs and accuracies must agree; the benchmark checks
that. It reports each arm's phase times (from the demo's `results.json`), wall time, page faults, kernel (system)
time and peak resident memory (from `wait4`, the child's own), and the ratios. Run it on a quiet machine.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ARMS = {"malloc as glibc sets it": {"RPT_TRL_KEEP_FREED_MEMORY": "0"}, "freed memory kept": {}}


def run_demo(extra_env: dict[str, str], output_dir: Path, demo_args: list[str]) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "RPT_TRL_KEEP_FREED_MEMORY"}
    env.update(HF_HUB_OFFLINE="1", **extra_env)
    command = [sys.executable, "-m", "rpt_trl.cli", "demo", "--output_dir", str(output_dir), *demo_args]
    output_dir.mkdir(parents=True)
    with open(output_dir / "demo.log", "w") as log:
        start = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own resource usage
        wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        tail = (output_dir / "demo.log").read_text()[-3000:]
        raise SystemExit(f"the demo failed ({os.waitstatus_to_exitcode(status)}):\n{tail}")
    results = json.loads((output_dir / "results.json").read_text())
    demo = results[0]["demo"]
    return {
        "wall_s": round(wall, 1),
        "phases_s": demo["timings_s"],
        "minor_page_faults": usage.ru_minflt,
        "system_s": round(usage.ru_stime, 1),
        "user_s": round(usage.ru_utime, 1),
        "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2),  # KiB on Linux
        "logs": {label: run["train_log"] for label, run in demo["runs"].items()},
        "accuracies": {f"{r['label']}:{r['mode']}": r["overall"]["accuracy"] for r in results if "overall" in r},
    }


def without_times(logs: dict) -> dict:
    return {
        label: [{k: v for k, v in step.items() if k != "step_time"} for step in log] for label, log in logs.items()
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="times each arm runs, alternating")
    parser.add_argument("--train_steps", "--train-steps", type=int, default=6)
    parser.add_argument("--eval_positions", "--eval-positions", type=int, default=16)
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if min(args.rounds, args.train_steps, args.eval_positions) < 1:
        parser.error("--rounds, --train_steps and --eval_positions must be positive")
    demo_args = ["--train_steps", str(args.train_steps), "--eval_positions", str(args.eval_positions)]
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            for arm_index, (arm, env) in enumerate(ARMS.items()):
                print(f"round {round_index + 1}/{args.rounds}: {arm}", flush=True)
                runs[arm].append(run_demo(env, Path(scratch) / f"{round_index}-{arm_index}", demo_args))
    (baseline, *_), (kept, *_) = runs.values()
    if without_times(baseline["logs"]) != without_times(kept["logs"]) or baseline["accuracies"] != kept["accuracies"]:
        print("warning: the two arms' training logs or accuracies differ", flush=True)
    report = {"settings": vars(args), "runs": runs}
    for arm, arm_runs in runs.items():
        print(f"\n{arm}:")
        for run in arm_runs:
            print(f"  wall {run['wall_s']} s, phases {run['phases_s']}, page faults {run['minor_page_faults']:,}, "
                  f"system {run['system_s']} s, user {run['user_s']} s, peak RSS {run['peak_rss_gb']} GB")  # fmt: skip
    first = {arm: arm_runs[0] for arm, arm_runs in runs.items()}
    base_total, kept_total = (run["phases_s"]["total_s"] for run in first.values())
    print(f"\ndemo total, round 1: {base_total} s against {kept_total} s ({base_total / kept_total:.2f}x)")
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
