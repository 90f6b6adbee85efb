"""Who a service's Ray nodes run as, and what they may see: the node sandbox.

A service runs code its owner picked; a replica that is hostile or broken into must get
nothing beyond its own service. So every Ray process of a service runs as a user of its
own — a numeric uid/gid per service (not one shared node user: two services under one
uid could read each other's temp dirs, tokens and packages), with no passwd entry to
create or clean up (Ray tolerates a uid without a name; ``USER``/``HOME`` are set) — in a
PID namespace of its own (its ``/proc`` shows only its node's processes, so no other
command line or environment), with ``no_new_privs`` (no setuid binary gives root back).
In the node's mount namespace the control plane's state dir is covered by an empty
tmpfs, and so is every directory the node may not enter (``/root``), with only what the
node needs bound back: the Python that runs Ray, its own temp dir and its service's
packages. The node supervisor does the mounts and drops root (``node_supervisor``).

A rollout's new cluster is the same service: it gets the service's uid.

This needs root on the node's host (netns mode, loopback mode as root, SSH as root).
Loopback mode without root runs nodes as the operator's own user: no isolation from the
state dir is possible there (README, security model).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: Node uids start here: above the ranges distributions give people (1000+), systemd's
#: dynamic users (61184-65519) and the usual subordinate ranges of user namespaces.
UID_BASE = 2_000_000
UID_SLOTS = 100_000
#: A node's temp dir: root's, writable by the service's group only. Not the node user's
#: own: Ray makes a temp dir it owns 0777 "so others can use it" at every worker process's
#: start (``try_make_directory_shared``); on a dir it does not own that chmod fails quietly.
TEMP_DIR_MODE = 0o770
#: The owner of a service's package folder (root) lets the service's group read it.
PACKAGE_DIR_MODE = 0o750
PACKAGE_FILE_MODE = 0o640


@dataclass(frozen=True)
class Sandbox:
    """How one node is boxed in: its user and group, the paths its mount namespace covers
    (``hide``) and the ones it binds back (``expose``) — the Python runtime is added by the
    supervisor on the node's own host, which knows where it lives there."""

    uid: int
    gid: int
    hide: tuple[str, ...] = ()
    expose: tuple[str, ...] = ()

    def as_json(self) -> dict:
        return {"uid": self.uid, "gid": self.gid, "hide": list(self.hide), "expose": list(self.expose)}

    def env(self, temp_dir: str) -> dict[str, str]:
        """A home and a temp dir of its own: nothing the node writes lands in a shared place."""
        user = f"hw{self.uid}"
        return {"HOME": temp_dir, "TMPDIR": temp_dir, "USER": user, "LOGNAME": user}


def allocate(service: str, taken: Iterable[tuple[str, int | None]]) -> int:
    """The service's node uid: the one it already has (a rollout's cluster, a redeploy),
    else the lowest free one. ``taken``: (service, uid) of every record."""
    pairs = list(taken)
    for owner, uid in pairs:
        if owner == service and uid is not None:
            return uid
    used = {uid for _, uid in pairs if uid is not None}
    for uid in range(UID_BASE, UID_BASE + UID_SLOTS):
        if uid not in used:
            return uid
    raise RuntimeError("every node uid is in use")  # 100,000 services: not reached


def can_sandbox() -> bool:
    """Switching users and making namespaces needs root here."""
    return os.geteuid() == 0


def share(package: Path, gid: int) -> None:
    """Let the service's group (and no one else) read a package and enter its folder."""
    for path, mode in ((package.parent, PACKAGE_DIR_MODE), (package, PACKAGE_FILE_MODE)):
        os.chown(path, -1, gid, follow_symlinks=False)
        os.chmod(path, mode)


#: What the node's host must be able to do for the sandbox (``ray_node.NodeLaunch.command``).
PROBE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "true"]


def probe_problem(status: int, err: str, where: str) -> str | None:
    """Why ``where`` cannot box nodes in (``PROBE``'s result), or None."""
    if status == 0:
        return None
    why = err.strip().splitlines()[-1] if err.strip() else f"exit {status}"
    return (
        f"{where}: cannot give a node its own PID and mount namespaces for its sandbox ({why}); "
        "run headway as root on a host that allows namespaces (util-linux's unshare)"
    )
