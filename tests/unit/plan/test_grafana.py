"""The Grafana dashboard: importable shape, and every query reads only what /metrics serves."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families
from test_metrics import _status

from headway.plan import grafana, metrics
from headway.plan.haproxy_counts import BUCKETS_MS


def _served_names() -> set[str]:
    """Every sample name a service with everything in it gets from ``render``."""
    st = _status()
    st["groups"] = [{"name": "pool", "nodes": 2, "min": 1, "max": 3}]
    st["applications"] = [{"name": "app", "replicas": {"D": {"running": 1, "target": 1, "node_ids": []}}}]
    st["rollout"] = {"version": 2, "percent": 10}
    st["storage"]["usage"]["share_percent"] = 3.0
    st["ingress"]["responses"] = {
        "by_backend": {
            "10.0.0.1:8000": {
                "codes": {"200": 1},
                "buckets_ms": dict.fromkeys(map(str, BUCKETS_MS), 1),
                "sum_ms": 3,
                "count": 1,
            }
        },
        "own": {},
    }
    text = metrics.render([st])
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_every_query_names_only_served_metrics():
    served = _served_names()
    board = grafana.dashboard()
    exprs = grafana.queries(board)
    assert len(exprs) >= 10
    for expr in exprs:
        names = grafana.metric_names(expr)
        assert names, expr
        assert names <= served, (expr, names - served)


def test_the_dashboard_is_importable_json_with_a_service_variable():
    board = json.loads(json.dumps(grafana.dashboard()))
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    assert {v["name"] for v in board["templating"]["list"]} == {"service", "datasource"}
    assert all(
        'service="$service"' in t["expr"]
        for p in board["panels"]
        for t in p["targets"]
        if "store_memory" not in t["expr"]
    )
    titles = " ".join(p["title"] for p in board["panels"]).lower()
    for part in ("code", "latency", "5xx", "head", "replicas", "store"):
        assert part in titles
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for p in board["panels"]:
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"])
    quantiles = [t["expr"] for t in board["panels"][1]["targets"]]
    assert [q.split(",")[0] for q in quantiles] == [f"histogram_quantile({q}" for q in (0.5, 0.95, 0.99)]


def test_a_recovery_annotation_shows_its_duration():
    st = _status()
    text = metrics.render([st])
    info = [
        s for fam in text_string_to_metric_families(text) for s in fam.samples if s.name == "headway_last_recovery_info"
    ]
    assert [s.labels for s in info] == [{"service": "svc", "seconds": "12.25"}]
    ann = grafana.dashboard()["annotations"]["list"][0]
    assert "{{seconds}}" in ann["textFormat"] and "headway_last_recovery_info" in ann["expr"]
