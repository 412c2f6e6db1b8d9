"""Compose policy text into YAML nodes that are plain data, and say where they are not.

A policy is a small tree of strings, numbers, booleans, lists and mappings.
Everything else YAML can express is refused here, before any value is built,
so nothing in the file can run code, expand without bound or hide a value:

- tags (``!foo``, ``!!python/...``, ``!!timestamp``): a policy names no types;
- anchors, aliases and merge keys (``&a``, ``*a``, ``<<``): one value, one place,
  and no alias bomb;
- keys that are lists or mappings, and a key written twice in any mapping;
- nesting deeper than ``MAX_DEPTH`` and more than ``MAX_NODES`` values, which
  bound the time and memory a file can cost whatever its content.

Each problem is a ``Problem`` located by the YAML mark and key path; the
tree is still built around it (the offending part left out), so the loader
can report every problem in the file at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from agents.units import shorten

MAX_DEPTH = 64
MAX_NODES = 10_000
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_TOO_MANY = (f"the file holds more than {MAX_NODES} keys and values; "
             "a policy needs a few hundred")


@dataclass(frozen=True)
class Problem:
    """Why part of the file is not plain data, and where."""

    mark: yaml.Mark
    path: str
    message: str


class TooLarge(Exception):
    """The file holds more values than any policy needs; composing stopped."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


def compose(text: str) -> tuple[Node | None, list[Problem]]:
    """The single document in ``text`` (None if empty) and every problem found.

    Raises ``yaml.YAMLError`` for text that is not YAML and ``TooLarge`` past
    ``MAX_NODES``; libyaml's parser is used when present, for speed.
    """
    composer = _Composer(_parser(text))
    return composer.document(), composer.problems


def join(path: str, key: str) -> str:
    """The key path of ``key`` inside ``path`` (``a.b``, ``a[0]``), the key shortened."""
    if key.startswith("["):
        return f"{path}{key}"
    return f"{path}.{shorten(key)}" if path else shorten(key)


def _parser(text: str) -> Any:
    try:
        from yaml.cyaml import CParser
    except ImportError:  # PyYAML built without libyaml
        return yaml.SafeLoader(text)
    return CParser(text)


class _Composer:
    """PyYAML's composer, rewritten to refuse what is not plain data instead of building it."""

    def __init__(self, events: Any):
        self._events = events
        self._resolver = Resolver()
        self._count = 0
        self.problems: list[Problem] = []

    def document(self) -> Node | None:
        self._events.get_event()  # StreamStart
        if self._events.check_event(StreamEndEvent):
            return None
        self._events.get_event()  # DocumentStart
        root = self._node("", 0)
        self._events.get_event()  # DocumentEnd
        if self._events.check_event(DocumentStartEvent):
            mark = self._events.peek_event().start_mark
            self.problems.append(Problem(mark, "", "a policy is one YAML document; remove "
                                         "the second one (after ---)"))
        return root

    def _node(self, path: str, depth: int) -> Node:
        event = self._events.peek_event()
        self._count += 1
        if self._count > MAX_NODES:
            raise TooLarge(Problem(event.start_mark, shorten(path, 100), _TOO_MANY))
        if isinstance(event, AliasEvent):
            self._events.get_event()
            self._problem(event, path, f"aliases (*{shorten(event.anchor)}) are not allowed; "
                          "write the value out")
            return ScalarNode(_NULL, "", event.start_mark, event.end_mark)
        self._check_properties(event, path)
        if isinstance(event, CollectionStartEvent) and depth >= MAX_DEPTH:
            self._problem(event, path, f"nests deeper than {MAX_DEPTH} levels")
            self._skip_collection()
            return ScalarNode(_NULL, "", event.start_mark, event.end_mark)
        if isinstance(event, ScalarEvent):
            return self._scalar()
        if isinstance(event, MappingStartEvent):
            return self._mapping(path, depth)
        return self._sequence(path, depth)

    def _check_properties(self, event: Any, path: str) -> None:
        if event.anchor is not None:
            self._problem(event, path, f"anchors (&{shorten(event.anchor)}) are not allowed; "
                          "write each value out")
        if event.tag is not None:
            tag = event.tag.replace("tag:yaml.org,2002:", "!!", 1)
            self._problem(event, path, f"tags ({shorten(tag)}) are not allowed; "
                          "a policy holds plain strings, numbers, lists and mappings")

    def _scalar(self) -> ScalarNode:
        event = self._events.get_event()
        plain = event.style in (None, "")
        tag = self._resolver.resolve(ScalarNode, event.value, (plain, not plain))
        return ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)

    def _sequence(self, path: str, depth: int) -> SequenceNode:
        start = self._events.get_event()
        node = SequenceNode(self._resolver.resolve(SequenceNode, None, (True, False)), [],
                            start.start_mark, None, flow_style=start.flow_style)
        while not self._events.check_event(SequenceEndEvent):
            node.value.append(self._node(join(path, f"[{len(node.value)}]"), depth + 1))
        node.end_mark = self._events.get_event().end_mark
        return node

    def _mapping(self, path: str, depth: int) -> MappingNode:
        start = self._events.get_event()
        node = MappingNode(self._resolver.resolve(MappingNode, None, (True, False)), [],
                           start.start_mark, None, flow_style=start.flow_style)
        seen: set[str] = set()
        while not self._events.check_event(MappingEndEvent):
            key = self._node(join(path, "[key]"), depth + 1)
            name = key.value if isinstance(key, ScalarNode) else None
            where = join(path, name) if name is not None else path
            value = self._node(where, depth + 1)
            if name is None:
                self._problem(key, path or "(top level)",
                              "a key must be a plain string, not a list or mapping")
            elif key.tag == _MERGE:
                self._problem(key, where, "merge keys (<<) are not allowed; write each key out")
            elif name in seen:
                self._problem(key, where, "is given twice")
            else:
                seen.add(name)
                node.value.append((key, value))
        node.end_mark = self._events.get_event().end_mark
        return node

    def _skip_collection(self) -> None:
        """Consume a collection's events unbuilt (each still counts against ``MAX_NODES``)."""
        level = 0
        while True:
            event = self._events.get_event()
            self._count += 1
            if self._count > MAX_NODES:
                raise TooLarge(Problem(event.start_mark, "", _TOO_MANY))
            if isinstance(event, CollectionStartEvent):
                level += 1
            elif isinstance(event, SequenceEndEvent | MappingEndEvent):
                level -= 1
                if level == 0:
                    return

    def _problem(self, where: Any, path: str, message: str) -> None:
        self.problems.append(Problem(where.start_mark, shorten(path, 100), message))
