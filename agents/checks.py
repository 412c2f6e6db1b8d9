"""Checks that turn a value read from YAML into a typed policy value.

Each check raises ``ValueError`` with the admin-facing explanation; the loader
adds file, line, column and key path.  Each ``render_*`` is the inverse used by
``policy show``, so the effective policy prints in the syntax it was written in.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from apscheduler.triggers.cron import CronTrigger

from agents import units

RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")
RUNTIME_NAMES = ("docker", "containerd", "k3s", "crio", "cri-dockerd", "cri")
"""The node runtimes by the names ``--runtime`` and the report use (``cri``: ``cri:<socket>``)."""
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_KIND = re.compile(r"^[A-Z][A-Za-z0-9]{0,62}$")
_SCHEDULE_HINT = "write a cron string or {every: 30m}"


@dataclass(frozen=True)
class Trigger:
    """When a daemon job runs: a 5-field cron expression or a fixed interval."""

    cron: str | None = None
    every: timedelta | None = None


def described(check: Callable[[Any], Any], schema: dict[str, Any]) -> Callable[[Any], Any]:
    """Mark a check with the JSON Schema of what it accepts, for schemas/policies.schema.json.

    The schema may accept more than the check (a cron that never fires, a duration past
    its ceiling); the README lists what only ``policy check`` catches.
    """
    check.schema = schema  # type: ignore[attr-defined]
    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{_show(value)} is not a boolean (write true or false)")
    return value


boolean = described(_boolean, {"type": "boolean"})


def bounded(check: Callable[[Any], Any], bounds: str) -> Callable[[Any], Any]:
    """Mark a check with the range it enforces, for the README's reference table."""
    check.bounds = bounds  # type: ignore[attr-defined]
    return check


def whole(low: int, high: int) -> Callable[[Any], int]:
    """A whole number from ``low`` to ``high``: every count has a ceiling, so a typo
    such as ``parallelism: 1000000000`` is an error and not a run that never ends."""
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{_show(value)} is not a whole number from {low} to {high}")
        return value
    described(check, {"type": "integer", "minimum": low, "maximum": high})
    return bounded(check, f"{low} to {high}")


MAX_QPS = 10_000
MIN_QPS = 0.001


def _qps(value: Any) -> float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not (value == 0 or MIN_QPS <= value <= MAX_QPS):  # NaN fails both
        raise ValueError(f"{_show(value)} is not a rate (requests per second: 0 for no limit, "
                         f"or {MIN_QPS:g} to {MAX_QPS})")
    return float(value)


qps = described(bounded(_qps, f"0 (no limit), or {MIN_QPS:g} to {MAX_QPS}"), {
    "type": "number", "anyOf": [{"const": 0}, {"minimum": MIN_QPS, "maximum": MAX_QPS}]})


_MAX_TEXT = 40
"""The longest value text the parsers in ``agents.units`` read."""
DURATION_PATTERN = "^([0-9]+[smhdw])+$"
NONZERO_DURATION_PATTERN = "^([0-9]+[smhdw])*0*[1-9][0-9]*[smhdw]([0-9]+[smhdw])*$"
_EXPONENT = "[eE][+-]?([0-2]?[0-9]|30)"
QUANTITY_PATTERN = rf"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|{_EXPONENT})?$"
PERCENT_PATTERN = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)%?$"
_DURATION_SCHEMA = {"type": "string", "pattern": DURATION_PATTERN, "maxLength": _MAX_TEXT}


def _percent(value: Any) -> float:
    return units.parse_percent(value)


percent = described(_percent, {"anyOf": [
    {"type": "number", "minimum": 0, "maximum": 100},
    {"type": "string", "pattern": PERCENT_PATTERN, "maxLength": _MAX_TEXT}]})


def _duration(value: Any) -> timedelta:
    return units.parse_duration(value)


duration = described(_duration, _DURATION_SCHEMA)


def duration_up_to(limit: str) -> Callable[[Any], timedelta]:
    """A duration no longer than ``limit`` (written as in the policy, e.g. ``1d``)."""
    longest = units.parse_duration(limit)

    def check(value: Any) -> timedelta:
        parsed = units.parse_duration(value)
        if parsed > longest:
            raise ValueError(f"{_show(value)} is longer than {limit}, the most allowed here")
        return parsed
    described(check, _DURATION_SCHEMA)
    return bounded(check, f"0s to {limit}")


def duration_between(shortest: str, longest: str) -> Callable[[Any], timedelta]:
    """A duration from ``shortest`` to ``longest``: for what divides by it (a half-life)
    or sizes a record by it (a window), where 0s and 10y are both mistakes."""
    low, high = units.parse_duration(shortest), units.parse_duration(longest)

    def check(value: Any) -> timedelta:
        parsed = units.parse_duration(value)
        if not low <= parsed <= high:
            raise ValueError(f"{_show(value)} is not from {shortest} to {longest}")
        return parsed
    described(check, _DURATION_SCHEMA)
    return bounded(check, f"{shortest} to {longest}")


_QUANTITY_SCHEMA = {"anyOf": [
    {"type": "string", "pattern": QUANTITY_PATTERN, "maxLength": _MAX_TEXT},
    {"type": "integer", "minimum": 0, "maximum": int(units.MAX_QUANTITY)}]}


def _size(value: Any) -> int:
    return units.parse_size(value)


size = described(_size, _QUANTITY_SCHEMA)


def _quantity(value: Any) -> str:
    """Keep the quantity as written (it goes into pod specs) once it parses."""
    if units.parse_quantity(value) < 0:
        raise ValueError(f"{_show(value)} is negative; a request must be 0 or more")
    return str(value)


def _url(value: Any) -> str:
    """An http(s) URL, or empty for none."""
    if not isinstance(value, str) or (value and not re.match(r"^https?://[^\s/]+", value)):
        raise ValueError(f"{_show(value)} is not an http(s) URL (write e.g. "
                         "http://prometheus.monitoring:9090, or \"\" for none)")
    return value.rstrip("/")


url = described(_url, {"type": "string", "pattern": r"^(https?://[^\s/]+.*)?$"})
quantity = described(_quantity, _QUANTITY_SCHEMA)
GLOBS_SCHEMA = {"type": "array", "items": {"type": "string", "minLength": 1}}


def _globs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{_show(value)} is not a list of globs (write e.g. [\"batch-*\"])")
    return tuple(units.check_glob(item) for item in value)


globs = described(_globs, GLOBS_SCHEMA)
LABEL_KEY_PATTERN = ("^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?"
                     "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
"""``_LABEL_KEY`` with Kubernetes' lengths (prefix at most 253, name at most 63) built in."""


def _labels(value: Any) -> Mapping[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"{_show(value)} is not a label mapping (write e.g. {{team: infra}})")
    for key, item in value.items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key) or not _label_key_fits(key):
            raise ValueError(f"{_show(key)} is not a valid label key")
        if not isinstance(item, str):
            raise ValueError(f"label {key}: {_show(item)} must be a string "
                             f"(quote it: \"{_show(item)}\")")
    return MappingProxyType(dict(value))


labels = described(_labels, {"type": "object", "propertyNames": {"pattern": LABEL_KEY_PATTERN},
                             "additionalProperties": {"type": "string"}})


def _dns_label(value: Any) -> str:
    """A namespace name: lower-case letters, digits and '-', at most 63."""
    if not isinstance(value, str) or not _DNS_LABEL.match(value):
        raise ValueError(f"{_show(value)} is not a namespace name (a DNS label such as "
                         "kubekeeper-system)")
    return value


dns_label = described(_dns_label, {"type": "string", "pattern": _DNS_LABEL.pattern})


def _optional_http_url(value: Any) -> str | None:
    """An http(s) URL with a host, or None (off): where a push goes over plain HTTP."""
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{_show(value)} is not an http(s) URL (write e.g. "
                         "http://pushgateway.monitoring:9091, or leave it out)")
    return value


optional_http_url = described(_optional_http_url, {
    "type": ["string", "null"], "pattern": r"^https?://[^\s/:]+"})


def _kinds(value: Any) -> tuple[str, ...]:
    """Kubernetes kind names as ownerReferences spell them (``Workflow``, ``MPIJob``)."""
    if not isinstance(value, list):
        raise ValueError(f"{_show(value)} is not a list of kinds (write e.g. [Workflow])")
    for item in value:
        if not isinstance(item, str) or not _KIND.match(item):
            raise ValueError(f"{_show(item)} is not a kind name (CamelCase, as in "
                             "ownerReferences: Workflow, MPIJob)")
    return tuple(value)


kinds = described(_kinds, {"type": "array", "items": {"type": "string",
                                                      "pattern": _KIND.pattern}})


def _label_key_fits(key: str) -> bool:
    """Kubernetes' lengths: a prefix of at most 253 characters, a name of at most 63."""
    prefix, _, name = key.rpartition("/")
    return len(prefix) <= 253 and len(name) <= 63


def names_from(allowed: tuple[str, ...], what: str) -> Callable[[Any], tuple[str, ...]]:
    """A list of names out of a fixed set (``resources``, ``runtimes``), with a suggestion
    for a misspelt one."""
    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise ValueError(f"{_show(value)} is not a list of {what}s ({', '.join(allowed)})")
        for item in value:
            if item not in allowed:
                raise ValueError(f"{_show(item)} is not a {what}; known: {', '.join(allowed)}"
                                 f"{suggestion(item, allowed)}")
        return tuple(value)
    return described(check, {"type": "array", "items": {"enum": list(allowed)}})


resources = names_from(RESOURCE_NAMES, "resource")
runtimes = names_from(RUNTIME_NAMES, "runtime")


def choice(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"{_show(value)} is not one of {', '.join(allowed)}"
                             f"{suggestion(value, allowed)}")
        return value
    return described(check, {"type": "string", "enum": list(allowed)})


def _api_version(value: Any) -> str:
    if value != "kubekeeper/v1":
        raise ValueError(f"{_show(value)} is not a known apiVersion (this kubekeeper reads "
                         "kubekeeper/v1)")
    return value


api_version = described(_api_version, {"type": "string", "const": "kubekeeper/v1"})


def _trigger(value: Any) -> Trigger:
    """A 5-field cron string that fires at some date, or ``{every: <duration>}``."""
    if isinstance(value, dict):
        if set(value) != {"every"}:
            raise ValueError(f"{_show(value)} is not a schedule ({_SCHEDULE_HINT})")
        every = units.parse_duration(value["every"])
        if every.total_seconds() <= 0:
            raise ValueError("every: must be longer than 0s")
        return Trigger(every=every)
    if not isinstance(value, str):
        raise ValueError(f"{_show(value)} is not a schedule ({_SCHEDULE_HINT})")
    try:
        fires = fires_ever(value)
    except ValueError as exc:
        raise ValueError(f"{_show(value)} is not a cron expression: "
                         f"{units.shorten(str(exc), 80)}") from None
    if not fires:
        raise ValueError(f"{_show(value)} never fires: no date in the calendar matches it")
    return Trigger(cron=value)


def _cron_field(numbers: str, named: bool = False) -> str:
    """One crontab field: ``*``, numbers, ranges and lists, each with an optional step >= 1."""
    atom = f"({numbers}|[A-Za-z]{{3}})" if named else f"({numbers})"
    item = rf"(\*|{atom}(-{atom})?)(/0*[1-9][0-9]*)?"
    return f"{item}(,{item})*"


CRON_PATTERN = "^" + " +".join([
    _cron_field("0?[0-9]|[1-5][0-9]"), _cron_field("0?[0-9]|1[0-9]|2[0-3]"),
    _cron_field("0?[1-9]|[12][0-9]|3[01]"), _cron_field("0?[1-9]|1[0-2]", named=True),
    _cron_field("[0-7]", named=True)]) + "$"
"""What ``cron_trigger`` reads, as a regular expression: five fields, each number in range."""
trigger = described(_trigger, {"oneOf": [
    {"type": "string", "pattern": CRON_PATTERN, "maxLength": 100},
    {"type": "object", "properties": {"every": {
        "type": "string", "pattern": NONZERO_DURATION_PATTERN, "maxLength": _MAX_TEXT}},
     "required": ["every"], "additionalProperties": False}]})


_CYCLE_START = datetime(2001, 1, 1, tzinfo=UTC)
_GREGORIAN_CYCLE = timedelta(days=146097)
"""400 years: the calendar repeats after them, so a cron that fires at all fires within them."""


def fires_ever(expr: str) -> bool:
    """False for a cron no date matches (``0 0 30 2 *``); the answer needs no clock."""
    trigger = cron_trigger(expr, timezone=UTC, start_date=_CYCLE_START,
                           end_date=_CYCLE_START + _GREGORIAN_CYCLE)
    return trigger.get_next_fire_time(None, _CYCLE_START) is not None


def cron_trigger(expr: str, **options: Any) -> CronTrigger:
    """A trigger for a crontab line, with crontab's weekdays: 0 and 7 are Sunday.

    APScheduler 3 counts weekday 0 as Monday (its ``from_crontab`` keeps that
    historical mismatch), so numbers are translated to day names first; an
    admin's ``0 3 * * 0`` then runs on Sunday, as in every other cron.
    """
    if len(expr) > 100 or not expr.isascii() or not expr.isprintable():
        raise ValueError("a cron expression is at most 100 printable ASCII characters")
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"Wrong number of fields; got {len(fields)}, expected 5")
    minute, hour, day, month, weekday = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                       day_of_week=_weekday_names(weekday), **options)


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _weekday_names(field: str) -> str:
    if not any(char.isdigit() for char in field):
        return field
    days: set[int] = set()
    for part in field.split(","):
        body, _, step = part.partition("/")
        if body == "*":
            first, last = 0, 6
        elif "-" in body:
            first, last = (_weekday(x) for x in body.split("-", 1))
        else:
            first = _weekday(body)
            last = 6 if step else first
        if (step and not step.isdigit()) or first > last:
            raise ValueError(f"{part!r} is not a day-of-week range")
        days.update(d % 7 for d in range(first, last + 1, int(step or 1)))
    return ",".join(_WEEKDAYS[d] for d in sorted(days))


def _weekday(text: str) -> int:
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text.lower() in _WEEKDAYS:
        return _WEEKDAYS.index(text.lower())
    raise ValueError(f"{text!r} is not a day of the week (0-7 or sun-sat)")


def suggestion(word: Any, known: Any) -> str:
    """``; did you mean 'x'?`` when a close known word exists, else nothing."""
    close = difflib.get_close_matches(str(word)[:64], [str(k) for k in known], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def render_duration(value: timedelta) -> str:
    return units.format_duration(value)


def render_size(value: int) -> str:
    for suffix, scale in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value and value % scale == 0:
            return f"{value // scale}{suffix}"
    return str(value)


def render_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def render_trigger(value: Trigger) -> Any:
    return value.cron if value.cron else {"every": units.format_duration(value.every)}


def _show(value: Any) -> str:
    """Echo a value the way it looks in YAML (a short prefix of it), so the admin recognises it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return units.show(value)
