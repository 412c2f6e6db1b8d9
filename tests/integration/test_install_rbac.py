"""Each account may do what its task needs and nothing more, as the API server decides.

`kubectl auth can-i --as=system:serviceaccount:...` asks the server's RBAC
authorizer, impersonating the account; a SelfSubjectRulesReview lists all the
account holds, so "nothing more" is checked exhaustively, not by sampling.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from scripts.localenv.controlplane import ControlPlane
from tests import installation
from tests.installation import NODE_NAMESPACE, SYSTEM_NAMESPACE, TASKS, account

_WORKLOADS = ("deployments.apps", "statefulsets.apps", "daemonsets.apps")
# What the cluster tasks' code calls: (verb, resource.group), core resources without a group.
NEEDS: dict[str, set[tuple[str, str]]] = {
    "requests": {
        *((verb, resource) for verb in ("get", "list") for resource in (
            "namespaces", "pods", *_WORKLOADS, "replicasets.apps", "jobs.batch",
            "cronjobs.batch", "limitranges")),
        *((verb, "limitranges") for verb in ("create", "patch")),
        *(("patch", resource) for resource in (*_WORKLOADS, "cronjobs.batch")),
        ("create", "events"),
    },
    "revisions": {
        *((verb, resource) for verb in ("get", "list") for resource in (
            "namespaces", *_WORKLOADS, "replicasets.apps", "controllerrevisions.apps")),
        *(("patch", resource) for resource in _WORKLOADS),
        ("patch", "replicasets.apps"),
        ("delete", "replicasets.apps"),
        ("create", "events"),
    },
    "jobs": {
        *((verb, resource) for verb in ("get", "list") for resource in (
            "namespaces", "jobs.batch", "cronjobs.batch", "pods")),
        ("delete", "jobs.batch"),
        ("delete", "pods"),
        ("patch", "cronjobs.batch"),
        ("create", "events"),
    },
}
NEVER = [("get", "secrets"), ("list", "secrets"), ("watch", "secrets"), ("create", "secrets"),
         ("delete", "namespaces"), ("create", "pods/exec"), ("impersonate", "serviceaccounts"),
         ("escalate", "clusterroles.rbac.authorization.k8s.io")]


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane) -> Iterator[list[dict]]:
    yield from installation.install(control_plane)


def _granted(plane: ControlPlane, user: str, namespace: str) -> set[tuple[str, str]]:
    """Every (verb, resource.group) that RBAC grants `user` in `namespace`, wildcards as-is."""
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
              "spec": {"namespace": namespace}}
    out = plane.run_kubectl("create", "--validate=false", "-f", "-", "-o", "json",
                            f"--as={user}", input=json.dumps(review)).stdout
    status = json.loads(out)["status"]
    assert status["incomplete"] is False
    return {
        (verb, f"{resource}.{group}" if group else resource)
        for rule in status["resourceRules"]
        for verb in rule["verbs"] for group in rule["apiGroups"] for resource in rule["resources"]
    }


def _unbound(plane: ControlPlane, namespace: str) -> set[tuple[str, str]]:
    """What any authenticated account gets from the cluster's defaults (discovery and such)."""
    return _granted(plane, account(namespace, "default"), namespace)


@pytest.mark.parametrize("task", TASKS)
def test_task_account_may_do_what_its_task_needs(
    installed: list[dict], control_plane: ControlPlane, task: str
) -> None:
    user = account(SYSTEM_NAMESPACE, f"kubekeeper-{task}")
    refused = [(verb, resource) for verb, resource in sorted(NEEDS[task])
               if not installation.can_i(control_plane, user, verb, resource)]
    assert refused == []


@pytest.mark.parametrize("task", TASKS)
def test_task_account_holds_nothing_beyond_its_needs(
    installed: list[dict], control_plane: ControlPlane, namespace: str, task: str
) -> None:
    user = account(SYSTEM_NAMESPACE, f"kubekeeper-{task}")
    extra = _granted(control_plane, user, namespace) - _unbound(control_plane, namespace)
    assert extra == NEEDS[task]


@pytest.mark.parametrize("task", TASKS)
def test_task_account_is_denied_secrets_and_destructive_verbs(
    installed: list[dict], control_plane: ControlPlane, task: str
) -> None:
    user = account(SYSTEM_NAMESPACE, f"kubekeeper-{task}")
    never = [*NEVER, *((("delete", "deployments.apps"),) if task == "jobs" else ())]
    allowed = [(verb, resource) for verb, resource in never
               if installation.can_i(control_plane, user, verb, resource)]
    assert allowed == []
    assert not installation.can_i(control_plane, user, "get", "secrets", SYSTEM_NAMESPACE)


@pytest.mark.parametrize("task", TASKS)
def test_only_deleting_tasks_keep_a_recycle_bin_and_only_in_their_namespace(
    installed: list[dict], control_plane: ControlPlane, task: str
) -> None:
    user = account(SYSTEM_NAMESPACE, f"kubekeeper-{task}")
    extra = (_granted(control_plane, user, SYSTEM_NAMESPACE)
             - _unbound(control_plane, SYSTEM_NAMESPACE) - NEEDS[task])
    bin_verbs = {("list", "secrets"), ("create", "secrets"), ("delete", "secrets")}
    assert extra == (set() if task == "requests" else bin_verbs)


def test_node_account_holds_no_api_permission_at_all(
    installed: list[dict], control_plane: ControlPlane, namespace: str
) -> None:
    user = account(NODE_NAMESPACE, "kubekeeper-node")
    for where in (namespace, NODE_NAMESPACE):
        assert _granted(control_plane, user, where) == _unbound(control_plane, where)
    for verb, resource in [("get", "pods"), ("list", "nodes"), ("create", "events"),
                           ("get", "configmaps"), *NEVER]:
        assert not installation.can_i(control_plane, user, verb, resource, NODE_NAMESPACE)


@pytest.mark.parametrize("task", TASKS)
def test_no_task_account_can_recreate_what_it_deletes(
    installed: list[dict], control_plane: ControlPlane, namespace: str, task: str
) -> None:
    """So ``kubekeeper restore`` must run with an admin's kubeconfig, never a CronJob's
    account; it never loads the in-cluster configuration."""
    user = account(SYSTEM_NAMESPACE, f"kubekeeper-{task}")
    allowed = [resource for resource in ("jobs.batch", "replicasets.apps", "pods")
               if installation.can_i(control_plane, user, "create", resource, namespace)]
    assert allowed == []
