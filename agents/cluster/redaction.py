"""What a report may say about an object: its shape, never its secrets.

Report lines travel to log aggregators that see far more people than the
cluster's RBAC lets read a pod spec, so a manifest in a line is redacted:

- every literal ``env[].value`` (a ``DB_PASSWORD`` sits there more often than not);
- the value of any key that names a secret, anywhere in the object: one that
  holds ``password``, ``passwd``, ``token``, ``secret``, ``credential`` or
  ``private`` (case-insensitive), or whose last word is ``key`` (``key``,
  ``signing-key``, ``ssh_key``, ``sshKey``, ``API_KEY``, ``tls.key``);
- annotation values under such keys, and ``last-applied-configuration``, which
  is the whole object again;
- ``--password=…`` style arguments in ``command`` and ``args``, and the word
  after a bare ``--token`` or ``--signing-key`` flag.

Kept, because they name something rather than hold it: the API's own fields
``key`` (a toleration's taint, a selector's label, a key in a ConfigMap or
Secret) and ``topologyKey`` (a label), outside the free-form maps (labels,
annotations, selectors) where users choose the keys; plural ``…Keys`` (lists
of label keys); words that merely end in the letters (``monkey``); and
references (``secretKeyRef``, ``secretName``). Keys under ``kubernetes.io/``
or ``k8s.io/`` get no exemption: nothing stops anyone writing an annotation
there, and a harmless value redacted costs a digest where a leaked key costs
a rotation.

Each redacted value becomes ``redacted:sha256:<12 hex>``: the shape stays, two
lines can still be compared, and nothing can be read back. The complete
manifest is kept in the recycle bin (``recycle_bin.py``), not here.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

_SECRET_WORD = re.compile(r"password|passwd|token|secret|credential|private|api[-_]?key"
                          r"|access[-_]?key", re.IGNORECASE)
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
"""The words of a key: split at punctuation and at camel case (``APIKey``: API, Key)."""
_ARG = re.compile(r"^(-{0,2}([\w.-]+)[=:])(.+)$")
_FLAG = re.compile(r"^-{1,2}([\w.-]+)$")
_WHOLE_OBJECT = "kubectl.kubernetes.io/last-applied-configuration"
_NAME_ONLY = frozenset({"secretKeyRef", "configMapKeyRef", "secretName", "secretRef",
                        "imagePullSecrets", "serviceAccountName"})
"""Keys that name a Secret or a key in one: a reference, not a secret."""
_API_NAMES = frozenset({"key", "topologyKey"})
"""API fields whose value names a taint, a label or a data key: kept outside free-form maps."""
_FREE_FORM = frozenset({"annotations", "labels", "nodeSelector", "matchLabels"})
"""Maps whose keys users choose: there, ``key`` is as suspect as ``signing-key``."""


def secret_named(name: str) -> bool:
    """Whether a key or flag names a secret: a secret word anywhere, or ``key`` last."""
    words = _WORD.findall(name)
    return bool(_SECRET_WORD.search(name)) or (bool(words) and words[-1].lower() == "key")


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
    named = secret_named(key) and (parent in _FREE_FORM or key not in _API_NAMES)
    if parent == "annotations" and (key == _WHOLE_OBJECT or named):
        return digest(value)
    literal_env = key == "value" and parent == "env"
    secret_scalar = named and not isinstance(value, (dict, list))
    if literal_env or secret_scalar:
        return digest(value) if value not in (None, "") else value
    return redact(value, "env" if key == "env" else key)


def _arguments(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if not isinstance(item, str):
            out.append(item)
        elif out and isinstance(out[-1], str) and _secret_flag(out[-1]):
            out.append(digest(item))
        elif (match := _ARG.match(item)) and secret_named(match.group(2)):
            out.append(match.group(1) + digest(match.group(3)))
        else:
            out.append(item)
    return out


def _secret_flag(item: str) -> bool:
    match = _FLAG.match(item)
    return bool(match) and secret_named(match.group(1))
