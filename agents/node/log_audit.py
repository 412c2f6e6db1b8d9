"""The log-rotation audit: findings about unbounded and oversized logs; pure.

Findings are ``kind: log`` actions.  Most only report.  With ``action:
truncate`` an oversized ``json-file`` log under ``<DockerRootDir>/containers``
becomes a truncate action (the executor re-checks the path before touching
it); kubelet CRI files and other drivers' files are only reported.

Rotation: a ``json-file`` log with no ``max-size`` (or ``-1``) grows without
bound.  The ``local`` driver rotates by default (20 MB x 5 files) when
``max-size`` is absent, so it is not reported as unbounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from agents.actions import Action, Verb
from agents.node.log_inventory import ContainerLog, LogFacts, LogFile
from agents.policy import LogRules
from agents.units import format_age, format_bytes, format_duration

_ROTATION = "set log-opts max-size (and max-file)"


def plan_logs(facts: LogFacts, rules: LogRules, now: datetime) -> list[Action]:
    """The audit's actions in a stable order: daemon, containers, kubelet files, largest."""
    if not rules.enabled:
        return []
    actions = _daemon_findings(facts, rules)
    for log in sorted(facts.containers, key=lambda c: (c.container_name, c.container_id)):
        actions += _container_findings(facts, log, rules)
    actions += kubelet_file_findings(facts.kubelet_files, rules, now)
    return actions + largest(facts.containers, facts.kubelet_files, rules)


def kubelet_file_findings(files: Iterable[LogFile], rules: LogRules, now: datetime
                          ) -> list[Action]:
    """Kubelet log files (``/var/log/pods``) above ``maxFileSize`` or untouched too long."""
    actions = []
    for f in sorted(files, key=lambda f: f.path):
        if f.size > rules.maxFileSize:
            actions.append(report(f.path, "", "logs.maxFileSize", _oversized(f.size, rules),
                                  {"path": f.path, "size": f.size}))
        if now - f.modified >= rules.staleAfter:
            why = (f"untouched for {format_age(now - f.modified)} "
                   f"(staleAfter {format_duration(rules.staleAfter)})")
            actions.append(report(f.path, "", "logs.staleAfter", why,
                                  {"path": f.path, "size": f.size}))
    return actions


def unbounded(driver: str, options: Mapping[str, str]) -> bool:
    return driver == "json-file" and options.get("max-size", "-1") in ("", "-1")


def _daemon_findings(facts: LogFacts, rules: LogRules) -> list[Action]:
    actions = []
    if facts.docker_root_local is None:
        why = (f"Docker root {facts.docker_root} is not visible here "
               "(mount it under --host-root): log sizes are unknown")
        actions.append(report(facts.docker_root, "", "logs.maxFileSize", why,
                               {"path": facts.docker_root, "visible": False}))
    daemon = facts.daemon
    if rules.requireRotation and daemon.driver == "json-file":
        if daemon.options is None:
            why = (f"daemon default log-opts unknown: {daemon.config_path} is not visible "
                   "(each container is still checked below)")
        elif unbounded(daemon.driver, daemon.options):
            why = ("daemon default json-file has no max-size: containers created from now on "
                   f"log without bound ({_ROTATION} in {daemon.config_path})")
        else:
            return actions
        actions.append(report("dockerd", "", "logs.requireRotation", why,
                               {"path": daemon.config_path, "driver": daemon.driver}))
    return actions


def _container_findings(facts: LogFacts, log: ContainerLog, rules: LogRules) -> list[Action]:
    actions = []
    details: dict[str, Any] = {"path": log.path or None, "size": log.size, "driver": log.driver}
    if rules.requireRotation and unbounded(log.driver, log.options):
        why = f"json-file log without max-size grows without bound ({_ROTATION})"
        actions.append(report(log.container_name, log.container_id, "logs.requireRotation",
                               why, details, log.namespace))
    if log.size is not None and log.size > rules.maxFileSize:
        truncatable = (rules.action == "truncate" and log.driver == "json-file"
                       and _under(log.path, f"{facts.docker_root.rstrip('/')}/containers"))
        verb = Verb.TRUNCATE if truncatable else Verb.REPORT
        actions.append(Action(kind="log", name=log.container_name, id=log.container_id,
                              verb=verb, rule="logs.maxFileSize",
                              why=_oversized(log.size, rules), namespace=log.namespace,
                              bytes=log.size if truncatable else None,
                              details=MappingProxyType(details)))
    elif log.path and log.size is None and facts.docker_root_local is not None:
        actions.append(report(log.container_name, log.container_id, "logs.maxFileSize",
                               f"log file {log.path} is not visible here", details,
                               log.namespace))
    return actions


def largest(containers: Iterable[ContainerLog], kubelet_files: Iterable[LogFile],
            rules: LogRules) -> list[Action]:
    """The biggest files, for capacity planning; empty logs would only be noise."""
    files = [(c.size, c.path, c.container_name, c.container_id, c.namespace)
             for c in containers if c.size and c.path]
    files += [(f.size, f.path, f.path, "", None) for f in kubelet_files if f.size]
    files.sort(key=lambda f: (-f[0], f[1]))
    top = files[:rules.topN]
    total = sum(f[0] for f in top)
    return [report(name, cid, "logs.topN",
                    f"#{rank} of the {len(top)} largest log files "
                    f"({format_bytes(size)}; together {format_bytes(total)})",
                    {"path": path, "size": size, "rank": rank, "top_total": total}, namespace)
            for rank, (size, path, name, cid, namespace) in enumerate(top, start=1)]


def _oversized(size: int, rules: LogRules) -> str:
    return f"log is {format_bytes(size)} > maxFileSize {format_bytes(rules.maxFileSize)}"


def _under(path: str, directory: str) -> bool:
    return bool(path) and path.startswith(directory + "/") and "/../" not in path


def report(name: str, ident: str, rule: str, why: str, details: Mapping[str, Any],
            namespace: str | None = None) -> Action:
    return Action(kind="log", name=name, id=ident, verb=Verb.REPORT, rule=rule, why=why,
                  namespace=namespace, details=MappingProxyType(dict(details)))
