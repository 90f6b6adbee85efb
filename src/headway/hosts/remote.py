"""What headway does on a host over SSH: folders and files, each checked before it is
used, and the processes it keeps there.

A folder headway writes into (``/tmp/hw<uid>`` and every one under it, a store's data
folder, the packages' folder) is refused unless it is a real folder (not a link) owned by
the SSH user and writable by no one else; a missing one is made at its mode (the root's
mode is set each time; a folder below keeps its own, such as a package folder's 0750 for
its service's group). Without this an unprivileged user of an ingress host could create ``/tmp/hw0/vip-…`` first and
edit the configuration root's keepalived runs.

A secret file is made new (``O_EXCL``, which never follows a link: the shell's
``noclobber``) at mode 0600 from its first byte (``umask 077``), owned as it must be before
a byte is written, its content sent on the command's standard input (never on a
command line), then moved into place. A package is copied only when its SHA-256 differs
from the host's copy (not its size: an edited file of the same size is a new file).

The processes (Ray nodes, an endpoint's HAProxy, keepalived):

Each is started detached with a marker in its environment (``HEADWAY_NODE``, as locally)
and is found again by that marker, or by its PID together with its start time — never by
its name: a host may run other programs of the same name that are not headway's. The
store, Sentinel, endpoint and keepalived processes are also kept as the host's boot entries
(``start_kept``; ``plan.boot_entry`` says why once at boot, not a unit per process), run by
the host's boot unit where headway logs in as root.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shlex
from pathlib import PurePosixPath

import paramiko

from headway.hosts import ssh
from headway.model.cloud_config import SshCloud, SshError, SshHost
from headway.plan import boot_entry
from headway.plan.systemd_units import render
from headway.system import procs

#: The shell function that checks (or makes) one folder; exits 3 saying why it refuses.
_CHECK = r"""me=$(id -u)
chk() {
  if [ -L "$1" ] || { [ -e "$1" ] && [ ! -d "$1" ]; }; then echo "$1 is not a directory (a link?)" >&2; exit 3; fi
  if [ ! -e "$1" ]; then mkdir -m "$2" "$1" || exit 3; return 0; fi
  set -- "$1" "$2" "${3:-}" $(stat -c '%u %a' "$1")
  if [ "$4" != "$me" ]; then echo "$1 belongs to uid $4, not to uid $me" >&2; exit 3; fi
  case "$5" in *[2367]?|*[2367]) echo "$1 may be written by other users (mode $5)" >&2; exit 3;; esac
  if [ -n "$3" ]; then chmod "$2" "$1"; fi
}
"""


def dirs_script(path: str, root: str, mode: int = 0o700, root_mode: int = 0o711) -> str:
    """The shell text that checks ``root`` and every folder from it down to ``path``
    (``path`` lies under ``root``, or is it): pure, so it is tested without a host."""
    top, target = PurePosixPath(root), PurePosixPath(path)
    if target != top and top not in target.parents:
        raise ValueError(f"{path} is not under {root}")
    lines = [_CHECK, f"chk {shlex.quote(str(top))} {root_mode:o} root"]  # the root's mode is set; others kept
    for part in target.relative_to(top).parts:
        top = top / part
        lines.append(f"chk {shlex.quote(str(top))} {mode:o}")
    return "\n".join(lines) + "\n"


def ensure_dirs(host: SshHost, path: str, root: str, mode: int = 0o700, root_mode: int = 0o711) -> None:
    """Check (or make) ``root`` and the folders down to ``path`` on the host; SshError saying
    which and why when one is refused."""
    status, _, err = ssh.run(host, dirs_script(path, root, mode, root_mode))
    if status != 0:
        why = err.strip().splitlines()[-1] if err.strip() else f"exit {status}"
        raise SshError(f"host {host.address}: refused to write under {root}: {why}; remove it or fix its owner/mode")


def private_file_script(remote: str, owner: tuple[int, int] | None = None) -> str:
    """The shell text that writes its standard input to ``remote``: a new file (noclobber:
    ``O_EXCL``, never through a link), 0600 from its first byte, owned by ``owner`` (uid,
    gid; default the SSH user) before it holds one, then moved into place. Pure."""
    part = shlex.quote(remote + ".part")
    chown = f"chown {int(owner[0])}:{int(owner[1])} {part} && " if owner else ""
    return (
        f"umask 077; rm -f {part}; set -C; : > {part} && {chown}set +C && cat >> {part} && "
        f"mv -f {part} {shlex.quote(remote)}"
    )


def put_private(host: SshHost, remote: str, content: str | bytes, owner: tuple[int, int] | None = None) -> None:
    """Write a secret file on the host (its folder already checked): ``private_file_script``."""
    data = content.encode() if isinstance(content, str) else content
    status, _, err = ssh.run(host, private_file_script(remote, owner), stdin=data)
    if status != 0:
        raise SshError(f"host {host.address}: writing a private file failed: {err.strip()[-200:]}")


def put_file(host: SshHost, local: str, remote: str, root: str) -> None:
    """Copy a file (a package) to the host unless its copy there has the same SHA-256; its
    folders under ``root`` checked first."""
    with open(local, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    status, out, _ = ssh.run(host, f"sha256sum {shlex.quote(remote)} 2>/dev/null")
    if status == 0 and out.split()[:1] == [digest]:
        return
    ensure_dirs(host, str(PurePosixPath(remote).parent), root, root_mode=0o700)
    try:
        sftp = ssh.open_sftp(host)
        try:
            sftp.put(local, remote + ".part")
            sftp.chmod(remote + ".part", 0o600)
            sftp.posix_rename(remote + ".part", remote)
        finally:
            sftp.close()
    except (OSError, paramiko.SSHException) as exc:
        raise SshError(f"host {host.address}: copying {local} failed ({type(exc).__name__}: {exc})") from None


# -- processes ---------------------------------------------------------------------------
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
    put_private(host, env_path, env_file(env))  # ``cwd``: a folder its caller checked
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


def same_process(host: SshHost, pid: int | None, started: int | None, unanswered: bool | None = False) -> bool | None:
    """The host answers and ``pid`` is still the process started then; ``unanswered`` when
    the host does not answer (None for a caller that must tell the two apart)."""
    if pid is None:
        return False
    try:
        return start_time(host, pid) == started
    except SshError:
        return unanswered


def marked_pids(host: SshHost, marker: str) -> list[int]:
    """Every process on the host whose marker is exactly ``marker``. Raises SshError when the
    host does not answer: an unreachable host's processes cannot be shown to be gone."""
    _, out, _ = ssh.run(host, boot_entry.marked_scan(marker))
    return sorted(int(p) for p in out.split() if p.isdigit())


def kill(host: SshHost, pids: list[int]) -> None:
    if pids:
        ssh.run(host, "kill -9 " + " ".join(str(int(p)) for p in pids) + " 2>/dev/null; true")


# -- at boot (``plan.boot_entry``) ------------------------------------------------------------
def _folder(cloud: SshCloud, host: SshHost, marker: str) -> str:
    return f"{boot_entry.host_folder(cloud.boot_dir, host.address)}/{boot_entry.key(marker)}"


def start_kept(
    cloud: SshCloud, host: SshHost, entry: boot_entry.BootEntry, extra: list[str] | None = None, what: str | None = None
) -> int:
    """Write ``entry``'s files, remove what a dead process of it left, start it now (with
    ``extra`` arguments, e.g. a reload's takeover of the old process's listener), and keep
    it as what the host starts at boot; its PID. Its folders are the caller's to check."""
    for path, text in entry.files.items():
        put_private(host, path, text)
    if entry.stale:
        ssh.run(host, "rm -f " + " ".join(map(shlex.quote, entry.stale)))
    pid = start_detached(host, [*entry.argv, *(extra or [])], {}, entry.cwd, entry.log, entry.marker, what=what)
    _remember(cloud, host, entry)
    return pid


def _remember(cloud: SshCloud, host: SshHost, entry: boot_entry.BootEntry) -> None:
    """Write the entry (its copies first, ``run.sh`` last: a boot never runs half an entry)."""
    if host.user != "root":
        return
    folder = _folder(cloud, host, entry.marker)
    _ensure_boot(cloud, host, folder)
    for path, text in entry.files.items():
        put_private(host, f"{folder}/{boot_entry.copy_name(path)}", text)
    put_private(host, f"{folder}/{boot_entry.RUN}", boot_entry.run_script(entry, folder))


def _ensure_boot(cloud: SshCloud, host: SshHost, folder: str) -> None:
    """``boot_dir`` (root's only, made with its parents) and the folders down to ``folder``."""
    ssh.run(host, f"mkdir -p {shlex.quote(cloud.boot_dir.rsplit('/', 1)[0] or '/')}")
    ensure_dirs(host, folder, cloud.boot_dir, root_mode=0o700)


def forget_at_boot(cloud: SshCloud, host: SshHost, marker: str) -> None:
    """The process was stopped for good: its host no longer starts it at boot."""
    ssh.run(host, f"rm -rf {shlex.quote(_folder(cloud, host, marker))}")


def install_boot_unit(cloud: SshCloud, host: SshHost) -> str:
    """Write the host's boot unit and enable it where systemd runs; what was done, said."""
    if host.user != "root":
        return f"host {host.address}: no boot unit (headway logs in as {host.user}, not root)"
    unit = boot_entry.unit(cloud.boot_dir, host.address)
    folder = boot_entry.host_folder(cloud.boot_dir, host.address)
    _ensure_boot(cloud, host, folder)
    put_private(host, f"{folder}/{boot_entry.ALL}", boot_entry.boot_script(cloud.boot_dir, host.address))
    path = f"{cloud.units_dir}/{unit.name}"
    ssh.run(host, f"mkdir -p {shlex.quote(cloud.units_dir)}")  # systemd's own folder: its mode is left alone
    put_private(host, path, render(unit))
    ssh.run(host, f"chmod 644 {shlex.quote(path)}")
    status, _, _ = ssh.run(host, "test -d /run/systemd/system")
    if status != 0:
        return f"host {host.address}: boot unit {path} written; not enabled (systemd does not run there)"
    status, _, err = ssh.run(host, f"systemctl daemon-reload && systemctl enable {shlex.quote(unit.name)}")
    if status != 0:
        raise SshError(f"host {host.address}: enabling {unit.name} failed: {err.strip()[-300:]}")
    return f"host {host.address}: boot unit {unit.name} enabled"


def remove_boot_unit(cloud: SshCloud, host: SshHost) -> None:
    """The cloud is torn down: the host's boot unit goes (disabled first where systemd
    runs), with its entries."""
    unit = boot_entry.unit(cloud.boot_dir, host.address)
    path = shlex.quote(f"{cloud.units_dir}/{unit.name}")
    disable = f"systemctl disable {shlex.quote(unit.name)} 2>/dev/null; " if host.user == "root" else ""
    folder = shlex.quote(boot_entry.host_folder(cloud.boot_dir, host.address))
    ssh.run(host, f"test -d /run/systemd/system && {{ {disable}true; }}; rm -f {path}; rm -rf {folder}; true")
