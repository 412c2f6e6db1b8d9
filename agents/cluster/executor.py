"""The only cluster code that mutates: applies actions and reports one outcome each.

Mutations run on a bounded thread pool (``cluster.concurrency``); the port
paces them with the QPS limit. Every outcome is reported as soon as it is
known, so a run killed half-way leaves the record of what it did.

- Dry-run sends each mutation with ``dryRun=All``: the result is ``planned``
  and the API server's verdict is in the line (``verdict``). No mutation is
  ever ``done`` in a dry run.
- 404 on a delete: the object is already gone, so the result is ``done``
  (``skipped`` in a dry run). 404 on a create or patch (the namespace or the
  object went away) is ``failed``: nothing was written.
- 409: the object changed since it was listed (every mutation carries the
  listed ``resourceVersion``); it is re-read and planned again, and the new
  decision is carried out (at most ``MAX_REPLANS`` times), written ahead like
  the first: the new version's complete manifest in a new recycle bin chunk,
  then an intent line for the same ``op`` with its redacted one. Without that,
  ``restore`` would bring back the version listed, not the one deleted.
- Any other error (403 names verb, resource and namespace) fails that action
  only; the run goes on.
- Write-ahead: in a real run every deletion's complete manifest is first kept
  in the recycle bin, then every mutation's ``action.intent`` line (with the
  redacted manifest and where the complete one is) is flushed, and only then
  is the request sent.
- With ``cluster.events``, a real run posts an Event on the object after its
  outcome line: ``Normal`` for a patch or delete done, ``Warning`` for an
  action that failed or that its planner kept. Run-wide refusals (the cap, a
  halt) post none: the summary says it once, not 10,000 times.
- Before each mutation the namespace's opt-out is read again (``NamespaceGate``,
  at most every few seconds per namespace): an opt-out added mid-run skips
  the rest of that namespace.
- A halted run (SIGTERM, its deadline, the API server lost: ``port.halt``)
  starts no new action; each is ``skipped`` with the reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType

from loguru import logger

from agents.actions import Action, Outcome, Result, Verb, refused
from agents.cluster import events
from agents.cluster.api import ApiError, ClusterPort
from agents.cluster.namespace_gate import NamespaceGate
from agents.cluster.recycle_bin import RecycleBin
from agents.cluster.redaction import redacted_manifest
from agents.cluster.resources import RESOURCES
from agents.report import RawJSON, Reporter

MAX_REPLANS = 3
Replanner = Callable[[Action], "Action | None"]
"""Re-reads an action's object and plans it again; raises ApiError (404 when gone)."""

_ACCEPTED = "accepted by the API server (server-side dry run)"


class ClusterExecutor:
    """Carries out one run's plan; the only place a dry run differs from a real one."""

    def __init__(self, port: ClusterPort, reporter: Reporter, *, dry_run: bool, events: bool,
                 concurrency: int, replanners: Mapping[str, Replanner], gate: NamespaceGate,
                 recycle_bin: RecycleBin | None = None, redact: bool = True):
        self._port, self._reporter = port, reporter
        self._dry_run, self._events = dry_run, events
        self._concurrency, self._replanners = concurrency, replanners
        self._gate, self._bin, self._redact = gate, recycle_bin, redact

    def run(self, planned: Sequence[tuple[str, Action]], aborted: str | None = None
            ) -> list[Outcome]:
        """One reported outcome per (task, action), in completion order."""
        outcomes: list[Outcome] = []
        mutations = []
        for task, action in ((t, self._shown(a)) for t, a in planned):
            if not action.mutates:
                outcomes.append(self._finish(task, refused(action, "")))
            elif aborted:
                outcomes.append(self._report(task, refused(action, aborted)))
            else:
                mutations.append((task, action))
        kept, refusals = self._binned(mutations)
        outcomes += [self._finish(task, outcome) for task, outcome in refusals]
        return outcomes + self._in_pool(kept)

    def _shown(self, action: Action) -> Action:
        """The action with the manifest its report lines carry: redacted unless the
        policy says ``redactManifests: false``."""
        if action.sealed is None:
            return action
        shown = redacted_manifest(action.sealed) if self._redact else action.sealed
        return replace(action, details=MappingProxyType(
            {**action.details, "manifest": RawJSON(shown)}))

    def _binned(self, mutations: list[tuple[str, Action]]
                ) -> tuple[list[tuple[str, Action]], list[tuple[str, Outcome]]]:
        """Keep every complete manifest in the recycle bin before any deletion starts.

        Each deletion then names where its manifest is; one whose manifest could
        not be kept is not attempted and is ``failed`` (the run could not do what
        the policy asks), since nothing is deleted without it.
        """
        if self._bin is None or self._port.halt.is_set():
            return mutations, []
        kept, refusals = [], []
        for task in dict.fromkeys(t for t, _ in mutations):
            mine = [a for t, a in mutations if t == task]
            sealed = [a for a in mine if a.destructive and a.sealed]
            where, missing = self._bin.keep(task, sealed)
            binned = {id(a): i for i, a in enumerate(sealed)}
            for action in mine:
                index = binned.get(id(action))
                if index in missing:
                    refusals.append((task, self._unbinned(action, missing[index])))
                elif index is not None:
                    kept.append((task, replace(action, details=MappingProxyType(
                        {**action.details, "recycle_bin": where[index]}))))
                else:
                    kept.append((task, action))
        return kept, refusals

    def _in_pool(self, mutations: list[tuple[str, Action]]) -> list[Outcome]:
        """Run mutations on ``concurrency`` workers that each take the next one when free.

        No future per mutation and no waiting on a set of them: that bookkeeping
        cost a seventh of the client's CPU in a 10,000-delete run.
        """
        outcomes: list[Outcome] = []
        queue = iter(mutations)
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    item = next(queue, None)
                if item is None:
                    return
                outcomes.append(self._apply(*item))

        workers = [threading.Thread(target=work, name=f"mutate-{i}")
                   for i in range(min(self._concurrency, len(mutations)))]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return outcomes

    def _unbinned(self, action: Action, why: str) -> Outcome:
        """A halted run skips the deletion; any other bin failure fails it."""
        halt = self._port.halt
        if halt.is_set():
            return refused(action, f"not started: {halt.reason}")
        return Outcome(action, Result.FAILED, error=why)

    def _apply(self, task: str, action: Action) -> Outcome:
        halt = self._port.halt
        if halt.is_set():
            return self._report(task, refused(action, f"not started: {halt.reason}"))
        op = None if self._dry_run else self._reporter.intent(action, task=task)
        try:
            outcome = self._attempt(task, action, op)
        except Exception as exc:  # one object's surprise must not end the run
            logger.bind(kind=action.kind, name=action.name, id=action.id).exception(
                "unexpected failure")
            outcome = Outcome(action, Result.FAILED, error=f"{type(exc).__name__}: {exc}")
        return self._finish(task, outcome, op)

    def _attempt(self, task: str, action: Action, op: int | None) -> Outcome:
        closed = self._gate.closed(action.namespace) if action.namespace else None
        if closed:
            return Outcome(action, Result.SKIPPED, error=closed)
        replans = 0
        while True:
            try:
                self._send(action)
            except ApiError as err:
                if not err.sent:
                    return Outcome(action, Result.SKIPPED, error=err.message)
                if err.status != 409 or replans == MAX_REPLANS:
                    return self._failed(action, err)
                fresh = self._replan(task, action)
                if not isinstance(fresh, Outcome):
                    fresh = self._written_again(task, fresh, op)
                if isinstance(fresh, Outcome):
                    return fresh
                action, replans = fresh, replans + 1
                continue
            return self._succeeded(action, replanned=replans > 0)

    def _replan(self, task: str, action: Action) -> Action | Outcome:
        log = logger.bind(kind=action.kind, name=action.name, id=action.id)
        log.info("409 conflict: re-reading and planning again")
        try:
            fresh = self._replanners[task](action)
        except ApiError as err:
            return self._failed(action, err)
        if fresh is None:
            return Outcome(action, Result.SKIPPED, error="changed since it was listed (409); "
                           "re-read and planned again: no longer applies")
        if not fresh.mutates:
            return replace(refused(fresh, ""), details={"replanned": True})
        return fresh

    def _written_again(self, task: str, action: Action, op: int | None) -> Action | Outcome:
        """A re-planned mutation, recorded like the first before it is sent: the new
        version's complete manifest in the bin, then its intent line (same ``op``).

        A manifest that cannot be kept leaves the object in place, as before the
        first attempt. A dry run (no ``op``) writes neither, but shows the manifest.
        """
        action = self._shown(replace(action, details=MappingProxyType(
            {**action.details, "replanned": True})))
        if op is None:
            return action
        if self._bin is not None and action.destructive and action.sealed:
            where, missing = self._bin.keep(task, [action])
            if missing:
                return self._unbinned(action, missing[0])
            action = replace(action, details=MappingProxyType(
                {**action.details, "recycle_bin": where[0]}))
        self._reporter.intent(action, task=task, op=op)
        return action

    def _send(self, action: Action) -> None:
        details = action.details
        resource = RESOURCES[details.get("resource", action.kind)]  # a pod's resize subresource
        namespace, dry = action.namespace or "", self._dry_run
        if action.verb is Verb.DELETE:
            self._port.delete(resource, namespace, action.name, details["preconditions"], dry)
        elif action.verb is Verb.PATCH:
            self._port.patch(resource, namespace, action.name, details["patch"],
                             details["patchType"], dry)
        elif action.verb is Verb.CREATE:
            self._port.create(resource, namespace, details["body"], dry)
        else:
            raise ValueError(f"no API call for verb {action.verb}")

    def _succeeded(self, action: Action, replanned: bool) -> Outcome:
        details = {"replanned": True} if replanned else {}
        if self._dry_run:
            return Outcome(action, Result.PLANNED, details={**details, "verdict": _ACCEPTED})
        return Outcome(action, Result.DONE, details=details)

    def _failed(self, action: Action, err: ApiError) -> Outcome:
        if err.status == 404 and action.verb is Verb.DELETE:
            if self._dry_run:
                return Outcome(action, Result.SKIPPED, error="already gone (404)")
            return Outcome(action, Result.DONE, details={"note": "already gone (404)"})
        logger.bind(kind=action.kind, name=action.name, id=action.id).warning("{}", err)
        details = {"verdict": f"rejected: {err}"} if self._dry_run else {}
        return Outcome(action, Result.FAILED, error=str(err), details=details)

    def _finish(self, task: str, outcome: Outcome, op: int | None = None) -> Outcome:
        """Report the outcome of one object's action, then tell the object (an Event)."""
        self._report(task, outcome, op)
        if self._events and not self._dry_run:
            events.record(self._port, outcome)
        return outcome

    def _report(self, task: str, outcome: Outcome, op: int | None = None) -> Outcome:
        self._reporter.action(outcome, task=task, op=op)
        return outcome
