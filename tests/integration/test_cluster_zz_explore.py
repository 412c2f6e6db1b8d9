import logging
from datetime import UTC, datetime, timedelta
from kubernetes.client import BatchV1Api
from agents.cluster.api import KubeApi
from agents.cluster.resources import RESOURCES
from tests.kube_jobs import job, finish_job


def test_explore(kube_api, namespace):
    api = KubeApi(kube_api)
    batch = BatchV1Api(kube_api)
    batch.create_namespaced_job(namespace, job("j1"))
    raw = api.get(RESOURCES["job"], namespace, "j1")
    print("GOT", raw["metadata"]["name"])
    logging.basicConfig(level=logging.DEBUG)
    rv = raw["metadata"]["resourceVersion"]
    print("DRY", api.delete(RESOURCES["job"], namespace, "j1", {"uid": raw["metadata"]["uid"], "resourceVersion": rv}, dry_run=True))
    print("AFTER", api.get(RESOURCES["job"], namespace, "j1")["metadata"].get("deletionTimestamp"))
