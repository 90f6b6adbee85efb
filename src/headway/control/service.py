"""The building blocks every change and repair of a service is made of: its one way to
change state (``set_state``), where its GCS store is and with which credentials, which
node provider runs it, and when a change must wait because the head is down. Starting a
node and waiting for it: ``node_start``.

What uses them: ``changes`` (deploy, update, rollback), ``steps`` (one plan step each),
``repair`` (the controller's head and worker replacements), ``teardown``, ``views``.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from headway.cluster import gcs_client, ray_node
from headway.cluster.local_provider import LocalProvider
from headway.cluster.node_provider import NodeProvider
from headway.cluster.ssh_provider import SshProvider
from headway.model import states
from headway.model.errors import Failed, InputError, RetryLater
from headway.model.spec import ServiceSpec
from headway.state import db, records
from headway.state.records import NodeRecord, ServiceRecord
from headway.store import cloud, storage
from headway.system import paths

Progress = Callable[[str], None]

APPS_RUNNING_TIMEOUT_S = 180
PROXIES_HEALTHY_TIMEOUT_S = 60


class DeployError(Failed):
    """A deploy or update that could not be done; the message says what to do."""


class PlacementError(InputError, DeployError):
    """--strict: the replicas could not serve without the head (see ``placement``)."""


class HeadRecovering(RetryLater, DeployError):
    """The service's head is down or being replaced: changes wait until it is back."""


class HeadExited(DeployError):
    """A new head's ``ray start`` gave up during its boot (on a loaded machine its raylet
    can miss Ray's 30 s registration window): a new attempt can start at once.
    ``ray_says``: the line of its output that says why."""

    def __init__(self, message: str, ray_says: str) -> None:
        super().__init__(message)
        self.ray_says = ray_says


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


def _quiet(_: str) -> None:
    pass


def set_state(rec: ServiceRecord, target: states.State, message: str = "", **details: Any) -> None:
    """The only place a service changes state: validated against the table, recorded, saved."""
    event = states.transition_event(rec.state, target, message, **details)
    rec.events.append(event)
    rec.state = states.State(target)
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


Provider = NodeProvider  # the contract; LocalProvider and SshProvider implement it


def provider_for(crec: cloud.CloudRecord | None, rec: ServiceRecord | None = None) -> Provider:
    """The provider of a cloud; a service record's mode stands in when the cloud is gone."""
    if crec is not None and crec.mode == "ssh" and crec.ssh is not None:
        return SshProvider(crec.ssh)
    mode = crec.mode if crec else rec.mode if rec else cloud.mode_default()
    return LocalProvider(mode, crec.subnet if crec else None)


def gcs_storage(rec: ServiceRecord, spec: ServiceSpec, node: NodeRecord | None = None) -> ray_node.GcsStorage | None:
    """The head's GCS store; ``node`` (a head being started) records which store process
    that is, when the store is the managed one (a failover moves its primary)."""
    if not rec.gcs_ft or rec.namespace is None:
        return None
    addr = store_address(rec, spec)
    if node is not None and rec.storage_source == "cloud":
        node.store = f"{addr.host}:{addr.port}"
    return ray_node.GcsStorage(
        ray_address=addr.ray_address(),
        namespace=rec.namespace,
        username=addr.username,
        password=addr.password,
        ca_cert=addr.ca_cert,
        client_cert=addr.client_cert,
        client_key=addr.client_key,
    )


def store_address(rec: ServiceRecord, spec: ServiceSpec) -> storage.StoreAddress:
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


def _user_password_file(rec: ServiceRecord):
    """Per cluster (a rollout runs two of one service at once), in the service's folder."""
    return paths.service_dir(rec.service) / f"store-{rec.cluster_id}.password"


def store_user_password(rec: ServiceRecord) -> str:
    return _user_password_file(rec).read_text().strip()


def wait_store_primary(rec: ServiceRecord, spec: ServiceSpec, timeout_s: float = 45) -> storage.StoreAddress:
    """The store as a new head will use it, once it answers as a primary: after a store
    failover Sentinel needs a few seconds to promote the replica, and a head started
    against the dead primary would only exit again."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        addr = store_address(rec, spec)
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


def create_store_user(rec: ServiceRecord, crec: cloud.CloudRecord) -> None:
    """Its own ACL user on every managed store process: its namespace's keys only."""
    pw = secrets.token_urlsafe(24)
    paths.write_private(_user_password_file(rec), pw)
    for client in cloud.admin_clients(crec):
        try:
            rec.store_user = storage.create_service_user(client, rec.namespace or "", pw)
        finally:
            client.close()


def forget_store_password(rec: ServiceRecord) -> None:
    _user_password_file(rec).unlink(missing_ok=True)


def delete_store_user(rec: ServiceRecord, crec: cloud.CloudRecord | None) -> None:
    if not rec.store_user or crec is None:
        return
    for client in cloud.admin_clients(crec):
        try:
            storage.delete_service_user(client, rec.namespace or "")
        finally:
            client.close()


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
    return any(gcs_client.healthy(rec.gcs_address, rec.ray_token, timeout_s) for _ in range(attempts))


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
