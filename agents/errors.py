"""Failures that end a run before it can act, each mapped to an exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED_ACTIONS = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_UNSUPPORTED = 4


class Unreachable(Exception):
    """The Docker daemon or the API server did not answer; names the endpoint tried."""

    def __init__(self, service: str, endpoint: str, cause: object):
        super().__init__(f"cannot reach {service} at {endpoint}: {cause}")
        self.service, self.endpoint = service, endpoint


class UnsupportedRuntime(Exception):
    """The runtime named answers, but not as a CRI v1 runtime (exit 4): nothing was changed."""

    def __init__(self, service: str, endpoint: str, cause: object):
        super().__init__(f"{service} at {endpoint} is not a CRI v1 runtime, nothing was "
                         f"changed: {cause}")
        self.service, self.endpoint = service, endpoint


class BadOption(Exception):
    """A command-line value that cannot be used, found when it is first tried (exit 2)."""


def exit_code(summaries: list[dict]) -> int:
    """1 when any run failed an action or was aborted by the cap, else 0."""
    if any(s["errors"] or s["aborted"] for s in summaries):
        return EXIT_FAILED_ACTIONS
    return EXIT_OK
