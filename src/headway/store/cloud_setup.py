"""Setting the cloud up and down: ``headway cloud setup`` (or the first deploy) decides once
how nodes get their own addresses on this machine — network namespaces on a bridge as root,
else loopback ports, or hosts over SSH — and starts the automatic-setup store: a primary and
a replica with a password, append-only persistence, ``noeviction``, and Sentinel, bound
only to loopback and the address the nodes use. In ssh mode with a ``store:`` block the
three run on three store hosts instead (``store_procs``), a Sentinel on each. Also: store
processes restarted when they die, the store's observed status, and teardown.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import shutil
import time
from collections.abc import Callable
from functools import partial

from headway.hosts import remote, vip
from headway.model.cloud_config import MODES, SshCloud, SshError
from headway.state import state_snapshot
from headway.store import storage, store_conf, store_procs
from headway.store.cloud import (
    CloudError,
    CloudRecord,
    address_at,
    admin_address,
    current_primary,
    is_running,
    load,
    mode_default,
    password,
    password_path,
    save,
    store_address,
    tls_files,
)
from headway.store.store_conf import StoreProcess, TlsFiles
from headway.system import bounded, netns, paths


def _wait_ping(addr: storage.StoreAddress, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            storage.check_reachable(addr, timeout_s=1)
            return
        except storage.StoreError as exc:
            last = exc
            time.sleep(0.1)
    raise CloudError(f"the managed store did not come up: {last}")


def _wait_replica(addr: storage.StoreAddress, timeout_s: float) -> None:
    client = storage.connect(addr)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            info = client.info("replication")
            if int(info.get("connected_slaves", 0)) >= 1:
                return
            time.sleep(0.2)
    finally:
        client.close()
    raise CloudError("the managed store's replica did not connect to the primary within 15 s")


def setup(
    mode: str | None = None,
    maxmemory: str = "1gb",
    ssh_config: SshCloud | None = None,
    check_hosts: Callable[[SshCloud], None] | None = None,
) -> CloudRecord:
    """Make sure the cloud exists and its store runs; idempotent, keeps data and password.
    ``check_hosts`` vets a new SSH cloud's hosts before anything starts (the SSH provider's
    check, handed down by the caller: the store layer knows nothing of Ray nodes)."""
    rec = load()
    if rec is None:
        mode = mode or ("ssh" if ssh_config else mode_default())
        if mode not in MODES:
            raise CloudError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        if (mode == "ssh") != (ssh_config is not None):
            raise CloudError("ssh mode needs a cloud config with the hosts: --config cloud.yaml")
        bind = ["127.0.0.1"]
        subnet = bridge_ip = None
        if ssh_config is not None:
            if check_hosts is not None:
                check_hosts(ssh_config)
            bind.append(ssh_config.store_address)
        if mode == "netns":
            if not netns.available():
                raise CloudError("network-namespace mode needs root and the 'ip' tool; use --mode loopback")
            sn = netns.Subnet.configured()
            subnet, bridge_ip = str(sn.network), sn.bridge_ip
            bind.append(bridge_ip)
        cid = secrets.token_hex(4)
        if ssh_config is not None and ssh_config.store is not None:
            store, sentinels = store_procs.on_hosts(ssh_config, cid)
            sentinel = None
        else:
            store, sentinel = store_procs.here(paths.cloud_dir() / "store", cid)
            sentinels = []
        rec = CloudRecord(
            sentinel=sentinel,
            sentinels=sentinels,
            id=cid,
            mode=mode,
            subnet=subnet,
            bridge_ip=bridge_ip,
            bind=bind,
            maxmemory=maxmemory,
            store=store,
            created_at=time.time(),
            ssh=ssh_config,
            tls=mode == "ssh",
        )
        if not password_path().exists():
            paths.write_private(password_path(), secrets.token_urlsafe(24))
        state_snapshot.key(paths.home())  # the controllers' shared key: a standby gets it with this folder
        save(rec)
    elif mode and mode != rec.mode:
        raise CloudError(f"the cloud already runs in {rec.mode} mode; 'headway cloud teardown' first to change it")
    if rec.mode == "netns":
        netns.ensure_bridge(netns.Subnet(network=ipaddress.IPv4Network(rec.subnet)))
    restart_dead(rec)
    _wait_replica(store_address(rec), 15)
    if rec.ssh is not None and rec.ssh.ingress is not None:
        vip.ensure(rec.ssh, rec.id)
    return rec


def _boot_hosts(cfg: SshCloud) -> list[str]:
    """The hosts that run what a boot unit starts: the store's and the endpoints'."""
    return list(dict.fromkeys([*(cfg.store.hosts if cfg.store else []), *(cfg.ingress.hosts if cfg.ingress else [])]))


def boot_units(rec: CloudRecord) -> list[str]:
    """Give every store and ingress host its boot unit (``remote.install_boot_unit``); what
    was done on each, said. A host that does not answer is named: its unit is written at
    the next setup."""
    if rec.ssh is None:
        return []
    said = []
    for address in _boot_hosts(rec.ssh):
        try:
            said.append(remote.install_boot_unit(rec.ssh, rec.ssh.host(address)))
        except SshError as exc:
            said.append(f"host {address}: no boot unit written ({exc})")
    return said


def restart_dead(rec: CloudRecord) -> list[int]:
    """Start every store process that is not running: the primary (as Sentinel knows it)
    as primary, the others as its replicas; then the Sentinels. A store host that does not
    answer is left for a later round. Returns the restarted ports."""
    pw = password()
    tls = tls_files(rec)
    # Each process observed once. What a store host started at boot runs already: it is
    # taken as it is (adopted), not started twice.
    procs = [*rec.store, *rec.all_sentinels()]
    seen = {id(p): is_running(rec, p) for p in procs}
    adopted = [p for p in procs if not seen[id(p)] and store_procs.adopt(rec.ssh, p)]
    if adopted:
        seen |= {id(p): True for p in adopted}
        save(rec)
    running = [p for p in rec.store if seen[id(p)]]
    primary = current_primary(rec) if running else rec.where(rec.primary)
    restarted = []
    for proc in rec.store:
        if seen[id(proc)]:
            continue
        if running and rec.where(proc) == primary and rec.all_sentinels():
            # Sentinel has not promoted the replica yet: a dead primary restarted now would
            # come back as primary with what its file holds. Wait for the failover.
            continue
        replica_of = None if rec.where(proc) == primary else primary
        conf = store_conf.store(
            proc, rec.bind_of(proc), pw, rec.maxmemory, replica_of, rec.where(proc)[0], _tls_of(rec, proc, tls)
        )
        if _start(rec, proc, conf, tls, sentinel=False):
            restarted.append(proc.port)
    quorum = 2 if rec.sentinels else 1
    for sentinel in rec.all_sentinels():
        if not seen[id(sentinel)]:
            conf = store_conf.sentinel(
                sentinel, rec.bind_of(sentinel), pw, primary, _tls_of(rec, sentinel, tls), quorum, sentinel.host
            )
            _start(rec, sentinel, conf, tls, sentinel=True)
    return restarted


def _tls_of(rec: CloudRecord, proc: StoreProcess, tls: TlsFiles | None) -> TlsFiles | None:
    """The certificate files as the process's config names them: here, or its host's copy."""
    return None if tls is None else store_procs.host_tls(proc) if proc.host else tls


def _start(rec: CloudRecord, proc: StoreProcess, conf: str, tls: TlsFiles | None, sentinel: bool) -> bool:
    """Start one process and wait until it answers; False when its host does not answer."""
    try:
        store_procs.start(rec.ssh, proc, conf, tls, sentinel)
    except store_procs.SshError:
        if proc.host is None:
            raise
        return False
    save(rec)
    _wait_ping(admin_address(rec, proc), 10)
    return True


#: How long a status read waits for any one host or store process (they are asked at once).
PROBE_WITHIN_S = 10.0


def status(rec: CloudRecord) -> dict:
    """Observed state of the store (no secrets). Every process and host is asked at once,
    and one that has not answered within ``PROBE_WITHIN_S`` is shown as not answering."""
    pw = password()
    sentinels = rec.all_sentinels()
    probes: dict = {("store", i): partial(_store_entry, rec, proc, pw) for i, proc in enumerate(rec.store)}
    probes |= {("sentinel", i): partial(is_running, rec, s) for i, s in enumerate(sentinels)}
    probes["primary"] = partial(current_primary, rec)
    ingress = rec.ssh.ingress if rec.ssh is not None else None
    if ingress is not None:
        probes["holder"] = partial(vip.holder, rec.ssh)
    got = bounded.run_all(probes, PROBE_WITHIN_S)
    out: dict = {"id": rec.id, "mode": rec.mode, "subnet": rec.subnet, "store": []}
    for i, proc in enumerate(rec.store):
        entry = got[("store", i)]
        if isinstance(entry, Exception):
            late = storage.scrub(str(entry), pw)
            entry = {"role": proc.role, "host": proc.host, "port": proc.port, "running": False, "error": late}
        out["store"].append(entry)
    primary = got["primary"]
    host, port = rec.where(rec.primary) if isinstance(primary, Exception) else primary
    out["address"] = address_at(rec, host, port).masked()
    out["primary_port"] = port
    if ingress is not None:
        holder = got["holder"]
        out["endpoint_address"] = {
            "address": ingress.address,
            "hosts": ingress.hosts,
            "held_by": None if isinstance(holder, Exception) else holder,
        }
    listed = [_sentinel_entry(s, got[("sentinel", i)], pw) for i, s in enumerate(sentinels)]
    out["sentinel"] = listed[0] if rec.sentinel else None
    out["sentinels"] = listed
    if rec.ssh is not None and rec.ssh.store is not None:
        out["state_snapshot"] = state_snapshot.size()  # the leader's state in the store, in bytes
    return out


def _sentinel_entry(sentinel: StoreProcess, probed: object, pw: str) -> dict:
    """One Sentinel as its probe found it. A probe that failed or was late is not a
    Sentinel seen down: the entry says so, so that a busy host is not read as a dead one."""
    entry: dict = {"host": sentinel.host, "port": sentinel.port, "running": probed is True}
    if isinstance(probed, Exception):
        entry["error"] = storage.scrub(str(probed), pw)
    return entry


def _store_entry(rec: CloudRecord, proc: StoreProcess, pw: str) -> dict:
    """One store process as it answers now: running, memory, its replication role."""
    entry: dict = {"role": proc.role, "host": proc.host, "port": proc.port, "running": is_running(rec, proc)}
    if entry["running"]:
        try:
            client = storage.connect(admin_address(rec, proc), 2)
            try:
                mem = client.info("memory")
                repl = client.info("replication")
            finally:
                client.close()
            entry.update(
                used_memory=int(mem.get("used_memory", 0)),
                maxmemory=int(mem.get("maxmemory", 0)),
                replication_role=repl.get("role"),
                connected_replicas=int(repl.get("connected_slaves", 0)),
            )
        except Exception as exc:  # noqa: BLE001 - status must not fail on one probe
            entry["error"] = storage.scrub(str(exc), pw)
    return entry


def teardown() -> None:
    """Stop the store, remove its data and the bridge. Callers check no service is left."""
    rec = load()
    if rec is not None:
        for proc in [*rec.store, *rec.all_sentinels()]:
            store_procs.stop(rec.ssh, proc, remove_data=True)
        if rec.ssh is not None and rec.ssh.ingress is not None:
            vip.stop(rec.ssh, rec.id)
        for address in _boot_hosts(rec.ssh) if rec.ssh is not None else []:
            with contextlib.suppress(SshError):  # a host that is down keeps its unit: it starts nothing left
                remote.remove_boot_unit(rec.ssh, rec.ssh.host(address))
        if rec.mode == "netns":
            netns.remove_bridge()
    shutil.rmtree(paths.cloud_dir(), ignore_errors=True)
