"""A service's ingress process: one HAProxy per service, the stable endpoint.

It runs detached (its own session), so it outlives the CLI, the controller and the
head. Backend changes go through HAProxy's runtime API on its admin socket; a change
of the config itself (token, timeouts) is a seamless reload: the new process takes
the listening socket over from the old one (``-x``), which finishes its requests.

The bearer token lives in ``services/<name>/token`` and in the HAProxy config, both
0600; it is printed only by ``headway token``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Collection
from pathlib import Path

from . import binaries, db, paths, procs, records, rollout_policy
from . import haproxy_config as hc
from .errors import Failed
from .provider import free_ports, used_ports
from .records import IngressRecord, NodeRecord, ServiceRecord
from .spec import ServiceSpec

START_TIMEOUT_S = 10.0
#: How long a backend stays out of rotation before its host is removed: a host that
#: still exists answers stray packets with a reset, which HAProxy retries elsewhere; a
#: host that vanished answers nothing and a request sent to it waits for its timeout.
DRAIN_S = 1.0


class IngressError(Failed):
    pass


def bind_address() -> str:
    """Where endpoints listen: ``HEADWAY_INGRESS_BIND`` (default 127.0.0.1, this machine only)."""
    return os.environ.get("HEADWAY_INGRESS_BIND", "127.0.0.1")


# -- token ---------------------------------------------------------------------------------
def token(name: str) -> str | None:
    return db.get_token(f"service:{name}")


def ensure_token(name: str) -> str:
    """The service's bearer token, generated at its first deploy and kept across updates."""
    return db.ensure_token(f"service:{name}", secrets.token_urlsafe(32))


# -- config --------------------------------------------------------------------------------
def backends_of(rec: ServiceRecord, nodes: list[NodeRecord]) -> list[str]:
    return [f"{n.ip}:{n.ports.get('proxy') or rec.serve_port}" for n in nodes]


def backends(rec: ServiceRecord) -> list[str]:
    """``ip:port`` of every worker's Serve proxy (never the head's), a rollout's new cluster's too."""
    return targets(rec)[0]


def targets(rec: ServiceRecord, up: Collection[str] | None = None) -> tuple[list[str], dict[str, int]]:
    """The backends and, during a rollout, each one's weight: the old cluster's workers and
    the new cluster's share the traffic as the rollout's step says (``rollout_policy``).
    ``up``: the backends passing their health checks — a down server takes no traffic, so
    the split is computed over those that do (else a dead worker's share moves to the other
    version until it is replaced)."""
    old = backends_of(rec, rec.workers)
    new_cluster = records.load(rec.rollout.cluster) if rec.rollout else None
    if rec.rollout is None or new_cluster is None:
        return old, {}
    new = backends_of(new_cluster, new_cluster.workers)

    def count(addrs: list[str]) -> int:
        return len(addrs) if up is None else sum(1 for a in addrs if a in up)

    w_old, w_new = rollout_policy.split_weights(count(old), count(new), rec.rollout.percent)
    return old + new, {a: w_old for a in old} | {a: w_new for a in new}


def settings(rec: ServiceRecord, spec: ServiceSpec, ing: IngressRecord) -> hc.IngressSettings:
    http = spec.http_options
    return hc.IngressSettings(
        bind=ing.bind,
        port=ing.port,
        stats_socket=ing.socket,
        token=ensure_token(rec.name) if spec.query_auth_token_enabled else None,
        request_timeout_s=http.request_timeout_s or hc.DEFAULT_REQUEST_TIMEOUT_S,
        keep_alive_timeout_s=http.keep_alive_timeout_s or hc.DEFAULT_KEEP_ALIVE_S,
        retry_5xx_idempotent=http.retry_5xx_idempotent,
        weighted=rec.rollout is not None,
    )


def _write_config(rec: ServiceRecord, spec: ServiceSpec, ing: IngressRecord) -> None:
    conf = settings(rec, spec, ing)
    ing.settings_digest = _digest(conf)
    paths.write_private(Path(ing.config), hc.render(conf, ing.slots, ing.weights))


def _digest(conf: hc.IngressSettings) -> str:
    """Identifies everything but the backends (the token included, never shown)."""
    return hashlib.sha256(hc.render(conf, []).encode()).hexdigest()[:16]


def apply_update(rec: ServiceRecord, spec: ServiceSpec) -> str:
    """After an update: backends through the runtime API when only they changed, else a
    seamless reload. Returns which of the two it did."""
    ing = rec.ingress
    if ing is None or not alive(ing):
        start(rec, spec)
        return "started"
    if _digest(settings(rec, spec, ing)) == ing.settings_digest:
        sync_backends(rec, spec)
        return "backends"
    reload(rec, spec)
    return "reloaded"


# -- process -------------------------------------------------------------------------------
def alive(ing: IngressRecord | None) -> bool:
    return bool(ing) and procs.same_process(ing.pid, ing.pid_started)


def marker(rec: ServiceRecord) -> str:
    return (rec.ingress.marker if rec.ingress else "") or f"{rec.cluster_id}/ingress"


def _spawn(rec: ServiceRecord, ing: IngressRecord, extra: list[str]) -> None:
    with open(ing.log, "ab") as log:
        child = subprocess.Popen(
            [binaries.haproxy(), "-f", ing.config, *extra],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ) | {procs.MARKER_VAR: marker(rec)},
        )
    procs.track(child)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise IngressError(f"haproxy exited at start (code {child.returncode}); see {ing.log}")
        try:
            command(ing, "show info")
            break
        except OSError:
            time.sleep(0.05)
    else:
        raise IngressError(f"haproxy did not answer on its admin socket; see {ing.log}")
    ing.pid = child.pid
    ing.pid_started = procs.start_time(child.pid)


def start(rec: ServiceRecord, spec: ServiceSpec) -> IngressRecord:
    """Start the service's ingress (first deploy, or after it died): same port, same slots."""
    d = paths.service_dir(rec.name)
    ing = rec.ingress
    if ing is None:
        (port,) = free_ports(1, used_ports())
        ing = IngressRecord(
            bind=bind_address(),
            port=port,
            config=str(d / "haproxy.cfg"),
            socket=str(d / "haproxy.sock"),
            log=str(d / "logs" / "haproxy.log"),
            slots=hc.empty_slots(),
            marker=f"{rec.cluster_id}/ingress",
        )
        rec.ingress = ing
    os.makedirs(os.path.dirname(ing.log), exist_ok=True)
    _plan(rec, ing)
    _write_config(rec, spec, ing)
    # A fresh start must be the only listener (HAProxy binds with SO_REUSEPORT): any
    # process left of this service's ingress goes first, found by its marker.
    procs.kill_pids(procs.pids_with_marker(marker(rec)), grace_s=1)
    if os.path.exists(ing.socket):
        os.unlink(ing.socket)
    _spawn(rec, ing, [])
    return ing


def reload(rec: ServiceRecord, spec: ServiceSpec) -> None:
    """Apply a new config without dropping a connection: the new process takes the
    listener over from the old one, which finishes what it is serving and exits."""
    ing = rec.ingress
    assert ing is not None
    old = ing.pid if alive(ing) else None
    _plan(rec, ing)
    _write_config(rec, spec, ing)
    if old is None:
        start(rec, spec)
        return
    _spawn(rec, ing, ["-x", ing.socket, "-sf", str(old)])


def _plan(rec: ServiceRecord, ing: IngressRecord) -> list[str]:
    """Slots and weights for the current backends; the runtime commands that apply the slots."""
    addrs, ing.weights = targets(rec, up_backends(ing) if rec.rollout and alive(ing) else None)
    ing.slots, commands = hc.plan_slots(ing.slots, addrs)
    return commands


def sync_backends(rec: ServiceRecord, spec: ServiceSpec) -> list[str]:
    """Point the server slots at the current workers through the runtime API; return the
    commands sent. The config file is rewritten too, so a restart starts the same way."""
    ing = rec.ingress
    if ing is None:
        return []
    commands = _plan(rec, ing)
    commands += hc.weight_commands(ing.slots, ing.weights)
    for cmd in commands:
        reply = command(ing, cmd).strip()
        if reply and "change" not in reply.lower() and "no need" not in reply.lower():
            raise IngressError(f"haproxy refused '{cmd}': {reply}")
    _write_config(rec, spec, ing)
    return commands


def drain(rec: ServiceRecord, addresses: list[str]) -> None:
    """Take backends out of rotation now (before their hosts are removed)."""
    ing = rec.ingress
    if ing is None or not alive(ing):
        return
    for i, addr in enumerate(ing.slots):
        if addr in addresses:
            command(ing, f"set server {hc.BACKEND}/{hc.slot_name(i)} state maint")


def stop(rec: ServiceRecord) -> None:
    """Stop every process of the service's ingress (an old one finishing a reload too)."""
    ing = rec.ingress
    if ing is None:
        return
    procs.kill_pids(procs.pids_with_marker(marker(rec)), grace_s=2)
    for f in (ing.socket, ing.config):
        if os.path.exists(f):
            os.unlink(f)


# -- runtime API ---------------------------------------------------------------------------
def command(ing: IngressRecord, cmd: str, timeout_s: float = 2.0) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(ing.socket)
        s.sendall(cmd.encode() + b"\n")
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def up_backends(ing: IngressRecord | None) -> set[str]:
    """The backends the ingress lets in now (UP after their health checks)."""
    st = stats(ing) or {"backends": []}
    return {b["address"] for b in st["backends"] if str(b["status"]).startswith("UP")}


def stats(ing: IngressRecord | None) -> dict | None:
    """Backends (up/down, requests, errors) and the endpoint's counters, or None if down."""
    if not alive(ing):
        return None
    try:
        text = command(ing, "show stat")  # type: ignore[arg-type]
    except OSError:
        return None
    servers = hc.parse_stats(text)
    slots = {hc.slot_name(i): addr for i, addr in enumerate(ing.slots) if addr}  # type: ignore[union-attr]
    return {
        "frontend": hc.parse_frontend(text),
        "backends": [
            {
                "address": slots.get(s.slot, s.address),
                "status": s.status,
                "requests": s.requests,
                "errors": s.errors,
                "retries": s.retries,
                "redispatches": s.redispatches,
                "hrsp_5xx": s.hrsp_5xx,
            }
            for s in servers
            if s.slot in slots
        ],
    }
