"""Every command takes snake_case flags and their kebab-case spelling; an old flag still works, with a warning."""

import argparse
import re
import warnings
from pathlib import Path

import pytest

from rpt_trl.cli import make_parser
from rpt_trl.commands.flags import DeprecatedFlag
from rpt_trl.commands.prepare import make_prepare_parser
from rpt_trl.trainer.train import parse_args


ROOT = Path(__file__).resolve().parents[1]


def long_option_groups(parser: argparse.ArgumentParser, path: str = "rpt-trl"):
    """(command, the long options of one argument) for every argument of every (nested) argparse command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield from long_option_groups(subparser, f"{path} {name}")
        elif not isinstance(action, DeprecatedFlag):
            yield path, [option for option in action.option_strings if option.startswith("--")]


def test_every_argparse_flag_of_rpt_trl_has_both_spellings():
    groups = [(command, options) for command, options in long_option_groups(make_parser()) if options]
    assert len(groups) > 40  # demo, ablate and the six evaluate commands
    for command, options in groups:
        names = {option[2:] for option in options}
        # BooleanOptionalAction adds the negations (`--no-use_vllm`, `--no-use-vllm`) of both spellings itself.
        multiword = {name for name in names if re.search(r"[_-]", name) and not name.startswith("no-")}
        for name in multiword:
            assert {name.replace("-", "_"), name.replace("_", "-")} <= names, (command, options)


def test_scripts_and_benchmarks_declare_both_spellings():
    single = re.compile(r'add_argument\(\s*"--[a-z0-9]+[_-][a-z0-9_-]*"(?!\s*,\s*"--)')
    scripts = sorted(ROOT.glob("evaluation/*.py")) + sorted(ROOT.glob("benchmarks/*.py"))
    offenders = [f"{path.name}: {match.group(0)}" for path in scripts for match in single.finditer(path.read_text())]
    assert offenders == []


@pytest.mark.parametrize("spelling", ["snake", "kebab"])
def test_the_dataclass_commands_take_both_spellings(spelling, tmp_path):
    def flag(name):
        return "--" + (name if spelling == "snake" else name.replace("_", "-"))

    arguments, settings = make_prepare_parser().parse_args_and_config(
        ["--dataset", "corpus.jsonl", flag("proxy_model"), "proxy", "--output", "out", flag("eval_size"), "3"]
        + [flag("text_column"), "problem", "solution", flag("min_entropy"), "0.5"]
    )
    assert (arguments.proxy_model, arguments.eval_size, settings.text_column, settings.min_entropy) == (
        "proxy",
        3,
        ["problem", "solution"],
        0.5,
    )
    script_args, training_args, model_args = parse_args(
        [flag("model_name_or_path"), "model", flag("output_dir"), str(tmp_path), flag("max_steps"), "3"]
        + [flag("dataset_name"), "data", flag("use_cpu"), "true", "--bf16", "false"]
    )
    assert (model_args.model_name_or_path, training_args.output_dir, training_args.max_steps) == (
        "model",
        str(tmp_path),
        3,
    )
    assert script_args.dataset_name == "data"


def test_a_deprecated_flag_warns_and_sets_its_replacement():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output_dir", "--output-dir", default="default")
    parser.add_argument("--workdir", dest="output_dir", action=DeprecatedFlag, replacement="--output_dir")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert parser.parse_args(["--output-dir", "new"]).output_dir == "new"
        assert caught == []
        assert parser.parse_args(["--workdir", "old"]).output_dir == "old"
    assert [(w.category, str(w.message)) for w in caught] == [
        (FutureWarning, "--workdir is deprecated; use --output_dir.")
    ]
