"""Parsing of the small value languages used in policies.yaml.

Every parser raises ``ValueError`` with a message written for the admin who
typed the value, so the policy loader can put it after file:line:col verbatim.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIXES = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?\d+|[A-Za-z]{0,2})$")


def parse_duration(text: object) -> timedelta:
    """Parse ``90s``, ``30m``, ``36h``, ``7d``, ``2w`` or a sum like ``1h30m``.

    Bare numbers are rejected on purpose: ``olderThan: 7`` is ambiguous and an
    admin who meant days would otherwise delete after seven seconds.
    """
    hint = "write e.g. 7d, 36h, 90m"
    if not isinstance(text, str) or not text:
        raise ValueError(f"{_show(text)} is not a duration ({hint})")
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{_show(text)} is not a duration ({hint})")
    return timedelta(seconds=sum(int(n) * _DURATION_UNITS[u] for n, u in parts))


def format_duration(delta: timedelta) -> str:
    """Render a duration exactly, the way the policy writes it (``1d12h``, ``90s``)."""
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def format_age(delta: timedelta) -> str:
    """Render an age coarsely (largest unit, rounded down) for report reasons: ``9d``."""
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_quantity(text: object) -> Decimal:
    """Parse a Kubernetes quantity (``100m``, ``128Mi``, ``1G``, ``1e3``) to a number."""
    hint = "write a Kubernetes quantity, e.g. 100Mi, 1G, 500m"
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise ValueError(f"{_show(text)} is not a quantity ({hint})")
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ValueError(f"{_show(text)} is not a quantity ({hint})")
    number, suffix = match.groups()
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"{_show(text)} is not a quantity ({hint})") from None
    if suffix in _BINARY_SUFFIXES:
        return value * _BINARY_SUFFIXES[suffix]
    if suffix in _DECIMAL_SUFFIXES:
        return value * _DECIMAL_SUFFIXES[suffix]
    if suffix[:1] in "eE" and suffix[1:].lstrip("+-").isdigit():
        return value * (Decimal(10) ** int(suffix[1:]))
    raise ValueError(f"{_show(text)} is not a quantity: unknown suffix {suffix!r} ({hint})")


def parse_size(text: object) -> int:
    """Parse a byte size written as a quantity; fractions of a byte round up."""
    value = parse_quantity(text)
    if value < 0:
        raise ValueError(f"{_show(text)} is negative; a size must be 0 or more")
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def format_bytes(count: int | None) -> str:
    """Human-readable binary size for text reports (``1.5Gi``)."""
    if count is None:
        return "?"
    size = float(count)
    for unit in ("", "Ki", "Mi", "Gi", "Ti"):
        if abs(size) < 1024 or unit == "Ti":
            return f"{size:.0f}{unit or 'B'}" if unit == "" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{count}B"


def parse_percent(value: object) -> float:
    """Accept a number from 0 to 100 (a trailing ``%`` is tolerated)."""
    if isinstance(value, str) and value.endswith("%"):
        value = value[:-1]
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{_show(value)} is not a percentage (a number from 0 to 100)") from None
    if isinstance(value, bool) or not 0 <= number <= 100:
        raise ValueError(f"{_show(value)} is not a percentage (a number from 0 to 100)")
    return number


def check_glob(pattern: object) -> str:
    """Validate an fnmatch glob; an unclosed ``[`` would silently match literally."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"{_show(pattern)} is not a glob (a non-empty string like 'batch-*')")
    depth = 0
    for char in pattern:
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
    if depth:
        raise ValueError(f"{_show(pattern)} is not a valid glob: '[' is never closed")
    return pattern


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)
