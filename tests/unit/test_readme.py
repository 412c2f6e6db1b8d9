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


def test_every_report_field_has_a_row_in_the_readme_tables():
    from tests.unit.test_report import ACTION_FIELDS, SUMMARY_FIELDS

    first_cells = [line.split("|")[1] for line in README.splitlines() if line.startswith("| `")]
    documented = {name for cell in first_cells for name in re.findall(r"`([a-z_]+)`", cell)}
    assert documented >= ACTION_FIELDS | SUMMARY_FIELDS
