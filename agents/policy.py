"""The policy model: typed, frozen settings with their defaults and checks.

Each setting is declared once, with the check that converts what the admin
wrote, the default, and a one-line meaning.  The loader, ``policy show`` and
the README reference all read these declarations, so they cannot drift apart.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import timedelta
from typing import Any

from agents import checks
from agents.checks import Trigger

API_VERSION = "kubekeeper/v1"
IGNORE_ANNOTATION = "kubekeeper/ignore"
KEEP_LABEL = "kubekeeper.keep"


def setting(check: Callable[[Any], Any], default: Any, doc: str,
            render: Callable[[Any], Any] | None = None) -> Any:
    """Declare a leaf setting: ``check`` converts the YAML value or raises ValueError."""
    meta = {"check": check, "doc": doc, "render": render}
    value = check(default)
    if value.__hash__ is None:
        return field(default_factory=lambda: value, metadata=meta)
    return field(default=value, metadata=meta)


def section(factory: Callable[[], Any], doc: str) -> Any:
    """Declare a nested mapping; its own fields carry the defaults."""
    return field(default_factory=factory, metadata={"doc": doc})


@dataclass(frozen=True)
class Protect:
    labels: Mapping[str, str] = setting(checks.labels, {},
                                        "Keep objects carrying all of these labels.")
    names: tuple[str, ...] = setting(checks.globs, [], "Keep objects whose name matches a glob.")


@dataclass(frozen=True)
class AgeRule:
    enabled: bool = setting(checks.boolean, True, "Turn the rule on or off.")
    olderThan: timedelta = setting(checks.duration, "1h", "Minimum age before removal.",
                                   checks.render_duration)


@dataclass(frozen=True)
class Schedule:
    cleanup: Trigger = setting(checks.trigger, "*/30 * * * *",
                               "Cleanup runs: cron, or {every: 30m}.", checks.render_trigger)
    logs: Trigger = setting(checks.trigger, "0 * * * *",
                            "Log audits: cron, or {every: 1h}.", checks.render_trigger)
    jitter: timedelta = setting(checks.duration_up_to("1d"), "60s",
                                "Random delay added to each start, so nodes do not run in step.",
                                checks.render_duration)


@dataclass(frozen=True)
class ContainerRules:
    enabled: bool = setting(checks.boolean, True,
                            "Remove exited, dead and never-started containers.")
    olderThan: timedelta = setting(checks.duration, "1h",
                                   "Age since FinishedAt (or Created if never started).",
                                   checks.render_duration)
    keepPerPodContainer: int = setting(checks.whole(0, 100), 1,
                                       "Dead containers kept per pod and container (kubelet: 1).")
    protect: Protect = section(Protect, "Containers never removed.")


@dataclass(frozen=True)
class DiskPressure:
    enabled: bool = setting(checks.boolean, True,
                            "Evict unused images, least recently used first, on a full disk.")
    highPercent: float = setting(checks.percent, 80,
                                 "Start evicting above this usage (below the kubelet's 85, "
                                 "so the two never race).", checks.render_number)
    lowPercent: float = setting(checks.percent, 75, "Stop evicting below this usage.",
                                checks.render_number)
    minAge: timedelta = setting(checks.duration, "2m",
                                "Never evict an image first seen more recently "
                                "(kubelet: imageMinimumGCAge 2m).", checks.render_duration)


@dataclass(frozen=True)
class ImageRules:
    dangling: AgeRule = section(AgeRule, "Untagged images.")
    unused: AgeRule = section(lambda: AgeRule(olderThan=checks.duration("7d")),
                              "Tagged images that no container uses.")
    diskPressure: DiskPressure = section(DiskPressure, "Eviction under disk pressure.")
    protect: tuple[str, ...] = setting(checks.globs, [],
                                       "Globs on repo:tag, repo@digest or image id never removed.")
    protectSandboxImages: bool = setting(checks.boolean, True,
                                         "Keep pause images and every pod sandbox's image.")


@dataclass(frozen=True)
class VolumeRules:
    enabled: bool = setting(checks.boolean, True, "Remove volumes no remaining container uses.")
    olderThan: timedelta = setting(checks.duration, "24h", "Age since the volume's CreatedAt.",
                                   checks.render_duration)
    includeNamed: bool = setting(checks.boolean, False,
                                 "Also remove named volumes (they usually hold data).")
    protect: Protect = section(Protect, "Volumes never removed.")


@dataclass(frozen=True)
class LogRules:
    enabled: bool = setting(checks.boolean, True, "Audit container log rotation.")
    maxFileSize: int = setting(checks.size, "100Mi", "A log file larger than this is reported.",
                               checks.render_size)
    requireRotation: bool = setting(checks.boolean, True,
                                    "Report json-file/local logs without max-size.")
    action: str = setting(checks.choice("report", "truncate"), "report",
                          "report, or truncate oversized Docker log files in place.")
    topN: int = setting(checks.whole(0, 1000), 10, "How many of the largest log files to list.")
    staleAfter: timedelta = setting(checks.duration, "7d",
                                    "Kubelet log files untouched this long are reported.",
                                    checks.render_duration)
    podLogDirs: bool = setting(
        checks.boolean, True, "On CRI nodes, report pod log directories beyond the kubelet's "
        "rotation bound (maxSize x maxFiles per container log) or of pods no longer on the node.")


@dataclass(frozen=True)
class NodePolicy:
    schedule: Schedule = section(Schedule, "When the daemon runs each job.")
    parallelism: int = setting(checks.whole(1, 64), 4, "Docker deletions in flight at once.")
    criParallelism: int = setting(
        checks.whole(1, 1024), 256, "Image removals sent at once on a CRI runtime, in batches "
        "(containerd's overlapping removals share one garbage collection: more is quicker and "
        "lighter).")
    runtimes: tuple[str, ...] = setting(
        checks.runtimes, list(checks.RUNTIME_NAMES),
        "Runtimes that may be cleaned, of those --runtime finds; leave one out to turn it off.")
    containers: ContainerRules = section(ContainerRules, "Container cleanup.")
    images: ImageRules = section(ImageRules, "Image cleanup.")
    volumes: VolumeRules = section(VolumeRules, "Volume cleanup.")
    logs: LogRules = section(LogRules, "Log-rotation audit.")


@dataclass(frozen=True)
class NamespaceScope:
    include: tuple[str, ...] = setting(checks.globs, ["*"], "Namespaces in scope (globs).")
    exclude: tuple[str, ...] = setting(
        checks.globs, ["kube-system", "kube-public", "kube-node-lease"],
        "Namespaces never touched (globs); wins over include.")

    def covers(self, namespace: str) -> bool:
        """True when the namespace is included and not excluded."""
        return _matches_any(namespace, self.include) and not _matches_any(namespace, self.exclude)


@dataclass(frozen=True)
class ResourceDefaults:
    cpu: str = setting(checks.quantity, "100m", "Default CPU request.")
    memory: str = setting(checks.quantity, "128Mi", "Default memory request.")
    ephemeralStorage: str = setting(checks.quantity, "1Gi", "Default ephemeral-storage request.")

    def for_resource(self, resource: str) -> str:
        return {"cpu": self.cpu, "memory": self.memory, "ephemeral-storage": self.ephemeralStorage}[
            resource]


@dataclass(frozen=True)
class Recommend:
    """How usage becomes a request; the defaults are the VPA recommender's where it has one."""

    cpuPercentile: float = setting(checks.percent, 90,
                                   "CPU request: this percentile of usage (VPA target: 90).",
                                   checks.render_number)
    margin: float = setting(checks.percent, 15,
                            "Percent added on top of the usage (VPA safety margin: 15).",
                            checks.render_number)
    minCpu: str = setting(checks.quantity, "25m", "Lowest CPU request recommended (VPA: 25m).")
    minMemory: str = setting(checks.quantity, "250Mi",
                             "Lowest memory request recommended (VPA: 250Mi).")
    maxCpu: str = setting(checks.quantity, "1000",
                          "Highest CPU request recommended (VPA histogram's top: 1000).")
    maxMemory: str = setting(checks.quantity, "1Ti",
                             "Highest memory request, never below the peak seen (VPA: 1Ti).")
    window: timedelta = setting(checks.duration_between("1h", "90d"), "8d",
                                "Usage older than this is forgotten (VPA: 8d).",
                                checks.render_duration)
    halfLife: timedelta = setting(checks.duration_between("1m", "30d"), "24h",
                                  "A CPU sample this old weighs half (VPA: 24h).",
                                  checks.render_duration)
    minHistory: timedelta = setting(checks.duration_up_to("90d"), "24h",
                                    "No recommendation before this much history.",
                                    checks.render_duration)
    minChange: float = setting(checks.percent, 20,
                               "Act only when the request differs from it by more (percent).",
                               checks.render_number)
    minInterval: timedelta = setting(checks.duration_up_to("365d"), "7d",
                                     "At most one recommendation patch per workload this often.",
                                     checks.render_duration)


@dataclass(frozen=True)
class Prometheus:
    url: str = setting(checks.url, "",
                       "Query this Prometheus over the window instead of sampling (\"\": none).")


@dataclass(frozen=True)
class Usage:
    """Where usage comes from and where its record is kept (read from the top level only)."""

    namespace: str = setting(checks.dns_label, "kubekeeper-system",
                             "Where the usage record ConfigMaps live.")
    prometheus: Prometheus = section(Prometheus, "Optional Prometheus source.")


@dataclass(frozen=True)
class ResourceRequests:
    enabled: bool = setting(checks.boolean, True, "Check containers for resource requests.")
    require: tuple[str, ...] = setting(checks.resources, ["cpu", "memory"],
                                       "Requests every container must set.")
    requireLimits: tuple[str, ...] = setting(checks.resources, [],
                                             "Limits every container must set (report only).")
    defaults: ResourceDefaults = section(ResourceDefaults, "Requests used by limitrange and patch.")
    action: str = setting(checks.choice("report", "limitrange", "patch", "resize"), "report",
                          "report; limitrange (namespace defaults, no restart); "
                          "patch (edits pod templates: causes a rollout); "
                          "resize (patch, and resizes running pods in place).")
    recommend: Recommend = section(Recommend, "Requests from measured usage.")
    usage: Usage = section(Usage, "The usage sources and record.")


@dataclass(frozen=True)
class RevisionHistory:
    enabled: bool = setting(checks.boolean, True, "Check revisionHistoryLimit.")
    maxLimit: int = setting(checks.whole(0, 1000), 3, "Highest revisionHistoryLimit allowed.")
    action: str = setting(checks.choice("report", "patch"), "report",
                          "report, or patch the limit (no restart).")
    ownerlessReplicaSets: AgeRule = section(
        lambda: AgeRule(enabled=False, olderThan=checks.duration("7d")),
        "Delete ReplicaSets with no owner and 0 replicas (opt-in).")


@dataclass(frozen=True)
class CompletedJobs:
    enabled: bool = setting(checks.boolean, True, "Clean up finished Jobs.")
    succeededTTL: timedelta = setting(checks.duration, "1d", "Keep Complete Jobs this long.",
                                      checks.render_duration)
    failedTTL: timedelta = setting(checks.duration, "7d", "Keep Failed Jobs this long.",
                                   checks.render_duration)
    orphanPods: bool = setting(checks.boolean, False,
                               "Also delete ownerless Succeeded/Failed pods older than the TTL.")
    ownerKinds: tuple[str, ...] = setting(
        checks.kinds, [], "Owner kinds whose Jobs may also go (bare and CronJob Jobs always may).")
    maxSuccessfulHistory: int = setting(checks.whole(0, 1000), 3,
                                        "Highest CronJob successfulJobsHistoryLimit allowed.")
    maxFailedHistory: int = setting(checks.whole(0, 1000), 3,
                                    "Highest CronJob failedJobsHistoryLimit allowed.")
    action: str = setting(checks.choice("report", "delete"), "report",
                          "report, or delete Jobs/pods and patch CronJob history limits.")


@dataclass(frozen=True)
class RecycleBin:
    enabled: bool = setting(checks.boolean, True,
                            "Keep each deleted object's complete manifest in a Secret.")
    namespace: str = setting(checks.dns_label, "kubekeeper-system",
                             "Where the recycle-bin Secrets live.")
    keepFor: timedelta = setting(checks.duration, "7d",
                                 "How long a recycle bin is kept; later runs prune it.",
                                 checks.render_duration)


@dataclass(frozen=True)
class ClusterMetrics:
    pushgateway: str | None = setting(
        checks.optional_http_url, None,
        "Pushgateway URL each run pushes its metrics to, grouped by task (off when unset).")


@dataclass(frozen=True)
class ClusterPolicy:
    apiQPS: float = setting(checks.qps, 20, "Client-side API request rate limit (0: unlimited).",
                            checks.render_number)
    pageSize: int = setting(checks.whole(1, 10_000), 500, "Objects per list page; bounds memory.")
    concurrency: int = setting(checks.whole(1, 64), 4, "API mutations in flight at once.")
    unreachableAfter: timedelta = setting(
        checks.duration, "2m", "Halt the run when the API server has not answered this long.",
        checks.render_duration)
    events: bool = setting(checks.boolean, True,
                           "Record an Event on each patched or deleted object.")
    namespaces: NamespaceScope = section(NamespaceScope, "Which namespaces the tasks touch.")
    redactManifests: bool = setting(
        checks.boolean, True, "Redact env values and secret-looking fields in report manifests.")
    recycleBin: RecycleBin = section(RecycleBin, "Complete manifests of what was deleted.")
    metrics: ClusterMetrics = section(ClusterMetrics, "Prometheus metrics of the cluster tasks.")
    resourceRequests: ResourceRequests = section(ResourceRequests, "The requests task.")
    revisionHistory: RevisionHistory = section(RevisionHistory, "The revisions task.")
    completedJobs: CompletedJobs = section(CompletedJobs, "The jobs task.")


OVERRIDABLE = ("resourceRequests", "revisionHistory", "completedJobs")


@dataclass(frozen=True)
class Override:
    """Settings for the namespaces matching ``namespaces``; only written keys change."""

    namespaces: tuple[str, ...]
    changes: Mapping[str, Any]

    def applies_to(self, namespace: str) -> bool:
        return _matches_any(namespace, self.namespaces)


@dataclass(frozen=True)
class Policy:
    apiVersion: str = setting(checks.api_version, API_VERSION, "Schema version: kubekeeper/v1.")
    dryRun: bool = setting(checks.boolean, True, "Plan and report only; change nothing.")
    maxDeletionsPerRun: int = setting(checks.whole(0, 1_000_000), 500,
                                      "A plan with more deletions deletes nothing.")
    node: NodePolicy = section(NodePolicy, "The node agent (DaemonSet).")
    cluster: ClusterPolicy = section(ClusterPolicy, "The cluster tasks (CronJobs).")
    overrides: tuple[Override, ...] = ()
    source: str = field(default="<defaults>", compare=False)

    def for_namespace(self, namespace: str) -> ClusterPolicy:
        """The cluster settings in force for a namespace: later overrides win."""
        effective = self.cluster
        for override in self.overrides:
            if override.applies_to(namespace):
                effective = merge(effective, override.changes)
        return effective


def merge(base: Any, changes: Mapping[str, Any]) -> Any:
    """Apply validated partial settings to a dataclass: mappings merge, values replace."""
    updates = {}
    for key, value in changes.items():
        current = getattr(base, key)
        nested = is_dataclass(current) and isinstance(value, dict)
        updates[key] = merge(current, value) if nested else value
    return replace(base, **updates)


def to_plain(obj: Any) -> Any:
    """The policy as plain YAML-ready data, each value written as the admin would."""
    if isinstance(obj, Override):
        return {"namespaces": list(obj.namespaces), **to_plain_changes(obj.changes)}
    if not is_dataclass(obj):
        return list(obj) if isinstance(obj, tuple) else obj
    out: dict[str, Any] = {}
    for f in fields(obj):
        if not f.compare:
            continue
        value = getattr(obj, f.name)
        render = f.metadata.get("render")
        if render:
            out[f.name] = render(value)
        elif isinstance(value, tuple):
            out[f.name] = [to_plain(v) for v in value]
        elif isinstance(value, Mapping):
            out[f.name] = dict(value)
        else:
            out[f.name] = to_plain(value)
    return out


def to_plain_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Render an override's partial settings through the same field renderers."""
    return {key: _render_partial(ClusterPolicy, key, value) for key, value in changes.items()}


def _render_partial(cls: type, key: str, value: Any) -> Any:
    f = {f.name: f for f in fields(cls)}[key]
    default = f.default_factory() if callable(f.default_factory) else f.default
    if is_dataclass(default):
        return {k: _render_partial(type(default), k, v) for k, v in value.items()}
    render = f.metadata.get("render")
    if render:
        return render(value)
    return list(value) if isinstance(value, tuple) else value


def _matches_any(name: str, globs: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for glob in globs)
