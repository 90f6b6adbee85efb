"""What brings a host's processes back when the host boots, as text: one folder per process
(an *entry*) with a ``run.sh``, and one systemd unit per host that runs every entry.

Why entries run once at boot rather than a unit per process with ``Restart=always``:
headway replaces these processes on purpose while they serve. A config change of an
endpoint is a seamless reload (a new HAProxy takes the listener over with ``-x``/``-sf``
and the old one exits), and a unit that supervised the old one would start it again
beside the new one. So systemd only boots them; headway's controller keeps supervising
(its repair, by marker, is the second line and adopts what the boot started).

Each entry keeps copies of the files its process reads from a folder that a boot may
wipe (Debian's systemd-tmpfiles empties ``/tmp`` at boot, where the endpoint's and
keepalived's configs live): ``run.sh`` puts them back, then starts the process detached
with its marker, unless a process with that marker already runs.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from headway.plan.systemd_units import Unit

#: The marker's variable in a process's environment (``system.procs.MARKER_VAR``: the
#: pure layer cannot import it; a unit test checks that both say the same).
MARKER_VAR = "HEADWAY_NODE"
RUN = "run.sh"


@dataclass(frozen=True)
class BootEntry:
    """One process as its host's boot starts it."""

    marker: str
    argv: Sequence[str]
    cwd: str
    log: str
    #: Folders to make (path, mode), parents first, before the files are put back.
    dirs: Sequence[tuple[str, int]] = ()
    #: The files it reads from a folder a boot may wipe: path -> text. Written there when
    #: headway starts it, and kept in the entry (under ``copy_name``) to be put back.
    files: Mapping[str, str] = field(default_factory=dict, repr=False)  # a config may hold tokens
    #: Files left by the process before the boot that would stop it starting (keepalived
    #: refuses to start while its pidfile names a live process, and PIDs are reused).
    stale: Sequence[str] = ()
    #: False for a process whose title overwrites its environment (Redis): its marker
    #: cannot be read, and a second one started by hand exits on its port in use.
    marker_readable: bool = True


def key(marker: str) -> str:
    """The entry's folder name: one per marker, whatever characters the marker holds."""
    return hashlib.sha256(marker.encode()).hexdigest()[:16]


def host_folder(boot_dir: str, address: str) -> str:
    """Every entry of one host (by address: test hosts share one file system)."""
    return f"{boot_dir}/{address}"


def copy_name(path: str) -> str:
    """The name of the entry's copy of the file at ``path`` (distinct for distinct paths)."""
    return f"{hashlib.sha256(path.encode()).hexdigest()[:12]}-{path.rsplit('/', 1)[-1]}"


def marked_scan(marker: str) -> str:
    """Shell that prints the PID of every process whose marker is exactly ``marker``."""
    quoted = shlex.quote(f"{MARKER_VAR}={marker}")
    return (
        "for p in /proc/[0-9]*; do "
        f"tr '\\0' '\\n' 2>/dev/null < $p/environ | grep -qxF {quoted} && echo ${{p#/proc/}}; "
        "done; true"
    )


def run_script(entry: BootEntry, folder: str) -> str:
    """``run.sh`` of an entry kept in ``folder``: nothing when its process runs already."""
    q = shlex.quote
    lines = [
        "#!/bin/sh",
        f"# headway: starts {entry.argv[0].rsplit('/', 1)[-1]} at boot ({entry.marker})",
    ]
    if entry.marker_readable:
        lines.append(f'[ -n "$({marked_scan(entry.marker)})" ] && exit 0')
    for path, mode in entry.dirs:
        lines.append(f"mkdir -p {q(path)} && chmod {mode:o} {q(path)} || exit 1")
    for path in sorted(entry.files):
        lines.append(f"cp {q(f'{folder}/{copy_name(path)}')} {q(path)} && chmod 600 {q(path)} || exit 1")
    if entry.stale:
        lines.append(f"rm -f {' '.join(q(path) for path in entry.stale)}")
    lines += [
        f"cd {q(entry.cwd)} || exit 1",
        f"{MARKER_VAR}={q(entry.marker)} setsid nohup {shlex.join(entry.argv)} > {q(entry.log)} 2>&1 < /dev/null &",
        "",
    ]
    return "\n".join(lines)


ALL = "boot.sh"


def boot_script(boot_dir: str, address: str) -> str:
    """The host's ``boot.sh``: every entry's ``run.sh``, each on its own (one that fails
    does not keep the others from starting). A file, not the unit's command line, where
    systemd would read ``$`` and ``%`` as its own."""
    folder = shlex.quote(host_folder(boot_dir, address))
    return f'#!/bin/sh\nfor f in {folder}/*/{RUN}; do [ -f "$f" ] && /bin/sh "$f"; done\ntrue\n'


def unit(boot_dir: str, address: str) -> Unit:
    """The host's boot unit: ``boot.sh``, once, before SSH lets a controller in (so that the
    controller finds the processes running and adopts them)."""
    return Unit(
        name=f"headway-boot-{address.replace('.', '-').replace(':', '-')}.service",
        description=f"headway: the store, Sentinel, endpoint and keepalived processes of {address} at boot",
        exec_start=["/bin/sh", f"{host_folder(boot_dir, address)}/{ALL}"],
        kind="oneshot",
        before=("ssh.service", "sshd.service"),
    )
