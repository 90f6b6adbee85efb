"""Where this state dir's control plane is: its PID file, lock, log and API address.

A module of its own so that the API (served by the controller) can say whether a
controller runs without importing the controller.
"""

from __future__ import annotations

import json
from pathlib import Path

from headway.system import paths, procs


def _pidfile() -> Path:
    return paths.home() / "controller.json"


def _lockfile() -> Path:
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
