"""Prometheus metrics (text format 0.0.4), rendered from what ``status`` observes.

``render`` is pure: it takes each service's observed status (``views.observe``) and
timeline and returns the exposition text; the API gathers, this module only formats.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from headway.model.states import State

Sample = tuple[dict[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(name: str, kind: str, help_: str, samples: Iterable[Sample]) -> list[str]:
    lines = [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        lab = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{lab}}} {_number(value)}" if lab else f"{name} {_number(value)}")
    return lines


def _number(value: float) -> str:
    """Exact for whole numbers at any size (``:g`` printed 20,000,001 as ``2e+07``)."""
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    return repr(float(value))


def recoveries(events: list[dict[str, Any]]) -> tuple[int, float | None]:
    """Head recoveries completed (HEAD_RECOVERING → RUNNING) and the last one's duration,
    from the head's loss to RUNNING, in seconds."""
    done = [
        e
        for e in events
        if e.get("kind") == "state" and e.get("state") == State.RUNNING and "downtime_s" in (e.get("details") or {})
    ]
    return len(done), (float(done[-1]["details"]["downtime_s"]) if done else None)


def render(services: list[dict[str, Any]], snapshot: dict | None = None) -> str:
    """``services``: one dict per service: its ``observe`` status plus ``events``;
    ``snapshot``: the size of the leader's state in the store (``state_snapshot.size``)."""
    fams: list[list[str]] = []
    state_samples: list[Sample] = []
    head_up: list[Sample] = []
    rec_total: list[Sample] = []
    rec_last: list[Sample] = []
    be_up: list[Sample] = []
    be_all: list[Sample] = []
    req: list[Sample] = []
    resp: list[Sample] = []
    errs: list[Sample] = []
    retries: list[Sample] = []
    svc_bytes: list[Sample] = []
    svc_share: list[Sample] = []
    store_pct: dict[str, float] = {}
    group_nodes: list[Sample] = []
    group_bounds: list[Sample] = []
    replicas: list[Sample] = []
    rollout: list[Sample] = []
    for st in services:
        s = {"service": st["name"]}
        if st.get("rollout"):
            rollout.append(({**s, "version": str(st["rollout"]["version"])}, float(st["rollout"]["percent"])))
        for g in st.get("groups", []):
            group_nodes.append(({**s, "group": g["name"]}, float(g["nodes"])))
            group_bounds += [({**s, "group": g["name"], "bound": b}, float(g[b])) for b in ("min", "max")]
        for app in st.get("applications", []):
            for dep, d in app.get("replicas", {}).items():
                replicas.append(({**s, "application": app["name"], "deployment": dep}, float(d.get("running", 0))))
        for state in State:
            state_samples.append(({**s, "state": state.value}, 1.0 if st["state"] == state.value else 0.0))
        head = next((n for n in st["nodes"] if n["role"] == "head"), None)
        head_up.append((s, 1.0 if head and head["alive"] and st["state"] != State.HEAD_RECOVERING else 0.0))
        n, last = recoveries(st.get("events", []))
        rec_total.append((s, float(n)))
        if last is not None:
            rec_last.append((s, last))
        ing = st.get("ingress")
        if ing:
            backends = ing["backends"]
            be_up.append((s, float(sum(1 for b in backends if b["status"].startswith("UP")))))
            be_all.append((s, float(len(backends))))
            fe = ing.get("frontend") or {}
            req.append((s, float(fe.get("requests", 0))))
            for code in ("2xx", "4xx", "5xx"):
                resp.append(({**s, "code": code}, float(fe.get(f"hrsp_{code}", 0))))
            errs.append((s, float(fe.get("hrsp_5xx", 0) + sum(b["errors"] for b in backends))))
            retries.append((s, float(sum(b["retries"] + b["redispatches"] for b in backends))))
        else:
            be_up.append((s, 0.0))
        storage = st.get("storage") or {}
        usage = storage.get("usage") or {}
        if "bytes" in usage:
            svc_bytes.append((s, float(usage["bytes"])))
        if usage.get("share_percent") is not None:
            svc_share.append((s, float(usage["share_percent"])))
        if usage.get("store_percent") is not None:
            store_pct[storage.get("source") == "cloud" and "cloud" or str(storage.get("address"))] = float(
                usage["store_percent"]
            )
    fams.append(_family("headway_service_state", "gauge", "1 for the state the service is in, else 0.", state_samples))
    fams.append(
        _family("headway_head_up", "gauge", "1 while the service's head node is up and not being replaced.", head_up)
    )
    fams.append(
        _family("headway_recoveries_total", "counter", "Head recoveries completed (head lost to RUNNING).", rec_total)
    )
    fams.append(
        _family(
            "headway_last_recovery_seconds",
            "gauge",
            "Seconds from the head's loss to RUNNING, last recovery.",
            rec_last,
        )
    )
    fams.append(_family("headway_ingress_backends_up", "gauge", "Ingress backends (worker proxies) UP.", be_up))
    fams.append(_family("headway_ingress_backends", "gauge", "Ingress backends configured.", be_all))
    fams.append(_family("headway_requests_total", "counter", "Requests the endpoint received (HAProxy).", req))
    fams.append(_family("headway_responses_total", "counter", "Responses the endpoint sent, by class (HAProxy).", resp))
    fams.append(
        _family(
            "headway_request_errors_total",
            "counter",
            "5xx sent to clients plus backend connection/response errors (HAProxy).",
            errs,
        )
    )
    fams.append(
        _family(
            "headway_backend_retries_total",
            "counter",
            "Requests HAProxy retried or redispatched to another backend.",
            retries,
        )
    )
    fams.append(
        _family(
            "headway_store_memory_percent",
            "gauge",
            "GCS store memory use, % of maxmemory.",
            [({"store": k}, v) for k, v in sorted(store_pct.items())],
        )
    )
    fams.append(
        _family("headway_service_store_bytes", "gauge", "Bytes of the service's GCS data in its store.", svc_bytes)
    )
    fams.append(
        _family(
            "headway_service_store_share_percent",
            "gauge",
            "The service's GCS data as a % of its store's maxmemory (alert: cloud service_alert_percent).",
            svc_share,
        )
    )
    fams.append(_family("headway_group_nodes", "gauge", "Worker nodes of each group.", group_nodes))
    fams.append(
        _family(
            "headway_group_nodes_bound", "gauge", "Each group's min_nodes and max_nodes (fixed: count).", group_bounds
        )
    )
    fams.append(_family("headway_replicas", "gauge", "Running replicas of each deployment (Serve).", replicas))
    fams.append(
        _family("headway_rollout_percent", "gauge", "Share of traffic (%) a rollout's new version takes.", rollout)
    )
    if snapshot is not None:
        fams.append(
            _family(
                "headway_state_snapshot_bytes",
                "gauge",
                "The leader's state in the store: the snapshot, and the packages stored beside it.",
                [
                    ({"part": "snapshot"}, snapshot.get("bytes", 0)),
                    ({"part": "packages"}, snapshot.get("package_bytes", 0)),
                ],
            )
        )
    return "\n".join(line for fam in fams for line in fam) + "\n"
