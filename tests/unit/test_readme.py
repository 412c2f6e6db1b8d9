"""The README stays true: its commands exist, its reference matches the code."""

from __future__ import annotations

import os
import re
from pathlib import Path

from scripts.policy_reference import table

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_the_policy_reference_equals_the_declarations():
    embedded = README.split("<!-- policy-reference:start -->\n")[1].split(
        "\n<!-- policy-reference:end -->")[0]
    assert embedded == table(), "run: python -m scripts.policy_reference, paste into README.md"


def test_readme_starts_with_the_two_setup_commands_and_ci_runs_the_test_one():
    first_block = re.search(r"```sh\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["scripts/demo", "scripts/test"]
    assert README.index("```sh") < README.index("\n## ")
    for command in commands:
        assert os.access(ROOT / command, os.X_OK), command
    assert "bash scripts/test" in (ROOT / ".ci/run").read_text()


def test_every_report_field_is_documented():
    from tests.unit.test_report import ACTION_FIELDS, SUMMARY_FIELDS

    for name in ACTION_FIELDS | SUMMARY_FIELDS:
        assert f"| `{name}`" in README or f"`{name}`" in README, name
