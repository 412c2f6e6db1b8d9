"""The chart's generated files stay equal to their sources, and its values schema holds."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from scripts.chart_values import CHART, values_schema, values_schema_text, values_text

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = jsonschema.Draft202012Validator(values_schema())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())


def test_the_committed_values_and_schema_equal_the_generated_ones():
    hint = "run: python -m scripts.policy_schema --write"
    assert (CHART / "values.yaml").read_text() == values_text(), hint
    assert (CHART / "values.schema.json").read_text() == values_schema_text(), hint


def test_the_default_policy_is_the_shipped_file():
    assert DEFAULTS["policy"] == yaml.safe_load((ROOT / "policies.yaml").read_text())


def test_the_defaults_validate():
    jsonschema.Draft202012Validator.check_schema(values_schema())
    assert list(VALIDATOR.iter_errors(DEFAULTS)) == []


def test_a_bad_policy_in_an_override_is_refused_through_the_embedded_refs():
    values = json.loads(json.dumps(DEFAULTS))
    values["policy"]["overrides"] = [{"namespaces": ["a"], "completedJobs": {"action": "purge"}}]
    [error] = VALIDATOR.iter_errors(values)
    assert list(error.absolute_path) == ["policy", "overrides", 0, "completedJobs", "action"]


def test_an_unknown_value_is_refused():
    values = {**DEFAULTS, "nodes": {"enabled": False}}
    assert [e.message for e in VALIDATOR.iter_errors(values)] == [
        "Additional properties are not allowed ('nodes' was unexpected)"]


def test_the_node_runtime_is_one_the_agent_accepts():
    def errors(runtime: str) -> list[str]:
        return [e.message for e in VALIDATOR.iter_errors({"node": {"runtime": runtime}})]

    assert [r for r in ("auto", "docker", "containerd", "crio", "cri:/run/x.sock")
            if errors(r)] == []
    assert errors("dokcer") and errors("cri:")
