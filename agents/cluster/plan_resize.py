"""``action: resize``: running pods get their recommended requests in place.

A resize is a patch of the pod's ``resize`` subresource (in-place pod resize,
beta since Kubernetes 1.33); the kubelet applies it without a restart where
the container's ``resizePolicy`` says ``NotRequired`` (the default). So that
nothing restarts that the admin did not opt into:

- a resource whose ``resizePolicy`` is ``RestartContainer`` is left as it is;
- only requests the pod already sets are changed (adding one would change the
  pod's QoS class, which a resize may not);
- a pod whose limit would end up below its new request is kept (``skipped``)
  with the conflict.

Memory is never resized below current usage: a memory recommendation is
never below the peak of the window, which includes this run's sample.
What the kubelet does with the resize (done, deferred, infeasible) is in the
pod's status afterwards, not in the answer to the patch. Since the pod's spec
already holds the new requests then, a later run would see nothing to change
and say nothing: so a pod whose resize the kubelet deferred or refused gets a
report line with the kubelet's condition as it is, and no new resize until the
kubelet has settled it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from agents.actions import Action, Verb
from agents.cluster.inventory import Inventory
from agents.cluster.planning import act
from agents.cluster.records import Container, Meta, Pod
from agents.cluster.request_changes import Change, change
from agents.policy import ResourceRequests

RULE = "resourceRequests.recommend"


def resizes(inventory: Inventory, owner_of: Mapping[tuple[str, str], tuple[str, str]],
            owner: Meta, rules: ResourceRequests, now: datetime) -> list[Action]:
    """One resize per running pod of ``owner`` whose requests are off the recommendation."""
    actions = []
    for pod in inventory.pod:
        mine = owner_of.get((pod.meta.namespace, pod.meta.name)) == (owner.kind, owner.name)
        if not mine or pod.phase != "Running" or pod.meta.ignored or pod.meta.deleting:
            continue
        if pod.resize_pending:
            actions.append(act(pod.meta, Verb.REPORT, RULE, "the kubelet has not applied the "
                               f"resize: {pod.resize_pending} (owner {owner.kind}/{owner.name})"))
            continue
        action = _resize(pod, owner, rules, inventory, int(now.timestamp()))
        if action is not None:
            actions.append(action)
    return actions


def _resize(pod: Pod, owner: Meta, rules: ResourceRequests, inventory: Inventory,
            now: int) -> Action | None:
    changed, kept = {}, []
    conflicts: list[str] = []
    for container in (c for c in pod.containers if not c.init):
        found = change(container, (owner.namespace, owner.kind, owner.name, container.name),
                       rules, inventory.measured, now)
        wanted, held = _resizable(container, found)
        kept += held
        conflicts += found.conflicts
        if wanted:
            changed[container.name] = wanted
    if not changed and not conflicts:
        return None
    why = "; ".join(f"container {name}: requests {_show(w)} in place" for name, w in
                    changed.items()) or "nothing to resize"
    why += "".join(f"; {k}" for k in kept)
    patch = {"spec": {"containers": [{"name": n, "resources": {"requests": w}}
                                     for n, w in changed.items()]},
             "metadata": {"resourceVersion": pod.meta.resource_version}}
    skip = "; ".join(conflicts) + " (limits are never lowered)" if conflicts else None
    return act(pod.meta, Verb.PATCH, RULE, f"{why} (owner {owner.kind}/{owner.name})", skip,
               patch=patch, patchType="strategic", resource="pod/resize")


def _resizable(container: Container, found: Change) -> tuple[dict[str, str], list[str]]:
    """The recommended requests a resize may change, and why the others stay."""
    wanted, held = {}, []
    for resource in found.recommended:
        if resource in container.restart_on_resize:
            held.append(f"{resource} of container {container.name} left: its resizePolicy "
                        "is RestartContainer")
        elif container.value(f"requests.{resource}") is None:
            held.append(f"{resource} of container {container.name} left: it sets no request "
                        "(adding one would change the pod's QoS class)")
        else:
            wanted[resource] = found.wanted[resource]
    return wanted, held


def _show(quantities: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(quantities.items()))
