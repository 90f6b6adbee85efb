"""Hosts reached over SSH: the cloud config's host list, one kept-open connection per
host, remote commands with short timeouts, and the bootstrap check (same Python and Ray
on every host as headway's own).

A host that does not answer SSH within ``CONNECT_TIMEOUT_S`` is unreachable: the
watchdog treats its nodes as dead (together with the GCS health check for a head).
"""

from __future__ import annotations

import ipaddress
import platform
import shlex
import threading
import time
from pathlib import Path
from typing import Literal

import paramiko
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from headway.model.errors import Failed, InputError
from headway.system import paths

CONNECT_TIMEOUT_S = 2.0
COMMAND_TIMEOUT_S = 15.0


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


def load_cloud_config(path: str) -> SshCloud:
    """Read the ``ssh:`` block of a cloud config YAML, with errors that name the field."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise SshError(f"{path}: cannot read the file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise SshError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
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


# -- host keys -------------------------------------------------------------------------
def pinned_keys_file() -> Path:
    """Keys headway pinned itself (host_key_policy: pin_new), 0600 in the cloud's folder."""
    return paths.cloud_dir() / "known_hosts"


class _PinNew(paramiko.MissingHostKeyPolicy):
    """Trust on first use, written down: the key is pinned before anything runs on the host."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        f = pinned_keys_file()
        keys = paramiko.HostKeys(str(f)) if f.exists() else paramiko.HostKeys()
        keys.add(hostname, key.get_name(), key)
        if not f.exists():
            paths.write_private(f, "")  # 0600 before a key is in it
        keys.save(str(f))


class _Reject(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: str):
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise HostKeyError(
            f"host {hostname}: its SSH host key ({key.get_name()} {key.get_fingerprint().hex()}) is in no known_hosts "
            f"({self.known_hosts}); nothing was run on it. Check the fingerprint on the host and add it "
            "(ssh-keyscan), or set host_key_policy: pin_new in the cloud config"
        )


def _host_key_setup(c: paramiko.SSHClient, cfg_known_hosts: str, policy: str) -> None:
    known = Path(cfg_known_hosts).expanduser()
    if known.exists():
        c.load_system_host_keys(str(known))
    pinned = pinned_keys_file()
    if pinned.exists():
        c.load_host_keys(str(pinned))
    c.set_missing_host_key_policy(_PinNew() if policy == "pin_new" else _Reject(str(known)))


#: How hosts' keys are checked: set once by the provider from the cloud config.
_key_settings: dict[str, str] = {"known_hosts": "~/.ssh/known_hosts", "policy": "reject"}


def configure_host_keys(cfg: SshCloud) -> None:
    _key_settings.update(known_hosts=cfg.known_hosts, policy=cfg.host_key_policy)


# -- connections -----------------------------------------------------------------------
_clients: dict[tuple[str, int, str], paramiko.SSHClient] = {}
_host_locks: dict[tuple[str, int, str], threading.Lock] = {}
_lock = threading.Lock()  # guards the two dicts only: a slow host must not hold up the others


def _host_lock(key: tuple[str, int, str]) -> threading.Lock:
    with _lock:
        return _host_locks.setdefault(key, threading.Lock())


def _client(host: SshHost) -> paramiko.SSHClient:
    key = (host.address, host.port, host.user)
    with _host_lock(key):
        c = _clients.get(key)
        transport = c.get_transport() if c else None
        if c is not None and transport is not None and transport.is_active():
            return c
        c = paramiko.SSHClient()
        # A man in the middle would receive `ray start ... --redis-password=...`: the host's
        # key must be known (or pinned on first contact when the operator said so).
        _host_key_setup(c, _key_settings["known_hosts"], _key_settings["policy"])
        try:
            c.connect(
                host.address,
                port=host.port,
                username=host.user,
                key_filename=host.key,
                timeout=CONNECT_TIMEOUT_S,
                banner_timeout=CONNECT_TIMEOUT_S,
                auth_timeout=CONNECT_TIMEOUT_S,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException as exc:
            raise HostKeyError(
                f"host {host.address}: its SSH host key CHANGED (now {exc.key.get_name()} "
                f"{exc.key.get_fingerprint().hex()}); possibly a man in the middle, nothing was run on it. "
                "If the host was reinstalled, remove its old key from known_hosts and pin the new one"
            ) from None
        except SshError:
            raise
        except (OSError, paramiko.SSHException) as exc:
            _down_since[host.address] = time.monotonic()
            raise SshError(f"host {host.address}: SSH unreachable ({type(exc).__name__}: {exc})") from None
        transport = c.get_transport()
        if transport is not None:
            transport.set_keepalive(5)
        _clients[key] = c
        return c


def run(
    host: SshHost, command: str, timeout_s: float = COMMAND_TIMEOUT_S, stdin: bytes | None = None
) -> tuple[int, str, str]:
    """Run a shell command on the host: (exit status, stdout, stderr); ``stdin``: what it
    reads (a secret travels there, never on the command line). Raises SshError when the
    host cannot be reached or does not answer in time."""
    try:
        inp, out, err = _client(host).exec_command(command, timeout=timeout_s)
        if stdin is not None:
            inp.write(stdin)
            inp.channel.shutdown_write()
        # Not recv_exit_status(): it waits without a limit, and a host that vanished without
        # a reset (powered off, unplugged) keeps the connection open for many minutes.
        if not out.channel.status_event.wait(timeout_s):
            out.channel.close()
            raise TimeoutError
        status = out.channel.recv_exit_status()
        result = status, out.read().decode(errors="replace"), err.read().decode(errors="replace")
    except (OSError, paramiko.SSHException, TimeoutError) as exc:
        forget(host)
        _down_since[host.address] = time.monotonic()
        raise SshError(f"host {host.address}: SSH command failed ({type(exc).__name__})") from None
    _down_since.pop(host.address, None)
    return result


#: Hosts whose last SSH command failed, and when: ``answers`` does not ask them again for
#: ``DOWN_FOR_S`` (any command that succeeds clears the mark).
DOWN_FOR_S = 5.0
_down_since: dict[str, float] = {}


def answers(host: SshHost) -> bool:
    since = _down_since.get(host.address)
    if since is not None and time.monotonic() - since < DOWN_FOR_S:
        return False
    return reachable(host)


def reachable(host: SshHost) -> bool:
    try:
        return run(host, "true", timeout_s=CONNECT_TIMEOUT_S)[0] == 0
    except SshError:
        return False


def open_sftp(host: SshHost) -> paramiko.SFTPClient:
    return _client(host).open_sftp()


def forget(host: SshHost) -> None:
    key = (host.address, host.port, host.user)
    with _host_lock(key):
        c = _clients.pop(key, None)
    if c is not None:
        c.close()


# -- bootstrap check -------------------------------------------------------------------
def local_versions() -> tuple[str, str]:
    import ray

    return platform.python_version(), ray.__version__


def version_problem(host: SshHost, venv: str) -> str | None:
    """None when the host's venv runs the same Python (major.minor) and Ray as headway;
    else what differs and how to bootstrap the host."""
    py, ray_version = local_versions()
    probe = "import sys, platform\ntry:\n import ray; v = ray.__version__\nexcept ImportError:\n v = 'missing'\n"
    probe += "print(platform.python_version(), v)"
    python = f"{venv}/bin/python"
    status, out, err = run(host, f"{shlex.quote(python)} -c {shlex.quote(probe)}")
    fix = (
        f"bootstrap it: python{'.'.join(py.split('.')[:2])} -m venv {venv} && "
        f"{venv}/bin/pip install 'ray[serve]=={ray_version}'"
    )
    if status != 0:
        return f"host {host.address}: no Python at {python} ({(err or out).strip()[-200:]}); {fix}"
    their_py, their_ray = out.split()
    problems = []
    if their_py.split(".")[:2] != py.split(".")[:2]:
        problems.append(f"Python {their_py} (headway runs {py})")
    if their_ray != ray_version:
        problems.append(f"Ray {their_ray} (headway runs {ray_version})")
    if problems:
        return f"host {host.address}: version mismatch in {venv}: {', '.join(problems)}; {fix}"
    return None
