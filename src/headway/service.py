"""Service lifecycle: deploy (or update), observe, terminate.

Order matters and is the product's promise: every check of the input and of the
store runs *before* anything is started; a failed first deploy removes all it
started; terminate removes nodes first and only then the store namespace.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import (
    cloud,
    db,
    ingress,
    netns,
    paths,
    placement,
    ray_node,
    records,
    serve,
    states,
    storage,
    store_fitness,
    store_usage,
    store_watch,
    uploads,
)
from .provider import LocalProvider
from .records import NodeRecord, ServiceRecord
from .spec import ServiceSpec, SpecError, parse_spec
from .ssh_provider import SshProvider, local_path

Progress = Callable[[str], None]

HEAD_START_TIMEOUT_S = 90
WORKERS_JOIN_TIMEOUT_S = 90
APPS_RUNNING_TIMEOUT_S = 180
PROXIES_HEALTHY_TIMEOUT_S = 60


class DeployError(RuntimeError):
    """A deploy or update that could not be done; the message says what to do."""


class PlacementError(DeployError):
    """--strict: the replicas could not serve without the head (see ``placement``)."""


class HeadRecovering(DeployError):
    """The service's head is down or being replaced: changes wait until it is back."""


def _quiet(_: str) -> None:
    pass


def set_state(rec: ServiceRecord, target: states.State, message: str = "", **details: Any) -> None:
    """The only place a service changes state: validated against the table, recorded, saved."""
    event = states.transition_event(rec.state, target, message, **details)
    rec.events.append(event)
    rec.state = str(target)
    rec.reason = message if target == states.State.UNHEALTHY else ""
    records.save(rec)


def record_event(rec: ServiceRecord, kind: str, message: str, **details: Any) -> None:
    """A timeline entry that is not a state change (a node started, apps RUNNING, ...)."""
    rec.events.append(states.Event(at=time.time(), kind=kind, state=rec.state, message=message, details=details))


@dataclass(frozen=True)
class ResolvedStorage:
    address: storage.StoreAddress
    source: str  # "cloud" | "spec"


def resolve_spec_storage(spec: ServiceSpec) -> storage.StoreAddress | None:
    """The user's own store from the spec, with credentials resolved; None means the cloud store."""
    gcs = spec.ray_gcs_external_storage_config
    if not gcs.enable or not gcs.address:
        return None
    addr = storage.parse_address(gcs.address)
    # A repair or the store watch runs long after the deploying shell: the password its
    # variable held was stored with the service.
    pw = storage.resolve_password(gcs.redis_password_env, gcs.redis_password_file, db.secrets_of(spec.name))
    addr = addr.with_credentials(gcs.redis_username, pw)
    if addr.tls:
        addr = storage.StoreAddress(
            addr.host,
            addr.port,
            True,
            addr.username,
            addr.password,
            ca_cert=gcs.redis_certificate_path or storage.DEFAULT_CA_BUNDLE,
            client_cert=gcs.redis_client_certificate_path,
            client_key=gcs.redis_client_key_path,
        )
    return addr


Provider = LocalProvider | SshProvider


def provider_for(crec: cloud.CloudRecord | None, rec: ServiceRecord | None = None) -> Provider:
    """The provider of a cloud; a service record's mode stands in when the cloud is gone."""
    if crec is not None and crec.mode == "ssh" and crec.ssh is not None:
        return SshProvider(crec.ssh)
    mode = crec.mode if crec else rec.mode if rec else cloud.mode_default()
    return LocalProvider(mode, crec.subnet if crec else None)


def _gcs_storage(rec: ServiceRecord, spec: ServiceSpec) -> ray_node.GcsStorage | None:
    if not rec.gcs_ft or rec.namespace is None:
        return None
    addr = _store_address(rec, spec)
    return ray_node.GcsStorage(
        ray_address=addr.ray_address(),
        namespace=rec.namespace,
        username=addr.username,
        password=addr.password,
        ca_cert=addr.ca_cert,
        client_cert=addr.client_cert,
        client_key=addr.client_key,
    )


def _store_address(rec: ServiceRecord, spec: ServiceSpec) -> storage.StoreAddress:
    if rec.storage_source == "spec":
        addr = resolve_spec_storage(spec)
        assert addr is not None
        return addr
    crec = cloud.load()
    if crec is None:
        raise DeployError("the cloud store is gone; run 'headway cloud setup'")
    addr = cloud.store_address(crec)
    if rec.store_user:
        addr = dataclasses.replace(addr, username=rec.store_user, password=store_user_password(rec))
    return addr


def _user_password_file(name: str):
    return paths.service_dir(name) / "store.password"


def store_user_password(rec: ServiceRecord) -> str:
    return _user_password_file(rec.name).read_text().strip()


def wait_store_primary(rec: ServiceRecord, spec: ServiceSpec, timeout_s: float = 45) -> storage.StoreAddress:
    """The store as a new head will use it, once it answers as a primary: after a store
    failover Sentinel needs a few seconds to promote the replica, and a head started
    against the dead primary would only exit again."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        addr = _store_address(rec, spec)
        try:
            client = storage.connect(addr, 2)
            try:
                role = client.info("replication").get("role")
            finally:
                client.close()
            if role == "master":
                return addr
            last = f"{addr.masked()} is a {role}"
        except Exception as exc:  # noqa: BLE001 - keep asking until the deadline
            last = f"{addr.masked()}: {type(exc).__name__}"
        time.sleep(0.5)
    raise DeployError(f"the GCS store has no reachable primary after {timeout_s:.0f} s ({last})")


def _create_store_user(rec: ServiceRecord, crec: cloud.CloudRecord) -> None:
    """Its own ACL user on every managed store process: its namespace's keys only."""
    pw = secrets.token_urlsafe(24)
    paths.write_private(_user_password_file(rec.name), pw)
    for client in cloud.admin_clients(crec):
        try:
            rec.store_user = storage.create_service_user(client, rec.namespace or "", pw)
        finally:
            client.close()


def _delete_store_user(rec: ServiceRecord, crec: cloud.CloudRecord | None) -> None:
    if not rec.store_user or crec is None:
        return
    for client in cloud.admin_clients(crec):
        try:
            storage.delete_service_user(client, rec.namespace or "")
        finally:
            client.close()


def _ship_package(rec: ServiceRecord, prov: Provider, nodes: list[NodeRecord]) -> None:
    """Put the packaged working_dir where every node reads it (another machine needs a copy)."""
    pkg = local_path(rec.working_dir_uri)
    if pkg:
        for node in nodes:
            prov.distribute(pkg, node)


def ray_token(rec: ServiceRecord) -> str:
    """The cluster's Ray token: made at its first node start, the same for every node and
    every head that replaces one (workers must be re-adopted with it)."""
    return db.ensure_token(records.ray_token_scope(rec.name), secrets.token_hex(32))


def start_head(rec: ServiceRecord, spec: ServiceSpec, prov: Provider, node: NodeRecord) -> None:
    _ship_package(rec, prov, [node])
    gcs = _gcs_storage(rec, spec)
    for tls_file in (gcs.ca_cert, gcs.client_cert, gcs.client_key) if gcs else ():
        if tls_file:
            prov.distribute(tls_file, node)  # the head reads them by path: another host needs a copy
    launch = ray_node.head_launch(
        ip=node.ip,
        ports=prov.node_ports(node),
        temp_dir=node.temp_dir,
        storage=gcs,
        resources=spec.compute_config.head_node.resources,
        marker=node.marker,
        loopback=prov.loopback,
        user_env=spec.env_vars,
        auth_token=ray_token(rec),
    )
    prov.start(node, launch)


def start_worker(rec: ServiceRecord, spec: ServiceSpec, prov: Provider, node: NodeRecord) -> None:
    _ship_package(rec, prov, [node])
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
        user_env=spec.env_vars,
        auth_token=ray_token(rec),
    )
    prov.start(node, launch)


def wait_head(rec: ServiceRecord, prov: Provider, head: NodeRecord) -> None:
    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if serve.gcs_healthy(rec.head_api, timeout_s=1):
            return
        if not prov.alive(head) and time.time() - head.started_at > 3:
            raise DeployError(f"the head node exited during start; see its log: {log_tail(head.log)}")
        time.sleep(0.3)
    raise DeployError(f"the head node did not come up in {HEAD_START_TIMEOUT_S} s; log: {head.log}")


def log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as fh:
            return "\n" + "".join(fh.readlines()[-lines:])
    except OSError:
        return path


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
        nodes = serve.alive_nodes(rec.head_api)
        if nodes is not None and len(nodes) >= expected:
            return nodes
        for w in list(rec.workers):
            if prov.alive(w) or time.time() - w.started_at <= 5:
                continue
            attempts[w.name] = attempts.get(w.name, 1) + 1
            if spec is None or attempts[w.name] > WORKER_START_ATTEMPTS:
                raise DeployError(f"worker {w.name} exited during start; log: {log_tail(w.log)}")
            record_event(rec, "worker_start_retried", f"worker {w.name} exited during start; starting it again")
            prov.remove(w)
            again = prov.new_node(rec, w.name, "worker", w.ip, dict(w.ports), group=w.group)
            rec.nodes = [again if n is w else n for n in rec.nodes]
            records.save(rec)
            start_worker(rec, spec, prov, again)
            records.save(rec)
            deadline = max(deadline, time.monotonic() + 45)
        time.sleep(0.5)
    raise DeployError(f"only {len(nodes or [])} of {expected} nodes joined within {WORKERS_JOIN_TIMEOUT_S} s")


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


def recovering_since(rec: ServiceRecord) -> float | None:
    """When the head of a GCS-FT service was lost, if it is down or being replaced now."""
    if not rec.gcs_ft:
        return None
    if rec.state == states.State.HEAD_RECOVERING:
        lost = [e for e in rec.events if e.kind == "state" and e.state == states.State.HEAD_RECOVERING]
        return lost[-1].details.get("lost_at", lost[-1].at) if lost else rec.updated_at
    if rec.state in UPDATABLE and rec.head is not None and not provider_for(cloud.load(), rec).alive(rec.head):
        return time.time()
    return None


def refuse_while_recovering(rec: ServiceRecord) -> None:
    """Updates and scaling need the head: refuse them, clearly, while it is down."""
    since = recovering_since(rec)
    if since is None:
        if rec.gcs_ft and rec.state in UPDATABLE and rec.head is not None and not _head_answers(rec):
            raise HeadRecovering(
                f"head node of service {rec.name} does not answer its health check (frozen or cut off?); "
                "the controller replaces it if it stays down — retry, or pass --wait"
            )
        return
    raise HeadRecovering(
        f"head node of service {rec.name} is recovering ({time.time() - since:.0f} s); "
        "updates resume when it is back — retry, or pass --wait"
    )


UPDATABLE = (states.State.RUNNING, states.State.UPDATING, states.State.UNHEALTHY)


def _head_answers(rec: ServiceRecord, attempts: int = 2, timeout_s: float = 3) -> bool:
    """A head whose processes live may still be frozen or cut off: an update would hang on
    it (and hold the service lock the watchdog needs), so ask its GCS first."""
    return any(serve.gcs_healthy(rec.head_api, timeout_s) for _ in range(attempts))


def _desired_workers(spec: ServiceSpec) -> list[tuple[str, str]]:
    """(node name, group) for every worker the spec asks for."""
    out = []
    for group in spec.compute_config.worker_nodes:
        for i in range(1, group.count + 1):
            out.append((f"{group.name}-{i}", group.name))
    return out


def _package(rec: ServiceRecord, spec: ServiceSpec, package_uri: str | None) -> str | None:
    """The working_dir URI the nodes read: a remote URI as given, else the package the
    caller uploaded (``uploads``), else (a scale) the one running now."""
    if not spec.working_dir:
        return None
    if "://" in spec.working_dir:
        return spec.working_dir
    uri = package_uri or rec.working_dir_uri
    if uri is None:
        raise DeployError(f"working_dir {spec.working_dir} was not uploaded; deploy with the CLI, which packages it")
    return uri


def preflight(spec: ServiceSpec, progress: Progress = _quiet) -> ResolvedStorage | None:
    """Everything that can be checked before a node starts. Raises DeployError/StoreError."""
    if not spec.gcs_ft:
        return None
    own = resolve_spec_storage(spec)
    if own is not None:
        progress(f"checking GCS store {own.masked()}")
        check_store_fitness(own, spec.ray_gcs_external_storage_config.require_replica, progress)
        return ResolvedStorage(own, "spec")
    return None


def check_store_fitness(addr: storage.StoreAddress, require_replica: bool, progress: Progress) -> None:
    """Reachable, credentials accepted, single shard, replicated, no eviction, permissions."""
    findings = store_fitness.judge(storage.inspect(addr), require_replica)
    for f in findings:
        if f.level == "warning":
            progress(f"warning ({f.check}): {f.message}")
        elif f.level == "info":
            progress(f"store {f.check}: {f.message}")
    errs = store_fitness.errors(findings)
    if errs:
        raise storage.StoreError(
            f"the GCS store at {addr.masked()} is not fit:\n" + "\n".join(f"  - {f.check}: {f.message}" for f in errs)
        )


def _cloud(progress: Progress) -> cloud.CloudRecord:
    crec = cloud.load()
    if crec is None:
        if not cloud.auto_setup_enabled():
            raise DeployError("no cloud is set up (HEADWAY_AUTO_CLOUD=0); run 'headway cloud setup'")
        progress("no cloud yet: setting up the managed GCS store (primary + replica)")
    return cloud.setup()


def deploy(
    spec: ServiceSpec, progress: Progress = _quiet, strict: bool = False, package_uri: str | None = None
) -> ServiceRecord:
    """Create the service, or update it when one of that name exists.

    ``strict``: refuse a service whose replicas could not serve without the head.
    ``package_uri``: the uploaded working_dir package (``uploads.store_package``)."""
    problems = placement.spec_problems(spec)
    if problems and strict:
        raise PlacementError("refused (--strict), nothing was started:\n  " + "\n  ".join(problems))
    for p in problems:
        progress(f"warning: {p}")
    resolved = preflight(spec, progress)
    existing = records.load(spec.name)
    if existing is not None:
        refuse_while_recovering(existing)
    with records.locked(spec.name):
        existing = records.load(spec.name)
        if existing is not None:
            refuse_while_recovering(existing)
            crec = cloud.load()
            updatable = existing.state in ("RUNNING", "UPDATING", "UNHEALTHY")
            if updatable and crec is not None and existing.head and provider_for(crec).alive(existing.head):
                return _update(existing, spec, crec, progress, strict, package_uri)
            progress(f"found leftovers of an earlier run of {spec.name}: removing them")
            _remove_everything(existing, crec, progress, delete_keys=True)
        crec = _cloud(progress)
        provider_for(crec).check_ready(progress)
        if resolved is None and spec.gcs_ft:
            addr = cloud.store_address(crec)
            progress(f"checking GCS store {addr.masked()} (managed)")
            check_store_fitness(addr, require_replica=True, progress=progress)
            resolved = ResolvedStorage(addr, "cloud")
        return _create(spec, crec, resolved, progress, strict, package_uri)


def _create(
    spec: ServiceSpec,
    crec: cloud.CloudRecord,
    resolved: ResolvedStorage | None,
    progress: Progress,
    strict: bool,
    package_uri: str | None,
) -> ServiceRecord:
    prov = provider_for(crec)
    for ns in prov.leftover_namespaces(spec.name, keep=set()) if not prov.loopback else []:
        progress(f"removing leftover namespace {ns}")
        prov.remove_namespace(ns)
    namespace = storage.new_namespace(spec.name) if resolved else None
    if resolved and namespace:
        client = storage.connect(resolved.address)
        try:
            if storage.namespace_keys(client, namespace):
                raise DeployError(f"store namespace {namespace} is already in use; deploy again")
        finally:
            client.close()
    with records.allocation_lock():
        head_ip, head_ports = prov.plan_head()
        rec = ServiceRecord(
            name=spec.name,
            cluster_id=secrets.token_hex(4),
            mode=crec.mode,
            gcs_ft=spec.gcs_ft,
            storage_source=resolved.source if resolved else None,  # type: ignore[arg-type]
            storage_masked=resolved.address.masked() if resolved else None,
            namespace=namespace,
            spec=spec.model_dump(mode="json", by_alias=False),
            head_ip=head_ip,
            gcs_port=head_ports["gcs"],
            dashboard_port=head_ports["dashboard"],
            serve_port=head_ports["proxy"],
        )
        record_event(rec, "state", "service created")
        head = prov.new_node(rec, "head", "head", head_ip, head_ports)
        rec.nodes.append(head)
        taken = {head_ip}
        for name, group in _desired_workers(spec):
            ip, ports = prov.plan_worker(taken)
            taken.add(ip)
            rec.nodes.append(prov.new_node(rec, name, "worker", ip, ports, group=group))
        records.save(rec)
    try:
        if rec.storage_source == "cloud" and rec.namespace:
            _create_store_user(rec, crec)
            records.save(rec)
            progress(f"store user {rec.store_user}: keys of namespace {rec.namespace} only")
        rec.working_dir_uri = _package(rec, spec, package_uri)
        progress(f"starting head node at {head.ip}" + (f" (netns {head.netns})" if head.netns else ""))
        start_head(rec, spec, prov, head)
        records.save(rec)
        wait_head(rec, prov, head)
        record_event(rec, "head_started", f"head up at {head.ip}", elapsed_s=round(time.time() - rec.created_at, 2))
        progress("head is up; GCS " + (f"in store namespace {namespace}" if namespace else "in memory (FT disabled)"))
        for w in rec.workers:
            progress(f"starting worker {w.name} at {w.ip}")
            start_worker(rec, spec, prov, w)
        records.save(rec)
        note_node_ids(rec, wait_nodes(rec, prov, 1 + len(rec.workers), spec))
        record_event(rec, "workers_joined", f"{len(rec.workers)} worker(s) joined")
        progress(f"{len(rec.workers)} worker(s) joined")
        _apply_apps(rec, spec, progress, strict)
        ingress.start(rec, spec)
        records.save(rec)
        progress(f"ingress listening at {rec.endpoint} in front of {len(rec.workers)} worker(s)")
        set_state(
            rec,
            states.State.RUNNING,
            "every application RUNNING",
            elapsed_s=round(time.time() - rec.created_at, 2),
        )
        return rec
    except BaseException as exc:
        progress(f"deploy failed ({type(exc).__name__}); removing what was started")
        _remove_everything(rec, crec, progress, delete_keys=True)
        raise


def _workers_with_replicas(rec: ServiceRecord, placed: dict[str, dict[str, dict[str, Any]]]) -> list[NodeRecord]:
    """The workers that run at least one replica (by Ray node id; by all when ids are unknown)."""
    ids = {nid for deps in placed.values() for d in deps.values() for nid in d.get("node_ids", [])}
    return [w for w in rec.workers if w.node_id is None or w.node_id in ids]


def _apply_apps(rec: ServiceRecord, spec: ServiceSpec, progress: Progress, strict: bool) -> None:
    config = serve.serve_config(spec, rec.working_dir_uri, rec.serve_port)
    progress(f"deploying {len(spec.applications)} application(s)")
    serve.put_applications(rec.head_api, config)
    names = [a.name for a in spec.applications]
    serve.wait_running(
        rec.head_api,
        names,
        APPS_RUNNING_TIMEOUT_S,
        on_progress=lambda s: progress("applications: " + ", ".join(f"{k}={v}" for k, v in s.items())),
    )
    placed = serve.replicas(serve.get_applications(rec.head_api))
    hosting = _workers_with_replicas(rec, placed)
    for w in rec.workers:
        if w not in hosting:
            # Serve (proxy_location EveryNode) runs a proxy only where a replica runs: none to
            # wait for; the ingress keeps the backend DOWN until a replica lands there.
            progress(f"warning: worker {w.name} holds no replica, so Serve runs no proxy there (no traffic)")
    idle = serve.wait_proxies([rec.proxy_url(w) for w in hosting], PROXIES_HEALTHY_TIMEOUT_S)
    for url in idle:
        progress(f"warning: the proxy at {url} serves no replica (it answers 503 on /-/healthz)")
    progress(f"the proxies of {len(hosting) - len(idle)} worker(s) are healthy")
    head_id = rec.head.node_id if rec.head else None
    problems = placement.observed_problems(placed, head_id)
    if problems and strict:
        raise PlacementError("refused (--strict): " + "; ".join(problems))
    for p in problems:
        progress(f"warning: {p}")


def _update(
    rec: ServiceRecord,
    spec: ServiceSpec,
    crec: cloud.CloudRecord,
    progress: Progress,
    strict: bool,
    package_uri: str | None,
) -> ServiceRecord:
    old = ServiceSpec.model_validate(rec.spec)
    if old.ray_gcs_external_storage_config != spec.ray_gcs_external_storage_config:
        raise DeployError(
            f"service {rec.name}: ray_gcs_external_storage_config cannot change on update; "
            "terminate the service and deploy it again to move its GCS"
        )
    if old.compute_config.head_node != spec.compute_config.head_node:
        raise DeployError(f"service {rec.name}: compute_config.head_node cannot change on update")
    progress(f"updating service {rec.name}")
    set_state(rec, states.State.UPDATING, "deploy of a new spec")
    try:
        return _apply_update(rec, spec, crec, progress, strict, package_uri)
    except BaseException as exc:
        set_state(rec, states.State.UNHEALTHY, f"update failed: {exc}"[:500])
        raise


def _apply_update(
    rec: ServiceRecord,
    spec: ServiceSpec,
    crec: cloud.CloudRecord,
    progress: Progress,
    strict: bool,
    package_uri: str | None,
) -> ServiceRecord:
    prov = provider_for(crec)
    rec.spec = spec.model_dump(mode="json", by_alias=False)
    records.save(rec)
    desired = dict(_desired_workers(spec))
    leaving = [w for w in rec.workers if w.name not in desired or w.group != desired[w.name]]
    if leaving:
        ingress.drain(rec, ingress.backends_of(rec, leaving))
        time.sleep(ingress.DRAIN_S)
    for w in leaving:
        progress(f"removing worker {w.name}")
        prov.remove(w)
        rec.nodes.remove(w)
    have = {w.name for w in rec.workers}
    added = []
    with records.allocation_lock():
        taken = {n.ip for n in rec.nodes}
        for name, group in desired.items():
            if name not in have:
                ip, ports = prov.plan_worker(taken)
                taken.add(ip)
                node = prov.new_node(rec, name, "worker", ip, ports, group=group)
                rec.nodes.append(node)
                added.append(node)
        records.save(rec)
    for node in added:
        progress(f"starting worker {node.name} at {node.ip}")
        start_worker(rec, spec, prov, node)
    records.save(rec)
    if added:
        note_node_ids(rec, wait_nodes(rec, prov, 1 + len(rec.workers), spec))
    rec.working_dir_uri = _package(rec, spec, package_uri)
    _ship_package(rec, prov, rec.nodes)
    _apply_apps(rec, spec, progress, strict)
    how = ingress.apply_update(rec, spec)
    records.save(rec)
    progress(
        f"ingress at {rec.endpoint}: "
        + {"backends": "backends updated", "reloaded": "reloaded seamlessly", "started": "started"}[how]
    )
    set_state(rec, states.State.RUNNING, "update applied")
    uploads.prune_packages(rec.name, rec.working_dir_uri)
    return rec


def _remove_everything(
    rec: ServiceRecord, crec: cloud.CloudRecord | None, progress: Progress, delete_keys: bool
) -> int:
    """Nodes first (no GCS may be alive), then the store namespace, then the records."""
    prov = provider_for(crec, rec)
    ingress.stop(rec)  # stop taking requests first
    for node in sorted([*rec.nodes, *rec.retired], key=lambda n: n.role == "head"):
        prov.remove(node)
    if prov.mode == "netns" and netns.available():
        for ns in prov.leftover_namespaces(rec.name, keep=set()):
            prov.remove_namespace(ns)
    removed = 0
    if delete_keys and rec.gcs_ft and rec.namespace:
        try:
            spec = ServiceSpec.model_validate(rec.spec)
            admin = cloud.store_address(crec) if rec.storage_source == "cloud" and crec else None
            client = storage.connect(admin or _store_address(rec, spec))
            removed = storage.delete_namespace(client, rec.namespace)
            client.close()
            progress(f"deleted {removed} key(s) of store namespace {rec.namespace}")
        except Exception as exc:  # noqa: BLE001 - report, keep removing the rest
            progress(f"could not delete store namespace {rec.namespace}: {type(exc).__name__}")
    try:
        _delete_store_user(rec, crec)
    except Exception as exc:  # noqa: BLE001 - report, keep removing the rest
        progress(f"could not delete store user {rec.store_user}: {type(exc).__name__}")
    shutil.rmtree(paths.service_dir(rec.name) / "pkg", ignore_errors=True)
    records.remove(rec.name)
    return removed


def wait_recovered(name: str, deadline: float, poll_s: float = 0.5) -> None:
    """Block until the service's head is back (or ``deadline``, a monotonic time)."""
    while time.monotonic() < deadline:
        rec = records.load(name)
        if rec is None or (recovering_since(rec) is None and not records.is_locked(name)):
            return
        time.sleep(poll_s)


def scaled_spec(rec: ServiceRecord, group: str, count: int) -> ServiceSpec:
    """The service's spec with one worker group resized."""
    data = dict(rec.spec)
    groups = [dict(g) for g in data["compute_config"]["worker_nodes"]]
    match = [g for g in groups if g["name"] == group]
    if not match:
        known = ", ".join(g["name"] for g in groups)
        raise DeployError(f"service {rec.name} has no worker group {group!r}; its groups: {known}")
    match[0]["count"] = count
    data["compute_config"] = dict(data["compute_config"], worker_nodes=groups)
    try:
        return parse_spec(data, f"scale of {rec.name}")
    except SpecError as exc:
        raise DeployError(f"cannot scale {rec.name}: " + "; ".join(exc.problems)) from None


def chaos(rec: ServiceRecord, role: str, node: str | None = None) -> dict[str, Any]:
    """Crash a node of the service on purpose (the first of ``role``, or the one named)."""
    found = [n for n in rec.nodes if n.role == role and (node is None or n.name == node)]
    if not found:
        what = f"{role} {node}" if node else f"{role} right now"
        raise DeployError(f"service {rec.name} has no {what}; its workers: {', '.join(w.name for w in rec.workers)}")
    target = found[0]
    return {"node": target.name, "ip": target.ip, "killed": crash_node(rec, target), "at": time.time()}


def crash_node(rec: ServiceRecord, node: NodeRecord) -> int:
    """SIGKILL every process of a node's host, as a crash would (the host stays, dead)."""
    prov = provider_for(cloud.load(), rec)
    pids = prov.pids(node)
    prov.kill(node)
    return len(pids)


def terminate(name: str, progress: Progress = _quiet) -> None:
    with records.locked(name):
        rec = records.load(name)
        if rec is None:
            raise DeployError(f"no service named {name}; 'headway list' shows the services")
        set_state(rec, states.State.TERMINATING, "terminate requested")
        progress(f"stopping {len(rec.nodes)} node(s) of {name}")
        _remove_everything(rec, cloud.load(), progress, delete_keys=True)
    shutil.rmtree(paths.service_dir(name), ignore_errors=True)


def _usage(rec: ServiceRecord) -> dict[str, Any]:
    try:
        addr = _store_address(rec, ServiceSpec.model_validate(rec.spec))
    except Exception as exc:  # noqa: BLE001 - status must not fail on one probe
        return {"error": type(exc).__name__}
    return store_usage.service_usage(rec, addr)


def _node_names(rec: ServiceRecord, node_ids: list[str]) -> list[str]:
    names = {n.node_id: n.name for n in rec.nodes if n.node_id}
    return sorted(names.get(i, i[:8]) for i in node_ids)


def observe_storage(rec: ServiceRecord) -> dict[str, Any]:
    """Where the service's GCS lives, what it takes there, and its store's alert."""
    if not rec.gcs_ft:
        return {"enabled": False, "note": "GCS fault tolerance is disabled: the head's death ends the service"}
    return {
        "enabled": True,
        "source": rec.storage_source,
        "address": rec.storage_masked,
        "namespace": rec.namespace,
        "user": rec.store_user,
        "usage": _usage(rec),
        "alert": store_watch.alert_of(store_watch.store_key(rec)),
    }


def observe(rec: ServiceRecord) -> dict[str, Any]:
    """Status as seen now (no secrets): nodes, applications, storage."""
    prov = provider_for(cloud.load(), rec)
    nodes = []
    for n in rec.nodes:
        nodes.append(
            {
                "name": n.name,
                "role": n.role,
                "group": n.group,
                "ip": n.ip,
                "netns": n.netns,
                "alive": prov.alive(n),
            }
        )
    head_alive = bool(rec.head and prov.alive(rec.head))
    details = serve.get_applications(rec.head_api) if head_alive else None
    placed = serve.replicas(details)
    apps = [
        {
            "name": a["name"],
            "status": serve.app_statuses(details).get(a["name"], "UNKNOWN"),
            "route_prefix": a.get("route_prefix"),
            "replicas": {
                dep: {**d, "nodes": _node_names(rec, d["node_ids"])} for dep, d in placed.get(a["name"], {}).items()
            },
        }
        for a in rec.spec.get("applications", [])
    ]
    state, reason = rec.state, rec.reason
    if state == "RUNNING" and not head_alive:
        state, reason = "UNHEALTHY", "head node is down"
    elif state == "RUNNING" and not all(n["alive"] for n in nodes):
        reason = "a worker node is down"
    return {
        "name": rec.name,
        "state": state,
        "reason": reason,
        "mode": rec.mode,
        "gcs_fault_tolerance": rec.gcs_ft,
        "nodes": nodes,
        "applications": apps,
        "storage": observe_storage(rec),
        "dashboard_url": rec.dashboard_url,
        "endpoint": rec.endpoint,
        "token_required": bool(rec.spec.get("query_auth_token_enabled", True)),
        "ingress": ingress.stats(rec.ingress),
    }
