"""The control plane as a process: started detached by the CLI (``daemon_info.start``) or in
the foreground (``headway controller run``), it takes this state dir's lock, its API
port, the controllers' lease (a standby waits here), serves the API in a thread and runs
the ``controller`` loop until stopped. Where it runs is ``daemon_info``'s to say.

The edge where the loop and the API meet: ``controller`` knows nothing of the API.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys

from headway.api import api_server
from headway.api import app as api
from headway.control import leader, preflight
from headway.control.context import Context
from headway.control.controller import Controller
from headway.model.errors import HeadwayError
from headway.state import daemon_info, db
from headway.system import env_file, paths

log = logging.getLogger("headway.controller")


def run_forever(failure_threshold: int, period_s: float) -> None:
    """The controller process: take the lock, serve the API, write the PID file, loop until stopped."""
    lock = open(daemon_info.lockfile(), "w")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RuntimeError("a controller already runs for this state dir") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per probe drowns the log
    sock = api_server.bind()
    host, port = sock.getsockname()[:2]
    url = f"{'https' if api_server.tls_files() else 'http'}://{host}:{port}"
    ctx = Context.load()
    if leader.enabled(ctx.cloud):
        daemon_info.announce(url, "standby")  # until the lease is ours; its API answers meanwhile
    lease = leader.wait_for_lease(ctx, sock, api_server.tls_files())
    db.api_token()
    ctl = Controller(period_s=period_s, failure_threshold=failure_threshold, lease=lease)
    if lease is not None:
        lease.keep(ctl.stopping)
    api_server.serve(sock, api.create_app(ctl.ops))
    if lease is not None:
        lease.publish_api(url)
    daemon_info.announce(url, "leader")
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
        daemon_info.withdraw()


def main(argv: list[str] | None = None) -> int:
    """``python -m headway.daemon``: what ``headway controller run`` execs into, and what
    ``daemon_info.start`` runs detached. Defaults come from the environment, as the CLI's do."""
    import argparse

    from headway.plan import watchdog

    try:
        env_file.apply()  # the configuration file wins over the environment this process inherited
        preflight.max_workers()  # an unfit setting stops the start, not each deploy later
    except HeadwayError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    parser = argparse.ArgumentParser(prog="headway controller run")
    env = os.environ.get
    parser.add_argument(
        "--failure-threshold", type=int, default=int(env("HEADWAY_HEAD_FAILURE_THRESHOLD", watchdog.FAILURE_THRESHOLD))
    )
    parser.add_argument("--period", type=float, default=float(env("HEADWAY_PROBE_PERIOD_S", watchdog.PROBE_PERIOD_S)))
    args = parser.parse_args(argv)
    try:
        run_forever(args.failure_threshold, args.period)
    except RuntimeError as exc:  # the last line of the log says why (``daemon_info.start`` reads it)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
