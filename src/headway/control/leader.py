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
import logging
import os
import secrets
import socket
import threading
import time
from pathlib import Path

import redis

from headway.control import standby_api
from headway.control.context import Context
from headway.state import state_snapshot
from headway.store import cloud, storage
from headway.system import paths

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
# A package, once: written only while the lease is the caller's and the key is new.
_PUT_NEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'NX')
return 1
"""
_DELETE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
"""


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
        self._last_mark = ""  # the state folder's fingerprint when it was last written
        self._pushed: set[str] = set()  # the packages the store holds, by name
        prefix = f"headway:{crec.id}"
        self.keys = {
            "leader": f"{prefix}:leader",
            "epoch": f"{prefix}:epoch",
            "state": f"{prefix}:state",
            "api": f"{prefix}:api",
            "pkg": f"{prefix}:pkg:",
        }

    def _ms(self) -> str:
        return str(int(self.lease_s * 1000))

    @property
    def value(self) -> str:
        return f"{self.me} {self.epoch}"

    def _client(self, timeout_s: float) -> redis.Redis:
        """The store's primary now, as an admin; the cloud record as it is now (a restored or
        repaired one names the live Sentinels)."""
        return storage.connect(cloud.store_address(Context.load().cloud or self.crec), timeout_s)

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
            renewed: bool | None = bool(
                self._run(_RENEW, [self.keys["leader"], self.keys["epoch"]], [self.value, self._ms(), str(self.epoch)])
            )
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
        """Write the state folder if it changed (``state_snapshot``), and each package it
        gained; False when the lease is not ours (refused), None when nothing changed or
        the store did not answer."""
        home = home or paths.home()
        mark = state_snapshot.fingerprint(home)
        if mark == self._last_mark:
            return None
        blob = state_snapshot.build(home)
        try:
            if not self._put_packages(home):
                return False
            ok = bool(
                self._run(
                    _PUT_STATE, [self.keys["leader"], self.keys["state"]], [self.value, base64.b64encode(blob).decode()]
                )
            )
        except Exception:  # noqa: BLE001 - written at a later round
            return None
        if ok:
            self._last_mark = mark
            sizes = [p.stat().st_size for p in state_snapshot.packages(home).values()]
            state_snapshot.record_size(home, len(blob), sum(sizes))
        return ok

    def _put_packages(self, home: Path) -> bool:
        """Store the packages the store lacks, once each, and drop those no longer kept."""
        local = state_snapshot.packages(home)
        if set(local) == self._pushed:
            return True
        prefix = self.keys["pkg"]
        for name, path in local.items():
            if name not in self._pushed and not self._run(
                _PUT_NEW,
                [self.keys["leader"], prefix + name],
                [self.value, base64.b64encode(path.read_bytes()).decode()],
            ):
                return False
        gone = [prefix + n for n in self._pushed - set(local)]
        if gone and not self._run(_DELETE, [self.keys["leader"], *gone], [self.value]):
            return False
        self._pushed = set(local)
        return True

    def restore_state(self, home: Path | None = None) -> bool:
        """Unpack the last leader's state into this controller's folder, with the packages
        it lacks; False if there is none. SnapshotRefused when it is not signed with this
        controller's key: nothing is unpacked then."""
        home = home or paths.home()
        client = self._client(3)
        try:
            raw = client.get(self.keys["state"])
            if not raw:
                return False
            state_snapshot.restore(base64.b64decode(raw), home)
            have = state_snapshot.packages(home)
            for key in client.scan_iter(match=self.keys["pkg"] + "*", count=100):
                name = key.decode()[len(self.keys["pkg"]) :]
                if name not in have and (data := client.get(key)):
                    state_snapshot.save_package(home, name, base64.b64decode(data))
        finally:
            client.close()
        self._pushed = set(state_snapshot.packages(home))
        return True


def wait_for_lease(ctx: Context, api_sock: socket.socket, api_tls: tuple[str, str] | None) -> Lease | None:
    """With the store on store hosts: wait until this controller holds the lease (a standby
    waits here, its API port answering with the way to the leader's), then take the last
    leader's state. Else None: no lease is needed."""
    crec = ctx.cloud
    if not enabled(crec):
        return None
    assert crec is not None
    lease = Lease(crec)
    log.info("controller %d waiting for the controller lease (standby)", os.getpid())
    stop = threading.Event()
    controllers = set(crec.ssh.controllers) if crec.ssh else set()
    stand_in = standby_api.serve(
        api_sock, lambda: standby_api.leader_target(lease.leader_api(), controllers), stop, api_tls
    )
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
    try:
        restored = lease.restore_state()
    except state_snapshot.SnapshotRefused as exc:
        log.error("%s; acting on this controller's own state", exc)
        restored = False
    log.info(
        "controller %d holds the lease (epoch %s); %s",
        os.getpid(),
        lease.epoch,
        "the last leader's state restored" if restored else "no earlier state in the store",
    )
    return lease
