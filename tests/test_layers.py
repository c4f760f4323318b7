"""The import rule, primitives <- trainer <- evaluation <- experiments <- commands, as the contracts in
pyproject.toml state it (`lint-imports`, which `make lint` also runs)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the `rpt_trl` package and the contracts under `root`."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", script, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_package_keeps_its_layers():
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Contracts: 2 kept, 0 broken." in run.stdout


@pytest.mark.parametrize(
    ("module", "upward_import"),
    [
        ("data/builder.py", "from ..trainer import rpt_config"),  # a primitive importing the trainer
        ("trainer/sampler.py", "from ..evaluation import next_token"),  # the trainer importing evaluation
        ("evaluation/scaling.py", "from ..experiments import tiny"),  # evaluation importing an experiment
        ("results.py", "from .data import builder"),  # the loop that results -> data once closed
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward_import):
    shutil.copytree(ROOT / "rpt_trl", tmp_path / "rpt_trl", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    planted = tmp_path / "rpt_trl" / module
    planted.write_text(planted.read_text() + f"\n{upward_import}\n")
    run = lint_imports(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "BROKEN" in run.stdout
    importer = "rpt_trl." + module.removesuffix(".py").replace("/", ".")
    assert importer in run.stdout


def test_every_old_module_path_is_its_new_module_with_a_deprecation_warning():
    # A fresh interpreter: an old path warns the first time it is imported only.
    script = """
import importlib, warnings
from rpt_trl._deprecation import MOVED_MODULES
for old, new in MOVED_MODULES.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(new), (old, module)
    assert [w.category for w in caught] == [DeprecationWarning], (old, caught)
    assert new in str(caught[0].message), caught[0].message
from rpt_trl.experiments.tiny import make_tiny_model
from rpt_trl.experiments.tiny import make_tiny_model as moved
assert make_tiny_model is moved
print(len(MOVED_MODULES))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["12"]


def test_the_public_names_import_from_the_package():
    import rpt_trl

    assert {
        name: getattr(rpt_trl, name).__module__.split(".")[1] for name in ("RPTTrainer", "ThoughtBudgetReward")
    } == {
        "RPTTrainer": "trainer",
        "ThoughtBudgetReward": "rewards",
    }
    assert all(getattr(rpt_trl, name) is not None for name in rpt_trl.__all__)
