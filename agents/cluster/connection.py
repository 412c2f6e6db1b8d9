"""Finding the API server: in-cluster configuration in a pod, a kubeconfig elsewhere."""

from __future__ import annotations

import os

import kubernetes.config
from kubernetes.client import ApiClient, Configuration

from agents.cluster.api import KubeApi
from agents.errors import Unreachable
from agents.policy import ClusterPolicy

SERVICE = "Kubernetes API"


def connect(kubeconfig: str | None, context: str | None, policy: ClusterPolicy,
            in_cluster: bool = True) -> KubeApi:
    """A paced, counted API port; raises ``Unreachable`` when no configuration loads.

    ``--kubeconfig`` wins; without it a pod (``KUBERNETES_SERVICE_HOST`` set)
    uses its service account, and anything else reads ``$KUBECONFIG`` or
    ``~/.kube/config``. urllib3's own retries are turned off so that every
    request that reaches the wire goes through our counter and our backoff.
    Without ``in_cluster`` (``restore``) a pod's service account is never used.
    """
    configuration = Configuration()
    in_cluster = (in_cluster and kubeconfig is None
                  and bool(os.environ.get("KUBERNETES_SERVICE_HOST")))
    source = "in-cluster configuration" if in_cluster else _kubeconfig_path(kubeconfig)
    try:
        if in_cluster:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(config_file=source, context=context,
                                               client_configuration=configuration)
    except (kubernetes.config.ConfigException, OSError, ValueError) as exc:
        raise Unreachable(SERVICE, source, f"cannot load the configuration: {exc}") from exc
    configuration.retries = False
    configuration.connection_pool_maxsize = policy.concurrency + 2
    return KubeApi(ApiClient(configuration), qps=policy.apiQPS,
                   unreachable_after=policy.unreachableAfter.total_seconds())


def _kubeconfig_path(kubeconfig: str | None) -> str:
    return (kubeconfig or os.environ.get("KUBECONFIG")
            or os.path.expanduser("~/.kube/config"))
