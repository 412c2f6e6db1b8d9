"""A CRI server on a unix socket that answers the way a test asks, for the port's fault tests.

It serves only what the faults need: ``Version`` (with any API version),
``ListImages`` (answering, sleeping past the client's deadline, or failing
with a given status) and ``PodSandboxStatus`` (not found, after a pause, with
the most calls it held at once recorded). A server started with ``runtime=False`` serves no
RuntimeService at all, as a runtime that only knows another CRI version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from agents.node.cri import api_pb2, api_pb2_grpc


@dataclass
class Behaviour:
    api_version: str = "v1"
    delay: float = 0.0
    """Seconds ListImages sleeps before answering."""
    version_delay: float = 0.0
    """Seconds Version sleeps before answering."""
    failure: tuple[grpc.StatusCode, str] | None = None
    """ListImages aborts with this status and message."""
    calls: list[str] = field(default_factory=list)
    """Every method asked, served or not (``/runtime.v1.RuntimeService/Version``)."""
    status_delay: float = 0.0
    """Seconds PodSandboxStatus holds each call before answering NOT_FOUND."""
    statuses_at_once: int = 0
    """The most PodSandboxStatus calls held at the same moment."""
    workers: int = 4
    """Server threads: calls beyond them queue, unseen by the handlers."""


class _Recorder(grpc.ServerInterceptor):
    """Notes each call's method before gRPC finds (or does not find) its handler."""

    def __init__(self, calls: list[str]):
        self._calls = calls

    def intercept_service(self, continuation, handler_call_details):
        self._calls.append(handler_call_details.method)
        return continuation(handler_call_details)


class _Runtime(api_pb2_grpc.RuntimeServiceServicer):
    def __init__(self, behaviour: Behaviour):
        self._behaviour = behaviour
        self._lock = threading.Lock()
        self._held = 0

    def Version(self, request, context):
        time.sleep(self._behaviour.version_delay)
        return api_pb2.VersionResponse(version="0.1.0", runtime_name="fake-cri",
                                       runtime_version="0.0.1",
                                       runtime_api_version=self._behaviour.api_version)

    def PodSandboxStatus(self, request, context):
        with self._lock:
            self._held += 1
            self._behaviour.statuses_at_once = max(self._behaviour.statuses_at_once, self._held)
        time.sleep(self._behaviour.status_delay)
        with self._lock:
            self._held -= 1
        context.abort(grpc.StatusCode.NOT_FOUND, f"no sandbox {request.pod_sandbox_id}")


class _Images(api_pb2_grpc.ImageServiceServicer):
    def __init__(self, behaviour: Behaviour):
        self._behaviour = behaviour

    def ListImages(self, request, context):
        time.sleep(self._behaviour.delay)
        if self._behaviour.failure:
            context.abort(*self._behaviour.failure)
        return api_pb2.ListImagesResponse(images=[api_pb2.Image(
            id="sha256:" + "a" * 64, repo_tags=["kubekeeper.test/fake:1"], size=1)])


@contextmanager
def serving(socket: Path, behaviour: Behaviour, runtime: bool = True) -> Iterator[grpc.Server]:
    """A started server on ``socket``; stopped (at once) on exit, if the test has not."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=behaviour.workers),
                         interceptors=[_Recorder(behaviour.calls)])
    if runtime:
        api_pb2_grpc.add_RuntimeServiceServicer_to_server(_Runtime(behaviour), server)
    api_pb2_grpc.add_ImageServiceServicer_to_server(_Images(behaviour), server)
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    try:
        yield server
    finally:
        server.stop(grace=None)
