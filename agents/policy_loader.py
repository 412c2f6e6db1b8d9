"""Load policies.yaml into a frozen ``Policy``, reporting every problem at once.

The file is read only if it is a regular file of at most 1 MiB, then composed
into YAML nodes (``agents.policy_yaml``, which refuses what is not plain data)
so each error can name the line and column the admin must fix.  Validation
walks the node tree against the dataclass declarations in ``agents.policy``;
nothing is applied unless the whole file is valid, so a bad edit never
half-changes behaviour.  Whatever the file holds, the outcome is a ``Policy``
or ``PolicyInvalid`` (at most ``MAX_ERRORS`` problems listed), in bounded time
and memory.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agents import checks, policy_yaml
from agents.policy import OVERRIDABLE, ClusterPolicy, Override, Policy, merge
from agents.units import shorten


@dataclass(frozen=True)
class PolicyError:
    """One problem, located as ``file:line:col: key.path: message``."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class PolicyInvalid(Exception):
    """The policy file cannot be used; ``errors`` lists every problem found."""

    def __init__(self, errors: list[PolicyError]):
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


MAX_FILE_BYTES = 1 << 20
MAX_ERRORS = 50


def load_policy(path: str | Path) -> Policy:
    """Read, validate and freeze the policy at ``path``; raise ``PolicyInvalid``."""
    name = str(path)
    try:
        data = _read_bounded(path)
    except FileNotFoundError:
        raise PolicyInvalid([PolicyError(name, 0, 0, "", "file not found")]) from None
    except _NotAPolicyFile as exc:
        raise PolicyInvalid([PolicyError(name, 0, 0, "", str(exc))]) from None
    except OSError as exc:
        raise PolicyInvalid([PolicyError(name, 0, 0, "", f"cannot read: {exc}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise PolicyInvalid([PolicyError(name, line, column, "", "not UTF-8 text")]) from None
    return parse_policy(text, name)


class _NotAPolicyFile(Exception):
    """The path is readable but cannot be a policy: a FIFO, a device, a directory, too big."""


def _read_bounded(path: str | Path) -> bytes:
    """The file's bytes, if it is a regular file (links followed) of at most 1 MiB.

    A FIFO, a device such as /dev/zero or a directory is refused before it is
    read, and the file is opened without blocking, so nothing here can hang or
    fill memory.  A ConfigMap mount (a chain of symlinks) is a regular file.
    """
    _check_regular(os.stat(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _check_regular(os.fstat(fd))  # the path may have been swapped since the stat
        chunks, size = [], 0
        while size <= MAX_FILE_BYTES and (chunk := os.read(fd, MAX_FILE_BYTES + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        raise _NotAPolicyFile(_TOO_BIG)
    return b"".join(chunks)


_TOO_BIG = f"is larger than {MAX_FILE_BYTES // 1024} KiB; a policy is a few KB"


def _check_regular(info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise _NotAPolicyFile("is a directory, not a policy file")
    if not stat.S_ISREG(info.st_mode):
        raise _NotAPolicyFile("is not a regular file (a FIFO, socket or device is refused)")
    if info.st_size > MAX_FILE_BYTES:
        raise _NotAPolicyFile(_TOO_BIG)


def parse_policy(text: str, name: str = "policies.yaml") -> Policy:
    """Validate policy text; every error is collected before raising."""
    root, problems = _compose(text, name)
    if root is None:
        raise PolicyInvalid([PolicyError(name, 0, 0, "", "the file is empty; start from the "
                                         "shipped policies.yaml")])
    walker = _Walker(name)
    for problem in problems:
        walker.error_at(problem.mark, problem.path, problem.message)
    values = walker.mapping(root, Policy, "")
    if "apiVersion" not in values and not walker.errors:
        walker.error(root, "apiVersion", "is required (write apiVersion: kubekeeper/v1)")
    overrides = walker.overrides(values.pop("overrides", None))
    policy = merge(Policy(), values)
    _check_consistency(policy, walker)
    if walker.errors:
        raise PolicyInvalid(_bounded(sorted(walker.errors, key=lambda e: (e.line, e.column))))
    return dataclasses.replace(policy, overrides=tuple(overrides), source=name)


def _compose(text: str, name: str) -> tuple[yaml.Node | None, list[policy_yaml.Problem]]:
    """The YAML node tree, or ``PolicyInvalid`` when the text is not YAML or is too big."""
    try:
        return policy_yaml.compose(text)
    except policy_yaml.TooLarge as exc:
        mark = exc.problem.mark
        raise PolicyInvalid([PolicyError(name, mark.line + 1, mark.column + 1,
                                         exc.problem.path, exc.problem.message)]) from None
    except yaml.YAMLError as exc:
        line, col = _location(exc, text)
        problem = getattr(exc, "problem", None) or str(exc)
        if isinstance(exc, yaml.reader.ReaderError):
            problem = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        error = PolicyError(name, line, col, "", f"not valid YAML: {problem}")
        raise PolicyInvalid([error]) from None


def _location(exc: yaml.YAMLError, text: str) -> tuple[int, int]:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return mark.line + 1, mark.column + 1
    position = getattr(exc, "position", None)  # a ReaderError: a character YAML refuses
    if position is None:
        return 0, 0
    return text.count("\n", 0, position) + 1, position - (text.rfind("\n", 0, position) + 1) + 1


def _bounded(found: list[PolicyError]) -> list[PolicyError]:
    """At most ``MAX_ERRORS`` problems, then one line saying how many more there are."""
    if len(found) <= MAX_ERRORS:
        return found
    rest = PolicyError(found[0].file, 0, 0, "",
                       f"and {len(found) - MAX_ERRORS} more problems, not shown")
    return [*found[:MAX_ERRORS], rest]


class _Walker:
    """Validates YAML nodes against the policy dataclasses, collecting errors."""

    def __init__(self, name: str):
        self.name = name
        self.errors: list[PolicyError] = []
        self.marks: dict[str, yaml.Node] = {}
        self._constructor = yaml.SafeLoader("")

    def error(self, node: yaml.Node, path: str, message: str) -> None:
        self.error_at(node.start_mark, path, message)

    def error_at(self, mark: yaml.Mark, path: str, message: str) -> None:
        self.errors.append(PolicyError(self.name, mark.line + 1, mark.column + 1, path, message))

    def mapping(self, node: yaml.Node, cls: type, path: str) -> dict[str, Any]:
        """Check a mapping node against a dataclass; return only the keys written."""
        self.marks[path] = node
        if not isinstance(node, yaml.MappingNode):
            self.error(node, path or "(top level)", f"expected a mapping, got {self._kind(node)}")
            return {}
        declared = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "source"}
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:  # keys are unique strings (policy_yaml)
            key = key_node.value
            where = policy_yaml.join(path, key)
            if key not in declared:
                self.error(key_node, where, f"unknown key{checks.suggestion(key, declared)}")
            else:
                value = self.value(value_node, declared[key], where)
                if value is not _INVALID:
                    out[key] = value
        return out

    def value(self, node: yaml.Node, f: dataclasses.Field, path: str) -> Any:
        self.marks[path] = node
        if f.name == "overrides":
            return node
        nested = f.default_factory() if callable(f.default_factory) else f.default
        if dataclasses.is_dataclass(nested) and "check" not in f.metadata:
            return self.mapping(node, type(nested), path)
        try:
            return f.metadata["check"](self._plain(node))
        except ValueError as exc:
            self.error(node, path, str(exc))
            return _INVALID

    def overrides(self, node: yaml.Node | None) -> list[Override]:
        if node is None:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, "overrides", f"expected a list, got {self._kind(node)}")
            return []
        return [o for i, item in enumerate(node.value) if (o := self._override(item, i))]

    def _override(self, node: yaml.Node, index: int) -> Override | None:
        path = f"overrides[{index}]"
        if not isinstance(node, yaml.MappingNode):
            self.error(node, path, f"expected a mapping, got {self._kind(node)}")
            return None
        known = {"namespaces", *OVERRIDABLE}
        changes: dict[str, Any] = {}
        namespaces: tuple[str, ...] | None = None
        for key_node, value_node in node.value:
            key, where = key_node.value, policy_yaml.join(path, key_node.value)
            if key not in known:
                self.error(key_node, where, f"unknown key (an override sets namespaces and any of "
                           f"{', '.join(OVERRIDABLE)}){checks.suggestion(key, known)}")
            elif key == "namespaces":
                namespaces = self._override_namespaces(value_node, where)
            else:
                field = {f.name: f for f in dataclasses.fields(ClusterPolicy)}[key]
                changes[key] = self.value(value_node, field, where)
        if namespaces is None:
            self.error(node, f"{path}.namespaces",
                       "is required (the globs this override applies to)")
            return None
        return Override(namespaces, changes)

    def _override_namespaces(self, node: yaml.Node, path: str) -> tuple[str, ...]:
        try:
            globs = checks.globs(self._plain(node))
        except ValueError as exc:
            self.error(node, path, str(exc))
            return ()
        if not globs:
            self.error(node, path, "is empty; list at least one namespace glob")
        return globs

    def _plain(self, node: yaml.Node) -> Any:
        """The node as Python data; a scalar YAML cannot build (a bad date) is a ValueError."""
        try:
            return self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as exc:
            shown = shorten(str(getattr(exc, "problem", None) or exc))
            raise ValueError(f"cannot be read: {shown}") from None

    @staticmethod
    def _kind(node: yaml.Node) -> str:
        if isinstance(node, yaml.ScalarNode):
            return f"the scalar {shorten(node.value)!r}" if node.value else "nothing"
        return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"


_INVALID = object()


def _check_consistency(policy: Policy, walker: _Walker) -> None:
    """Rules between settings, checked once every value is known to be well-formed."""
    pressure = policy.node.images.diskPressure
    if pressure.lowPercent >= pressure.highPercent:
        path = "node.images.diskPressure.lowPercent"
        node = walker.marks.get(path) or walker.marks.get("node.images.diskPressure") \
            or walker.marks[""]
        walker.error(node, path, f"{pressure.lowPercent:g} must be below highPercent "
                     f"({pressure.highPercent:g}); eviction stops at lowPercent")
