"""The machine line both benchmark tables print, read from /proc."""

from __future__ import annotations

import os


def describe() -> str:
    """``AMD EPYC, 2 cores, 23.5 GiB RAM``: enough to compare tables across machines."""
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info
                    if line.startswith("model name")), "unknown CPU")
    with open("/proc/meminfo", encoding="utf-8") as info:
        kib = next(int(line.split()[1]) for line in info if line.startswith("MemTotal"))
    return f"{cpu}, {os.cpu_count()} cores, {kib / 1024 ** 2:.1f} GiB RAM"
