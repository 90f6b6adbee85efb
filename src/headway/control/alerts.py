"""The services' alerts (``plan.alerting``: a head lost and back, a recovery taking too
long, too many 5xx at the endpoint), checked with the stores' every few seconds, sent
where ``alert_delivery`` sends (the log, ``alerts.json``, the cloud config's webhook).
"""

from __future__ import annotations

import time
from typing import Any

from headway.control import alert_delivery
from headway.model import states
from headway.model.alert_rules import AlertRules
from headway.plan import alerting
from headway.state import daemon_info, records, series_store
from headway.state.records import ServiceRecord
from headway.store.cloud import CloudRecord


def observe(rec: ServiceRecord, rules: AlertRules, now: float) -> alerting.Observed:
    """What the rules judge, from the record's timeline and the service's history."""
    lost_at, downtime = None, None
    for e in rec.events:
        if e.kind != "state":
            continue
        if e.state == states.State.HEAD_RECOVERING:
            lost_at = e.at
        else:
            lost_at = None
            downtime = e.details.get("downtime_s", downtime)
    points = [p for p in series_store.points(rec.name, now - rules.error_window_s) if p.get("requests") is not None]
    return alerting.Observed(
        service=rec.name,
        state=str(rec.state),
        recovering_since=lost_at if rec.state == states.State.HEAD_RECOVERING else None,
        last_downtime_s=downtime,
        requests=sum(p["requests"] for p in points) if points else None,
        errors_5xx=sum(p["errors_5xx"] or 0 for p in points) if points else None,
    )


def _link(rules: AlertRules, service: str) -> str | None:
    base = rules.link_base or daemon_info.api_url()
    return f"{base}/api/services/{service}/events" if base else None


def check(crec: CloudRecord | None, now: float | None = None) -> list[dict[str, Any]]:
    """One round over every service; the alerts raised or cleared (each sent once)."""
    rules = crec.alerts if crec is not None else None
    if rules is None:
        return []
    now = time.time() if now is None else now
    state = alert_delivery.load_state()
    active = {k: bool(v.get("active")) for k, v in state["alerts"].items()}
    sent = []
    for rec in records.all_records():
        if rec.parent is not None:
            continue  # a rollout's new cluster: its service is judged
        for change in alerting.decide(rules, observe(rec, rules, now), active, now):
            event = {
                "at": now,
                "kind": change.kind,
                "raised": change.raised,
                "service": rec.name,
                "message": change.message,
                "timeline": _link(rules, rec.name),
                **change.details,
            }
            state["alerts"][change.key] = {"active": change.raised, "since": now, "service": rec.name}
            active[change.key] = change.raised
            state["events"].append(event)
            alert_delivery.deliver(event, rules.webhook)
            sent.append(event)
    if sent:
        alert_delivery.save_state(state)
    return sent
