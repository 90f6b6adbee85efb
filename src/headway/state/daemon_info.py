"""Where this state dir's control plane is (its PID file, lock, log and API address), and
starting it detached.

A module of its own, low in the layers, so that the API can say whether a controller runs
and the CLI can start one without importing either: the process itself is ``daemon``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from headway.system import paths, procs


def _pidfile() -> Path:
    return paths.home() / "controller.json"


def lockfile() -> Path:
    return paths.home() / "controller.lock"


def logfile() -> Path:
    return paths.home() / "controller.log"


def _live_info() -> dict | None:
    """The PID file of this state dir's controller, if that process still runs."""
    try:
        info = json.loads(_pidfile().read_text())
    except (OSError, ValueError):
        return None
    return info if procs.same_process(info.get("pid"), info.get("started")) else None


def running_pid() -> int | None:
    """The PID of this state dir's controller, if one runs."""
    info = _live_info()
    return info["pid"] if info else None


def api_url() -> str | None:
    """Where this state dir's control plane serves its API, if one runs."""
    info = _live_info()
    return info.get("api") if info else None


def role() -> str | None:
    """``leader`` or ``standby`` (waiting for the controllers' lease), if one runs."""
    info = _live_info()
    return info.get("role", "leader") if info else None


def announce(api: str, role: str) -> None:
    """Say that this process is this state dir's controller, where its API answers and
    whether it leads. A standby says so at once: ``start`` and the CLI find it while it
    waits for the lease, and its API sends them to the leader."""
    info = {"pid": os.getpid(), "started": procs.start_time(os.getpid()), "api": api, "role": role}
    paths.write_private(_pidfile(), json.dumps(info))


def withdraw() -> None:
    """This process no longer answers for the state dir (it stops)."""
    _pidfile().unlink(missing_ok=True)


def start(timeout_s: float = 10.0) -> int:
    """Start a detached controller (``python -m headway.daemon``) unless one runs; return its
    PID once it leads or waits as a standby."""
    pid = running_pid()
    if pid:
        return pid
    with open(logfile(), "ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "headway.daemon"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ),
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pid = running_pid()
        if pid:
            return pid
        if child.poll() is not None:
            break
        time.sleep(0.1)
    try:
        last = [line for line in logfile().read_text(errors="replace").splitlines() if line.strip()][-1]
    except (OSError, IndexError):
        last = ""
    why = f": {last.removeprefix('error: ')}" if last.startswith("error:") else ""
    raise RuntimeError(f"the controller did not start{why}; see {logfile()}")


def stop(grace_s: float = 10.0) -> int | None:
    """Stop this state dir's controller (by its recorded PID); return that PID."""
    pid = running_pid()
    if pid:
        procs.kill_pids([pid], grace_s=grace_s)
    return pid
