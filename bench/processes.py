"""What a process costs, read from /proc (Linux): CPU seconds, resident and proportional
memory, threads, for one process or it and every process under it. Standard library only, so
a benchmark's child process can import it without loading what it measures."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def pids(pid: int) -> Iterable[int]:
    """``pid`` and every process under it, depth first."""
    yield pid
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            yield from pids(int(child))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process itself (not the processes under it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workers_cpu_seconds(pid: int) -> float:
    """CPU seconds of every process under ``pid`` (the operator's fitting workers)."""
    return sum(cpu_seconds(child) for child in pids(pid) if child != pid)


def pss_mb(pid: int) -> float:
    """Proportional set size of a process and every process under it."""
    return summed_mb(pids(pid), "smaps_rollup", "Pss:")


def rss_mb(pid: int, children: bool = True) -> float:
    """Resident memory of a process and (with ``children``) every process under it."""
    return summed_mb(pids(pid) if children else [pid], "status", "VmRSS:")


def summed_mb(pids: Iterable[int], name: str, field: str) -> float:
    """A kB ``field`` of /proc/PID/``name``, summed over ``pids``, in MB."""
    total_kb = 0
    for each in pids:
        for line in Path(f"/proc/{each}/{name}").read_text().splitlines():
            if line.startswith(field):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def threads(pid: int) -> int:
    """Threads the process runs now (the interpreter's and any a library started natively)."""
    return len(os.listdir(f"/proc/{pid}/task"))
