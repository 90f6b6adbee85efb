"""One controller acts at a time: a lease in the managed store, with a fencing token, and
the leader's state kept there for whoever takes over.

Active when the store runs on store hosts (``store:`` in the cloud config): then the store
outlives any one machine, and a standby controller on another host — started with a copy
of the cloud's folder (``cloud.json``, the store's password and CA) — waits for the lease.

- ``headway:<cloud>:epoch`` is incremented by every acquisition: the fencing token.
- ``headway:<cloud>:leader`` holds ``<controller id> <epoch>`` for ``LEASE_S``; the leader
  renews it every round, and acts only while it holds it. A store failover that outlasts
  the lease loses the key (its expiry is absolute): the leader reclaims it if no one
  acquired it since (the epoch is still its own), else it is fenced. Renewal, acquisition and every
  write of the state are scripts that run atomically in the store: a leader whose value is
  gone (it slept past its lease, or lost a race) finds it out at its next renewal and exits
  without acting; its state writes are refused (``put_state``).
- ``headway:<cloud>:state`` is the leader's state folder (``state.db`` and the service and
  cloud folders, not logs), written when it changed. A new leader restores it before it
  acts, so it carries on where the old one stopped (at most one round behind).

The service ACL users cannot read these keys (theirs are ``RAY<namespace>@*``). A store
failover keeps the lease (replicated); a leader that cannot reach the store keeps acting
until its lease would have run out, then pauses.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import logging
import os
import secrets
import socket
import sqlite3
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import redis

from . import cloud, paths, standby_api, storage

LEASE_S = 10.0
#: How long a standby sees the lease free before it takes it (the leader's reclaim goes first).
FREE_FOR_S = 3.0

log = logging.getLogger("headway.controller")

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. epoch, 'PX', ARGV[2])
return epoch
"""
# Renew; or reclaim a lease the store lost (a failover that outlasted it: the key's expiry
# is absolute) when no one has acquired it since — the epoch is still ours.
_RENEW = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if held == false and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
# Write a key only while the lease is the caller's (the state; the API's address).
_PUT_STATE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""

#: What the state folder holds that a new leader needs; never logs, sockets or PID files.
_SKIP_SUFFIXES = (".log", ".sock", ".pid", ".lock", ".init-lock", "-wal", "-shm", ".part")


def enabled(crec: cloud.CloudRecord | None) -> bool:
    return crec is not None and crec.ssh is not None and crec.ssh.store is not None


def decide(renewed: bool | None, now: float, valid_until: float) -> str:
    """What a leader does after a renewal: ``act``, ``pause`` (the store did not answer and
    the lease may have run out), or ``stop`` (another controller holds it)."""
    if renewed is False:
        return "stop"
    if renewed is None and now >= valid_until:
        return "pause"
    return "act"


class Lease:
    def __init__(self, crec: cloud.CloudRecord, lease_s: float = LEASE_S):
        self.crec = crec
        self.lease_s = lease_s
        self.me = secrets.token_hex(8)
        self.epoch: int | None = None
        self.valid_until = 0.0
        self.fenced = False  # a renewal found the lease another controller's: never acts again
        self._last_digest = ""
        prefix = f"headway:{crec.id}"
        self.keys = {"leader": f"{prefix}:leader", "epoch": f"{prefix}:epoch", "state": f"{prefix}:state",
                     "api": f"{prefix}:api"}  # fmt: skip

    def _ms(self) -> str:
        return str(int(self.lease_s * 1000))

    @property
    def value(self) -> str:
        return f"{self.me} {self.epoch}"

    def _client(self, timeout_s: float) -> redis.Redis:
        """The store's primary now, as an admin; the cloud record as it is now (a restored or
        repaired one names the live Sentinels)."""
        return storage.connect(cloud.store_address(cloud.load() or self.crec), timeout_s)

    def _run(self, script: str, keys: list[str], args: list[str]) -> int:
        client = self._client(2)
        try:
            return int(client.eval(script, len(keys), *keys, *args))
        finally:
            client.close()

    def acquire(self) -> bool:
        try:
            started = time.monotonic()
            epoch = self._run(_ACQUIRE, [self.keys["leader"], self.keys["epoch"]], [self.me, self._ms()])
        except Exception:  # noqa: BLE001 - the store may be failing over: try again
            return False
        if epoch:
            self.epoch, self.valid_until = epoch, started + self.lease_s
        return bool(epoch)

    def free(self) -> bool:
        """No controller holds the lease now, as the store answers (False when it does not)."""
        try:
            client = self._client(2)
            try:
                return not client.exists(self.keys["leader"])
            finally:
                client.close()
        except Exception:  # noqa: BLE001 - unknown is not free
            return False

    def renew(self) -> str:
        """Renew the lease; what to do now (``decide``)."""
        started = time.monotonic()
        try:
            renewed: bool | None = bool(self._run(_RENEW, [self.keys["leader"], self.keys["epoch"]],
                                                  [self.value, self._ms(), str(self.epoch)]))  # fmt: skip
        except Exception:  # noqa: BLE001 - unknown: act on until the lease would have run out
            renewed = None
        if renewed:
            self.valid_until = started + self.lease_s
        self.fenced = self.fenced or renewed is False
        return decide(renewed, time.monotonic(), self.valid_until)

    @property
    def verdict(self) -> str:
        """What the controller does now: the last renewal's answer, aged by the clock."""
        return decide(False if self.fenced else None, time.monotonic(), self.valid_until)

    def keep(self, stopping: threading.Event, every_s: float = 1.0) -> None:
        """Renew in a thread of its own, every ``every_s``: a round that waits on a dead host
        (an SSH command's timeout) must not let the lease run out under a live leader."""

        def loop() -> None:
            while not stopping.is_set() and not self.fenced:
                self.renew()
                stopping.wait(every_s)

        threading.Thread(target=loop, name="lease", daemon=True).start()

    def release(self) -> None:
        with contextlib.suppress(Exception):  # else it runs out by itself
            self._run(_RELEASE, [self.keys["leader"]], [self.value])

    def publish_api(self, url: str) -> None:
        """Where the leader's API answers: a standby sends its callers there."""
        with contextlib.suppress(Exception):  # a standby then answers 503 instead of redirecting
            self._run(_PUT_STATE, [self.keys["leader"], self.keys["api"]], [self.value, url])

    def leader_api(self) -> str | None:
        """The leader's API URL while a leader holds the lease, else None."""
        client = self._client(2)
        try:
            if not client.exists(self.keys["leader"]):
                return None
            url = client.get(self.keys["api"])
        finally:
            client.close()
        return url.decode() if url else None

    # -- the state ----------------------------------------------------------------------
    def put_state(self, home: Path | None = None) -> bool | None:
        """Write the state folder if it changed; False when the lease is not ours (refused),
        None when nothing changed or the store did not answer."""
        blob = snapshot(home or paths.home())
        digest = hashlib.sha256(blob).hexdigest()
        if digest == self._last_digest:
            return None
        try:
            ok = bool(self._run(_PUT_STATE, [self.keys["leader"], self.keys["state"]],
                                [self.value, base64.b64encode(blob).decode()]))  # fmt: skip
        except Exception:  # noqa: BLE001 - written at a later round
            return None
        if ok:
            self._last_digest = digest
        return ok

    def restore_state(self, home: Path | None = None) -> bool:
        """Unpack the last leader's state into this controller's folder; False if there is none."""
        client = self._client(3)
        try:
            raw = client.get(self.keys["state"])
        finally:
            client.close()
        if not raw:
            return False
        restore(base64.b64decode(raw), home or paths.home())
        return True


def snapshot(home: Path) -> bytes:
    """The state folder as a tar.gz: ``state.db`` as one consistent copy (SQLite's backup),
    the service and cloud folders without logs, sockets or PID files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar, tempfile.TemporaryDirectory() as tmp:
        db_file = home / "state.db"
        if db_file.exists():
            copy = Path(tmp) / "state.db"
            src, dst = sqlite3.connect(db_file), sqlite3.connect(copy)
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
            tar.add(copy, "state.db", filter=_clean)
        for folder in ("cloud", "services"):
            if (home / folder).is_dir():
                tar.add(home / folder, folder, filter=_clean)
    return gzip.compress(buf.getvalue(), mtime=0)  # the same state, the same bytes: written once


def _clean(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = info.name
    if name.endswith(_SKIP_SUFFIXES) or "/logs" in f"/{name}" or not (info.isfile() or info.isdir()):
        return None
    info.mtime = 0
    return info


def restore(blob: bytes, home: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        tar.extractall(home, filter="data")
    for f in ("state.db-wal", "state.db-shm"):
        (home / f).unlink(missing_ok=True)


def wait_for_lease(api_sock: socket.socket, api_tls: tuple[str, str] | None) -> Lease | None:
    """With the store on store hosts: wait until this controller holds the lease (a standby
    waits here, its API port answering with the way to the leader's), then take the last
    leader's state. Else None: no lease is needed."""
    crec = cloud.load()
    if not enabled(crec):
        return None
    assert crec is not None
    lease = Lease(crec)
    log.info("controller %d waiting for the controller lease (standby)", os.getpid())
    stop = threading.Event()
    controllers = set(crec.ssh.controllers) if crec.ssh else set()
    stand_in = standby_api.serve(api_sock, lambda: standby_api.leader_target(lease.leader_api(), controllers), stop,
                                 api_tls)  # fmt: skip
    free_since: float | None = None
    while True:
        # The lease must be seen free for a while first: a failover that outlasted it loses
        # the key for a moment, and the leader then reclaims it at its next renewal.
        now = time.monotonic()
        free_since = (free_since or now) if lease.free() else None
        if free_since is not None and now - free_since >= FREE_FOR_S and lease.acquire():
            break
        time.sleep(0.5)
    stop.set()
    stand_in.join()
    restored = lease.restore_state()
    log.info("controller %d holds the lease (epoch %s); %s", os.getpid(), lease.epoch,
             "the last leader's state restored" if restored else "no earlier state in the store")  # fmt: skip
    return lease
