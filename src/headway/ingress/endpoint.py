"""A service's ingress process: one HAProxy per service, the stable endpoint.

It runs detached (its own session), so it outlives the CLI, the controller and the
head. In ssh mode with ``ingress:`` hosts in the cloud config it runs on each of those
hosts instead, behind the address keepalived moves (``ingress_hosts``, ``vip``); every
function here then acts on each instance. Backend changes go through HAProxy's runtime
API on its admin socket; a change of the config itself (token, timeouts) is a seamless reload: the new process takes
the listening socket over from the old one (``-x``), which finishes its requests.

The bearer token lives in ``services/<name>/token`` and in the HAProxy config, both
0600; it is printed only by ``headway token``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
import socket
import time
from pathlib import Path

from headway.cluster.local_provider import free_ports, used_ports
from headway.hosts import vip
from headway.ingress import backends, door, ingress_hosts, instances, local_haproxy
from headway.ingress.instances import IngressError
from headway.model.cloud_config import SshHost
from headway.model.spec import ServiceSpec
from headway.plan import haproxy_config as hc
from headway.plan import haproxy_grpc
from headway.state import db, records
from headway.state.records import IngressRecord, ServiceRecord
from headway.store.cloud import CloudRecord
from headway.system import paths, procs

#: How long a backend stays out of rotation before its host is removed: a host that
#: still exists answers stray packets with a reset, which HAProxy retries elsewhere; a
#: host that vanished answers nothing and a request sent to it waits for its timeout.
DRAIN_S = 1.0
TLS_PEM = "tls.pem"  # beside the config, 0600: the certificate chain and its key


def bind_address() -> str:
    """Where endpoints listen: ``HEADWAY_INGRESS_BIND`` (default 127.0.0.1, this machine only)."""
    return os.environ.get("HEADWAY_INGRESS_BIND", "127.0.0.1")


def _bind_for(crec: CloudRecord | None, spec: ServiceSpec, kept: str | None = None) -> str:
    """Where the spec's endpoint listens: on ingress hosts always the moving address; here
    ``endpoint.bind``, else the address it had (``kept``), else ``bind_address()``."""
    hosts_cfg = instances.hosts_or_none(crec)
    if hosts_cfg is not None and hosts_cfg.ingress is not None:
        return hosts_cfg.ingress.address
    return spec.endpoint.bind or kept or bind_address()


def _listen(crec: CloudRecord | None, spec: ServiceSpec, ing: IngressRecord) -> None:
    """The address and port from the spec's ``endpoint:`` block: what it gives is taken (a
    change moves the endpoint by a seamless reload), what it does not give is kept as it
    was (at the first deploy: a free port, ``bind_address()``)."""
    ing.port = spec.endpoint.port or ing.port
    ing.tls = spec.endpoint.tls is not None
    ing.hostnames = list(spec.endpoint.hostnames or [])
    ing.bind = _bind_for(crec, spec, ing.bind)


def listen_problem(crec: CloudRecord | None, spec: ServiceSpec) -> str | None:
    """Why the spec's endpoint cannot be had, checked before anything starts: another
    service's endpoint has its port (and they cannot share it by name), or (here) another
    program does."""
    names = set(spec.endpoint.hostnames or ())
    on_hosts = instances.hosts_or_none(crec) is not None
    bind = _bind_for(crec, spec)
    port = spec.endpoint.port
    if port is None:
        return None
    held = False
    for other in records.all_records():
        ing = other.ingress
        if ing is None or ing.port != port:
            continue
        held = True
        if other.service != spec.name and (why := _sharing_problem(spec, names, other.service, ing, bind)):
            return why
    if held or on_hosts:
        return None  # ours, or shared by name; on the ingress hosts their HAProxy says so at start
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind, port))
        except PermissionError:
            return f"endpoint.port {port}: a port below 1024 needs headway to run as root"
        except OSError as exc:
            return f"endpoint.port {port} is not free on this machine ({exc.strerror}); pick another port"
    return None


def _sharing_problem(spec: ServiceSpec, names: set[str], other: str, ing: IngressRecord, bind: str) -> str | None:
    """Why this spec, its endpoint on ``bind``, cannot share its port with the endpoint
    ``ing`` of service ``other``."""
    port = ing.port
    if not names or not ing.hostnames:
        return (
            f"endpoint.port {port} is the endpoint of service {other}; pick another port, or give both "
            "services endpoint.hostnames to share it"
        )
    if ing.tls != (spec.endpoint.tls is not None):
        return (
            f"endpoint.port {port} serves {'HTTPS' if ing.tls else 'plain HTTP'} for service {other}; "
            "the services on one port all give endpoint.tls, or none does"
        )
    if ing.bind != bind:
        return f"endpoint.port {port} is service {other}'s on {ing.bind}; give endpoint.bind: {ing.bind} to share it"
    clash = sorted(names & set(ing.hostnames))
    if clash:
        return f"endpoint.hostnames: {clash[0]} is served by service {other} on port {port}; a name has one service"
    return None


# -- token ---------------------------------------------------------------------------------
def token(name: str) -> str | None:
    return db.get_token(token_scope(name))


def endpoint_token(name: str) -> str:
    """The service's bearer token, generated at its first deploy and kept across updates."""
    return db.ensure_token(token_scope(name), secrets.token_urlsafe(32))


def token_scope(name: str) -> str:
    return f"service:{name}"


def accepted_tokens(name: str) -> tuple[str, ...]:
    """What the endpoint lets in: the service's token and, after a rotation, the one before
    it until its grace period ends."""
    endpoint_token(name)
    return tuple(db.accepted_tokens(token_scope(name), time.time()))


# -- config --------------------------------------------------------------------------------
def tls_pem(spec: ServiceSpec) -> str | None:
    """The certificate chain and its key as HAProxy reads them (one PEM), from the files
    the deploy uploaded; None without ``endpoint.tls``."""
    tls = spec.endpoint.tls
    if tls is None:
        return None
    try:
        return "\n".join(Path(f).read_text().strip() for f in (tls.cert, tls.key)) + "\n"
    except OSError as exc:
        raise IngressError(
            f"the endpoint's certificate is gone from the control host ({exc.strerror}); deploy again"
        ) from None


def settings(crec: CloudRecord | None, rec: ServiceRecord, spec: ServiceSpec, ing: IngressRecord) -> hc.IngressSettings:
    http = spec.http_options
    pem = tls_pem(spec)
    return hc.IngressSettings(
        bind=ing.bind,
        port=ing.port,
        stats_socket=ing.socket,
        tokens=accepted_tokens(rec.name) if spec.query_auth_token_enabled else (),
        request_timeout_s=hc.request_timeout_s(spec.endpoint.request_timeout_s, http.request_timeout_s),
        keep_alive_timeout_s=http.keep_alive_timeout_s or hc.DEFAULT_KEEP_ALIVE_S,
        retry_5xx_idempotent=http.retry_5xx_idempotent,
        max_body_bytes=spec.endpoint.max_body_bytes,
        rate_per_s=spec.endpoint.rate_limit.requests_per_second if spec.endpoint.rate_limit else None,
        rate_burst=spec.endpoint.rate_limit.burst if spec.endpoint.rate_limit else 0,
        retry_budget_percent=spec.endpoint.retry_budget_percent,
        weighted=rec.rollout is not None,
        freebind=ing.on_hosts,
        unprivileged=_as_root(crec, ing),
        hostnames=tuple(ing.hostnames),
        grpc=spec.grpc_options.enabled,
        idempotent_paths=tuple(spec.endpoint.idempotent_paths),
        listen=door.listener(ing) if ing.hostnames else None,
        tls_pem=str(Path(ing.config).with_name(TLS_PEM)) if pem else None,
        tls_id=hashlib.sha256(pem.encode()).hexdigest()[:12] if pem else "",
    )


def _as_root(crec: CloudRecord | None, ing: IngressRecord) -> bool:
    """Whether the endpoint's HAProxy starts as root (here, or over SSH on every ingress
    host), so that it can drop to nobody once bound."""
    if ing.on_hosts:
        return ingress_hosts.all_root(instances.hosts_config(crec))
    return os.geteuid() == 0


def _write_config(crec: CloudRecord | None, rec: ServiceRecord, spec: ServiceSpec, ing: IngressRecord) -> None:
    """Record what the config holds; here, write it (on hosts, ``_spawn_on`` writes each)."""
    conf = settings(crec, rec, spec, ing)
    ing.settings_digest = _digest(conf)
    if not ing.on_hosts:
        pem = tls_pem(spec)
        if pem is not None:
            paths.write_private(Path(ing.config).with_name(TLS_PEM), pem)
        paths.write_private(Path(ing.config), hc.render(conf, ing.slots, ing.weights, backends.grpc_targets(rec)))


def _digest(conf: hc.IngressSettings) -> str:
    """Identifies everything but the backends and the admin socket (the token included,
    never shown): the same on every host."""
    return hashlib.sha256(hc.render(dataclasses.replace(conf, stats_socket=""), []).encode()).hexdigest()[:16]


def apply_update(crec: CloudRecord | None, rec: ServiceRecord, spec: ServiceSpec) -> str:
    """After an update: backends through the runtime API when only they changed, else a
    seamless reload. Returns which of the two it did."""
    ing = rec.ingress
    if ing is None or not instances.alive(crec, ing):
        start(crec, rec, spec)
        return "started"
    _listen(crec, spec, ing)
    if _digest(settings(crec, rec, spec, ing)) == ing.settings_digest:
        sync_backends(crec, rec, spec)
        return "backends"
    reload(crec, rec, spec)
    return "reloaded"


# -- process -------------------------------------------------------------------------------


def _spawn(rec: ServiceRecord, ing: IngressRecord, extra: list[str]) -> None:
    ing.pid, ing.pid_started = local_haproxy.spawn(ing.config, ing.socket, ing.log, instances.marker(rec), extra)


def _spawn_on(
    crec: CloudRecord | None, host: SshHost, rec: ServiceRecord, spec: ServiceSpec, ing: IngressRecord, reload: bool
) -> None:
    """Start (or, with ``reload``, seamlessly replace) the instance on one ingress host."""
    root = str(paths.node_temp_root())
    f = ingress_hosts.files(ing.marker, host.address, root)
    conf = settings(crec, rec, spec, ing)
    pem = tls_pem(spec)
    conf = dataclasses.replace(conf, stats_socket=f["socket"], tls_pem=f["tls"] if pem else None)
    text = hc.render(conf, ing.slots, ing.weights, backends.grpc_targets(rec))
    inst = ing.instances.get(host.address)
    if reload and inst is not None and ingress_hosts.alive(host, inst):
        ingress_hosts.spawn(
            instances.hosts_config(crec), host, ing, text, root, ["-x", f["socket"], "-sf", str(inst.pid)], pem
        )
        return
    ingress_hosts.stop_on(instances.hosts_config(crec), host, ing, root)  # a fresh start is the only listener
    ingress_hosts.spawn(instances.hosts_config(crec), host, ing, text, root, [], pem)


def start(crec: CloudRecord | None, rec: ServiceRecord, spec: ServiceSpec) -> IngressRecord:
    """Start the service's ingress (first deploy, or after it died): same port, same slots.
    On hosts: only the instances that do not run (a host back from a reboot)."""
    d = paths.service_dir(rec.name)
    ing = rec.ingress
    if ing is None:
        hosts_cfg = instances.hosts_or_none(crec)
        ing = IngressRecord(
            bind="",
            port=spec.endpoint.port or free_ports(1, used_ports())[0],
            config=str(d / "haproxy.cfg"),
            socket=str(d / "haproxy.sock"),
            log=str(d / "logs" / "haproxy.log"),
            slots=hc.empty_slots(),
            marker=f"{rec.cluster_id}/ingress",
            on_hosts=hosts_cfg is not None,
        )
        rec.ingress = ing
    _listen(crec, spec, ing)
    os.makedirs(os.path.dirname(ing.log), exist_ok=True)
    _plan(crec, rec, ing)
    _write_config(crec, rec, spec, ing)
    if ing.on_hosts:
        cfg = instances.hosts_config(crec)
        assert crec is not None
        vip.ensure(cfg, crec.id)

        def start_missing(host: SshHost) -> None:
            if not ingress_hosts.alive(host, ing.instances.get(host.address)):
                # One its host started at boot is replaced seamlessly, with the config of now.
                _spawn_on(crec, host, rec, spec, ing, reload=ingress_hosts.adopt(host, ing))

        if ingress_hosts.each_answering(cfg, start_missing) == 0:
            raise IngressError(f"no ingress host answers SSH ({', '.join(h.address for h in cfg.ingress_hosts())})")
        door.follow(crec, rec)
        return ing
    # A fresh start must be the only listener (HAProxy binds with SO_REUSEPORT): any
    # process left of this service's ingress goes first, found by its marker.
    procs.kill_pids(procs.pids_with_marker(instances.marker(rec)), grace_s=1)
    if os.path.exists(ing.socket):
        os.unlink(ing.socket)
    _spawn(rec, ing, [])
    door.follow(crec, rec)
    return ing


def reload(crec: CloudRecord | None, rec: ServiceRecord, spec: ServiceSpec, replan: bool = True) -> None:
    """Apply a new config without dropping a connection: the new process takes the
    listener over from the old one, which finishes what it is serving and exits.
    ``replan``: place the current backends first (else the slots as they are)."""
    ing = rec.ingress
    assert ing is not None
    _listen(crec, spec, ing)
    if replan:
        _plan(crec, rec, ing)
    _write_config(crec, rec, spec, ing)
    if ing.on_hosts:
        ingress_hosts.each_answering(
            instances.hosts_config(crec), lambda h: _spawn_on(crec, h, rec, spec, ing, reload=True)
        )
        door.follow(crec, rec)
        return
    old = ing.pid if instances.alive(crec, ing) else None
    if old is None:
        start(crec, rec, spec)
        return
    _spawn(rec, ing, ["-x", ing.socket, "-sf", str(old)])
    door.follow(crec, rec)


def _plan(crec: CloudRecord | None, rec: ServiceRecord, ing: IngressRecord, wanted: tuple | None = None) -> list[str]:
    """Slots and weights for the current backends (``wanted``, if already read; the table
    grown to hold them); the runtime commands that apply the slots."""
    addrs, ing.weights = wanted or _targets(crec, rec, ing)
    ing.slots, commands = hc.plan_slots(hc.grown(ing.slots, len(addrs)) or ing.slots, addrs)
    return commands


def _targets(crec: CloudRecord | None, rec: ServiceRecord, ing: IngressRecord) -> tuple[list[str], dict[str, int]]:
    up = instances.up_backends(crec, ing) if rec.rollout and instances.alive(crec, ing) else None
    return backends.targets(rec, up)


def sync_backends(crec: CloudRecord | None, rec: ServiceRecord, spec: ServiceSpec) -> list[str]:
    """Point the server slots at the current workers through the runtime API; return the
    commands sent. The config file is rewritten too, so a restart starts the same way."""
    ing = rec.ingress
    if ing is None:
        return []
    wanted = _targets(crec, rec, ing)
    bigger = hc.grown(ing.slots, len(wanted[0]))
    if bigger is not None:
        # More backends than slots: a seamless reload declares the new (empty) slots first,
        # so that the new backends still come in through the runtime API, down until their
        # health checks pass.
        ing.slots = bigger
        reload(crec, rec, spec, replan=False)
    commands = _plan(crec, rec, ing, wanted)
    commands += hc.weight_commands(ing.slots, ing.weights)
    if spec.grpc_options.enabled:
        commands += haproxy_grpc.commands(hc.named_slots(ing.slots), backends.grpc_targets(rec), ing.weights)
    for cmd, reply in instances.send_all(crec, ing, commands):
        reply = reply.strip()
        if reply and "change" not in reply.lower() and "no need" not in reply.lower():
            raise IngressError(f"haproxy refused '{cmd}': {reply}")
    _write_config(crec, rec, spec, ing)
    return commands


def drain(crec: CloudRecord | None, rec: ServiceRecord, addresses: list[str]) -> None:
    """Take backends out of rotation now (before their hosts are removed); their slots are
    freed in the record, which the caller saves."""
    ing = rec.ingress
    if ing is None or not instances.alive(crec, ing):
        return
    ing.slots, commands = hc.drained(ing.slots, addresses)
    instances.send_all(crec, ing, commands)


def stop(crec: CloudRecord | None, rec: ServiceRecord) -> None:
    """Stop every process of the service's ingress (an old one finishing a reload too)."""
    ing = rec.ingress
    if ing is None:
        return
    door.follow(crec, rec, leaving=True)
    if ing.on_hosts:
        root, cfg = str(paths.node_temp_root()), instances.hosts_config(crec)
        ingress_hosts.each_answering(cfg, lambda h: ingress_hosts.stop_on(cfg, h, ing, root))
        ing.instances.clear()
        return
    procs.kill_pids(procs.pids_with_marker(instances.marker(rec)), grace_s=2)
    for f in (ing.socket, ing.config):
        if os.path.exists(f):
            os.unlink(f)
