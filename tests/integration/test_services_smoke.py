"""The real services behave as the other integration tests assume."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from kubernetes.client import (
    AppsV1Api,
    BatchV1Api,
    CoreV1Api,
    V1Container,
    V1DeleteOptions,
    V1Deployment,
    V1DeploymentSpec,
    V1LabelSelector,
    V1ObjectMeta,
    V1PodSpec,
    V1PodTemplateSpec,
    V1ReplicaSet,
)

from scripts.localenv import testimages
from scripts.localenv.kube_jobs import FAKE_JOB_CONTROLLER, finish_job, job
from tests.polling import wait_for


def test_container_runs_and_its_output_is_read(docker_client):
    base = testimages.base_image(docker_client)
    output = docker_client.containers.run(
        base.id, ["echo", "hello from busybox"], network_mode="none", remove=True
    )
    assert output == b"hello from busybox\n"


def test_images_built_on_one_base_share_its_layer(docker_client):
    base = testimages.base_image(docker_client)
    first = testimages.layered_image(docker_client, "smoke/first:1", "first")
    second = testimages.layered_image(docker_client, "smoke/second:1", "second")

    base_layers = base.attrs["RootFS"]["Layers"]
    for image in (first, second):
        assert image.attrs["Parent"] == base.id
        assert image.attrs["RootFS"]["Layers"][: len(base_layers)] == base_layers
    assert first.attrs["RootFS"]["Layers"][-1] != second.attrs["RootFS"]["Layers"][-1]


def test_each_pod_template_change_makes_a_replicaset(kube_api, namespace):
    apps = AppsV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, _deployment("web", revision="1"))
    replicasets = _wait_for_replicasets(apps, namespace, 1)
    for revision in ("2", "3"):
        # One change at a time: the controller may skip a template it never saw.
        apps.patch_namespaced_deployment(
            "web",
            namespace,
            {"spec": {"template": {"metadata": {"annotations": {"smoke/revision": revision}}}}},
        )
        replicasets = _wait_for_replicasets(apps, namespace, int(revision))

    for replicaset in replicasets:
        (owner,) = replicaset.metadata.owner_references
        assert (owner.kind, owner.name, owner.controller) == ("Deployment", "web", True)


def test_garbage_collector_removes_the_pod_of_a_deleted_job(kube_api, namespace):
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    batch.create_namespaced_job(namespace, job("real", managed_by=None))
    selector = "batch.kubernetes.io/job-name=real"
    (pod,) = wait_for(
        lambda: core.list_namespaced_pod(namespace, label_selector=selector).items,
        what="the job controller to create the Job's pod",
    )
    assert pod.status.phase == "Pending"

    batch.delete_namespaced_job(
        "real", namespace, body=V1DeleteOptions(propagation_policy="Background")
    )
    wait_for(
        lambda: not core.list_namespaced_pod(namespace, label_selector=selector).items,
        what="the garbage collector to delete the pod of the deleted Job",
    )


def test_job_managed_elsewhere_keeps_the_status_a_test_writes(kube_api, namespace):
    batch, core = BatchV1Api(kube_api), CoreV1Api(kube_api)
    batch.create_namespaced_job(namespace, job("fake"))
    finished = datetime.now(UTC).replace(microsecond=0)

    finish_job(
        batch,
        namespace,
        "fake",
        succeeded=True,
        started=finished - timedelta(minutes=1),
        finished=finished,
    )

    # The real job controller would act within this time; it must not.
    time.sleep(2)
    stored = batch.read_namespaced_job("fake", namespace)
    assert stored.spec.managed_by == FAKE_JOB_CONTROLLER
    assert {c.type: c.status for c in stored.status.conditions} == {
        "SuccessCriteriaMet": "True",
        "Complete": "True",
    }
    assert stored.status.completion_time == finished
    assert stored.status.succeeded == 1
    assert not core.list_namespaced_pod(namespace).items


def _deployment(name: str, revision: str) -> V1Deployment:
    labels = {"app": name}
    return V1Deployment(
        metadata=V1ObjectMeta(name=name),
        spec=V1DeploymentSpec(
            replicas=1,
            selector=V1LabelSelector(match_labels=labels),
            template=V1PodTemplateSpec(
                metadata=V1ObjectMeta(labels=labels, annotations={"smoke/revision": revision}),
                spec=V1PodSpec(containers=[V1Container(name="main", image="busybox")]),
            ),
        ),
    )


def _wait_for_replicasets(apps: AppsV1Api, namespace: str, count: int) -> list[V1ReplicaSet]:
    def found() -> list[V1ReplicaSet] | None:
        replicasets = apps.list_namespaced_replica_set(namespace).items
        return replicasets if len(replicasets) == count else None

    return wait_for(found, what=f"{count} ReplicaSet(s) made by the deployment controller")
