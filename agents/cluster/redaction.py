"""What a report may say about an object: its shape, never its secrets.

Report lines travel to log aggregators that see far more people than the
cluster's RBAC lets read a pod spec, so a manifest in a line is redacted:

- every literal ``env[].value`` (a ``DB_PASSWORD`` sits there more often than not);
- the value of any key that names a secret (``password``, ``token``,
  ``secret``, ``credential``, ``private``, ``apiKey``, ``accessKey``,
  case-insensitive, anywhere in the object);
- annotation values under such keys, and ``last-applied-configuration``, which
  is the whole object again;
- ``--password=…`` style arguments in ``command`` and ``args``, and the word
  after a bare ``--token`` flag.

Each redacted value becomes ``redacted:sha256:<12 hex>``: the shape stays, two
lines can still be compared, and nothing can be read back. The complete
manifest is kept in the recycle bin (``recycle_bin.py``), not here.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

_WORDS = r"(password|passwd|token|secret|credential|private|api[-_]?key|access[-_]?key)"
_SECRET_KEY = re.compile(_WORDS, re.IGNORECASE)
_SECRET_ARG = re.compile(rf"^(-{{0,2}}[\w.-]*{_WORDS}[\w.-]*[=:])(.+)$", re.IGNORECASE)
_SECRET_FLAG = re.compile(rf"^-{{1,2}}[\w.-]*{_WORDS}[\w.-]*$", re.IGNORECASE)
_WHOLE_OBJECT = "kubectl.kubernetes.io/last-applied-configuration"
_NAME_ONLY = frozenset({"secretKeyRef", "configMapKeyRef", "secretName", "secretRef",
                        "imagePullSecrets", "serviceAccountName"})
"""Keys that name a Secret or a key in one: a reference, not a secret."""


def digest(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return f"redacted:sha256:{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def redacted_manifest(text: str) -> str:
    """The compact JSON of ``text`` with every secret-looking value replaced."""
    return json.dumps(redact(json.loads(text)), separators=(",", ":"))


def redact(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _field(k, v, key) for k, v in value.items()}
    if isinstance(value, list):
        if key in ("command", "args"):
            return _arguments(value)
        return [redact(item, key) for item in value]
    return value


def _field(key: str, value: Any, parent: str) -> Any:
    if key in _NAME_ONLY:
        return value
    if parent == "annotations" and (key == _WHOLE_OBJECT or _SECRET_KEY.search(key)):
        return digest(value)
    literal_env = key == "value" and parent == "env"
    secret_scalar = bool(_SECRET_KEY.search(key)) and not isinstance(value, (dict, list))
    if literal_env or secret_scalar:
        return digest(value) if value not in (None, "") else value
    return redact(value, "env" if key == "env" else key)


def _arguments(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if not isinstance(item, str):
            out.append(item)
        elif out and isinstance(out[-1], str) and _SECRET_FLAG.match(out[-1]):
            out.append(digest(item))
        elif match := _SECRET_ARG.match(item):
            out.append(match.group(1) + digest(match.group(match.lastindex or 0)))
        else:
            out.append(item)
    return out
