"""Hosts reached over SSH: one kept-open connection per host, remote commands with short
timeouts, the hosts' keys, and the bootstrap check (same Python and Ray on every host as
headway's own). The hosts themselves are the cloud config's (``model.cloud_config``).

A host that does not answer SSH within ``CONNECT_TIMEOUT_S`` is unreachable: the
watchdog treats its nodes as dead (together with the GCS health check for a head).
"""

from __future__ import annotations

import platform
import shlex
import threading
import time
from pathlib import Path

import paramiko

from headway.model.cloud_config import HostKeyError, SshCloud, SshError, SshHost
from headway.system import paths

CONNECT_TIMEOUT_S = 2.0
COMMAND_TIMEOUT_S = 15.0


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
        inp, out, err = _exec(host, command, timeout_s)
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


def _exec(host: SshHost, command: str, timeout_s: float) -> tuple:
    """The command's channel on the kept-open connection. A connection that died under it
    (sshd closed it, or refused the channel: seen once under load) is opened again once:
    a refused channel ran nothing, so the command cannot run twice."""
    try:
        return _client(host).exec_command(command, timeout=timeout_s)
    except (paramiko.SSHException, EOFError):
        forget(host)
        return _client(host).exec_command(command, timeout=timeout_s)


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
