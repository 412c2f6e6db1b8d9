"""Parsing of the small value languages used in policies.yaml.

Every parser raises ``ValueError`` with a message written for the admin who
typed the value, so the policy loader can put it after file:line:col verbatim.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

_DURATION_PART = re.compile(r"([0-9]+)([smhdw])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = timedelta(days=3650)
MAX_QUANTITY = Decimal(2**63 - 1)
"""Kubernetes' own limit (int64); every quantity and size is at most this."""
_MAX_TEXT = 40

_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIXES = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"([+-]?[0-9.]+)([eE][+-]?[0-9]+|[A-Za-z]{0,2})")
_EXPONENT = re.compile(r"[eE][+-]?[0-9]+")
_PERCENT = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


def parse_duration(text: object) -> timedelta:
    """Parse ``90s``, ``30m``, ``36h``, ``7d``, ``2w`` or a sum like ``1h30m``.

    Bare numbers are rejected on purpose: ``olderThan: 7`` is ambiguous and an
    admin who meant days would otherwise delete after seven seconds.
    """
    hint = "write e.g. 7d, 36h, 90m"
    if not isinstance(text, str) or not text or len(text) > _MAX_TEXT:
        raise ValueError(f"{show(text)} is not a duration ({hint})")
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{show(text)} is not a duration ({hint})")
    seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{show(text)} is longer than {format_duration(MAX_DURATION)}, "
                         "the longest duration a policy may hold")
    return timedelta(seconds=seconds)


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
    """Parse a Kubernetes quantity (``100m``, ``128Mi``, ``1G``, ``1e3``) to a number.

    Its magnitude is at most ``MAX_QUANTITY`` (what the API server accepts), so
    no arithmetic on it can overflow and every size fits an int64.
    """
    hint = "write a Kubernetes quantity, e.g. 100Mi, 1G, 500m"
    if isinstance(text, bool) or not isinstance(text, (str, int)) or (
            isinstance(text, int) and abs(text) > MAX_QUANTITY):
        raise ValueError(f"{show(text)} is not a quantity ({hint})")
    written = str(text).strip()
    match = _QUANTITY.fullmatch(written) if len(written) <= _MAX_TEXT else None
    if not match:
        raise ValueError(f"{show(text)} is not a quantity ({hint})")
    number, suffix = match.groups()
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"{show(text)} is not a quantity ({hint})") from None
    if _EXPONENT.fullmatch(suffix) and abs(int(suffix[1:])) > 30:
        raise ValueError(f"{show(text)} is not a quantity: the exponent must be -30 to 30")
    scale = _scale(suffix)
    if scale is None:
        raise ValueError(f"{show(text)} is not a quantity: unknown suffix {suffix!r} ({hint})")
    if value.adjusted() + scale.adjusted() > 19 or abs(value * scale) > MAX_QUANTITY:
        raise ValueError(f"{show(text)} is larger than a Kubernetes quantity can be "
                         "(2^63-1, about 9.2E)")
    return value * scale


def _scale(suffix: str) -> Decimal | None:
    """The multiplier a quantity suffix stands for (``Mi``, ``k``, ``e3``), or None."""
    if suffix in _BINARY_SUFFIXES:
        return Decimal(_BINARY_SUFFIXES[suffix])
    if suffix in _DECIMAL_SUFFIXES:
        return _DECIMAL_SUFFIXES[suffix]
    if _EXPONENT.fullmatch(suffix):
        return Decimal(10) ** int(suffix[1:])
    return None


def parse_size(text: object) -> int:
    """Parse a byte size written as a quantity; fractions of a byte round up."""
    value = parse_quantity(text)
    if value < 0:
        raise ValueError(f"{show(text)} is negative; a size must be 0 or more")
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
    """Accept a number from 0 to 100 (a trailing ``%`` is tolerated); never NaN or infinite.

    Integers are compared before any conversion, so 400 digits cannot overflow a float.
    """
    number: int | float | None = None
    if isinstance(value, str) and len(value) <= _MAX_TEXT:
        text = value.removesuffix("%")
        number = float(text) if _PERCENT.fullmatch(text) else None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = value
    if number is None or not 0 <= number <= 100:  # NaN fails every comparison
        raise ValueError(f"{show(value)} is not a percentage (a number from 0 to 100)")
    return float(number)


def check_glob(pattern: object) -> str:
    """Validate an fnmatch glob; an unclosed ``[`` would silently match literally."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"{show(pattern)} is not a glob (a non-empty string like 'batch-*')")
    depth = 0
    for char in pattern:
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
    if depth:
        raise ValueError(f"{show(pattern)} is not a valid glob: '[' is never closed")
    return pattern


def show(value: object) -> str:
    """The value as the admin wrote it, at most a short prefix of it."""
    return f'"{shorten(value)}"' if isinstance(value, str) else shorten(_repr(value))


def shorten(text: str, limit: int = _MAX_TEXT) -> str:
    """At most ``limit`` characters of ``text``, so a message stays one readable line."""
    return text if len(text) <= limit else f"{text[:limit]}…"


def _repr(value: object) -> str:
    if isinstance(value, int) and abs(value) >= 10**_MAX_TEXT:
        return f"a number of more than {_MAX_TEXT} digits"  # repr() could take a while
    return repr(value)
