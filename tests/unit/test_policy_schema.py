"""schemas/policies.schema.json: generated from the declarations, and as strict as a schema can be.

An editor that validates against it must accept every good policy and refuse, as
``policy check`` does, every bad one a schema can describe.  The bad-policy corpus
(``policy_corpus/``) is the measure: each refused case is refused by the schema too,
except those in ``ONLY_POLICY_CHECK``, which say why a schema cannot see them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agents.cli import main
from agents.policy_schema import policy_schema, schema_text
from tests.unit.test_policy_corpus import CASES, expectations

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schemas" / "policies.schema.json"
VALIDATOR = jsonschema.Draft202012Validator(policy_schema())

_DUPLICATE = "YAML readers keep the last of duplicate keys; the schema sees one"
_PLAIN_DATA = "a YAML reader resolves it before the schema sees the data"
_NOT_YAML = "not a YAML document an editor can read; its YAML error shows instead"
_NOT_JSON = "a key that is a list or mapping has no JSON form; the reader refuses it"
ONLY_POLICY_CHECK = {
    "alias_bomb": _PLAIN_DATA,
    "anchor_and_alias": _PLAIN_DATA,
    "merge_key": _PLAIN_DATA,
    "duplicate_every": _DUPLICATE,
    "duplicate_in_override_section": _DUPLICATE,
    "duplicate_label": _DUPLICATE,
    "duplicate_nested_section": _DUPLICATE,
    "duplicate_override_namespaces": _DUPLICATE,
    "duplicate_override_section": _DUPLICATE,
    "duplicate_quoted_and_plain": _DUPLICATE,
    "duplicate_top_level": _DUPLICATE,
    "cron_never_fires_apr_31": "a cron that never fires needs a calendar",
    "cron_never_fires_feb_30": "a cron that never fires needs a calendar",
    "duration_overflow": "a duration's ceiling (3650d) is arithmetic, not a pattern",
    "duration_ttl_too_long": "a duration's ceiling (3650d) is arithmetic, not a pattern",
    "every_overflow": "a duration's ceiling (3650d) is arithmetic, not a pattern",
    "jitter_too_long": "a duration's ceiling (1d) is arithmetic, not a pattern",
    "size_too_large": "a quantity's ceiling (2^63-1 after its suffix) is arithmetic",
    "glob_unclosed": "an unclosed '[' needs bracket counting",
    "low_above_high": "lowPercent < highPercent compares two values",
    "percent_nan": "NaN is no JSON number; a validator compares it with nothing",
    "qps_nan": "NaN is no JSON number; a validator compares it with nothing",
    "deep_mapping_nesting": "the nesting limit guards the reader, not the schema",
    "deep_sequence_nesting": "the nesting limit guards the reader, not the schema",
    "control_character": _NOT_YAML,
    "not_utf8": _NOT_YAML,
    "tab_indentation": _NOT_YAML,
    "unclosed_flow": _NOT_YAML,
    "two_documents": _NOT_YAML,
    "int_too_many_digits": _NOT_YAML,
    "date_as_duration": _NOT_YAML,
    "tag_local": _NOT_YAML,
    "tag_python_name": _NOT_YAML,
    "tag_python_object_apply": _NOT_YAML,
    "tag_timestamp": _NOT_YAML,
    "tag_nonspecific": _PLAIN_DATA,
    "tag_on_mapping": _PLAIN_DATA,
    "mapping_key": _NOT_JSON,
    "non_scalar_key_flow": _NOT_JSON,
    "non_scalar_key_labels": _NOT_JSON,
}
"""Corpus cases only ``policy check`` refuses, and why; the README lists the same classes."""

REFUSED = [case for case in CASES if expectations(case) != ["valid"]]
VALID = [case for case in CASES if expectations(case) == ["valid"]]


class _NotData(Exception):
    """The text is not one YAML document a YAML reader turns into data."""


def data(text: str | bytes) -> Any:
    """What an editor's YAML reader hands the schema (PyYAML's safe loader stands in)."""
    try:
        return yaml.safe_load(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (yaml.YAMLError, ValueError, TypeError, AttributeError) as exc:
        raise _NotData(str(exc)) from None


def schema_errors(text: str | bytes) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(data(text))]


def test_the_committed_schema_equals_the_declarations():
    assert SCHEMA_FILE.read_text() == schema_text(), "run: python -m scripts.policy_schema --write"


def test_the_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(policy_schema())


def test_every_object_refuses_unknown_keys():
    def objects(node: Any) -> list[dict]:
        if isinstance(node, list):
            return [o for item in node for o in objects(item)]
        if not isinstance(node, dict):
            return []
        own = [node] if "properties" in node else []
        return own + [o for value in node.values() for o in objects(value)]

    found = objects(policy_schema())
    assert len(found) > 20
    assert all(o.get("additionalProperties") is False for o in found)


def test_the_shipped_policy_names_the_schema_and_validates():
    text = (ROOT / "policies.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=./schemas/policies.schema.json\n")
    assert schema_errors(text) == []


def readme_policies() -> list[Any]:
    """Every policy in a README YAML block: a whole one, or a Helm values file's ``policy:``."""
    found = []
    for block in re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        doc = yaml.safe_load(block)
        if isinstance(doc, dict) and doc.get("apiVersion") == "kubekeeper/v1":
            found.append(doc)
        elif isinstance(doc, dict) and "policy" in doc:
            found.append(doc["policy"])
    return found


def test_every_policy_in_the_readme_validates():
    policies = readme_policies()
    assert policies, "the README shows no policy"
    for policy in policies:
        assert list(VALIDATOR.iter_errors(policy)) == [], policy


@pytest.mark.parametrize("case", VALID, ids=lambda p: p.stem)
def test_a_good_corpus_policy_validates(case: Path):
    assert schema_errors(case.read_bytes().decode("utf-8-sig")) == []


def test_the_list_of_what_only_policy_check_catches_names_corpus_cases():
    assert set(ONLY_POLICY_CHECK) <= {case.stem for case in REFUSED}


@pytest.mark.parametrize("case", REFUSED, ids=lambda p: p.stem)
def test_a_bad_corpus_policy_is_refused_by_the_schema_too(case: Path):
    text = case.read_bytes()
    if case.stem in ONLY_POLICY_CHECK:
        if ONLY_POLICY_CHECK[case.stem] in (_NOT_YAML, _NOT_JSON):
            with pytest.raises(_NotData):
                data(text)
        elif case.stem not in ("alias_bomb", "deep_mapping_nesting", "deep_sequence_nesting"):
            assert schema_errors(text) == [], "the schema catches it now: drop it from the list"
        return
    assert schema_errors(text), "the schema accepts a policy that policy check refuses"


def test_policy_schema_prints_the_committed_schema(capsys):
    assert main(["policy", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(SCHEMA_FILE.read_text())


def test_every_key_has_a_description_and_every_setting_a_default():
    def keys(node: dict, path: str = "") -> list[tuple[str, dict]]:
        found = []
        for name, sub in node.get("properties", {}).items():
            sub = policy_schema()["$defs"][name] if "$ref" in sub else sub
            found.append((f"{path}{name}", sub))
            found += keys(sub, f"{path}{name}.")
        return found

    every = keys(policy_schema())
    assert len(every) > 80
    assert [p for p, s in every if not s.get("description")] == []
    assert [p for p, s in every if "properties" not in s and "default" not in s] == []
