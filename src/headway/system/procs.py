"""Finding and stopping the processes headway started — by PID, never by name.

Every process of a node is started with ``HEADWAY_NODE=<marker>`` in its environment;
Ray passes its environment on to the raylet, GCS, agents and workers, so scanning
``/proc/*/environ`` for that exact marker finds every process of one node and
nothing else (another service's markers differ by cluster id).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

MARKER_VAR = "HEADWAY_NODE"


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def pids_with_marker(marker_prefix: str) -> list[int]:
    """Live PIDs whose ``HEADWAY_NODE`` equals ``marker_prefix`` or starts with it + '/'."""
    exact = f"{MARKER_VAR}={marker_prefix}".encode()
    found: list[int] = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == me:
            continue
        for item in _environ(pid).split(b"\0"):
            if item == exact or item.startswith(exact + b"/"):
                if not _is_zombie(pid):
                    found.append(pid)
                break
    return sorted(found)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: with the PID, its identity."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[-1].split()[19])


def same_process(pid: int | None, started: int | None) -> bool:
    """True when ``pid`` still names the process we started (not a reused PID).

    For programs that overwrite their environment (Redis's setproctitle does), the
    marker cannot be read back, so they are tracked by PID and start time.
    """
    return bool(pid) and alive(pid) and start_time(pid) == started


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def kill_pids(pids: Iterable[int], grace_s: float = 0.0) -> None:
    """SIGTERM (when ``grace_s`` > 0), wait, then SIGKILL whatever is left."""
    pids = list(pids)
    if grace_s > 0:
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


#: Children this process started and must reap: a long-lived controller would otherwise
#: keep every dead node supervisor or store process as a zombie (``Popen.poll`` reaps
#: only its own child, never another's).
_children: list[subprocess.Popen] = []


def track(child: subprocess.Popen) -> None:
    _children.append(child)


def reap_children() -> None:
    _children[:] = [c for c in _children if c.poll() is None]
