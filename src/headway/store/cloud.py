"""The cloud record: the networking mode, the managed store's processes, its password and
TLS files, and the addresses headway and the nodes reach it at (the primary as Sentinel
says). Kept in the cloud folder, 0600; made by ``cloud_setup``."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from headway.hosts import ssh
from headway.model.alert_rules import AlertRules
from headway.model.cloud_config import MODES, SshCloud
from headway.model.errors import Failed
from headway.store import storage, store_procs, store_tls
from headway.store.store_conf import SENTINEL_NAME, StoreProcess, TlsFiles
from headway.system import netns, paths

__all__ = ["CloudError", "CloudRecord", "load", "mode_default", "store_address"]


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
    alerts: AlertRules | None = None  # the cloud config's ``alerts:`` (webhook, rules); overrides the two above
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


def password_path() -> Path:
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


def save(rec: CloudRecord) -> None:
    paths.write_private(_record_path(), rec.model_dump_json(indent=2))


def password() -> str:
    return password_path().read_text().strip()


def _tls_dir() -> Path:
    return paths.cloud_dir() / "tls"


def tls_files(rec: CloudRecord) -> TlsFiles | None:
    """The store's CA and certificate (made at setup), when it speaks TLS."""
    hosts = ["127.0.0.1", rec.node_host, *(rec.ssh.store.hosts if rec.ssh and rec.ssh.store else [])]
    return store_tls.ensure(_tls_dir(), hosts) if rec.tls else None


def address_at(rec: CloudRecord, host: str, port: int) -> storage.StoreAddress:
    """The store process at ``host:port`` with the cloud's password (and TLS when on)."""
    tls = tls_files(rec)
    return storage.StoreAddress(
        host=host, port=port, tls=tls is not None, password=password(), ca_cert=tls.ca if tls else None
    )


def local_address(rec: CloudRecord, port: int) -> storage.StoreAddress:
    """One store process as headway reaches it here (loopback; TLS when the store speaks it)."""
    return address_at(rec, "127.0.0.1", port)


def admin_address(rec: CloudRecord, proc: StoreProcess) -> storage.StoreAddress:
    """One store process as headway reaches it: over loopback here, at its host's address there."""
    return address_at(rec, proc.host, proc.port) if proc.host else local_address(rec, proc.port)


def store_address(rec: CloudRecord) -> storage.StoreAddress:
    """The managed store's current primary (Sentinel says which), with the cloud password,
    as the nodes reach it."""
    return address_at(rec, *current_primary(rec))


def current_primary(rec: CloudRecord) -> tuple[str, int]:
    """The address of the store process that is primary now: after a failover, the promoted
    one, as the first Sentinel that answers says; without an answer, the recorded primary."""
    return sentinel_primary(rec) or rec.where(rec.primary)


def sentinel_primary(rec: CloudRecord) -> tuple[str, int] | None:
    """The primary's address as the first Sentinel that answers says, or None."""
    for sentinel in rec.all_sentinels():
        if not is_running(rec, sentinel):
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


def is_running(rec: CloudRecord, proc: StoreProcess) -> bool:
    return store_procs.running(rec.ssh, proc)


def admin_clients(rec: CloudRecord) -> list:
    """A client for every running store process (ACL users are not replicated)."""
    return [storage.connect(admin_address(rec, proc), 3) for proc in rec.store if is_running(rec, proc)]


def set_alert_rules(rules: AlertRules) -> CloudRecord:
    """The cloud config's ``alerts:`` block, kept with the cloud (replacing the one before)."""
    rec = load()
    if rec is None:
        raise CloudError("no cloud is set up; run 'headway cloud setup'")
    rec.alerts = rules
    save(rec)
    return rec


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
    save(rec)
    return rec
