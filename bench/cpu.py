"""CPU seconds of the benchmark's processes, read from /proc, so that a figure per charge does
not depend on how busy the (shared) machine is.

A process's figure is utime + stime of it and of every live descendant, plus cutime + cstime
(what its reaped children used): a PostgreSQL backend that exits between two readings moves
its seconds into the postmaster's cutime, so the difference of two readings still counts it.
Threads are counted in their process (a Celery threads pool, the sandbox).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Stat:
    ppid: int
    own: float  # utime + stime, seconds
    reaped: float  # cutime + cstime, seconds


def read_stat(pid: int) -> Stat | None:
    """One process's /proc/<pid>/stat, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the name may hold spaces and parentheses
    # after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return Stat(int(fields[1]), (utime + stime) / TICKS, (cutime + cstime) / TICKS)


def _table() -> dict[int, Stat]:
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                table[int(entry.name)] = stat
    return table


def tree_seconds(pid: int, table: Mapping[int, Stat] | None = None) -> float:
    """CPU seconds used so far by ``pid`` and every process below it (0.0 when it is gone)."""
    table = _table() if table is None else table
    children: dict[int, list[int]] = {}
    for child, stat in table.items():
        children.setdefault(stat.ppid, []).append(child)
    total, frontier = 0.0, [pid]
    while frontier:
        current = frontier.pop()
        found = table.get(current)
        if found is None:
            continue
        total += found.own + found.reaped
        frontier += children.get(current, [])
    return total


def reading(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process tree, all read from one pass over /proc."""
    table = _table()
    return {name: tree_seconds(pid, table) for name, pid in pids.items()}


@dataclass(frozen=True)
class Usage:
    """CPU seconds each named process used between two readings, for ``units`` of work."""

    seconds: dict[str, float]
    units: int

    @classmethod
    def between(cls, before: Mapping[str, float], after: Mapping[str, float], units: int) -> Usage:
        seconds = {name: max(0.0, after[name] - before.get(name, 0.0)) for name in after}
        return cls(seconds, units)

    def per_thousand(self, name: str) -> float:
        return 1000 * self.seconds.get(name, 0.0) / max(1, self.units)

    @property
    def total_per_thousand(self) -> float:
        return 1000 * sum(self.seconds.values()) / max(1, self.units)
