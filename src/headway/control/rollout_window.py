"""Each version's numbers over a rollout step, read from the service's ingress: its
per-server counters (requests, 5xx, retries), which servers passed their checks when the
window opened, and, for latency, its log — during a rollout
the ingress logs every request with the server that answered and the time it took.

A 5xx the ingress retried on another server never reaches the client, and HAProxy then
counts it as a retry of the server that gave it, not as its 5xx: it is counted here (a
retry beyond the server's connection errors), or retries would hide a broken version.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

from headway.ingress import backends, instances
from headway.plan import haproxy_config as hc
from headway.plan.rollout_policy import Numbers, p99
from headway.state import records
from headway.state.records import ServiceRecord
from headway.store.cloud import CloudRecord

#: The most log read per step: at 100 requests/s a 30 s step writes ~0.7 MB.
MAX_LOG_BYTES = 8 * 1024 * 1024


def snapshot(crec: CloudRecord | None, rec: ServiceRecord) -> dict:
    """The ingress's counters per backend address and its log's length, now."""
    ing = rec.ingress
    st = instances.stats(crec, ing) or {"backends": []}
    servers = {b["address"]: [b["requests"], b["hrsp_5xx"], b["retries"], b["errors"]] for b in st["backends"]}
    up = sorted(instances.up_in(st))
    try:
        size = os.path.getsize(ing.log) if ing else 0
    except OSError:
        size = 0
    return {"pid": ing.pid if ing else None, "servers": servers, "up": up, "log": size}


def _latencies(rec: ServiceRecord, since: int) -> dict[str, list[float]]:
    """Total time (ms) of each request logged since byte ``since``, by backend address."""
    ing = rec.ingress
    if ing is None:
        return {}
    try:
        with open(ing.log, "rb") as fh:
            fh.seek(max(since, os.path.getsize(ing.log) - MAX_LOG_BYTES))
            text = fh.read().decode(errors="replace")
    except OSError:
        return {}
    slots = {hc.slot_name(i): a for i, a in enumerate(ing.slots) if a}
    out: dict[str, list[float]] = {}
    for slot, total_ms, _status in hc.parse_log(text.splitlines()):
        if slot in slots:
            out.setdefault(slots[slot], []).append(float(total_ms))
    return out


def numbers(
    crec: CloudRecord | None, rec: ServiceRecord, window: dict, new: Collection[str]
) -> tuple[Numbers, Numbers]:
    """(old version, new version) since ``window`` (a ``snapshot``); ``new``: the new
    cluster's backend addresses. A restarted ingress counts from zero."""
    now = snapshot(crec, rec)
    base = window.get("servers", {}) if window.get("pid") == now["pid"] else {}
    totals = {False: [0, 0], True: [0, 0]}  # is-new -> [requests, errors]
    for addr, (req, r5xx, retries, errs) in now["servers"].items():
        b_req, b_5xx, b_retries, b_errs = base.get(addr, [0, 0, 0, 0])
        if req < b_req:  # counters went back: a reload's new process
            b_req = b_5xx = b_retries = b_errs = 0
        hidden_5xx = max(0, (retries - b_retries) - (errs - b_errs))
        t = totals[addr in new]
        t[0] += req - b_req
        t[1] += (r5xx - b_5xx) + hidden_5xx
    lat = _latencies(rec, int(window.get("log", 0)))
    old_ms = [v for a, vs in lat.items() if a not in new for v in vs]
    new_ms = [v for a, vs in lat.items() if a in new for v in vs]
    return (
        Numbers(totals[False][0], totals[False][1], p99(old_ms)),
        Numbers(totals[True][0], totals[True][1], p99(new_ms)),
    )


def view(crec: CloudRecord | None, rec: ServiceRecord) -> dict | None:
    """A rollout as status shows it: the step, the split, both versions' numbers so far in
    this step and in the steps before; None when none is in progress."""
    ro = rec.rollout
    if ro is None:
        return None
    nxt = records.load(ro.cluster)
    new_addrs = set(backends.backends_of(nxt, nxt.workers)) if nxt else set()
    old_n, new_n = numbers(crec, rec, ro.window, new_addrs)
    return {
        "version": ro.version,
        "from_version": ro.from_version,
        "cluster": ro.cluster,
        "cluster_state": nxt.state if nxt else None,
        "percent": ro.percent,
        "weights": {"old": 100 - ro.percent, "new": ro.percent},
        "workers": {"old": len(rec.workers), "new": len(nxt.workers) if nxt else 0},
        "paused": ro.paused,
        "promoted": ro.promoted,
        "held_for_promote": held_for_promote(rec),
        "last": ro.last,
        "started_at": ro.started_at,
        "step_since": ro.step_since,
        "current": {"old": old_n.view(), "new": new_n.view()},
        "history": ro.history,
    }


def held_for_promote(rec: ServiceRecord) -> bool:
    """The rollout stands at its canary until 'rollout promote' (the controller said so in
    the timeline when it decided to hold there)."""
    ro = rec.rollout
    if ro is None or ro.promoted:
        return False
    return any(e.kind == "rollout_canary_held" and e.at >= ro.step_since for e in reversed(rec.events))


def last_outcome(rec: ServiceRecord) -> dict | None:
    """The last rollout's end (completed or rolled back), from the timeline."""
    ends = ("rollout_completed", "rollout_rolled_back")
    e = next((e for e in reversed(rec.events) if e.kind in ends), None)
    return (
        None if e is None else {"kind": e.kind, "at": e.at, "message": e.message, "version": e.details.get("version")}
    )


def status(crec: CloudRecord | None, rec: ServiceRecord) -> dict[str, Any]:
    """The rollout in progress (None when there is none) and how the last one ended."""
    return {"name": rec.name, "rollout": view(crec, rec), "last": last_outcome(rec)}
