"""An HAProxy process on this machine, an endpoint's or a shared port's: started detached
(its own session, so it outlives the CLI and the controller), or as the seamless successor
of a running one (``-x``: it takes the listeners over; ``-sf``: the old one finishes what
it serves and leaves); and one command to an admin socket."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from headway.model.errors import Failed
from headway.plan import haproxy_config as hc
from headway.system import binaries, procs

START_TIMEOUT_S = 10.0


class IngressError(Failed):
    pass


def admin(socket_path: str, cmd: str, timeout_s: float = 2.0) -> str:
    """One command to an admin socket, and the whole reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(socket_path)
        s.sendall(cmd.encode() + b"\n")
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def _tail(log: str) -> str:
    """What HAProxy said last (its config errors name the line and the fault)."""
    try:
        lines = Path(log).read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"see {log}"
    return " | ".join(line.strip() for line in lines[-6:] if line.strip())[-900:] or f"see {log}"


def spawn(config: str, socket_path: str, log: str, marker: str, extra: list[str]) -> tuple[int, int | None]:
    """Start HAProxy on ``config`` and wait until the admin socket answers as the new
    process (not the old one it replaces); its PID and start time."""
    with open(log, "ab") as out:
        child = subprocess.Popen(
            [binaries.haproxy(), "-f", config, *extra],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ) | {procs.MARKER_VAR: marker},
        )
    procs.track(child)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise IngressError(f"haproxy exited at start (code {child.returncode}): {_tail(log)}")
        try:
            if hc.info_pid(admin(socket_path, "show info")) == child.pid:
                return child.pid, procs.start_time(child.pid)
        except OSError:
            pass
        time.sleep(0.05)
    raise IngressError(f"haproxy did not answer on its admin socket; see {log}")
