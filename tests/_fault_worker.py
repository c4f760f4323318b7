"""Run by test_fault_injection.py in a subprocess that SIGKILLs itself at one point of a write.

Usage: python _fault_worker.py <scenario> <path> [<overwrite>]
- `save-write`: `save_prepared_dataset` is killed after the splits are written, before the card (staging is full);
- `save-swap`: killed between moving the old output aside and renaming the new one into place;
- `cache-write`: the entropy cache write is killed after half of the file is written.
"""

import os
import pathlib
import signal
import sys

import datasets
import numpy as np


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def prepared(marker: str) -> tuple[datasets.DatasetDict, dict]:
    splits = {
        "train": datasets.Dataset.from_dict({"prompt": [marker] * 3}),
        "eval": datasets.Dataset.from_dict({"prompt": [marker]}),
    }
    info = {
        "text_column": ["text"], "min_entropy": 0.5, "eval_min_entropy": 0.5, "eval_documents": 1,
        "difficulty_thresholds": {"easy": 0.5}, "seed": 0, "top_k": 16, "settings": {},
        "splits": {name: {"documents": 1, "examples": len(d), "difficulty": {"easy": 0}, "stats": {}} for name, d in splits.items()},
    }  # fmt: skip
    return datasets.DatasetDict(splits), info


def main(scenario: str, path: str) -> None:
    if scenario in ("save-write", "save-swap"):
        from rpt_trl.data import prepare

        if scenario == "save-write":
            prepare.render_dataset_card = lambda *args, **kwargs: die()
        else:
            original_rename = pathlib.Path.rename

            def rename(self, target):
                if ".rpt-new-" in self.name:  # the old output has been moved aside
                    die()
                return original_rename(self, target)

            pathlib.Path.rename = rename
        prepare.save_prepared_dataset(*prepared("new"), path, overwrite=True)
    elif scenario == "cache-write":
        from rpt_trl.data import entropy

        def half_then_die(file, **arrays):
            file.write(b"PK\x03\x04" + b"\0" * 100)
            file.flush()
            die()

        np.savez = half_then_die
        entropy._save_cache(path, [[float("nan"), 1.0, 2.0]])
    raise SystemExit(f"scenario {scenario} was not killed")


if __name__ == "__main__":
    main(*sys.argv[1:])
