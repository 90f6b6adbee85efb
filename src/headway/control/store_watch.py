"""How full the GCS stores are, and the alert when one passes its threshold.

A full store refuses writes and the GCS fails exactly when a head must be replaced,
so the controller watches every store in use (the managed one and each service's
own) and raises an alert once when ``used_memory`` passes the threshold (80% of
``maxmemory`` by default), and clears it once when usage drops below. An alert is
logged, kept in ``alerts.json`` (shown by ``status`` and ``cloud status``), written
to the store's timeline (shown by ``events`` of every service on it) and POSTed to
the webhook when one is set.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from headway.control import alert_delivery
from headway.control.store_access import resolve_spec_storage
from headway.plan import store_fitness
from headway.state import records
from headway.state.records import ServiceRecord
from headway.store import cloud, storage

log = logging.getLogger("headway.store_watch")

DEFAULT_ALERT_PERCENT = 80.0


def store_key(rec: ServiceRecord) -> str | None:
    """Which store a service uses: 'cloud', or its own store's masked address."""
    if not rec.gcs_ft:
        return None
    return "cloud" if rec.storage_source == "cloud" else rec.storage_masked


def _admin_address(crec: cloud.CloudRecord | None, key: str, recs: list[ServiceRecord]) -> storage.StoreAddress | None:
    if key == "cloud":
        return cloud.store_address(crec) if crec else None

    for rec in recs:
        if store_key(rec) == key:
            return resolve_spec_storage(rec.spec)
    return None


def _record(state: dict[str, Any], key: str, event: dict[str, Any], webhook: str | None) -> dict[str, Any]:
    """Keep an alert's new state and its event, say it in the log, POST it; the event."""
    state["alerts"][key] = {
        "active": event["kind"].endswith("raised"),
        "since": event["at"],
        "percent": event["percent"],
    }
    state["events"].append(event)
    alert_delivery.deliver(event | {"raised": event["kind"].endswith("raised")}, webhook)
    return event


def share_alerts(
    crec: cloud.CloudRecord | None, recs: list[ServiceRecord], state: dict[str, Any], webhook: str | None
) -> list[dict[str, Any]]:
    """One service must not fill the shared managed store unnoticed: an alert, naming it,
    when its namespace passes ``service_alert_percent`` of ``maxmemory`` (a quarter by
    default), cleared when it drops below."""
    mine = [r for r in recs if r.storage_source == "cloud" and r.namespace]
    if crec is None or not mine:
        return []
    try:
        client = storage.connect(cloud.store_address(crec), 2)
        try:
            maxmemory = storage.memory(client)["maxmemory"]
            held = {r.name: storage.namespace_bytes(client, r.namespace or "") for r in mine}
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - an unreachable store is the watchdog's business
        log.info("managed store: no share reading (%s)", type(exc).__name__)
        return []
    limit, new = crec.service_alert_percent, []
    for name, used in sorted(held.items()):
        percent = store_fitness.share_percent(used, maxmemory)
        key = f"service:{name}"
        change = store_fitness.alert_transition(state["alerts"].get(key, {}).get("active", False), percent, limit)
        if change is None or percent is None:
            continue
        kind = "service_store_alert_raised" if change == "raise" else "service_store_alert_cleared"
        event = {
            "at": time.time(),
            "store": "cloud",
            "service": name,
            "kind": kind,
            "percent": round(percent, 3),
            "threshold": limit,
            "bytes": used,
            "message": f"service {name} holds {percent:.2f}% of the managed store's maxmemory ({used} bytes; "
            f"limit {limit:g}%): "
            + (
                "look at what its application keeps in the GCS (Serve's "
                "checkpoints, actors, KV), or raise --service-alert-percent"
                if change == "raise"
                else "back below"
            ),
        }
        new.append(_record(state, key, event, webhook))
    return new


def settings(crec: cloud.CloudRecord | None) -> tuple[float, str | None]:
    """The threshold and the webhook: the cloud config's ``alerts:`` when it has them."""
    if crec is None:
        return DEFAULT_ALERT_PERCENT, None
    if crec.alerts is not None:
        return crec.alerts.store_percent, crec.alerts.webhook or crec.alert_webhook
    return crec.alert_percent, crec.alert_webhook


def check_all(crec: cloud.CloudRecord | None) -> list[dict[str, Any]]:
    """One round: read every store's memory, raise or clear alerts; return new events
    (``crec``: the cloud as the caller read it)."""
    recs = records.all_records()
    keys = {k for k in (store_key(r) for r in recs) if k}
    if crec is not None:
        keys.add("cloud")
    threshold, webhook = settings(crec)
    state = alert_delivery.load_state()
    new: list[dict[str, Any]] = []
    for key in sorted(keys):
        addr = _admin_address(crec, key, recs)
        if addr is None:
            continue
        try:
            client = storage.connect(addr, 2)
            try:
                mem = storage.memory(client)
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - an unreachable store is the watchdog's business
            log.info("store %s: no usage reading (%s)", key, type(exc).__name__)
            continue
        percent = store_fitness.usage_percent(mem)
        alert = state["alerts"].get(key, {"active": False})
        change = store_fitness.alert_transition(alert["active"], percent, threshold)
        if change is None:
            continue
        assert percent is not None
        event = {
            "at": time.time(),
            "store": key,
            "kind": "store_alert_raised" if change == "raise" else "store_alert_cleared",
            "percent": round(percent, 1),
            "threshold": threshold,
            "message": (
                f"store {key} at {percent:.1f}% of maxmemory (threshold {threshold:.0f}%): "
                + ("add memory, or remove leftover namespaces" if change == "raise" else "back below")
            ),
        }
        new.append(_record(state, key, event, webhook))
    new += share_alerts(crec, recs, state, webhook)
    if new:
        alert_delivery.save_state(state)
    return new


def share_alert_of(service: str) -> dict[str, Any] | None:
    """The service's own share alert (``share_alerts``), if it was ever raised."""
    return alert_delivery.load_state()["alerts"].get(f"service:{service}")


def alert_of(key: str | None) -> dict[str, Any] | None:
    if key is None:
        return None
    return alert_delivery.load_state()["alerts"].get(key)


def events_of(key: str | None) -> list[dict[str, Any]]:
    return [e for e in alert_delivery.load_state()["events"] if key and e.get("store") == key]
