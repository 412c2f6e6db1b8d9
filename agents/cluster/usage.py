"""The usage record of one container of one workload: small, fixed-size, decaying.

CPU goes into a decaying histogram shaped like the VPA recommender's
checkpoints: exponential buckets (the first 10m wide, each next 5 % wider, up
to 1000 cores), one weight per sample, and a half-life, so a sample a day old
counts half as much as one taken now. A percentile is read off the buckets
(the upper bound of the bucket where the cumulated weight reaches it), so it
is never below the usage it stands for, and at most 5 % plus 10m above it.

Memory keeps one number per day: the day's peak working set. The peak over
the window is then exact, which is what a memory request must cover (a
container above its request is the first the kubelet evicts).

The JSON form is sparse (only buckets with weight), rounds weights to four
significant digits and keeps at most ``MAX_BUCKETS`` buckets (dropping the
lightest), so an entry stays under about 1.5 KB whatever the history.
Loading and dumping again gives the same text: the rounding is idempotent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

FIRST_BUCKET = 0.01
"""Cores: the first bucket's width (the VPA's CPU histogram starts at 10m too)."""
RATIO = 1.05
MAX_CORES = 1000.0
MAX_BUCKETS = 120
_DAY = 86400
_RESCALE_AFTER = 32
"""Half-lives after which weights are rescaled to a new reference, so they stay small."""
_FORMAT = 1


def bucket_of(cores: float) -> int:
    """The index of the bucket holding ``cores``; the last bucket holds everything above."""
    cores = min(max(cores, 0.0), MAX_CORES)
    return int(math.log(1 + cores * (RATIO - 1) / FIRST_BUCKET, RATIO))


def bucket_end(index: int) -> float:
    """The upper bound (cores) of a bucket: what a percentile in it is read as."""
    return FIRST_BUCKET * (RATIO ** (index + 1) - 1) / (RATIO - 1)


@dataclass(frozen=True)
class Histogram:
    """Weights by bucket index, relative to ``ref`` (epoch seconds).

    A sample at time ``t`` weighs ``2 ** ((t - ref) / half_life)``: newer
    samples weigh more, which is the same as older ones decaying.
    """

    ref: int
    buckets: Mapping[int, float] = field(default_factory=dict)

    def add(self, cores: float, when: int, half_life: int) -> Histogram:
        hist = self if when - self.ref < _RESCALE_AFTER * half_life else self._rebased(when,
                                                                                     half_life)
        index = bucket_of(cores)
        weight = 2 ** ((when - hist.ref) / half_life)
        buckets = dict(hist.buckets)
        buckets[index] = buckets.get(index, 0.0) + weight
        return replace(hist, buckets=buckets)

    def _rebased(self, ref: int, half_life: int) -> Histogram:
        scale = 2 ** ((self.ref - ref) / half_life)
        return Histogram(ref, {i: w * scale for i, w in self.buckets.items() if w * scale > 0})

    def percentile(self, fraction: float) -> float | None:
        """The upper bound of the bucket where the cumulated weight reaches ``fraction``."""
        total = sum(self.buckets.values())
        if total <= 0:
            return None
        running = 0.0
        for index in sorted(self.buckets):
            running += self.buckets[index]
            if running >= fraction * total * (1 - 1e-12):
                return bucket_end(index)
        return bucket_end(max(self.buckets))

    def compact(self) -> dict[str, Any]:
        """Sparse, rounded, at most ``MAX_BUCKETS`` buckets; idempotent."""
        rounded = {i: _sig(w) for i, w in self.buckets.items() if _sig(w) > 0}
        if len(rounded) > MAX_BUCKETS:
            kept = sorted(rounded, key=lambda i: (rounded[i], i))[-MAX_BUCKETS:]
            rounded = {i: rounded[i] for i in kept}
        return {"r": self.ref, "b": {str(i): rounded[i] for i in sorted(rounded)}}

    @classmethod
    def loaded(cls, data: Mapping[str, Any]) -> Histogram:
        return cls(int(data["r"]), {int(i): float(w) for i, w in data["b"].items()})


@dataclass(frozen=True)
class ContainerUsage:
    """What has been seen of one container: CPU histogram, daily memory peaks, span."""

    cpu: Histogram
    peaks: Mapping[int, float]
    """Day number (epoch seconds // 86400) → that day's peak working set, bytes."""
    first: int
    last: int
    samples: int

    @classmethod
    def started(cls, when: int) -> ContainerUsage:
        return cls(Histogram(when), {}, when, when, 0)

    def add(self, cores: float, memory: float, when: int, half_life: int,
            window: int) -> ContainerUsage:
        """One more sample; days older than the window drop out of the peaks."""
        day = when // _DAY
        peaks = {d: p for d, p in self.peaks.items() if (day - d) * _DAY < window}
        peaks[day] = max(peaks.get(day, 0.0), memory)
        return ContainerUsage(self.cpu.add(cores, when, half_life), peaks,
                              max(min(self.first, when), when - window), max(self.last, when),
                              self.samples + 1)

    def peak(self, now: int, window: int) -> float | None:
        """The largest working set seen in the days within ``window`` of ``now``."""
        day = now // _DAY
        recent = [p for d, p in self.peaks.items() if (day - d) * _DAY < window]
        return max(recent) if recent else None

    def compact(self) -> dict[str, Any]:
        return {"c": self.cpu.compact(), "m": {str(d): round(p)
                                               for d, p in sorted(self.peaks.items())},
                "f": self.first, "l": self.last, "n": self.samples}

    @classmethod
    def loaded(cls, data: Mapping[str, Any]) -> ContainerUsage:
        return cls(Histogram.loaded(data["c"]), {int(d): float(p) for d, p in data["m"].items()},
                   int(data["f"]), int(data["l"]), int(data["n"]))


Key = tuple[str, str, str, str]
"""(namespace, owner kind, owner name, container): a container of a top-level owner."""


def key_text(key: Key) -> str:
    """Names hold no '/', so it joins the parts unambiguously."""
    return "/".join(key)


def text_key(text: str) -> Key:
    namespace, kind, name, container = text.split("/")
    return namespace, kind, name, container


def dumps(entries: Mapping[Key, ContainerUsage]) -> str:
    """The record's JSON text, keys sorted so equal records give equal text."""
    body = {key_text(k): entries[k].compact() for k in sorted(entries)}
    return json.dumps({"v": _FORMAT, "e": body}, separators=(",", ":"), sort_keys=True)


def loads(text: str) -> dict[Key, ContainerUsage]:
    """Entries from ``dumps``; an entry that does not parse is dropped, never fatal."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("v") != _FORMAT:
        return {}
    entries = {}
    for raw_key, raw in (data.get("e") or {}).items():
        try:
            entries[text_key(raw_key)] = ContainerUsage.loaded(raw)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return entries


def pruned(entries: Mapping[Key, ContainerUsage], now: int, window: int
           ) -> dict[Key, ContainerUsage]:
    """Without the containers last seen longer ago than the window (their workload went)."""
    return {k: u for k, u in entries.items() if now - u.last <= window}


def _sig(weight: float) -> float:
    return float(f"{weight:.4g}")
