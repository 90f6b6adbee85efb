"""The cloud config of SSH mode, as data: its hosts and their roles, the head's address, the
ingress hosts, the store's hosts; read from YAML with errors that name the field. The error
types of SSH (a transport error, a host key refused, hosts not ready) live here too, so that
every layer can name them without importing paramiko."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from headway.model.errors import Failed, InputError

#: How a cloud's nodes are networked: a namespace each, loopback ports, or real hosts over SSH.
MODES = ("netns", "loopback", "ssh")


class SshError(Failed):
    pass


class HostKeyError(InputError, SshError):
    """A host's SSH key is unknown or changed: nothing runs there."""


class HostsNotReady(InputError, SshError):
    """A host is down or its bootstrap venv differs from headway's: nothing is started."""


def check_hosts(problems: list[str]) -> None:
    if problems:
        raise HostsNotReady("hosts are not ready (nothing was started):\n  - " + "\n  - ".join(problems))


class SshHost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str = Field(description="the host's address: Ray nodes on it use it too")
    port: int = 22
    user: str = "root"
    key: str = Field(description="private key file headway logs in with")
    role: Literal["head", "worker"] = Field(description="head: a head candidate (the first is used first)")
    # Ray nodes this host may carry, of any services (default: its CPUs).
    max_nodes: int | None = Field(default=None, ge=1, le=256, description="Ray nodes the host may carry")


class HeadAddress(BaseModel):
    """How the workers keep reaching the head when it moves.

    ``same_host``: the head is always restarted on the host it ran on (a dead host must come
    back first). ``floating``: ``address`` (a DNS name or floating IP the workers use) is moved
    by the operator's ``move_hook`` (run here as ``HOOK <address> <host>``) to a standby head
    host; the hook is also the fence of the old host, which must no longer hold the address."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["same_host", "floating"] = "same_host"
    address: str | None = None
    move_hook: str | None = None


class IngressHosts(BaseModel):
    """Every service's endpoint on several hosts: HAProxy runs on each of ``hosts`` with the
    same config, and keepalived (VRRP, Debian's package) keeps ``address`` on one live host
    of them. Clients use ``address``; when its host dies, another host takes it over in
    under a second and answers with the same endpoints."""

    model_config = ConfigDict(extra="forbid")

    address: str = Field(description="the endpoints' moving IPv4 address (not a host's own)")
    hosts: list[str] = Field(min_length=2, description="addresses of cloud hosts that run the endpoints")
    interface: str = Field(
        default="eth0",
        pattern=r"^[A-Za-z0-9_.-]{1,15}$",
        description="the hosts' network interface that carries the address",
    )
    prefix_length: int = Field(default=24, ge=8, le=32, description="the address's netmask length")
    router_id: int = Field(default=51, ge=1, le=255, description="VRRP virtual router id, unique on the network")

    @field_validator("address")
    @classmethod
    def _ipv4(cls, v: str) -> str:
        try:
            return str(ipaddress.IPv4Address(v))
        except ValueError:
            raise ValueError(f"{v!r} is not an IPv4 address") from None


class StoreHosts(BaseModel):
    """The managed store on three hosts instead of this machine: the primary on the first,
    its replica on the second, a Sentinel on each of the three (quorum 2), TLS throughout."""

    model_config = ConfigDict(extra="forbid")

    hosts: list[str] = Field(min_length=3, max_length=3, description="primary, replica, third Sentinel")
    port: int = Field(default=16379, ge=1024, le=65535, description="the store's port on each host")
    sentinel_port: int = Field(default=26379, ge=1024, le=65535, description="Sentinel's port on each host")
    data_dir: str = Field(
        default="/var/lib/headway",
        pattern=r"^/[A-Za-z0-9_./-]*$",
        description="where the store keeps its files on each host",
    )


class SshCloud(BaseModel):
    model_config = ConfigDict(extra="forbid")

    venv: str = Field(description="the bootstrap venv on every host (same Python and Ray as headway's)")
    known_hosts: str = Field(
        default="~/.ssh/known_hosts", description="the hosts' SSH keys (OpenSSH known_hosts format); read only"
    )
    host_key_policy: Literal["reject", "pin_new"] = Field(
        default="reject",
        description="a host whose key is in no known_hosts: refused (reject), or its key pinned on first "
        "contact in the cloud's own 0600 file (pin_new). A changed key is always refused.",
    )
    store_address: str = Field(description="where the hosts reach this machine: the managed store listens there")
    head_address: HeadAddress = Field(default_factory=HeadAddress)
    ingress: IngressHosts | None = Field(default=None, description="endpoints on several hosts (else here)")
    store: StoreHosts | None = Field(default=None, description="the managed store on three hosts (else here)")
    boot_dir: str = Field(
        default="/var/lib/headway/boot",
        pattern=r"^/[A-Za-z0-9_./-]*$",
        description="on each store and ingress host: what starts its headway processes when it boots "
        "(a folder a reboot keeps)",
    )
    units_dir: str = Field(
        default="/etc/systemd/system",
        pattern=r"^/[A-Za-z0-9_./-]*$",
        description="where each store and ingress host gets its boot unit (enabled where systemd runs)",
    )
    controllers: list[str] = Field(
        default_factory=list,
        description="hosts that run a controller (leader or "
        "standby) besides this machine: the nodes' packet filters admit them",
    )
    hosts: list[SshHost]

    def heads(self) -> list[SshHost]:
        return [h for h in self.hosts if h.role == "head"]

    def workers(self) -> list[SshHost]:
        return [h for h in self.hosts if h.role == "worker"]

    def ingress_hosts(self) -> list[SshHost]:
        return [self.host(a) for a in self.ingress.hosts] if self.ingress else []

    def trusted(self) -> list[str]:
        """The addresses that may reach a node's unauthenticated ports (its Serve proxy, the
        head's dashboard): the control host, the ingress hosts when the endpoints run there,
        and the hosts a controller may run on."""
        out = [self.store_address, *(self.ingress.hosts if self.ingress else []), *self.controllers]
        return list(dict.fromkeys(out))

    def host(self, address: str) -> SshHost:
        found = next((h for h in self.hosts if h.address == address), None)
        if found is None:
            raise SshError(f"no host {address} in the cloud config")
        return found


def read_config_file(path: str, error: type[Exception]) -> object:
    """A cloud config file's YAML, or ``error`` saying why it cannot be read."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise error(f"{path}: cannot read the file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def load_cloud_config(path: str) -> SshCloud:
    """Read the ``ssh:`` block of a cloud config YAML, with errors that name the field."""
    data = read_config_file(path, SshError)
    if not isinstance(data, dict) or "ssh" not in data:
        raise SshError(f"{path}: expected a mapping with an 'ssh:' block (venv, store_address, hosts)")
    try:
        cfg = SshCloud.model_validate(data["ssh"])
    except ValidationError as exc:
        problems = "; ".join(f"ssh.{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise SshError(f"{path}: {problems}") from None
    if not cfg.heads():
        raise SshError(f"{path}: ssh.hosts: no host has role: head; give at least one head candidate")
    if cfg.head_address.mode == "floating" and not (cfg.head_address.address and cfg.head_address.move_hook):
        raise SshError(f"{path}: ssh.head_address: floating mode needs address and move_hook")
    if len({h.address for h in cfg.hosts}) != len(cfg.hosts):
        raise SshError(f"{path}: ssh.hosts: an address is listed twice")
    known = {h.address for h in cfg.hosts}
    named = {
        "ssh.controllers": cfg.controllers,
        "ssh.store.hosts": cfg.store.hosts if cfg.store else [],
        "ssh.ingress.hosts": cfg.ingress.hosts if cfg.ingress else [],
    }
    for field, addrs in named.items():
        unknown = [a for a in addrs if a not in known]
        if unknown:
            raise SshError(f"{path}: {field}: {', '.join(unknown)} not in ssh.hosts; list them there")
    if cfg.store is not None:
        if len(set(cfg.store.hosts)) != 3:
            raise SshError(f"{path}: ssh.store.hosts: three different hosts (one machine's death must leave two)")
        if cfg.store.port == cfg.store.sentinel_port:
            raise SshError(f"{path}: ssh.store: port and sentinel_port must differ")
    if cfg.ingress is not None:
        if len(set(cfg.ingress.hosts)) != len(cfg.ingress.hosts):
            raise SshError(f"{path}: ssh.ingress.hosts: an address is listed twice")
        if cfg.ingress.address in known | {cfg.store_address}:
            raise SshError(
                f"{path}: ssh.ingress.address: {cfg.ingress.address} is a host's own address; "
                "give a free address of the hosts' network (it moves between them)"
            )
    return cfg
