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

With ``--sandbox JSON`` first (``node_user.Sandbox``), started as root as PID 1 of a new
PID and mount namespace (``unshare``), it boxes the node in before anything of Ray runs:
it covers the paths to hide and every directory the node user may not enter on the way
to what it needs with an empty tmpfs, binds back only what it needs (the Python that
runs it, found here on the node's own host, the node's temp dir, the service's
packages), then drops to the service's uid and gid with ``no_new_privs``.
"""

from __future__ import annotations

import contextlib
import json
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
#: The dashboard modules to load, comma-separated, when set (``ray start`` has no flag for
#: the dashboard's own ``--modules-to-load``: the CLI's process start is where it is added).
DASHBOARD_MODULES_VAR = "HEADWAY_DASHBOARD_MODULES"
RAY_CLI = (
    f"import os, sys\nfor m in {UNUSED_CLI_MODULES!r}: sys.modules[m] = None\n"
    f"mods = os.environ.get({DASHBOARD_MODULES_VAR!r})\n"
    "if mods:\n"
    "    import ray._private.services as services\n"
    "    start = services.start_ray_process\n"
    "    def lean(command, process_type, *a, **k):\n"
    "        if process_type == 'dashboard':\n"
    "            command = [*command, '--modules-to-load=' + mods]\n"
    "        return start(command, process_type, *a, **k)\n"
    "    services.start_ray_process = lean\n"
    "from ray.scripts.scripts import main\nsys.argv[0] = 'ray'\nmain()\n"
)


def command(python: str, ray_args: list[str], sandbox: dict | None = None) -> list[str]:
    """The command line that runs ``ray <ray_args>`` (a ``ray start`` without ``--block``)
    under this supervisor, with ``python``: the one that has Ray; boxed in by ``sandbox``."""
    return supervised(python, [python, "-c", RAY_CLI, *ray_args], sandbox)


def supervised(python: str, argv: list[str], sandbox: dict | None = None) -> list[str]:
    """``argv`` (a command that starts a node's processes and returns) under this supervisor."""
    box = ["--sandbox", json.dumps(sandbox, sort_keys=True)] if sandbox is not None else []
    return [python, "-S", "-c", SOURCE, *box, *argv]


def boxed_exec(python: str, argv: list[str], sandbox: dict) -> list[str]:
    """``argv`` run boxed in by ``sandbox`` and nothing more (no supervision): one command,
    such as a build of a package from source, as an unprivileged user in a private mount
    namespace (``unshare --mount``: covering paths needs one; the PID namespace does not)."""
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        python,
        "-S",
        "-c",
        SOURCE,
        "--sandbox",
        json.dumps(sandbox, sort_keys=True),
        "--exec",
        *argv,
    ]


# -- the sandbox ---------------------------------------------------------------------------
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC = 2, 4, 4096, 16384
PR_SET_NO_NEW_PRIVS = 38


def _libc_call(name: str, *args: object) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}{args[:2]}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [None if a is None else a.encode() for a in (source, target, fstype, data)]
    _libc_call("mount", enc[0], enc[1], enc[2], flags, enc[3])


def closed_ancestor(path: str) -> str | None:
    """The outermost directory on the way to ``path`` that others may not enter (mode
    without o+x), or None when every one of them lets anyone pass."""
    parts = os.path.abspath(path).split("/")[1:-1]
    for i in range(len(parts)):
        d = "/" + "/".join(parts[: i + 1])
        try:
            if not os.stat(d).st_mode & 0o001:
                return d
        except OSError:
            return None
    return None


def covers(hide: list[str], expose: list[str]) -> list[str]:
    """The tmpfs mounts to make: the paths to hide and the closed directories on the way to
    what is exposed, without one inside another (the outer one covers it)."""
    roots = {os.path.abspath(p) for p in hide if os.path.isdir(p)}
    roots |= {c for p in expose if (c := closed_ancestor(p)) is not None}
    return sorted(r for r in roots if not any(r != o and r.startswith(o.rstrip("/") + "/") for o in roots))


def _sandbox(box: dict) -> None:
    """Cover, bind back, and drop to the service's user (see the module's docstring)."""
    # The venv too: under ``-S`` (as this runs) ``sys.prefix`` is the base Python's, and the
    # venv is known only as the folder above the ``bin`` of the interpreter's own path.
    venv = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
    runtime = [sys.base_prefix, sys.prefix, venv, os.path.dirname(os.path.realpath(sys.executable))]
    expose = sorted({os.path.abspath(p) for p in [*runtime, *box["expose"]] if os.path.exists(p)})
    roots = covers(box["hide"], expose)
    kept = {p: os.open(p, os.O_PATH) for p in expose if any(p.startswith(r + "/") for r in roots)}
    for root in roots:
        _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0711,size=64k")
    for path, fd in sorted(kept.items()):
        parent = os.path.dirname(path)
        os.makedirs(parent, mode=0o711, exist_ok=True)
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(path, mode=0o711, exist_ok=True)
        elif not os.path.exists(path):
            open(path, "w").close()
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
    os.setgroups([])
    os.setresgid(box["gid"], box["gid"], box["gid"])
    os.setresuid(box["uid"], box["uid"], box["uid"])
    _libc_call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _children() -> dict[int, str]:
    """This process's children: PID → command line."""
    me, found = os.getpid(), {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                # one that died already (a zombie) has no command line left: its short name then
                found[int(entry)] = cmdline or stat[stat.index("(") + 1 : stat.rindex(")")]
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
    if argv[:1] == ["--sandbox"]:
        try:
            _sandbox(json.loads(argv[1]))
        except OSError as exc:
            print(f"headway: the node's sandbox could not be made: {exc}", flush=True)
            return 126
        argv = argv[2:]
        if argv[:1] == ["--exec"]:
            os.execvp(argv[1], argv[1:])
    _set_subreaper()
    starter = os.fork()
    if starter == 0:
        try:
            os.execv(argv[0], argv)
        except OSError as exc:  # the node's log says why, not just that it exited
            print(f"headway: cannot run {argv[0]}: {exc.strerror}", flush=True)
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
