"""The installed (non-editable) wheel carries the model card template and renders a card from it."""

import subprocess
import sys
import zipfile
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]

RENDER = """
import rpt_trl, sys
from rpt_trl import RPTConfig
from rpt_trl.hub.model_card import render_model_card
assert rpt_trl.__file__.startswith(sys.argv[1]), rpt_trl.__file__
args = RPTConfig(output_dir="unused", use_cpu=True, bf16=False, report_to="none")
card = render_model_card(base_model="org/base", model_name="m", hub_model_id=None, dataset_name=None, tags=[], args=args)
print(card.data.base_model, "2506.08007" in card.text)
"""


def test_wheel_ships_template_and_renders_card(tmp_path):
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheel_dir.glob("rpt_trl-*.whl")
    assert "rpt_trl/model_card_templates/rpt_model_card.md" in zipfile.ZipFile(wheel).namelist()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        [sys.executable, "-c", RENDER, str(target)],
        env={
            "PYTHONPATH": str(target),
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "PATH": "/usr/bin:/bin",
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["org/base", "True"]
