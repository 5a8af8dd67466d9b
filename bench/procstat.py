"""CPU seconds and resident memory of processes, read from /proc: steadier than rates on a shared machine."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of `pid` and its reaped children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def broker_pid() -> int | None:
    """The RabbitMQ VM on this machine, if it runs here."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (
                    b"beam.smp" in (proc / "cmdline").read_bytes()
                    and b"rabbit" in (proc / "cmdline").read_bytes()
                ):
                    return int(proc.name)
            except OSError:
                continue
    return None


def machine_cpu_seconds() -> float:
    """All CPU time spent on the machine (every process), excluding idle and iowait."""
    fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICKS
