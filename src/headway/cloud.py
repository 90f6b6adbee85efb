"""The local cloud: networking mode, the bridge, and the managed GCS store.

``headway cloud setup`` (or the first deploy) decides once how nodes get their own
addresses on this machine — network namespaces on a bridge as root, else loopback
ports — and starts the automatic-setup store: a primary and a replica with a
password, append-only persistence, ``noeviction``, bound only to loopback and (in
namespace mode) the bridge address the nodes use.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

from pydantic import BaseModel

from . import binaries, netns, paths, procs, storage, store_conf, store_tls, vip
from .errors import Failed
from .ssh import SshCloud
from .ssh_provider import SshProvider
from .store_conf import SENTINEL_NAME, StoreProcess, TlsFiles

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
    alert_percent: float = 80.0  # store memory alert threshold, % of maxmemory
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
    return CloudRecord.model_validate_json(p.read_text())


def _save(rec: CloudRecord) -> None:
    paths.write_private(_record_path(), rec.model_dump_json(indent=2))


def password() -> str:
    return _password_path().read_text().strip()


def _tls_dir() -> Path:
    return paths.cloud_dir() / "tls"


def tls_files(rec: CloudRecord) -> TlsFiles | None:
    """The store's CA and certificate (made at setup), when it speaks TLS."""
    return store_tls.ensure(_tls_dir(), ["127.0.0.1", rec.node_host]) if rec.tls else None


def _address(rec: CloudRecord, host: str, port: int) -> storage.StoreAddress:
    tls = tls_files(rec)
    return storage.StoreAddress(host=host, port=port, tls=tls is not None, password=password(),
                                ca_cert=tls.ca if tls else None)  # fmt: skip


def local_address(rec: CloudRecord, port: int) -> storage.StoreAddress:
    """One store process as headway reaches it here (loopback; TLS when the store speaks it)."""
    return _address(rec, "127.0.0.1", port)


def store_address(rec: CloudRecord) -> storage.StoreAddress:
    """The managed store's current primary (Sentinel says which), with the cloud password,
    as the nodes reach it."""
    return _address(rec, rec.node_host, current_primary_port(rec))


def current_primary_port(rec: CloudRecord) -> int:
    """The port of the store process that is primary now: after a failover, the promoted one."""
    if rec.sentinel is not None and _running_pids(rec.sentinel):
        try:
            client = storage.connect(local_address(rec, rec.sentinel.port), 2)
            try:
                addr = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_NAME)
            finally:
                client.close()
            if addr:
                return int(addr[1])
        except Exception:  # noqa: BLE001 - without an answer, the recorded primary is the best guess
            pass
    return rec.primary.port


def _free_port(host: str = "127.0.0.1", start: int = 16379) -> int:
    for port in range(start, start + 2000):
        with socket.socket() as s:
            # Mirror the server's SO_REUSEADDR so a port in TIME_WAIT counts as free.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise CloudError("no free port for the store near 16379")


def _start(proc: StoreProcess, tls: bool, sentinel: bool = False) -> int:
    env = dict(os.environ, **{procs.MARKER_VAR: proc.marker})
    child = subprocess.Popen(
        [binaries.store_server(tls), proc.conf, *(["--sentinel"] if sentinel else [])],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    procs.track(child)
    return child.pid


def _running_pids(proc: StoreProcess) -> list[int]:
    return [proc.pid] if proc.pid and procs.same_process(proc.pid, proc.pid_started) else []


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


def setup(mode: str | None = None, maxmemory: str = "1gb", ssh_config: SshCloud | None = None) -> CloudRecord:
    """Make sure the cloud exists and its store runs; idempotent, keeps data and password."""
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
            SshProvider(ssh_config).check_ready()
            bind.append(ssh_config.store_address)
        if mode == "netns":
            if not netns.available():
                raise CloudError("network-namespace mode needs root and the 'ip' tool; use --mode loopback")
            sn = netns.Subnet.configured()
            subnet, bridge_ip = str(sn.network), sn.bridge_ip
            bind.append(bridge_ip)
        cid = secrets.token_hex(4)
        store_root = paths.cloud_dir() / "store"
        primary_port = _free_port()
        replica_port = _free_port(start=primary_port + 1)
        store = []
        for role, port in (("primary", primary_port), ("replica", replica_port)):
            d = store_root / role
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            store.append(
                StoreProcess(
                    role=role,
                    port=port,
                    data_dir=str(d),
                    conf=str(d / "store.conf"),
                    log=str(d / "store.log"),
                    marker=f"cloud-{cid}/store-{role}",
                )
            )
        sd = store_root / "sentinel"
        sd.mkdir(parents=True, exist_ok=True, mode=0o700)
        sentinel = StoreProcess(
            role="sentinel",
            port=_free_port(start=replica_port + 1),
            data_dir=str(sd),
            conf=str(sd / "sentinel.conf"),
            log=str(sd / "sentinel.log"),
            marker=f"cloud-{cid}/sentinel",
        )
        rec = CloudRecord(
            sentinel=sentinel,
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
        _save(rec)
    elif mode and mode != rec.mode:
        raise CloudError(f"the cloud already runs in {rec.mode} mode; 'headway cloud teardown' first to change it")
    if rec.mode == "netns":
        netns.ensure_bridge(netns.Subnet(network=ipaddress.IPv4Network(rec.subnet)))
    restart_dead(rec)
    _wait_replica(local_address(rec, current_primary_port(rec)), 15)
    if rec.ssh is not None and rec.ssh.ingress is not None:
        vip.ensure(rec.ssh, rec.id)
    return rec


def restart_dead(rec: CloudRecord) -> list[int]:
    """Start every store process that is not running: the primary (as Sentinel knows it)
    as primary, the others as its replicas; then the Sentinel. Returns the restarted ports."""
    pw = password()
    tls = tls_files(rec)
    running = [p for p in rec.store if _running_pids(p)]
    primary = current_primary_port(rec) if running else rec.primary.port
    restarted = []
    for proc in rec.store:
        if _running_pids(proc):
            continue
        if running and proc.port == primary and rec.sentinel is not None:
            # Sentinel has not promoted the replica yet: a dead primary restarted now would
            # come back as primary with what its file holds. Wait for the failover.
            continue
        replica_of = None if proc.port == primary else primary
        conf = store_conf.store(proc, rec.bind, pw, rec.maxmemory, replica_of, rec.node_host, tls)
        paths.write_private(Path(proc.conf), conf)
        proc.pid = _start(proc, tls is not None)
        proc.pid_started = procs.start_time(proc.pid)
        _save(rec)
        _wait_ping(local_address(rec, proc.port), 10)
        restarted.append(proc.port)
    if rec.sentinel is not None and not _running_pids(rec.sentinel):
        conf = store_conf.sentinel(rec.sentinel, rec.bind, pw, rec.node_host, primary, tls)
        paths.write_private(Path(rec.sentinel.conf), conf)
        rec.sentinel.pid = _start(rec.sentinel, tls is not None, sentinel=True)
        rec.sentinel.pid_started = procs.start_time(rec.sentinel.pid)
        _save(rec)
        _wait_ping(local_address(rec, rec.sentinel.port), 10)
    return restarted


def status(rec: CloudRecord) -> dict:
    """Observed state of the store (no secrets)."""
    out: dict = {"id": rec.id, "mode": rec.mode, "subnet": rec.subnet, "store": []}
    pw = password()
    for proc in rec.store:
        entry: dict = {"role": proc.role, "port": proc.port, "running": bool(_running_pids(proc))}
        if entry["running"]:
            try:
                client = storage.connect(local_address(rec, proc.port), 2)
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
    out["primary_port"] = current_primary_port(rec)
    if rec.ssh is not None and rec.ssh.ingress is not None:
        out["endpoint_address"] = {"address": rec.ssh.ingress.address, "hosts": rec.ssh.ingress.hosts,
                                   "held_by": vip.holder(rec.ssh)}  # fmt: skip
    out["sentinel"] = (
        {"port": rec.sentinel.port, "running": bool(_running_pids(rec.sentinel))} if rec.sentinel else None
    )
    return out


def teardown() -> None:
    """Stop the store, remove its data and the bridge. Callers check no service is left."""
    rec = load()
    if rec is not None:
        for proc in [*rec.store, *([rec.sentinel] if rec.sentinel else [])]:
            procs.kill_pids(_running_pids(proc), grace_s=2)
        if rec.ssh is not None and rec.ssh.ingress is not None:
            vip.stop(rec.ssh, rec.id)
        if rec.mode == "netns":
            netns.remove_bridge()
    shutil.rmtree(paths.cloud_dir(), ignore_errors=True)


def admin_clients(rec: CloudRecord) -> list:
    """A client for every running store process (ACL users are not replicated)."""
    return [
        storage.connect(local_address(rec, proc.port), 3)
        for proc in rec.store
        if _running_pids(proc)
    ]


def set_alerts(percent: float | None, webhook: str | None) -> CloudRecord:
    rec = load()
    if rec is None:
        raise CloudError("no cloud is set up; run 'headway cloud setup'")
    if percent is not None:
        rec.alert_percent = percent
    if webhook is not None:
        rec.alert_webhook = webhook or None
    _save(rec)
    return rec
