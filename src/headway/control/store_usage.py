"""What the GCS namespaces take in the stores, and removing the ones nobody owns."""

from __future__ import annotations

from typing import Any

from headway.model.errors import InputError
from headway.plan import store_fitness
from headway.state import records
from headway.state.records import ServiceRecord
from headway.store import cloud, storage


def cloud_usage(crec: cloud.CloudRecord) -> dict[str, Any]:
    """Store-wide memory, bytes per namespace (with its service), leftover namespaces."""
    owners = {r.namespace: r.name for r in records.all_records() if r.namespace and r.storage_source == "cloud"}
    try:
        client = storage.connect(cloud.store_address(crec), 3)
    except Exception:  # noqa: BLE001 - status must not fail on one probe
        return {"namespaces": {}, "leftovers": []}
    try:
        mem = storage.memory(client)
        spaces = {ns: storage.namespace_bytes(client, ns) for ns in sorted(storage.namespaces_in_store(client))}
    except Exception:  # noqa: BLE001
        return {"namespaces": {}, "leftovers": []}
    finally:
        client.close()
    return {
        "used_memory": mem["used_memory"],
        "maxmemory": mem["maxmemory"],
        "percent": store_fitness.usage_percent(mem),
        "namespaces": {ns: {"service": owners.get(ns), "bytes": b} for ns, b in spaces.items()},
        "leftovers": [ns for ns in spaces if ns not in owners],
    }


def service_usage(rec: ServiceRecord, addr: storage.StoreAddress) -> dict[str, Any]:
    """This service's bytes in its store, and the store's memory use."""
    try:
        client = storage.connect(addr, 2)
        try:
            used = storage.namespace_bytes(client, rec.namespace or "")
            try:
                mem = storage.memory(client)
            except Exception:  # noqa: BLE001 - a restricted user may not read INFO memory
                mem = {}
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - status must not fail on one probe
        return {"error": type(exc).__name__}
    return {
        "bytes": used,
        "store_percent": store_fitness.usage_percent(mem) if mem else None,
        "share_percent": store_fitness.share_percent(used, int(mem.get("maxmemory", 0))) if mem else None,
    }


class CleanupRefused(InputError):
    """The namespace is not a listed leftover: nothing was deleted."""


def cleanup_refusal(namespace: str, owners: dict[str, str], leftovers: list[str]) -> str | None:
    """Why ``namespace`` may not be cleaned up, or None. Only an exact name from the list
    of leftovers qualifies: never a pattern, never a namespace a service owns."""
    if any(c in namespace for c in "*?[]\\"):
        return f"{namespace!r} is a pattern; name one leftover namespace exactly ('headway cloud status' lists them)"
    if namespace in owners:
        return f"namespace {namespace} belongs to service {owners[namespace]}; terminate the service instead"
    if namespace not in leftovers:
        listed = ", ".join(leftovers) or "none"
        return f"{namespace!r} is not a leftover namespace of the managed store (leftovers: {listed})"
    return None


def cleanup_leftover(crec: cloud.CloudRecord | None, namespace: str) -> int:
    """UNLINK a leftover namespace's keys from the managed store (and its ACL user)."""
    if crec is None:
        raise CleanupRefused("no cloud is set up; leftovers are looked for in the managed store")
    owners = {r.namespace: r.name for r in records.all_records() if r.namespace}
    why = cleanup_refusal(namespace, owners, cloud_usage(crec)["leftovers"])
    if why:
        raise CleanupRefused(why)
    client = storage.connect(cloud.store_address(crec), 3)
    try:
        removed = storage.delete_namespace(client, namespace)
    finally:
        client.close()
    for admin in cloud.admin_clients(crec):
        try:
            storage.delete_service_user(admin, namespace)
        finally:
            admin.close()
    return removed
