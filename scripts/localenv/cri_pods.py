"""Pod sandboxes and containers made through the CRI itself, as the kubelet makes them.

Sandboxes share the node's network namespace (hostNetwork), so no CNI is
needed. Sandboxes and containers carry the kubelet's labels
(``io.kubernetes.pod.*``, ``io.kubernetes.container.name``), so the agent sees
what it meets on a real node. `reset` empties a runtime between tests, the
pinned sandbox image excepted.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc

from agents.node.cri import api_pb2, api_pb2_grpc

_HOST_NETWORK = api_pb2.NamespaceOption(network=api_pb2.NODE)
_TIMEOUT = 60.0


@dataclass(frozen=True)
class Pod:
    """A sandbox as created: its id and the config its containers must be created with."""

    id: str
    config: api_pb2.PodSandboxConfig

    @property
    def uid(self) -> str:
        return self.config.metadata.uid


class CriClient:
    """The RuntimeService and ImageService stubs on one channel, with test-sized helpers."""

    def __init__(self, endpoint: str, log_root: Path):
        self._channel = grpc.insecure_channel(endpoint)
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self._channel)
        self.images = api_pb2_grpc.ImageServiceStub(self._channel)
        self._log_root = log_root

    def close(self) -> None:
        self._channel.close()

    def run_pod(self, name: str, namespace: str = "default") -> Pod:
        """A ready hostNetwork sandbox, as the kubelet runs one for a new pod."""
        uid = str(uuid.uuid4())
        labels = {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace,
                  "io.kubernetes.pod.uid": uid}
        log_dir = self._log_root / f"{namespace}_{name}_{uid}"
        log_dir.mkdir(parents=True, exist_ok=True)
        config = api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name=name, namespace=namespace, uid=uid),
            log_directory=str(log_dir), labels=labels,
            linux=api_pb2.LinuxPodSandboxConfig(
                security_context=api_pb2.LinuxSandboxSecurityContext(
                    namespace_options=_HOST_NETWORK)))
        answer = self.runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config),
                                            timeout=_TIMEOUT)
        return Pod(answer.pod_sandbox_id, config)

    def create_container(self, pod: Pod, name: str, image: str, command: list[str],
                         attempt: int = 0) -> str:
        """A created (not started) container of `image` in `pod`; its id."""
        labels = {**pod.config.labels, "io.kubernetes.container.name": name}
        config = api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name=name, attempt=attempt),
            image=api_pb2.ImageSpec(image=image), command=command, labels=labels,
            log_path=f"{name}/{attempt}.log",
            linux=api_pb2.LinuxContainerConfig(
                security_context=api_pb2.LinuxContainerSecurityContext(
                    namespace_options=_HOST_NETWORK)))
        answer = self.runtime.CreateContainer(api_pb2.CreateContainerRequest(
            pod_sandbox_id=pod.id, config=config, sandbox_config=pod.config), timeout=_TIMEOUT)
        return answer.container_id

    def running_container(self, pod: Pod, name: str, image: str) -> str:
        """A started container that sleeps, so its image is in use."""
        container_id = self.create_container(pod, name, image, ["sleep", "86400"])
        self.runtime.StartContainer(api_pb2.StartContainerRequest(container_id=container_id),
                                    timeout=_TIMEOUT)
        return container_id

    def exited_container(self, pod: Pod, name: str, image: str, attempt: int = 0) -> str:
        """A container that ran `true` and exited 0."""
        container_id = self.create_container(pod, name, image, ["true"], attempt)
        self.runtime.StartContainer(api_pb2.StartContainerRequest(container_id=container_id),
                                    timeout=_TIMEOUT)
        self.wait_exited(container_id)
        return container_id

    def wait_exited(self, container_id: str, timeout: float = _TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while self.container_state(container_id) != api_pb2.CONTAINER_EXITED:
            if time.monotonic() > deadline:
                raise AssertionError(f"container {container_id} did not exit in {timeout:.0f}s")
            time.sleep(0.1)

    def container_state(self, container_id: str) -> int:
        return self.runtime.ContainerStatus(
            api_pb2.ContainerStatusRequest(container_id=container_id), timeout=_TIMEOUT
        ).status.state

    def image_ids(self) -> set[str]:
        return {i.id for i in self.images.ListImages(api_pb2.ListImagesRequest(),
                                                     timeout=_TIMEOUT).images}

    def reset(self) -> None:
        """Remove every sandbox (and so its containers), stray container and unpinned image."""
        for sandbox in self.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(),
                                                   timeout=_TIMEOUT).items:
            self.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox.id),
                                        timeout=_TIMEOUT)
            self.runtime.RemovePodSandbox(
                api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox.id), timeout=_TIMEOUT)
        for container in self.runtime.ListContainers(api_pb2.ListContainersRequest(),
                                                     timeout=_TIMEOUT).containers:
            self.runtime.RemoveContainer(
                api_pb2.RemoveContainerRequest(container_id=container.id), timeout=_TIMEOUT)
        for image in self.images.ListImages(api_pb2.ListImagesRequest(),
                                            timeout=_TIMEOUT).images:
            if not image.pinned:
                self.images.RemoveImage(api_pb2.RemoveImageRequest(
                    image=api_pb2.ImageSpec(image=image.id)), timeout=_TIMEOUT)
