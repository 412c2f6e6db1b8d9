"""Redaction of report manifests, and the recycle bin's pure parts, on plain data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from agents.actions import Action, Verb
from agents.cluster import recycle_bin
from agents.cluster.redaction import digest, redact, redacted_manifest, secret_named

JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
    "name": "migrate", "labels": {"app": "db"}, "annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": '{"env":"hunter2"}',
        "team": "payments", "vault.io/token": "s.abc"}},
    "spec": {"template": {"spec": {
        "containers": [{
            "name": "main", "image": "migrate:1",
            "env": [{"name": "DB_PASSWORD", "value": "hunter2"}, {"name": "MODE", "value": "x"},
                    {"name": "FROM_SECRET", "valueFrom": {
                        "secretKeyRef": {"name": "db", "key": "password"}}}],
            "args": ["--db-password=hunter2", "--api-key", "k-123", "--verbose"]}],
        "tolerations": [{"key": "dedicated", "operator": "Exists"}]}}}}


def test_no_secret_survives_and_the_shape_does():
    out = redact(JOB)
    text = json.dumps(out)
    for secret in ("hunter2", "s.abc", "k-123"):
        assert secret not in text
    container = out["spec"]["template"]["spec"]["containers"][0]
    assert [e["name"] for e in container["env"]] == ["DB_PASSWORD", "MODE", "FROM_SECRET"]
    assert container["env"][0]["value"] == digest("hunter2")
    assert container["env"][2]["valueFrom"] == {"secretKeyRef": {"name": "db", "key": "password"}}
    assert container["args"] == ["--db-password=" + digest("hunter2"), "--api-key",
                                 digest("k-123"), "--verbose"]
    assert out["metadata"]["annotations"]["team"] == "payments"
    assert out["metadata"]["labels"] == {"app": "db"}
    assert out["spec"]["template"]["spec"]["tolerations"] == [
        {"key": "dedicated", "operator": "Exists"}]


@pytest.mark.parametrize("name", [
    "key", "KEY", "signing-key", "example.com/signing-key", "ssh_key", "sshKey", "APIKey",
    "API_KEY", "tls.key", "kubernetes.io/signing-key", "db-password", "vault.io/token",
    "apikeyfile", "private"])
def test_a_key_whose_last_word_is_key_or_that_holds_a_secret_word_names_a_secret(name):
    assert secret_named(name)


@pytest.mark.parametrize("name", [
    "monkey", "hockey", "keys", "matchLabelKeys", "key-id", "keyring", "keyboard.layout",
    "team", "app.kubernetes.io/name", "topologyKeys"])
def test_words_that_merely_hold_the_letters_key_do_not(name):
    assert not secret_named(name)


def test_keys_named_key_are_redacted_in_free_form_maps_and_args_but_api_names_stay():
    pod = {"metadata": {
        "annotations": {"example.com/signing-key": "sk-1", "key": "sk-2", "team": "pay"},
        "labels": {"ssh_key": "sk-3", "app": "db"}},
        "spec": {
            "nodeSelector": {"sshKey": "sk-4"},
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "kubernetes.io/hostname", "matchLabelKeys": ["pod-template-hash"],
                 "labelSelector": {"matchExpressions": [
                     {"key": "app", "operator": "In", "values": ["db"]}]}}]}},
            "volumes": [{"name": "cfg", "configMap": {"name": "c", "items": [
                {"key": "settings.yaml", "path": "settings.yaml"}]}}],
            "containers": [{"name": "m", "signingKey": "sk-5",
                            "args": ["--signing-key=sk-6", "--ssh-key", "sk-7", "KEY:sk-8",
                                     "--keys=a,b", "--monkey=banana"]}]}}

    out = redact(pod)

    text = json.dumps(out)
    assert [s for s in (f"sk-{i}" for i in range(1, 9)) if s in text] == []
    assert out["metadata"]["annotations"]["team"] == "pay"
    assert out["metadata"]["labels"]["app"] == "db"
    spec = out["spec"]
    assert spec["tolerations"] == pod["spec"]["tolerations"]
    assert spec["affinity"] == pod["spec"]["affinity"]
    assert spec["volumes"] == pod["spec"]["volumes"]
    assert spec["containers"][0]["args"][-2:] == ["--keys=a,b", "--monkey=banana"]


def test_the_manifest_text_is_redacted_as_compact_json():
    assert "hunter2" not in redacted_manifest(json.dumps(JOB))
    assert json.loads(redacted_manifest(json.dumps(JOB)))["kind"] == "Job"


def action(name: str, size: int) -> Action:
    return Action(kind="job", name=name, namespace="apps", id=f"{name}-uid-0123456789",
                  verb=Verb.DELETE, rule="r", why="w", sealed="x" * size)


def test_chunks_stay_under_the_limit_and_keep_the_order():
    actions = [action(f"j{i}", 400) for i in range(5)]
    groups = recycle_bin.chunks(actions, limit=1000)
    assert [[a.name for a in g] for g in groups] == [["j0", "j1"], ["j2", "j3"], ["j4"]]
    assert recycle_bin.chunks([action("big", 5000)], limit=1000)[0][0].name == "big"


def test_each_entry_is_a_valid_secret_key_naming_the_object():
    key = recycle_bin.entry_key(action("weird:name/x", 1))
    assert key == "job.apps.weird_name_x.weird_na"


NOW = datetime(2026, 12, 2, tzinfo=UTC)


def bin_secret(name: str, expires: str | None) -> dict:
    annotations = {recycle_bin.EXPIRES: expires} if expires else {}
    return {"metadata": {"name": name, "namespace": "kubekeeper-system", "uid": f"u-{name}",
                         "resourceVersion": "5", "annotations": annotations}}


def test_only_bins_past_their_expiry_are_pruned():
    secrets = [bin_secret("old", (NOW - timedelta(hours=1)).isoformat()),
               bin_secret("fresh", (NOW + timedelta(days=1)).isoformat()),
               bin_secret("unreadable", "someday"), bin_secret("unmarked", None)]
    [pruned] = recycle_bin.expired(secrets, NOW)
    assert (pruned.name, pruned.verb, pruned.rule) == ("old", Verb.DELETE,
                                                       "cluster.recycleBin.keepFor")
    assert pruned.details["preconditions"] == {"uid": "u-old", "resourceVersion": "5"}
    assert "manifest" not in pruned.details
