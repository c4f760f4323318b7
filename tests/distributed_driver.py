"""Run the RPT recipe script's `main` on the tiny world (as recipes/tiny/rpt_tiny.py does) and write what each rank
ended with: launched by test_distributed.py.

Usage: accelerate launch ... tests/distributed_driver.py <out_dir> --config recipes/tiny/rpt/config_cpu.yaml [flags]
"""

import hashlib
import json
import os
import sys

import torch

import rpt_trl.experiments.tiny
from rpt_trl.trainer.train import main, parse_args


def parameter_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()


if __name__ == "__main__":
    out_dir, argv = sys.argv[1], sys.argv[2:]
    script_args, training_args, model_args = parse_args(argv)
    # The recipe's main trains this very model, whose starting digest is recorded.
    model, tokenizer, dataset, _ = rpt_trl.experiments.tiny.warm_started_world(seed=training_args.seed)
    initial = parameter_digest(model)
    trainer = main(
        script_args, training_args, model_args, model=model, processing_class=tokenizer, train_dataset=dataset
    )
    rank = trainer.accelerator.process_index
    record = {
        "rank": rank,
        "world_size": trainer.accelerator.num_processes,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
        "initial": initial,
        "final": parameter_digest(trainer.accelerator.unwrap_model(trainer.model)),
        "steps": trainer.state.global_step,
        "refill_rounds": [
            e["dynamic_sampling/refill_rounds"]
            for e in trainer.state.log_history
            if "loss" in e and "dynamic_sampling/refill_rounds" in e
        ],
    }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as file:
        json.dump(record, file)
    from driver_exit import exit_without_teardown

    exit_without_teardown()
