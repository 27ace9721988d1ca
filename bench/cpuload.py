"""CPU accounting shared by the benchmark scripts: how busy the machine was,
so a run can report the cores other processes took from it."""

from __future__ import annotations

import os


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, since boot)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU of a live process (all threads)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def own_cpu_s() -> float:
    """User + system CPU of this process (all threads)."""
    t = os.times()
    return t.user + t.system
