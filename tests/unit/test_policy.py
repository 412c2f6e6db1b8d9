"""The policy file: every kind of mistake gets a located, precise message."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from agents.policy import Policy
from agents.policy_loader import PolicyInvalid, load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[2]


def errors_of(text: str) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(textwrap.dedent(text), "policies.yaml")
    return [str(e) for e in caught.value.errors]


def test_shipped_policy_is_valid_and_safe():
    policy = load_policy(ROOT / "policies.yaml")
    assert policy.dryRun is True
    assert policy.maxDeletionsPerRun == 500
    assert policy.cluster.namespaces.exclude == ("kube-system", "kube-public", "kube-node-lease")


def test_shipped_policy_spells_out_every_default():
    """The shipped file is the admin's reference: its values equal the built-in defaults."""
    shipped = load_policy(ROOT / "policies.yaml")
    assert shipped.node == Policy().node
    assert shipped.cluster == Policy().cluster


def test_bad_duration_names_file_line_column_and_path():
    assert errors_of("""\
        apiVersion: kubekeeper/v1
        node:
          images:
            unused: {olderThan: "7 days"}
        """) == ['policies.yaml:4:25: node.images.unused.olderThan: "7 days" is not a duration '
                 '(write e.g. 7d, 36h, 90m)']


def test_unknown_key_suggests_the_closest():
    assert errors_of("""\
        apiVersion: kubekeeper/v1
        node:
          containers:
            olderThen: 1h
        """) == ["policies.yaml:4:5: node.containers.olderThen: unknown key; "
                 "did you mean 'olderThan'?"]


@pytest.mark.parametrize(("snippet", "expected"), [
    ("dryRun: 'no'", 'dryRun: "no" is not a boolean (write true or false)'),
    ("maxDeletionsPerRun: many",
     'maxDeletionsPerRun: "many" is not a whole number from 0 to 1000000'),
    ("node: {logs: {maxFileSize: 10Q}}",
     'node.logs.maxFileSize: "10Q" is not a quantity: unknown suffix'),
    ("node: {images: {diskPressure: {highPercent: 120}}}",
     "node.images.diskPressure.highPercent: 120 is not a percentage (a number from 0 to 100)"),
    ("node: {images: {protect: ['repo[x']}}",
     'node.images.protect: "repo[x" is not a valid glob'),
    ("node: {schedule: {cleanup: '*/30 * *'}}",
     'node.schedule.cleanup: "*/30 * *" is not a cron expression'),
    ("node: {schedule: {logs: {every: soon}}}",
     'node.schedule.logs: "soon" is not a duration'),
    ("node: {logs: {action: delete}}", 'node.logs.action: "delete" is not one of report, truncate'),
    ("cluster: {completedJobs: {action: purge}}",
     'cluster.completedJobs.action: "purge" is not one of report, delete'),
    ("cluster: {resourceRequests: {require: [cpu, gpu]}}",
     'cluster.resourceRequests.require: "gpu" is not a resource'),
    ("cluster: {apiQPS: -1}", "cluster.apiQPS: -1 is not a rate"),
    ("node: {volumes: {protect: {labels: {keep: true}}}}",
     'node.volumes.protect.labels: label keep: true must be a string (quote it: "true")'),
    ("node: [1, 2]", "node: expected a mapping, got a list"),
])
def test_each_kind_of_bad_value_is_explained(snippet, expected):
    found = errors_of(f"apiVersion: kubekeeper/v1\n{snippet}\n")
    assert len(found) == 1, found
    assert expected in found[0]
    assert found[0].startswith("policies.yaml:2:")


def test_low_percent_must_be_below_high_percent():
    found = errors_of("""\
        apiVersion: kubekeeper/v1
        node:
          images:
            diskPressure: {highPercent: 70, lowPercent: 75}
        """)
    assert found == ["policies.yaml:4:49: node.images.diskPressure.lowPercent: 75 must be below "
                     "highPercent (70); eviction stops at lowPercent"]


def test_unknown_api_version_and_missing_api_version():
    assert errors_of("apiVersion: kubekeeper/v2\n") == [
        'policies.yaml:1:13: apiVersion: "kubekeeper/v2" is not a known apiVersion '
        "(this kubekeeper reads kubekeeper/v1)"]
    assert errors_of("dryRun: true\n") == [
        "policies.yaml:1:1: apiVersion: is required (write apiVersion: kubekeeper/v1)"]


def test_all_errors_are_reported_at_once_in_file_order():
    found = errors_of("""\
        apiVersion: kubekeeper/v1
        dryRun: maybe
        node:
          containers: {olderThan: forever}
        cluster:
          revisionHistory: {maxLimt: 2}
        """)
    assert [e.split(": ")[1] for e in found] == [
        "dryRun", "node.containers.olderThan", "cluster.revisionHistory.maxLimt"]


@pytest.mark.parametrize(("text", "expected"), [
    ("", "policies.yaml: the file is empty"),
    ("# only a comment\n", "policies.yaml: the file is empty"),
    ("apiVersion: [unclosed\n", "policies.yaml:2:1: not valid YAML"),
    ("just a string\n", "(top level): expected a mapping"),
])
def test_empty_and_non_yaml_files(text, expected):
    found = errors_of(text)
    assert len(found) == 1
    assert expected in found[0]


def test_missing_file(tmp_path):
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(tmp_path / "nope.yaml")
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: file not found"


def test_duplicate_key_is_an_error():
    found = errors_of("apiVersion: kubekeeper/v1\ndryRun: true\ndryRun: false\n")
    assert found == ["policies.yaml:3:1: dryRun: is given twice"]


def test_override_errors_name_their_index():
    found = errors_of("""\
        apiVersion: kubekeeper/v1
        overrides:
          - namespaces: ["a-*"]
            completedJobs: {succeededTTL: 1x}
          - completedJobs: {failedTTL: 1h}
          - namespaces: ["b"]
            node: {}
        """)
    assert found == [
        'policies.yaml:4:35: overrides[0].completedJobs.succeededTTL: "1x" is not a duration '
        "(write e.g. 7d, 36h, 90m)",
        "policies.yaml:5:5: overrides[1].namespaces: is required (the globs this override "
        "applies to)",
        "policies.yaml:7:5: overrides[2].node: unknown key (an override sets namespaces and any "
        "of resourceRequests, revisionHistory, completedJobs)",
    ]


def test_overrides_merge_mappings_replace_lists_and_later_entries_win():
    policy = parse_policy(textwrap.dedent("""\
        apiVersion: kubekeeper/v1
        cluster:
          resourceRequests: {require: [cpu, memory], defaults: {cpu: 200m}}
          completedJobs: {succeededTTL: 2d, failedTTL: 9d}
        overrides:
          - namespaces: ["batch-*"]
            completedJobs: {succeededTTL: 10m}
            resourceRequests: {require: [memory], defaults: {memory: 1Gi}}
          - namespaces: ["batch-nightly"]
            completedJobs: {succeededTTL: 1h}
        """))
    nightly = policy.for_namespace("batch-nightly")
    assert nightly.completedJobs.succeededTTL == timedelta(hours=1)
    assert nightly.completedJobs.failedTTL == timedelta(days=9)
    assert nightly.resourceRequests.require == ("memory",)
    assert nightly.resourceRequests.defaults.cpu == "200m"
    assert nightly.resourceRequests.defaults.memory == "1Gi"
    other = policy.for_namespace("batch-adhoc")
    assert other.completedJobs.succeededTTL == timedelta(minutes=10)
    assert policy.for_namespace("web").completedJobs.succeededTTL == timedelta(days=2)


def test_namespace_scope_exclude_wins_over_include():
    policy = parse_policy("apiVersion: kubekeeper/v1\ncluster:\n  namespaces:\n"
                          "    include: ['team-*', kube-system]\n    exclude: ['team-secret']\n")
    scope = policy.cluster.namespaces
    assert scope.covers("team-a")
    assert not scope.covers("team-secret")
    assert scope.covers("kube-system")
    assert not scope.covers("default")


def test_policy_is_immutable():
    policy = Policy()
    with pytest.raises(AttributeError):
        policy.dryRun = False  # type: ignore[misc]
