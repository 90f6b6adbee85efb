"""The door of a shared port on this machine (``plan/haproxy_door``): one HAProxy per
address and port whose services claim names (``endpoint.hostnames``), made anew from
their records whenever one of them starts, moves, changes its names or leaves, and gone
with the last of them.

Nothing is kept of a door but its folder (``doors/<port>-<address digest>``: where it
listens, config, admin socket, log; a short path, as unix sockets need); its processes
are found by a marker naming that folder. A change is a
seamless reload, as for an endpoint: the new process takes the port over and the old one
finishes the connections it passed on.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from headway.ingress import local_haproxy
from headway.plan import haproxy_config as hc
from headway.plan import haproxy_door as hd
from headway.state import records
from headway.state.records import IngressRecord, ServiceRecord
from headway.system import paths, procs


def listener(ing: IngressRecord) -> str:
    """The private listener of an endpoint behind a door: an abstract unix socket (no file
    whose owner matters; named after the endpoint's config, so that two state dirs on one
    machine never meet)."""
    return f"abns@hw-{hashlib.sha1(ing.config.encode()).hexdigest()[:16]}"


def _folder(bind: str, port: int) -> Path:
    return paths.home() / "doors" / f"{port}-{hashlib.sha1(bind.encode()).hexdigest()[:6]}"


def _marker(folder: Path) -> str:
    return f"door@{folder}"


def _claims(rec: ServiceRecord, bind: str, port: int) -> bool:
    ing = rec.ingress
    return ing is not None and bool(ing.hostnames) and (ing.bind, ing.port) == (bind, port) and rec.parent is None


def rooms(bind: str, port: int, rec: ServiceRecord, leaving: bool = False) -> list[ServiceRecord]:
    """The services behind the door at ``bind:port``: those the records say claim names
    there and whose endpoint runs (one stopped for good keeps its record a moment), with
    ``rec`` as it is now (not yet saved) or without it when it leaves."""
    found = {
        r.name: r
        for r in records.all_records()
        if _claims(r, bind, port) and r.ingress and procs.same_process(r.ingress.pid, r.ingress.pid_started)
    }
    found.pop(rec.name, None)
    if not leaving and _claims(rec, bind, port):
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


def follow(rec: ServiceRecord, leaving: bool = False) -> None:
    """After ``rec``'s endpoint started, changed or stopped: the door it claims names at
    now, and every door that still names it (it moved, dropped its names or left)."""
    keys: set[tuple[str, int]] = set()
    if rec.ingress is not None and rec.ingress.hostnames and not leaving:
        keys.add((rec.ingress.bind, rec.ingress.port))
    for config in (paths.home() / "doors").glob("*/haproxy.cfg"):
        if f"backend {hd.backend_name(rec.name)}\n" in config.read_text():
            bind, port = (config.parent / "where").read_text().split()
            keys.add((bind, int(port)))
    for bind, port in sorted(keys):
        sync(bind, port, rec, leaving)


def answering(rec: ServiceRecord) -> bool:
    """Whether the door of ``rec``'s names answers (True where it has none)."""
    ing = rec.ingress
    if ing is None or not ing.hostnames:
        return True
    return _answers(_folder(ing.bind, ing.port) / "s.sock")
