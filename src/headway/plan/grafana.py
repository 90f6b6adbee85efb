"""A Grafana dashboard of headway's own metrics, in Grafana's import format.

Every query names only what ``/metrics`` serves (``metrics.render``); a test checks each
one against a live ``/metrics``. A ``service`` variable picks the service; a
``datasource`` variable the Prometheus that scrapes the control plane. Recoveries are
annotations whose text is their duration (``headway_last_recovery_info``'s label, as
Grafana's annotation text can show labels but not values).
"""

from __future__ import annotations

import re
from typing import Any

UID = "headway-service"
_DS = {"type": "prometheus", "uid": "${datasource}"}
_SVC = 'service="$service"'
#: The store's alert line (cloud ``service_alert_percent`` / the store check's 80 %).
ALERT_PERCENT = 80


def _quantile(q: float) -> dict[str, Any]:
    return _target(
        f"histogram_quantile({q}, sum by (le) "
        f"(rate(headway_request_duration_seconds_bucket{{{_SVC}}}[$__rate_interval])))",
        f"p{round(q * 100)}",
    )


def _target(expr: str, legend: str) -> dict[str, Any]:
    return {"datasource": _DS, "expr": expr, "legendFormat": legend, "refId": "A"}


def _panel(
    pid: int, title: str, targets: list[dict[str, Any]], x: int, y: int, unit: str = "short", **field: Any
) -> dict[str, Any]:
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": _DS,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit, **field}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": targets,
    }


def dashboard() -> dict[str, Any]:
    """The dashboard JSON (Grafana's "Import dashboard" format)."""
    panels = [
        _panel(
            1,
            "Requests per second, by code",
            [_target(f"sum by (code) (rate(headway_requests_total{{{_SVC}}}[$__rate_interval]))", "{{code}}")],
            0,
            0,
            "reqps",
        ),
        _panel(2, "Latency (answered by a worker)", [_quantile(0.5), _quantile(0.95), _quantile(0.99)], 12, 0, "s"),
        _panel(
            3,
            "5xx ratio",
            [
                _target(
                    f'sum(rate(headway_requests_total{{{_SVC},code=~"5.."}}[$__rate_interval])) / '
                    f"clamp_min(sum(rate(headway_requests_total{{{_SVC}}}[$__rate_interval])), 1e-9)",
                    "5xx",
                )
            ],
            0,
            8,
            "percentunit",
        ),
        _panel(
            4,
            "Head up",
            [
                _target(f"headway_head_up{{{_SVC}}}", "head up"),
                _target(f"headway_ingress_backends_up{{{_SVC}}}", "workers in rotation"),
            ],
            12,
            8,
        ),
        _panel(
            5,
            "Nodes and replicas",
            [
                _target(f"headway_group_nodes{{{_SVC}}}", "nodes {{group}}"),
                _target(f"headway_replicas{{{_SVC}}}", "replicas {{application}}/{{deployment}}"),
            ],
            0,
            16,
        ),
        _panel(
            6,
            "Store memory (alert line at 80 %)",
            [
                _target("headway_store_memory_percent", "store {{store}}"),
                _target(f"headway_service_store_share_percent{{{_SVC}}}", "this service's share"),
            ],
            12,
            16,
            "percent",
            thresholds={
                "mode": "absolute",
                "steps": [{"color": "green", "value": None}, {"color": "red", "value": ALERT_PERCENT}],
            },
            custom={"thresholdsStyle": {"mode": "line"}},
        ),
    ]
    return {
        "uid": UID,
        "title": "headway service",
        "tags": ["headway", "ray-serve"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
                {
                    "name": "service",
                    "type": "query",
                    "datasource": _DS,
                    "query": {"query": "label_values(headway_service_state, service)", "refId": "service"},
                    "definition": "label_values(headway_service_state, service)",
                    "refresh": 2,
                    "label": "service",
                },
            ]
        },
        "annotations": {
            "list": [
                {
                    "name": "head recoveries",
                    "datasource": _DS,
                    "enable": True,
                    "iconColor": "orange",
                    "expr": f"headway_last_recovery_info{{{_SVC}}} and on (service) "
                    f"changes(headway_recoveries_total{{{_SVC}}}[2m]) > 0",
                    "step": "30s",
                    "titleFormat": "head recovered",
                    "textFormat": "the head was replaced in {{seconds}} s",
                },
                {
                    "name": "rollouts",
                    "datasource": _DS,
                    "enable": True,
                    "iconColor": "blue",
                    "expr": f"headway_rollout_percent{{{_SVC}}}",
                    "step": "30s",
                    "titleFormat": "rollout to version {{version}}",
                    "textFormat": "",
                },
            ]
        },
        "panels": panels,
    }


def queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panels, annotations, variables."""
    out = [t["expr"] for p in board["panels"] for t in p["targets"]]
    out += [a["expr"] for a in board["annotations"]["list"]]
    out += [v["definition"] for v in board["templating"]["list"] if v.get("definition")]
    return out


def metric_names(expr: str) -> set[str]:
    """The metric names a query reads (headway's; PromQL's functions are not ``headway_``)."""
    return set(re.findall(r"\bheadway_[a-z_]+\b", expr))
