"""The log audit on a CRI node: the kubelet's rotation settings and its pod logs; pure.

On a CRI node the kubelet owns container logs: it writes them, rotates them
and removes a pod's directory with the pod.  So every finding here only
reports (``action: truncate`` never applies), in the order: the kubelet
config, the pod directories, then the per-file checks and the largest files
shared with the Docker audit (``log_audit``).

- ``logs.requireRotation``: a config that turns rotation off (a negative
  ``containerLogMaxSize``), rotates at every check (``0``), or that the kubelet
  refuses (``containerLogMaxFiles`` below 2).
- ``logs.podLogDirs``: a pod directory larger than its bound, ``maxSize x
  maxFiles`` per container log in it (rotation is not keeping up, or flags
  override the file), or one whose pod UID no sandbox of the runtime has
  (the pod is gone and the kubelet has not removed its logs).  A directory
  changed within ``ORPHAN_GRACE`` is not called gone: the kubelet makes it
  just before it asks the runtime for the sandbox.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from agents.actions import Action
from agents.node.kubelet_config import DEFAULT_MAX_FILES, DEFAULT_MAX_SIZE, KubeletLogging
from agents.node.log_audit import kubelet_file_findings, largest, report
from agents.node.pod_log_inventory import PodLogDir, PodLogFacts
from agents.policy import LogRules
from agents.units import format_age, format_bytes

ORPHAN_GRACE = timedelta(minutes=10)
LEFT_TO_KUBELET = "reported only: the kubelet owns these logs"


def plan_pod_logs(facts: PodLogFacts, rules: LogRules, now: datetime) -> list[Action]:
    """The audit's actions in a stable order; each one a report."""
    if not rules.enabled:
        return []
    kubelet = facts.kubelet
    actions = _config_findings(kubelet, rules)
    if rules.podLogDirs:
        if not facts.logs_dir_visible:
            why = (f"pod log directory {kubelet.pod_logs_dir} is not visible here (mount it "
                   "under --host-root): pod logs not audited")
            actions.append(report(kubelet.pod_logs_dir, "", "logs.podLogDirs", why,
                                  {"path": kubelet.pod_logs_dir, "visible": False}))
        for pod_dir in facts.pod_dirs:
            actions += _dir_findings(pod_dir, facts, now)
    files = facts.files
    return actions + kubelet_file_findings(files, rules, now) + largest((), files, rules)


def _config_findings(kubelet: KubeletLogging, rules: LogRules) -> list[Action]:
    actions = []
    details = {"path": kubelet.config_path, "containerLogMaxSize": kubelet.written_size,
               "containerLogMaxFiles": kubelet.max_files}
    if kubelet.problem:
        why = (f"{kubelet.problem}: the kubelet's defaults are assumed (containerLogMaxSize "
               f"{format_bytes(DEFAULT_MAX_SIZE)}, containerLogMaxFiles {DEFAULT_MAX_FILES})")
        actions.append(report(kubelet.config_path, "", "--kubelet-config", why,
                              {**details, "visible": False}))
    if not rules.requireRotation:
        return actions
    if kubelet.max_size < 0:
        why = (f"containerLogMaxSize {kubelet.written_size} turns the kubelet's log rotation "
               "off: container logs grow without bound (set it to a size, e.g. 10Mi)")
    elif kubelet.max_size == 0:
        why = ("containerLogMaxSize 0 rotates every log at each check "
               "(containerLogMonitorInterval, 10s): `kubectl logs` keeps only seconds of output")
    elif kubelet.max_files < 2:
        why = (f"containerLogMaxFiles {kubelet.max_files}: the kubelet refuses a value below 2 "
               "and does not start with this config")
    else:
        return actions
    actions.append(report(kubelet.config_path, "", "logs.requireRotation", why, details))
    return actions


def _dir_findings(pod_dir: PodLogDir, facts: PodLogFacts, now: datetime) -> list[Action]:
    actions = []
    details = {"path": pod_dir.path, "size": pod_dir.size, "pod": pod_dir.pod,
               "uid": pod_dir.uid, "container_logs": pod_dir.container_logs}
    quiet = now - pod_dir.modified
    if pod_dir.uid not in facts.live_uids and quiet >= ORPHAN_GRACE:
        why = (f"no pod sandbox with uid {pod_dir.uid}: pod {pod_dir.namespace}/{pod_dir.pod} "
               f"is gone from this node, its logs ({format_bytes(pod_dir.size)}, untouched for "
               f"{format_age(quiet)}) are not ({LEFT_TO_KUBELET})")
        actions.append(report(pod_dir.path, pod_dir.uid, "logs.podLogDirs", why, details,
                              pod_dir.namespace))
    bound = _bound(facts.kubelet, pod_dir)
    if bound is not None and pod_dir.size > bound:
        why = (f"pod logs take {format_bytes(pod_dir.size)} > {format_bytes(bound)} "
               f"({pod_dir.container_logs} container log(s) x containerLogMaxFiles "
               f"{facts.kubelet.max_files} x containerLogMaxSize "
               f"{format_bytes(facts.kubelet.max_size)}): rotation is not holding them "
               f"({LEFT_TO_KUBELET})")
        actions.append(report(pod_dir.path, pod_dir.uid, "logs.podLogDirs", why,
                              {**details, "bound": bound}, pod_dir.namespace))
    return actions


def _bound(kubelet: KubeletLogging, pod_dir: PodLogDir) -> int | None:
    """What the kubelet's rotation keeps a pod's logs within; None when it bounds nothing."""
    if kubelet.max_size <= 0 or kubelet.max_files < 2:
        return None
    return pod_dir.container_logs * kubelet.max_files * kubelet.max_size

