"""Cluster-wide lists against the real API server, where pagination can go wrong."""

from __future__ import annotations

from kubernetes.client import ApiClient, CoreV1Api, V1LimitRange, V1ObjectMeta
from loguru import logger

from agents.cluster.api import KubeApi
from agents.cluster.resources import RESOURCES
from scripts.localenv.controlplane import ControlPlane


def test_a_list_whose_continue_token_expired_goes_on_from_a_newer_snapshot(
        control_plane: ControlPlane, kube_api: ApiClient, namespace: str) -> None:
    core = CoreV1Api(kube_api)

    def create(name: str) -> None:
        core.create_namespaced_limit_range(namespace, V1LimitRange(
            metadata=V1ObjectMeta(name=name), spec={"limits": [{"type": "Container"}]}))

    for name in ("lr-0", "lr-1", "lr-2"):
        create(name)
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        pages = KubeApi(kube_api).list_all(RESOURCES["limitrange"], page_size=1)
        seen = [next(pages)]
        create("lr-3")
        control_plane.compact_etcd()
        seen += list(pages)
    finally:
        logger.remove(sink)
    mine = [o["metadata"]["name"] for o in seen if o["metadata"]["namespace"] == namespace]
    assert mine == ["lr-0", "lr-1", "lr-2", "lr-3"]
    assert warnings == ["list limitranges: continue token expired (410); "
                        "going on from a newer snapshot"]
