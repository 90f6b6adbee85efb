"""The control plane as a process: started detached by the CLI (``start_daemon``) or in
the foreground (``headway controller run``), it takes this state dir's lock, its API
port, the controllers' lease (a standby waits here), serves the API in a thread and runs
the ``controller`` loop until stopped. Where it runs is ``daemon_info``'s to say.

The edge where the loop and the API meet: ``controller`` knows nothing of the API.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time

from headway.api import api_server
from headway.api import app as api
from headway.control import leader
from headway.control.controller import Controller
from headway.state.daemon_info import _lockfile, _pidfile, logfile, running_pid
from headway.system import paths, procs

log = logging.getLogger("headway.controller")


def start_daemon(timeout_s: float = 10.0) -> int:
    """Start a detached controller unless one runs; return its PID."""
    pid = running_pid()
    if pid:
        return pid
    with open(logfile(), "ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "headway.cli.main", "controller", "run"],
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


def run_forever(failure_threshold: int, period_s: float) -> None:
    """The controller process: take the lock, serve the API, write the PID file, loop until stopped."""
    lock = open(_lockfile(), "w")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RuntimeError("a controller already runs for this state dir") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per probe drowns the log
    sock = api_server.bind()
    lease = leader.wait_for_lease(sock, api.tls_files())
    api.ensure_token()
    ctl = Controller(period_s=period_s, failure_threshold=failure_threshold, lease=lease)
    if lease is not None:
        lease.keep(ctl.stopping)
    api_server.serve(sock, ctl.ops)
    host, port = sock.getsockname()[:2]
    url = f"{'https' if api.tls_files() else 'http'}://{host}:{port}"
    if lease is not None:
        lease.publish_api(url)
    info = {"pid": os.getpid(), "started": procs.start_time(os.getpid()), "api": url}
    paths.write_private(_pidfile(), json.dumps(info))
    signal.signal(signal.SIGTERM, lambda *_: ctl.stopping.set())
    log.info(
        "controller %d watching %s (threshold %d, period %.2f s); API and dashboard at %s",
        os.getpid(),
        paths.home(),
        failure_threshold,
        period_s,
        url,
    )
    try:
        ctl.run()
        if lease is not None and ctl.stopping.is_set():
            lease.release()  # a clean stop hands over at once
    finally:
        _pidfile().unlink(missing_ok=True)
