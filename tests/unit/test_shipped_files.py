"""What ships with the repository, read from git or the README, never from the working
tree's districts.yaml: a user is told to edit that file (onboarding appends to it)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

import config

REPO = Path(__file__).resolve().parents[2]


def _committed(path: str) -> str:
    shown = subprocess.run(["git", "-C", str(REPO), "show", f"HEAD:{path}"], capture_output=True, text=True)
    assert shown.returncode == 0, f"git show HEAD:{path}: {shown.stderr}"
    return shown.stdout


def test_the_shipped_districts_file_is_valid_and_enables_no_district_without_data():
    settings = config.parse(config.yaml_load(_committed("districts.yaml"), "districts.yaml"))
    assert [d.id for d in settings.districts] == ["springfield", "shelbyville"]
    assert not any(d.enabled for d in settings.districts), "no data ships: an enabled example would 'succeed' on nothing"


def test_the_readmes_districts_yaml_reference_is_valid():
    readme = (REPO / "README.md").read_text()
    block = readme.split("## districts.yaml\n", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    settings = config.parse(yaml.safe_load(block), source="README.md")
    assert [d.id for d in settings.districts] == ["springfield"] and settings.districts[0].enabled
