"""The door of a shared port (``plan/haproxy_door``): one HAProxy per address and port
whose services claim names (``endpoint.hostnames``), made anew from their records
whenever one of them starts, moves, changes its names or leaves, and gone with the last
of them. Here, or, for endpoints on the cloud's ingress hosts, one on each ingress host,
binding the moving address whether or not its host holds it (as the endpoints do), in
front of that host's instances of the endpoints.

Nothing is kept of a door but its folder (here ``doors/<port>-<address digest>``; on an
ingress host ``<node temp root>/door-<port>-<address digest>-<host>``: where it listens,
config, admin socket, log; a short path, as unix sockets need); its processes are found
by a marker naming that folder. A change is a seamless reload, as for an endpoint: the
new process takes the port over and the old one finishes the connections it passed on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

from headway.hosts import remote, ssh
from headway.ingress import ingress_hosts, instances, local_haproxy
from headway.model.cloud_config import SshCloud, SshError, SshHost
from headway.plan import haproxy_config as hc
from headway.plan import haproxy_door as hd
from headway.state import records
from headway.state.records import IngressRecord, ServiceRecord
from headway.store.cloud import CloudRecord
from headway.system import paths, procs


def listener(ing: IngressRecord) -> str:
    """The private listener of an endpoint behind a door: an abstract unix socket (no file
    whose owner matters; named after the endpoint's config, so that two state dirs on one
    machine never meet)."""
    return f"abns@hw-{hashlib.sha1(ing.config.encode()).hexdigest()[:16]}"


def _name(bind: str, port: int) -> str:
    """A door's folder name, here and on the ingress hosts (short: unix sockets live there)."""
    return f"{port}-{hashlib.sha1(bind.encode()).hexdigest()[:6]}"


def _folder(bind: str, port: int) -> Path:
    return paths.home() / "doors" / _name(bind, port)


def _marker(folder: Path) -> str:
    return f"door@{folder}"


def _claims(rec: ServiceRecord, bind: str, port: int, on_hosts: bool = False) -> bool:
    ing = rec.ingress
    return (
        ing is not None
        and bool(ing.hostnames)
        and (ing.bind, ing.port, ing.on_hosts) == (bind, port, on_hosts)
        and rec.parent is None
    )


def _runs_here(rec: ServiceRecord) -> bool:
    return rec.ingress is not None and procs.same_process(rec.ingress.pid, rec.ingress.pid_started)


def _runs_on_hosts(rec: ServiceRecord) -> bool:
    return rec.ingress is not None and bool(rec.ingress.instances)


def rooms(
    bind: str, port: int, rec: ServiceRecord, leaving: bool = False, on_hosts: bool = False
) -> list[ServiceRecord]:
    """The services behind the door at ``bind:port``: those the records say claim names
    there and whose endpoint runs (one stopped for good keeps its record a moment), with
    ``rec`` as it is now (not yet saved) or without it when it leaves."""
    runs: Callable[[ServiceRecord], bool] = _runs_on_hosts if on_hosts else _runs_here
    found = {r.name: r for r in records.all_records() if _claims(r, bind, port, on_hosts) and runs(r)}
    found.pop(rec.name, None)
    if not leaving and _claims(rec, bind, port, on_hosts):
        found[rec.name] = rec
    return [found[n] for n in sorted(found)]


def settings(bind: str, port: int, members: list[ServiceRecord]) -> hd.DoorSettings:
    def linger(r: ServiceRecord) -> float:
        http = r.spec.http_options
        timeout = hc.request_timeout_s(r.spec.endpoint.request_timeout_s, http.request_timeout_s)
        return max(timeout, http.keep_alive_timeout_s or 0)

    return hd.DoorSettings(
        bind=bind,
        port=port,
        tls=any(r.ingress.tls for r in members if r.ingress),
        stats_socket=str(_folder(bind, port) / "s.sock"),
        rooms=tuple(hd.Room(r.name, tuple(r.ingress.hostnames), listener(r.ingress)) for r in members if r.ingress),
        linger_s=max(linger(r) for r in members) + 15,
        unprivileged=os.geteuid() == 0,
    )


def _answers(sock: Path) -> bool:
    try:
        return hc.info_pid(local_haproxy.admin(str(sock), "show info", 1.0)) is not None
    except OSError:
        return False


def sync(bind: str, port: int, rec: ServiceRecord, leaving: bool = False) -> None:
    """Make the door at ``bind:port`` what its services say (``rooms``): started, reloaded
    if its config changed or stopped with the last of them."""
    folder = _folder(bind, port)
    members = rooms(bind, port, rec, leaving)
    running = procs.pids_with_marker(_marker(folder))
    if not members:
        procs.kill_pids(running, grace_s=1)
        shutil.rmtree(folder, ignore_errors=True)
        return
    conf = settings(bind, port, members)
    text = hd.render(conf)
    config, sock = folder / "haproxy.cfg", Path(conf.stats_socket)
    alive = bool(running) and _answers(sock)
    if alive and config.exists() and config.read_text() == text:
        return
    paths.private_dir(folder)
    paths.write_private(folder / "where", f"{bind} {port}\n")
    paths.write_private(config, text)
    if alive:
        extra = ["-x", str(sock), "-sf", *map(str, running)]
    else:
        procs.kill_pids(running, grace_s=1)  # what is left of a door that stopped answering
        sock.unlink(missing_ok=True)
        extra = []
    local_haproxy.spawn(str(config), str(sock), str(folder / "door.log"), _marker(folder), extra)


def follow(crec: CloudRecord | None, rec: ServiceRecord, leaving: bool = False) -> None:
    """After ``rec``'s endpoint started, changed or stopped: the door it claims names at
    now, and every door that still names it (it moved, dropped its names or left)."""
    if rec.ingress is not None and rec.ingress.on_hosts:
        _follow_on_hosts(instances.hosts_config(crec), rec, leaving)
        return
    keys: set[tuple[str, int]] = set()
    if rec.ingress is not None and rec.ingress.hostnames and not leaving:
        keys.add((rec.ingress.bind, rec.ingress.port))
    for config in (paths.home() / "doors").glob("*/haproxy.cfg"):
        if f"backend {hd.backend_name(rec.name)}\n" in config.read_text():
            bind, port = (config.parent / "where").read_text().split()
            keys.add((bind, int(port)))
    for bind, port in sorted(keys):
        sync(bind, port, rec, leaving)


def answering(crec: CloudRecord | None, rec: ServiceRecord) -> bool:
    """Whether the door of ``rec``'s names answers (True where it has none); on ingress
    hosts, on each one that answers."""
    ing = rec.ingress
    if ing is None or not ing.hostnames:
        return True
    if not ing.on_hosts:
        return _answers(_folder(ing.bind, ing.port) / "s.sock")
    cfg = instances.hosts_config(crec)
    root = str(paths.node_temp_root())
    return all(
        not ssh.answers(h) or _answers_on(cfg, h, _files_on(ing.bind, ing.port, h, root)) for h in cfg.ingress_hosts()
    )


# -- on the ingress hosts ------------------------------------------------------------------
def _files_on(bind: str, port: int, host: SshHost, root: str) -> dict[str, str]:
    d = f"{root}/door-{_name(bind, port)}-{host.address}"
    return {"dir": d, "config": f"{d}/haproxy.cfg", "socket": f"{d}/s.sock", "log": f"{d}/door.log"}


def _answers_on(cfg: SshCloud, host: SshHost, f: dict[str, str]) -> bool:
    try:
        return hc.info_pid(ingress_hosts.commands(cfg, host, f["socket"], ["show info"])[0]) is not None
    except SshError:
        return False


def _sync_on(cfg: SshCloud, host: SshHost, bind: str, port: int, members: list[ServiceRecord], root: str) -> None:
    """``sync`` on one ingress host."""
    f = _files_on(bind, port, host, root)
    running = remote.marked_pids(host, _marker(Path(f["dir"])))
    if not members:
        remote.forget_at_boot(cfg, host, _marker(Path(f["dir"])))
        remote.kill(host, running)
        ssh.run(host, f"rm -rf {shlex.quote(f['dir'])}")
        return
    conf = settings(bind, port, members)
    unprivileged = ingress_hosts.all_root(cfg)
    text = hd.render(dataclasses.replace(conf, stats_socket=f["socket"], freebind=True, unprivileged=unprivileged))
    alive = bool(running) and _answers_on(cfg, host, f)
    if alive and ssh.run(host, f"cat {shlex.quote(f['config'])}")[1] == text:
        return
    remote.ensure_dirs(host, f["dir"], root)
    if alive:
        extra = ["-x", f["socket"], "-sf", *map(str, running)]
    else:
        remote.kill(host, running)  # what is left of a door that stopped answering
        ssh.run(host, f"rm -f {shlex.quote(f['socket'])}")
        extra = []
    where = {f"{f['dir']}/where": f"{bind} {port}\n"}  # what ``_follow_on_hosts`` reads
    ingress_hosts.start_haproxy(cfg, host, f, text, _marker(Path(f["dir"])), extra, where)


def _follow_on_hosts(cfg: SshCloud, rec: ServiceRecord, leaving: bool) -> None:
    """``follow`` on each ingress host that answers: the doors found there that name
    ``rec`` (each folder says where its door listens), and the one it claims now."""
    ing = rec.ingress
    assert ing is not None
    root = str(paths.node_temp_root())
    wanted = {(ing.bind, ing.port)} if ing.hostnames and not leaving else set()
    naming = f"backend {hd.backend_name(rec.name)}"

    def one(host: SshHost) -> None:
        pattern = f"{shlex.quote(root)}/door-*-{host.address}"
        found = f"grep -qx {shlex.quote(naming)} $d/haproxy.cfg 2>/dev/null && cat $d/where"
        script = f"for d in {pattern}; do {found}; done"
        keys = set(wanted)
        for line in ssh.run(host, script)[1].splitlines():
            bind, port = line.split()
            keys.add((bind, int(port)))
        for bind, port in sorted(keys):
            _sync_on(cfg, host, bind, port, rooms(bind, port, rec, leaving, on_hosts=True), root)

    ingress_hosts.each_answering(cfg, one)
