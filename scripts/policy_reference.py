"""Print the README's policy reference table from the policy declarations.

The README embeds this output between markers; tests/unit/test_readme.py fails
when the two differ, so the reference cannot fall behind the code.
Usage: python -m scripts.policy_reference
"""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from typing import Any

from agents.policy import Policy


def rows(obj: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key path, default as written, meaning and range) for every setting, in file order."""
    out = []
    for f in fields(obj):
        if not f.compare or f.name == "overrides":
            continue
        value, path = getattr(obj, f.name), f"{prefix}{f.name}"
        if is_dataclass(value) and "check" not in f.metadata:
            out.extend(rows(value, f"{path}."))
            continue
        render = f.metadata.get("render")
        shown = render(value) if render else value
        if isinstance(shown, tuple | list):
            shown = list(shown)
        elif hasattr(shown, "items"):
            shown = dict(shown)
        bounds = getattr(f.metadata["check"], "bounds", None)
        doc = f"{f.metadata['doc']} Range: {bounds}." if bounds else f.metadata["doc"]
        out.append((path, json.dumps(shown) if not isinstance(shown, str) else shown, doc))
    return out


def table() -> str:
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{key}` | `{default}` | {doc} |" for key, default, doc in rows(Policy())]
    lines.append("| `overrides` | `[]` | Per-namespace changes to `cluster.resourceRequests`, "
                 "`cluster.revisionHistory`, `cluster.completedJobs`: a list of "
                 "`{namespaces: [globs], <section>: {...}}`; later entries win, mappings merge, "
                 "lists replace. |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
