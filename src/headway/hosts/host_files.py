"""Files and folders headway writes on a host over SSH, each checked before it is used.

A folder headway writes into (``/tmp/hw<uid>`` and every one under it, a store's data
folder, the packages' folder) is refused unless it is a real folder (not a link) owned by
the SSH user and writable by no one else; a missing one is made at its mode (the root's
mode is set each time; a folder below keeps its own, such as a package folder's 0750 for
its service's group). Without
this an unprivileged user of an ingress host could create ``/tmp/hw0/vip-…`` first and
edit the configuration root's keepalived runs.

A secret file is made new (``O_EXCL``, which never follows a link: the shell's
``noclobber``) at mode 0600 from its first byte (``umask 077``), owned as it must be before
a byte is written, its content sent on the command's standard input (never on a
command line), then moved into place. A package is copied only when its SHA-256 differs
from the host's copy (not its size: an edited file of the same size is a new file).
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import PurePosixPath

import paramiko

from headway.hosts import ssh
from headway.hosts.ssh import SshError, SshHost

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
