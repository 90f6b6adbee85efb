"""The managed store's processes — store and Sentinel — on this machine, or on the store
hosts of the cloud config (ssh mode with a ``store:`` block): start one from its config
text, tell whether it still runs, stop it.

Locally a process is a child of headway's; on a host it is started detached over SSH.
Either way it is known by its PID and start time, not by a marker: Redis's
setproctitle overwrites its environment. A host that does not answer runs nothing that
headway can count on: its processes are "not running" and are started again when it is
back (the store as a replica of the primary Sentinel names then).
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
from pathlib import Path

from headway.hosts import remote, ssh
from headway.model.cloud_config import SshCloud, SshError
from headway.plan.boot_entry import BootEntry
from headway.store.store_conf import StoreProcess, TlsFiles, pidfile
from headway.system import binaries, paths, procs

__all__ = ["SshError", "adopt", "here", "host_tls", "on_hosts", "running", "start", "stop"]


def here(store_root: Path, cid: str) -> tuple[list[StoreProcess], StoreProcess]:
    """Primary, replica and Sentinel on this machine, on the first free ports from 16379."""
    out = []
    port = 16378
    for role, name, marker in (
        ("primary", "store", "store-primary"),
        ("replica", "store", "store-replica"),
        ("sentinel", "sentinel", "sentinel"),
    ):
        port = _free_port(start=port + 1)
        d = store_root / role
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        out.append(
            StoreProcess(
                role=role,
                port=port,
                data_dir=str(d),
                conf=str(d / f"{name}.conf"),
                log=str(d / f"{name}.log"),
                marker=f"cloud-{cid}/{marker}",
            )
        )
    return out[:2], out[2]


def on_hosts(cfg: SshCloud, cid: str) -> tuple[list[StoreProcess], list[StoreProcess]]:
    """The store on the store hosts: primary on the first, replica on the second, a Sentinel
    on each of the three. Files under ``data_dir`` on each, named by the host (test hosts
    share one file system)."""
    assert cfg.store is not None
    sc = cfg.store

    def proc(role: str, host: str) -> StoreProcess:
        name = "sentinel" if role == "sentinel" else "store"
        d = f"{sc.data_dir}/{cid}-{name}-{host}"
        return StoreProcess(
            role=role,
            host=host,
            port=sc.sentinel_port if role == "sentinel" else sc.port,
            data_dir=d,
            conf=f"{d}/{name}.conf",
            log=f"{d}/{name}.log",
            marker=f"cloud-{cid}/{name}@{host}",
        )

    return [proc("primary", sc.hosts[0]), proc("replica", sc.hosts[1])], [proc("sentinel", h) for h in sc.hosts]


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
    raise OSError("no free port for the store near 16379")


def host_tls(proc: StoreProcess) -> TlsFiles:
    """Where a store host keeps its copy of the cloud's certificate (next to the data)."""
    d = f"{proc.data_dir}/tls"
    return TlsFiles(ca=f"{d}/ca.pem", cert=f"{d}/store.pem", key=f"{d}/store.key")


def running(cfg: SshCloud | None, proc: StoreProcess) -> bool:
    if proc.host is None:
        return bool(proc.pid) and procs.same_process(proc.pid, proc.pid_started)
    assert cfg is not None
    host = cfg.host(proc.host)
    return ssh.answers(host) and remote.same_process(host, proc.pid, proc.pid_started)


def start(cfg: SshCloud | None, proc: StoreProcess, conf: str, tls: TlsFiles | None, sentinel: bool) -> None:
    """Write ``conf`` and start the process (``tls``: this machine's certificate files, copied
    to a store host first). Raises SshError when the host does not answer."""
    if proc.host is None:
        paths.write_private(Path(proc.conf), conf)
        env = dict(os.environ, **{procs.MARKER_VAR: proc.marker})
        child = subprocess.Popen(
            [binaries.store_server(tls is not None), proc.conf, *(["--sentinel"] if sentinel else [])],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        procs.track(child)
        proc.pid, proc.pid_started = child.pid, procs.start_time(child.pid)
        return
    assert cfg is not None
    host = cfg.host(proc.host)
    theirs = host_tls(proc)
    root = cfg.store.data_dir if cfg.store is not None else str(Path(proc.data_dir).parent)
    remote.ensure_dirs(host, str(Path(theirs.ca).parent), root, root_mode=0o700)
    if tls is not None:
        for mine, there in ((tls.ca, theirs.ca), (tls.cert, theirs.cert), (tls.key, theirs.key)):
            remote.put_private(host, there, Path(mine).read_text())
    remote.put_private(host, proc.conf, conf)
    binary = server_path(cfg, proc.host)
    if binary is None:
        raise SshError(f"host {proc.host}: no redis-server or valkey-server with TLS; apt-get install redis-server")
    argv = [binary, proc.conf, *(["--sentinel"] if sentinel else [])]
    # Its files are under data_dir, which a reboot keeps: the entry puts none back.
    entry = BootEntry(proc.marker, argv, proc.data_dir, f"{proc.data_dir}/stdout.log", marker_readable=False)
    pid = remote.start_kept(cfg, host, entry)
    proc.pid, proc.pid_started = pid, remote.start_time(host, pid)


def adopt(cfg: SshCloud | None, proc: StoreProcess) -> bool:
    """Take the process its host started at boot (found by its pidfile) as ``proc``; False
    when there is none. A pidfile outlives a crash, so its PID counts only while that
    process works in ``proc``'s own folder (Redis moves to its ``dir``; the Sentinel on the
    same host has another)."""
    if proc.host is None or cfg is None:
        return False
    host = cfg.host(proc.host)
    script = f'p=$(cat {shlex.quote(pidfile(proc))}) && echo "$p" && readlink "/proc/$p/cwd"'
    try:
        _, out, _ = ssh.run(host, script)
        pid, cwd = ([*out.split("\n", 1), ""])[:2]
        if not pid.strip().isdigit() or cwd.strip() != proc.data_dir:
            return False
        started = remote.start_time(host, int(pid))
    except SshError:
        return False
    if started is None:
        return False
    proc.pid, proc.pid_started = int(pid), started
    return True


def server_path(cfg: SshCloud, address: str) -> str | None:
    """The host's Redis-compatible server (a system one: it has TLS)."""
    status, out, _ = ssh.run(
        cfg.host(address), "command -v valkey-server || command -v redis-server || ls /usr/bin/redis-server 2>/dev/null"
    )
    return out.strip().splitlines()[0] if status == 0 and out.strip() else None


def stop(cfg: SshCloud | None, proc: StoreProcess, remove_data: bool = False) -> None:
    """Stop the process if it runs (and, with ``remove_data``, remove its files on a host)."""
    if proc.host is None:
        procs.kill_pids([proc.pid] if running(cfg, proc) and proc.pid else [], grace_s=2)
        return
    assert cfg is not None
    host = cfg.host(proc.host)
    try:
        if proc.pid and running(cfg, proc):
            remote.kill(host, [proc.pid])
        if remove_data:
            remote.forget_at_boot(cfg, host, proc.marker)
            ssh.run(host, f"rm -rf {shlex.quote(proc.data_dir)}")
    except SshError:
        pass  # a host that is down keeps its files; nothing of it answers clients
