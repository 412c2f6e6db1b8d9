"""The Kubernetes resources the cluster tasks read and change, by report kind.

One table maps the report's lower-case kind (``deployment``) to the API path,
so the inventory, the executor and the events all build URLs the same way and
the RBAC manifests can be checked against a single list.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class Resource:
    kind: str
    api_kind: str
    prefix: str
    plural: str
    subresource: str = ""
    """``resize`` for a pod's in-place resize: a path on one object only."""

    @property
    def api_version(self) -> str:
        return self.prefix.removeprefix("/apis/").removeprefix("/api/")

    @property
    def label(self) -> str:
        """How errors and request counts name it: ``pods``, ``pods/resize``,
        ``pods.metrics.k8s.io`` (the metrics group's pods are not the core pods)."""
        group = self.api_version.rpartition("/")[0]
        named = f"{self.plural}.{group}" if group == _METRICS_GROUP else self.plural
        return f"{named}/{self.subresource}" if self.subresource else named

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """Cluster-wide collection without ``namespace``; one object with both."""
        where = f"/namespaces/{quote(namespace, safe='')}" if namespace else ""
        what = f"/{quote(name, safe='')}" if name else ""
        if name and self.subresource:
            what += f"/{self.subresource}"
        return f"{self.prefix}{where}/{self.plural}{what}"


_CORE, _APPS, _BATCH = "/api/v1", "/apis/apps/v1", "/apis/batch/v1"
_METRICS_GROUP = "metrics.k8s.io"
_METRICS = f"/apis/{_METRICS_GROUP}/v1beta1"

RESOURCES: dict[str, Resource] = {r.kind: r for r in (
    Resource("namespace", "Namespace", _CORE, "namespaces"),
    Resource("pod", "Pod", _CORE, "pods"),
    Resource("limitrange", "LimitRange", _CORE, "limitranges"),
    Resource("event", "Event", _CORE, "events"),
    Resource("secret", "Secret", _CORE, "secrets"),
    Resource("configmap", "ConfigMap", _CORE, "configmaps"),
    Resource("pod/resize", "Pod", _CORE, "pods", "resize"),
    Resource("podmetrics", "PodMetrics", _METRICS, "pods"),
    Resource("deployment", "Deployment", _APPS, "deployments"),
    Resource("statefulset", "StatefulSet", _APPS, "statefulsets"),
    Resource("daemonset", "DaemonSet", _APPS, "daemonsets"),
    Resource("replicaset", "ReplicaSet", _APPS, "replicasets"),
    Resource("controllerrevision", "ControllerRevision", _APPS, "controllerrevisions"),
    Resource("job", "Job", _BATCH, "jobs"),
    Resource("cronjob", "CronJob", _BATCH, "cronjobs"),
)}
