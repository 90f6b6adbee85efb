"""What stays of a Ray node's ``ray start`` once the node is up: a few MB instead of ~90.

``ray start --block`` keeps a whole Ray-importing Python process per node (~90 MB PSS)
alive only to notice when one of the node's processes dies. This script does the same
job with the standard library alone, run as ``python -S -c SOURCE ray start ...``
(``-S``: not even site-packages is read), so it needs nothing on a host but the Python
that runs Ray:

- it makes itself the *child subreaper* of what it starts and runs ``ray start`` (without
  ``--block``) the lean way: Ray's CLI module imports the Serve, Jobs and State command
  groups at load (and catches their absence); marked absent, they are not loaded, and
  ``ray start`` reaches its first process in 0.41 s instead of 1.06 s on an idle core
  (75 MB instead of 132 MB while it runs), four times that on a loaded one — the first
  seconds of every head recovery;
- when ``ray start`` returns, it finds the node's processes (GCS, raylet, dashboard,
  agents) re-parented to itself;
- it stops the Ray Client server at once: a service has no Ray Client, Ray 2.60 starts
  that server on every head and takes no port that disables it (~47 MB, one more port);
- it waits on them (reaping every orphan a crashed raylet leaves, so nothing stays a
  zombie) and, as ``--block`` does, when one exits other than by SIGTERM it says which
  one and how on its output (the node's log), kills the rest and exits 1. Its own exit is
  what headway's providers watch (its PID and start time), as they watched ``--block``.

If ``ray start`` fails, its exit code is this script's and its own output is the last
word in the log (the line headway shows as why a new head failed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
#: How Ray's own ``--block`` tells a stop from a crash: these exit codes are a stop.
STOPPED = {0, signal.SIGTERM, -signal.SIGTERM, 128 + signal.SIGTERM}
#: Started by ``ray start``, not used by a service: stopped as soon as the node is up.
LEFT_OUT = ("ray.util.client.server",)


#: Ray's CLI without the command groups ``ray start`` does not use.
UNUSED_CLI_MODULES = ("ray.serve.scripts", "ray.dashboard.modules.job.cli", "ray.util.state.state_cli")
RAY_CLI = (
    f"import sys\nfor m in {UNUSED_CLI_MODULES!r}: sys.modules[m] = None\n"
    "from ray.scripts.scripts import main\nsys.argv[0] = 'ray'\nmain()\n"
)


def command(python: str, ray_args: list[str]) -> list[str]:
    """The command line that runs ``ray <ray_args>`` (a ``ray start`` without ``--block``)
    under this supervisor, with ``python``: the one that has Ray."""
    return supervised(python, [python, "-c", RAY_CLI, *ray_args])


def supervised(python: str, argv: list[str]) -> list[str]:
    """``argv`` (a command that starts a node's processes and returns) under this supervisor."""
    return [python, "-S", "-c", SOURCE, *argv]


def _children() -> dict[int, str]:
    """This process's children: PID → command line."""
    me, found = os.getpid(), {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


def _name(cmdline: str) -> str:
    """A Ray process's name as its logs call it (``raylet``, ``gcs_server``, ``dashboard
    agent``); never its command line, which can hold the store's password."""
    words = cmdline.split()
    for word in words[:3]:
        parts = Path(word).parts
        if parts and parts[-1] in ("raylet", "gcs_server"):
            return parts[-1]
        if len(parts) >= 3 and parts[-1].endswith(".py"):
            stem, parent = parts[-1][:-3], parts[-2]
            if stem == "main":  # runtime_env/agent/main.py
                stem, parent = parent, parts[-3]
            return stem if parent in (stem, "ray") or parent.startswith("_") else f"{parent} {stem}"
    if "-m" in words[:-1]:
        return words[words.index("-m") + 1]
    return os.path.basename(words[0]) if words else "?"


def _kill_all() -> None:
    for pid in _children():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _set_subreaper() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def main(argv: list[str]) -> int:
    _set_subreaper()
    starter = os.fork()
    if starter == 0:
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    code = os.waitstatus_to_exitcode(os.waitpid(starter, 0)[1])
    if code != 0:
        _kill_all()  # what it had launched before failing; Ray's own output says why
        return code
    watched = {}
    for pid, cmdline in _children().items():
        if any(part in cmdline for part in LEFT_OUT):
            os.kill(pid, signal.SIGKILL)
        else:
            watched[pid] = _name(cmdline)
    print(f"headway: node up; watching {', '.join(sorted(set(watched.values())))}", flush=True)
    while watched:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        name = watched.pop(pid, None)
        code = os.waitstatus_to_exitcode(status)
        if name is not None and code not in STOPPED:
            print(f"Some Ray subprocesses exited unexpectedly: {name} (pid {pid}) exited with code {code}", flush=True)
            _kill_all()
            return 1
    return 0


#: This file, run by ``python -c`` (where it has no ``__file__``).
SOURCE = Path(__file__).read_text() if "__file__" in globals() else ""

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
