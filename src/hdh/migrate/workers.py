"""Who is copying: one name per process, and whether that process still runs.

A worker's name is ``host:pid:start`` (``start`` is the process's start time in clock
ticks since boot, from ``/proc``), so a process id reused by another program after a
crash is not taken for the worker. A claim by a process of this machine that is gone
lapses at once; a claim by another machine's worker lapses when its lease runs out.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19]  # field 22 of the whole line


@cache
def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid()) or 0}"


def is_gone(worker: str) -> bool:
    """True when ``worker`` ran on this machine and has stopped; False when it runs or
    ran elsewhere (only its lease can tell then)."""
    host, _, rest = worker.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return _start_ticks(int(pid_text)) != start
