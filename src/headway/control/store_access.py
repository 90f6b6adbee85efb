"""Where a service's GCS store is and with which credentials: the user's own store from
the spec, or the managed one with the service's own ACL user (made at its deploy, deleted
at its teardown), and waiting for the store's primary before a head is started."""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass

from headway.cluster import ray_node
from headway.model.errors import DeployError
from headway.model.spec import ServiceSpec
from headway.state import db
from headway.state.records import NodeRecord, ServiceRecord
from headway.store import cloud, storage
from headway.system import paths


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


def gcs_storage(
    crec: cloud.CloudRecord | None, rec: ServiceRecord, spec: ServiceSpec, node: NodeRecord | None = None
) -> ray_node.GcsStorage | None:
    """The head's GCS store; ``node`` (a head being started) records which store process
    that is, when the store is the managed one (a failover moves its primary)."""
    if not rec.gcs_ft or rec.namespace is None:
        return None
    addr = store_address(crec, rec, spec)
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


def store_address(crec: cloud.CloudRecord | None, rec: ServiceRecord, spec: ServiceSpec) -> storage.StoreAddress:
    """Where the service's GCS store is, with its credentials (``crec``: the cloud, for the managed store)."""
    if rec.storage_source == "spec":
        addr = resolve_spec_storage(spec)
        assert addr is not None
        return addr
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


def wait_store_primary(
    crec: cloud.CloudRecord | None, rec: ServiceRecord, spec: ServiceSpec, timeout_s: float = 45
) -> storage.StoreAddress:
    """The store as a new head will use it, once it answers as a primary: after a store
    failover Sentinel needs a few seconds to promote the replica, and a head started
    against the dead primary would only exit again."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        addr = store_address(crec, rec, spec)
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
