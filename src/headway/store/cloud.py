"""The cloud: networking mode, the bridge, and the managed GCS store.

``headway cloud setup`` (or the first deploy) decides once how nodes get their own
addresses on this machine — network namespaces on a bridge as root, else loopback
ports, or hosts over SSH — and starts the automatic-setup store: a primary and a
replica with a password, append-only persistence, ``noeviction``, and Sentinel, bound
only to loopback and the address the nodes use. In ssh mode with a ``store:`` block
the three run on three store hosts instead (``store_procs``), a Sentinel on each.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from headway.hosts import ssh, vip
from headway.hosts.ssh import SshCloud
from headway.model.errors import Failed
from headway.state import state_snapshot
from headway.store import storage, store_conf, store_procs, store_tls
from headway.store.store_conf import SENTINEL_NAME, StoreProcess, TlsFiles
from headway.system import netns, paths

__all__ = [
    "CloudError",
    "CloudRecord",
    "load",
    "mode_default",
    "setup",
    "status",
    "store_address",
    "teardown",
]

MODES = ("netns", "loopback", "ssh")


class CloudError(Failed):
    pass


class CloudRecord(BaseModel):
    id: str
    mode: str
    subnet: str | None = None
    bridge_ip: str | None = None
    bind: list[str]
    maxmemory: str
    store: list[StoreProcess]
    created_at: float
    sentinel: StoreProcess | None = None  # promotes the replica when the primary dies
    sentinels: list[StoreProcess] = []  # ssh mode with store hosts: one on each (quorum 2)
    alert_percent: float = 80.0  # store memory alert threshold, % of maxmemory
    service_alert_percent: float = 25.0  # one service's share of the managed store that raises an alert
    alert_webhook: str | None = None  # alerts are POSTed here as JSON
    ssh: SshCloud | None = None  # mode ssh: the hosts, their venv, how the head address moves
    tls: bool = False  # the store speaks TLS only (ssh mode: it listens on the network)

    @property
    def node_host(self) -> str:
        """The store address as the nodes see it."""
        if self.mode == "ssh" and self.ssh is not None:
            return self.ssh.store_address
        return self.bridge_ip if self.mode == "netns" and self.bridge_ip else "127.0.0.1"

    @property
    def primary(self) -> StoreProcess:
        return next(p for p in self.store if p.role == "primary")

    def all_sentinels(self) -> list[StoreProcess]:
        return [self.sentinel] if self.sentinel is not None else list(self.sentinels)

    def where(self, proc: StoreProcess) -> tuple[str, int]:
        """A store process's address as the nodes reach it."""
        return (proc.host or self.node_host, proc.port)

    def bind_of(self, proc: StoreProcess) -> list[str]:
        return ["127.0.0.1", proc.host] if proc.host else self.bind


def _record_path() -> Path:
    return paths.cloud_dir() / "cloud.json"


def _password_path() -> Path:
    return paths.cloud_dir() / "store.password"


def mode_default() -> str:
    forced = os.environ.get("HEADWAY_MODE")
    if forced:
        if forced not in MODES:
            raise CloudError(f"HEADWAY_MODE={forced!r} is not one of {', '.join(MODES)}")
        return forced
    return "netns" if netns.available() else "loopback"


def auto_setup_enabled() -> bool:
    """The first deploy sets up the cloud unless ``HEADWAY_AUTO_CLOUD=0``."""
    return os.environ.get("HEADWAY_AUTO_CLOUD", "1") not in ("0", "false", "no")


def default_store_available() -> bool:
    """Whether a service that names no store address gets one (the managed store)."""
    return load() is not None or auto_setup_enabled()


def load() -> CloudRecord | None:
    p = _record_path()
    if not p.exists():
        return None
    rec = CloudRecord.model_validate_json(p.read_text())
    if rec.ssh is not None:
        ssh.configure_host_keys(rec.ssh)  # whoever reaches the hosts, with the operator's keys
    return rec


def _save(rec: CloudRecord) -> None:
    paths.write_private(_record_path(), rec.model_dump_json(indent=2))


def password() -> str:
    return _password_path().read_text().strip()


def _tls_dir() -> Path:
    return paths.cloud_dir() / "tls"


def tls_files(rec: CloudRecord) -> TlsFiles | None:
    """The store's CA and certificate (made at setup), when it speaks TLS."""
    hosts = ["127.0.0.1", rec.node_host, *(rec.ssh.store.hosts if rec.ssh and rec.ssh.store else [])]
    return store_tls.ensure(_tls_dir(), hosts) if rec.tls else None


def _address(rec: CloudRecord, host: str, port: int) -> storage.StoreAddress:
    tls = tls_files(rec)
    return storage.StoreAddress(
        host=host, port=port, tls=tls is not None, password=password(), ca_cert=tls.ca if tls else None
    )


def local_address(rec: CloudRecord, port: int) -> storage.StoreAddress:
    """One store process as headway reaches it here (loopback; TLS when the store speaks it)."""
    return _address(rec, "127.0.0.1", port)


def admin_address(rec: CloudRecord, proc: StoreProcess) -> storage.StoreAddress:
    """One store process as headway reaches it: over loopback here, at its host's address there."""
    return _address(rec, proc.host, proc.port) if proc.host else local_address(rec, proc.port)


def store_address(rec: CloudRecord) -> storage.StoreAddress:
    """The managed store's current primary (Sentinel says which), with the cloud password,
    as the nodes reach it."""
    return _address(rec, *current_primary(rec))


def current_primary(rec: CloudRecord) -> tuple[str, int]:
    """The address of the store process that is primary now: after a failover, the promoted
    one, as the first Sentinel that answers says; without an answer, the recorded primary."""
    return sentinel_primary(rec) or rec.where(rec.primary)


def sentinel_primary(rec: CloudRecord) -> tuple[str, int] | None:
    """The primary's address as the first Sentinel that answers says, or None."""
    for sentinel in rec.all_sentinels():
        if not _running(rec, sentinel):
            continue
        try:
            client = storage.connect(admin_address(rec, sentinel), 2)
            try:
                addr = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_NAME)
            finally:
                client.close()
            if addr:
                host = addr[0].decode() if isinstance(addr[0], bytes) else str(addr[0])
                return host, int(addr[1])
        except Exception:  # noqa: BLE001 - ask the next one
            continue
    return None


def _running(rec: CloudRecord, proc: StoreProcess) -> bool:
    return store_procs.running(rec.ssh, proc)


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
        if not _password_path().exists():
            paths.write_private(_password_path(), secrets.token_urlsafe(24))
        state_snapshot.key(paths.home())  # the controllers' shared key: a standby gets it with this folder
        _save(rec)
    elif mode and mode != rec.mode:
        raise CloudError(f"the cloud already runs in {rec.mode} mode; 'headway cloud teardown' first to change it")
    if rec.mode == "netns":
        netns.ensure_bridge(netns.Subnet(network=ipaddress.IPv4Network(rec.subnet)))
    restart_dead(rec)
    _wait_replica(_address(rec, *current_primary(rec)), 15)
    if rec.ssh is not None and rec.ssh.ingress is not None:
        vip.ensure(rec.ssh, rec.id)
    return rec


def restart_dead(rec: CloudRecord) -> list[int]:
    """Start every store process that is not running: the primary (as Sentinel knows it)
    as primary, the others as its replicas; then the Sentinels. A store host that does not
    answer is left for a later round. Returns the restarted ports."""
    pw = password()
    tls = tls_files(rec)
    running = [p for p in rec.store if _running(rec, p)]
    primary = current_primary(rec) if running else rec.where(rec.primary)
    restarted = []
    for proc in rec.store:
        if _running(rec, proc):
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
        if not _running(rec, sentinel):
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
    _save(rec)
    _wait_ping(admin_address(rec, proc), 10)
    return True


def status(rec: CloudRecord) -> dict:
    """Observed state of the store (no secrets)."""
    out: dict = {"id": rec.id, "mode": rec.mode, "subnet": rec.subnet, "store": []}
    pw = password()
    for proc in rec.store:
        entry: dict = {"role": proc.role, "host": proc.host, "port": proc.port, "running": _running(rec, proc)}
        if entry["running"]:
            try:
                client = storage.connect(admin_address(rec, proc), 2)
                mem = client.info("memory")
                repl = client.info("replication")
                entry.update(
                    used_memory=int(mem.get("used_memory", 0)),
                    maxmemory=int(mem.get("maxmemory", 0)),
                    replication_role=repl.get("role"),
                    connected_replicas=int(repl.get("connected_slaves", 0)),
                )
                client.close()
            except Exception as exc:  # noqa: BLE001 - status must not fail on one probe
                entry["error"] = storage.scrub(str(exc), pw)
        out["store"].append(entry)
    out["address"] = store_address(rec).masked()
    out["primary_port"] = current_primary(rec)[1]
    if rec.ssh is not None and rec.ssh.ingress is not None:
        out["endpoint_address"] = {
            "address": rec.ssh.ingress.address,
            "hosts": rec.ssh.ingress.hosts,
            "held_by": vip.holder(rec.ssh),
        }
    sentinels = [{"host": s.host, "port": s.port, "running": _running(rec, s)} for s in rec.all_sentinels()]
    out["sentinel"] = sentinels[0] if rec.sentinel else None
    out["sentinels"] = sentinels
    if rec.ssh is not None and rec.ssh.store is not None:
        out["state_snapshot"] = state_snapshot.size()  # the leader's state in the store, in bytes
    return out


def teardown() -> None:
    """Stop the store, remove its data and the bridge. Callers check no service is left."""
    rec = load()
    if rec is not None:
        for proc in [*rec.store, *rec.all_sentinels()]:
            store_procs.stop(rec.ssh, proc, remove_data=True)
        if rec.ssh is not None and rec.ssh.ingress is not None:
            vip.stop(rec.ssh, rec.id)
        if rec.mode == "netns":
            netns.remove_bridge()
    shutil.rmtree(paths.cloud_dir(), ignore_errors=True)


def admin_clients(rec: CloudRecord) -> list:
    """A client for every running store process (ACL users are not replicated)."""
    return [storage.connect(admin_address(rec, proc), 3) for proc in rec.store if _running(rec, proc)]


def set_alerts(percent: float | None, webhook: str | None, service_percent: float | None = None) -> CloudRecord:
    rec = load()
    if rec is None:
        raise CloudError("no cloud is set up; run 'headway cloud setup'")
    if percent is not None:
        rec.alert_percent = percent
    if service_percent is not None:
        rec.service_alert_percent = service_percent
    if webhook is not None:
        rec.alert_webhook = webhook or None
    _save(rec)
    return rec
