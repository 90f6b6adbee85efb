"""Processes headway keeps on a host, over SSH: Ray nodes, an endpoint's HAProxy, keepalived.

Each is started detached with a marker in its environment (``HEADWAY_NODE``, as locally)
and is found again by that marker, or by its PID together with its start time — never by
its name: a host may run other programs of the same name that are not headway's.
"""

from __future__ import annotations

import re
import secrets
import shlex

from headway.hosts import host_files, ssh
from headway.hosts.ssh import SshError, SshHost
from headway.system import procs

__all__ = [
    "SshError",
    "env_file",
    "kill",
    "marked_pids",
    "same_process",
    "start_command",
    "start_detached",
    "start_time",
]


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_file(env: dict[str, str]) -> str:
    """The environment as a file a POSIX shell reads (``. FILE``): one ``KEY=value`` a line,
    every value one quoted word, so no value can end its assignment and start a command.
    It travels to the host as a 0600 file, never on a command line another local user
    could read in ``/proc`` (a service's ``env_vars`` may hold its secrets)."""
    bad = [k for k in env if not _NAME.fullmatch(k)]
    if bad:
        raise ValueError(f"not an environment variable name: {bad[0]!r}")
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items())


def start_command(argv: list[str], env_path: str, cwd: str, log: str) -> str:
    """The shell line that starts a process detached on its host with the environment in
    ``env_path`` (``env_file``; read, then removed)."""
    # Only the detached command goes to the background (with every fd redirected): the
    # SSH channel closes once the shell has printed its PID. setsid execs in place (a
    # background job of a non-interactive shell leads no process group), so $! is the
    # program's own PID.
    env = shlex.quote(env_path)
    return (
        f"cd {shlex.quote(cwd)} || exit 1; set -a; . {env} || exit 1; set +a; rm -f {env}; "
        f"env -u RAY_ADDRESS setsid nohup {shlex.join(argv)} > {shlex.quote(log)} 2>&1 < /dev/null & "
        "echo $!"
    )


def start_detached(
    host: SshHost, argv: list[str], env: dict[str, str], cwd: str, log: str, marker: str, what: str | None = None
) -> int:
    """Start ``argv`` on the host with ``marker``; its PID. Raises SshError when it did not
    launch (``what`` names it in the message; else the program)."""
    env = env | {procs.MARKER_VAR: marker}
    env_path = f"{cwd}/.headway-env-{secrets.token_hex(4)}"
    host_files.put_private(host, env_path, env_file(env))  # ``cwd``: a folder its caller checked
    status, out, err = ssh.run(host, start_command(argv, env_path, cwd, log))
    if status != 0 or not out.strip().isdigit():
        raise SshError(f"host {host.address}: {what or argv[0]} did not launch: {err.strip()[-300:]}")
    return int(out.strip())


def start_time(host: SshHost, pid: int) -> int | None:
    """The process's start time (clock ticks since the host's boot): with the PID, its identity."""
    status, out, _ = ssh.run(
        host, f"awk '{{print $22}}' /proc/{int(pid)}/stat 2>/dev/null", timeout_s=ssh.CONNECT_TIMEOUT_S
    )
    return int(out) if status == 0 and out.strip().isdigit() else None


def same_process(host: SshHost, pid: int | None, started: int | None) -> bool:
    """The host answers and ``pid`` is still the process started then; False when the host
    does not answer (a caller that must tell the two apart asks ``ssh.reachable``)."""
    if pid is None:
        return False
    try:
        return start_time(host, pid) == started
    except SshError:
        return False


def marked_pids(host: SshHost, marker: str) -> list[int]:
    """Every process on the host whose marker is exactly ``marker``. Raises SshError when the
    host does not answer: an unreachable host's processes cannot be shown to be gone."""
    quoted = shlex.quote(f"{procs.MARKER_VAR}={marker}")
    script = (
        "for p in /proc/[0-9]*; do "
        f"tr '\\0' '\\n' < $p/environ 2>/dev/null | grep -qx {quoted} && echo ${{p#/proc/}}; "
        "done; true"
    )
    _, out, _ = ssh.run(host, script)
    return sorted(int(p) for p in out.split() if p.isdigit())


def kill(host: SshHost, pids: list[int]) -> None:
    if pids:
        ssh.run(host, "kill -9 " + " ".join(str(int(p)) for p in pids) + " 2>/dev/null; true")
