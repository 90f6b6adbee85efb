"""Starting a head or a worker: the node's package and private files on its host, its
sandbox (``node_user``: the service's uid, what it may see), Ray's token of its cluster,
its settings digest, and a safe point before anything starts; then what a started node
tells: Ray's node ids, and the line of a failed head's output that says why.

What uses it: ``changes`` (a new service's head), ``steps`` (workers added or rolled),
``repair`` (a head or worker replacement).
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from pathlib import Path
from typing import Any

from headway.cluster import deps, gcs_client, ray_node
from headway.cluster.package import uri_path
from headway.control import log_archive
from headway.control.context import Context, Provider
from headway.control.store_access import gcs_storage
from headway.model.errors import DeployError, HeadExited, InputError
from headway.model.spec import ServiceSpec
from headway.plan import reconcile as plan
from headway.state import db, locks, records
from headway.state.records import NodeRecord, ServiceRecord
from headway.state.transitions import record_event
from headway.system import node_user, paths

HEAD_START_TIMEOUT_S = 90
WORKERS_JOIN_TIMEOUT_S = 90


def packages(rec: ServiceRecord) -> list[tuple[str, str]]:
    """(the file here, the path the nodes read it at) of each package of the service: the
    packaged working_dir and the applications' dependencies.

    The path is the one in the URI that Serve's config holds, under the state folder of
    the controller that deployed it. A standby that took over has its own copy (restored
    from the store) under its own state folder: the same file name, as the name is the
    content's hash."""
    out = []
    for uri in [rec.working_dir_uri, *deps.uris(rec.service, rec.spec).values()]:
        if (read_at := uri_path(uri)) is None:
            continue
        here = Path(read_at)
        if not here.exists():
            here = paths.service_dir(rec.service) / "pkg" / here.name
        if here.exists():
            out.append((str(here), read_at))
    return out


def ship_package(rec: ServiceRecord, prov: Provider, nodes: list[NodeRecord]) -> None:
    """Put the service's packages where every node reads them (another machine needs a
    copy), readable by the service's group only."""
    for here, read_at in packages(rec):
        for node in nodes:
            prov.distribute(here, node, rec.node_uid, read_at)


def proxy_env(rec: ServiceRecord, spec: ServiceSpec) -> dict[str, str]:
    """Serve's proxies import the gRPC servicer functions (``grpc_options``) themselves,
    outside every application's runtime_env: a node of a service that has them gets the
    working_dir package (the zip, read in place) on its PYTHONPATH."""
    pkg = uri_path(rec.working_dir_uri) if spec.grpc_options.enabled else None
    return {"PYTHONPATH": f"{pkg}/working_dir"} if pkg else {}


def sandbox(rec: ServiceRecord, prov: Provider, node: NodeRecord) -> node_user.Sandbox | None:
    """How the node is boxed in (``node_user``), or None where its host cannot (no root).
    It sees its own temp dir and its service's packages; the state dir is covered."""
    if not prov.can_sandbox(node):
        return None
    if rec.node_uid is None:  # a record from before nodes were boxed in: saved with the node
        rec.node_uid = node_user.allocate(rec.service, [(r.service, r.node_uid) for r in records.all_records()])
    pkg = {str(paths.service_dir(rec.service) / "pkg")} | {str(Path(at).parent) for _, at in packages(rec)}
    expose = (node.temp_dir, *sorted(pkg))
    return node_user.Sandbox(rec.node_uid, rec.node_uid, hide=(str(paths.home()),), expose=expose)


def _private_copies(gcs: ray_node.GcsStorage, temp_dir: str) -> tuple[ray_node.GcsStorage, dict[str, str]]:
    """The store's TLS files as the head's own private copies in its temp dir (it cannot
    read the control plane's): the storage settings pointing at them, and the files."""
    files: dict[str, str] = {}
    moved: dict[str, str] = {}
    for attr in ("ca_cert", "client_cert", "client_key"):
        path = getattr(gcs, attr)
        if path:
            copy = f"{temp_dir}/store-{attr.replace('_', '-')}.pem"
            files[copy] = Path(path).read_text()
            moved[attr] = copy
    return dataclasses.replace(gcs, **moved), files


def ray_token(rec: ServiceRecord) -> str:
    """The cluster's Ray token: made at its first node start, the same for every node and
    every head that replaces one (workers must be re-adopted with it)."""
    return db.ensure_token(records.ray_token_scope(rec.name), secrets.token_hex(32))


def start_head(ctx: Context, rec: ServiceRecord, spec: ServiceSpec, node: NodeRecord, recovering: bool = False) -> None:
    prov = ctx.provider(rec)
    box = sandbox(rec, prov, node)
    ship_package(rec, prov, [node])
    gcs = gcs_storage(ctx.cloud, rec, spec, node)
    tls: dict[str, str] = {}
    if gcs is not None:  # the head reads them by path: its own copies, on its host
        gcs, tls = _private_copies(gcs, node.temp_dir)
    launch = ray_node.head_launch(
        ip=node.ip,
        ports=prov.node_ports(node),
        temp_dir=node.temp_dir,
        storage=gcs,
        resources=spec.compute_config.head_node.resources,
        marker=node.marker,
        loopback=prov.loopback,
        user_env=spec.env_vars | proxy_env(rec, spec),
        auth_token=ray_token(rec),
        recovering=recovering,
        storage_files=tls,
    )
    if box is not None:
        launch = launch.boxed(box, node.temp_dir)
    node.config = plan.node_config(spec.compute_config.head_node.resources, spec.env_vars)
    locks.check_cancelled(rec.name)  # a safe point: nothing is started for a service being terminated
    prov.start(node, launch)


def start_worker(rec: ServiceRecord, spec: ServiceSpec, prov: Provider, node: NodeRecord) -> None:
    box = sandbox(rec, prov, node)
    ship_package(rec, prov, [node])
    group = next(g for g in spec.compute_config.worker_nodes if g.name == node.group)
    launch = ray_node.worker_launch(
        ip=node.ip,
        head_address=rec.gcs_address,
        ports=prov.node_ports(node),
        temp_dir=node.temp_dir,
        resources=group.resources,
        node_name=node.name,
        marker=node.marker,
        loopback=prov.loopback,
        user_env=spec.env_vars | proxy_env(rec, spec),
        auth_token=ray_token(rec),
    )
    if box is not None:
        launch = launch.boxed(box, node.temp_dir)
    node.config = plan.node_config(group.resources, spec.env_vars)
    locks.check_cancelled(rec.name)
    prov.start(node, launch)


def wait_head(rec: ServiceRecord, prov: Provider, head: NodeRecord) -> None:
    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        locks.check_cancelled(rec.name)
        if gcs_client.healthy(rec.gcs_address, rec.ray_token, timeout_s=1):
            return
        if not prov.alive(head) and time.time() - head.started_at > 3:
            raise head_exited(prov, head, "during start")
        time.sleep(0.3)
    raise DeployError(f"the head node did not come up in {HEAD_START_TIMEOUT_S} s; log: {head.log}")


#: A worker whose ``ray start`` gives up (Ray waits 30 s for its raylet to register) is
#: started once more on a fresh host: on a loaded 2-core machine a raylet sometimes
#: misses that window while two other nodes boot beside it.
WORKER_START_ATTEMPTS = 2


def wait_nodes(
    rec: ServiceRecord, prov: Provider, expected: int, spec: ServiceSpec | None = None
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WORKERS_JOIN_TIMEOUT_S
    nodes: list[dict[str, Any]] | None = None
    attempts: dict[str, int] = {}
    while time.monotonic() < deadline:
        locks.check_cancelled(rec.name)
        nodes = gcs_client.alive_nodes(rec.gcs_address, rec.ray_token)
        if nodes is not None and len(nodes) >= expected:
            return nodes
        for w in list(rec.workers):
            if not w.started_at or prov.alive(w) or time.time() - w.started_at <= 5:
                continue  # (not started yet: a later wave of ``steps.add_workers``)
            attempts[w.name] = attempts.get(w.name, 1) + 1
            if spec is None or attempts[w.name] > WORKER_START_ATTEMPTS:
                raise DeployError(f"worker {w.name} exited during start; log:\n{prov.log_tail(w, 15)}")
            record_event(rec, "worker_start_retried", f"worker {w.name} exited during start; starting it again")
            log_archive.retire(prov, rec, w)
            again = prov.new_node(rec, w.name, "worker", w.ip, dict(w.ports), group=w.group)
            rec.nodes = [again if n is w else n for n in rec.nodes]
            records.save(rec)
            start_worker(rec, spec, prov, again)
            records.save(rec)
            deadline = max(deadline, time.monotonic() + 45)
        time.sleep(0.5)
    raise DeployError(f"only {len(nodes or [])} of {expected} nodes joined within {WORKERS_JOIN_TIMEOUT_S} s")


def head_exited(prov: Provider, head: NodeRecord, when: str) -> HeadExited:
    """The error for a new head that exited ``when``, with Ray's own line about why."""
    why = ray_failure_line(prov.log_tail(head, 40))
    return HeadExited(f"the new head exited {when}: {why} (its log: {head.log})", why)


_FAILURE_WORDS = ("error", "exited", "failed", "timed out", "timeout", "killed")


def ray_failure_line(log_text: str) -> str:
    """The line of a node's ``ray start`` output that says why it stopped: the last one
    with an error word, else the last line."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if any(w in line.lower() for w in _FAILURE_WORDS):
            return line[:300]
    return lines[-1][:300] if lines else "(no output)"


def note_node_ids(rec: ServiceRecord, alive: list[dict[str, Any]]) -> None:
    """Remember Ray's node id of every node (matched by node name): a re-adopted worker
    must come back under the same id, and the head's id tells a stale entry apart."""
    by_name = {n.get("node_name"): n.get("node_id") for n in alive}
    heads = [n.get("node_id") for n in alive if n.get("is_head_node")]
    for node in rec.nodes:
        if node.role == "head" and len(heads) == 1:
            node.node_id = heads[0]
        elif node.name in by_name:
            node.node_id = by_name[node.name]


def working_dir_uri(rec: ServiceRecord, spec: ServiceSpec, package_uri: str | None) -> str | None:
    """The working_dir URI the nodes read: a remote URI as given, else the package the
    caller uploaded (``uploads``), else (a scale) the one running now."""
    if not spec.working_dir:
        return None
    if "://" in spec.working_dir:
        return spec.working_dir
    uri = package_uri or rec.working_dir_uri
    if uri is None:
        raise InputError(f"working_dir {spec.working_dir} was not uploaded; deploy with the CLI, which packages it")
    return uri
