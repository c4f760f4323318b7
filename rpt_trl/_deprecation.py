"""Old module paths, kept as deprecated aliases of the modules that replaced them.

An old path imports as the very module that replaced it (every name, private ones and monkeypatching included) and
warns once. The aliases are one table rather than one stub file per old path, so that no stub breaks the import rule
(an old path often lies in a lower layer than its new module) and git follows each moved file's history.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType


MOVED_MODULES = {
    "rpt_trl.ablation": "rpt_trl.experiments.ablation",
    "rpt_trl.demo": "rpt_trl.experiments",
    "rpt_trl.demo.arithmetic_demo": "rpt_trl.experiments.arithmetic_demo",
    "rpt_trl.demo.embedded": "rpt_trl.models",
    "rpt_trl.demo.tiny": "rpt_trl.experiments.tiny",
    "rpt_trl.evaluation.commands": "rpt_trl.commands.evaluate",
    "rpt_trl.length_budget": "rpt_trl.rewards.thought_budget",
    "rpt_trl.model_card": "rpt_trl.hub.model_card",
    "rpt_trl.model_rewards": "rpt_trl.rewards.model_rewards",
    "rpt_trl.trainer.next_token_baseline": "rpt_trl.experiments.next_token_baseline",
    "rpt_trl.trainer.reference": "rpt_trl.rewards.reference",
    "rpt_trl.trainer.rlvr": "rpt_trl.experiments.rlvr",
}


class _MovedModuleLoader(importlib.abc.Loader):
    def __init__(self, new_name: str):
        self.new_name = new_name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} is deprecated and will be removed in a future release; import {self.new_name} instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.new_name)

    def exec_module(self, module: ModuleType) -> None:
        pass  # the module it returns is already imported


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the old paths of [`MOVED_MODULES`]; first on `sys.meta_path`, so that an old package path (`rpt_trl.demo`)
    never loads a second copy of a module of its new package."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec:
        new_name = MOVED_MODULES.get(fullname)
        if new_name is None:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedModuleLoader(new_name))


def install() -> None:
    """Put [`MovedModuleFinder`] first on `sys.meta_path` (once)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
