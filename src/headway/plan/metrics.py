"""Prometheus metrics (text format 0.0.4), rendered from what ``status`` observes.

``render`` is pure: it takes each service's observed status (``views.observe``) and
timeline and returns the exposition text; the API gathers, this module only formats.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import exposition
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from headway.model.states import State
from headway.plan import haproxy_counts

Sample = tuple[dict[str, str], float]


def _family(name: str, kind: str, help_: str, samples: Iterable[Sample]) -> Metric:
    """A family from (labels, value) samples; a counter's name is given with ``_total``."""
    samples = list(samples)
    labels = list(samples[0][0]) if samples else []
    fam: Metric
    if kind == "counter":
        fam = CounterMetricFamily(name.removesuffix("_total"), help_, labels=labels)
    else:
        fam = GaugeMetricFamily(name, help_, labels=labels)
    for lab, value in samples:
        fam.add_metric([lab[k] for k in labels], value)
    return fam


class _Families:
    """What ``exposition.generate_latest`` reads: anything with ``collect``."""

    def __init__(self, fams: list[Metric]) -> None:
        self.fams = fams

    def collect(self) -> Iterator[Metric]:
        return iter(self.fams)


def exposition_text(fams: list[Metric]) -> str:
    """Prometheus text format 0.0.4, by prometheus_client."""
    return exposition.generate_latest(_Families(fams)).decode()  # type: ignore[arg-type]


def recoveries(events: list[dict[str, Any]]) -> tuple[int, float | None]:
    """Head recoveries completed (HEAD_RECOVERING → RUNNING) and the last one's duration,
    from the head's loss to RUNNING, in seconds."""
    done = [
        e
        for e in events
        if e.get("kind") == "state" and e.get("state") == State.RUNNING and "downtime_s" in (e.get("details") or {})
    ]
    return len(done), (float(done[-1]["details"]["downtime_s"]) if done else None)


def _by_version(
    service: str, ingress: dict[str, Any], running_version: int | None
) -> tuple[list[Sample], list[tuple[dict[str, str], list[int], float]]]:
    """The endpoint's per-request counts (``instances.stats``'s ``responses``) added up per
    version: (labels, count) per code; (labels, cumulative buckets, seconds summed) per
    version. A backend no longer listed (a replaced worker) counts for the running version."""
    resp = ingress.get("responses") or {}
    versions = ingress.get("versions") or {}
    codes: dict[tuple[str, str], int] = {}
    hist: dict[str, tuple[list[int], int]] = {}
    for addr, b in (resp.get("by_backend") or {}).items():
        version = str(versions.get(addr, running_version or 0))
        for code, n in b.get("codes", {}).items():
            codes[(version, code)] = codes.get((version, code), 0) + n
        buckets = [b.get("buckets_ms", {}).get(str(le), 0) for le in haproxy_counts.BUCKETS_MS] + [b.get("count", 0)]
        prev, total_ms = hist.get(version, ([0] * len(buckets), 0))
        hist[version] = ([x + y for x, y in zip(prev, buckets, strict=True)], total_ms + b.get("sum_ms", 0))
    for code, n in (resp.get("own") or {}).items():
        codes[("", code)] = codes.get(("", code), 0) + n
    by_code = [({"service": service, "version": v, "code": c}, float(n)) for (v, c), n in sorted(codes.items())]
    by_version = [({"service": service, "version": v}, b, ms / 1000) for v, (b, ms) in sorted(hist.items())]
    return by_code, by_version


def _histogram(series: list[tuple[dict[str, str], list[int], float]]) -> Metric:
    """``headway_request_duration_seconds``: from a request's arrival at the endpoint to the
    response headers of the worker that answered it (counted in whole ms by HAProxy)."""
    fam = HistogramMetricFamily(
        "headway_request_duration_seconds",
        "Latency of the requests a worker answered, by version (HAProxy, ms resolution).",
        labels=["service", "version"],
    )
    bounds = [floatToGoString(le / 1000) for le in haproxy_counts.BUCKETS_MS] + ["+Inf"]
    for labels, buckets, seconds in series:
        fam.add_metric([labels["service"], labels["version"]], list(zip(bounds, buckets, strict=True)), seconds)
    return fam


def render(services: list[dict[str, Any]], snapshot: dict | None = None) -> str:
    """``services``: one dict per service: its ``observe`` status plus ``events``;
    ``snapshot``: the size of the leader's state in the store (``state_snapshot.size``)."""
    fams: list[Metric] = []
    codes: list[Sample] = []
    latency: list[tuple[dict[str, str], list[int], float]] = []
    state_samples: list[Sample] = []
    head_up: list[Sample] = []
    rec_total: list[Sample] = []
    rec_last: list[Sample] = []
    rec_info: list[Sample] = []
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
    cert_end: list[Sample] = []
    for st in services:
        s = {"service": st["name"]}
        if (st.get("certificate") or {}).get("expires_at"):
            cert_end.append((s, float(st["certificate"]["expires_at"])))
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
            rec_info.append(({**s, "seconds": f"{last:g}"}, 1.0))
        ing = st.get("ingress")
        if ing:
            backends = ing["backends"]
            be_up.append((s, float(sum(1 for b in backends if b["status"].startswith("UP")))))
            be_all.append((s, float(len(backends))))
            fe = ing.get("frontend") or {}
            req.append((s, float(fe.get("requests", 0))))
            by_code, by_version = _by_version(st["name"], ing, st.get("running_version"))
            codes += by_code
            latency += by_version
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
    fams.append(
        _family(
            "headway_last_recovery_info",
            "gauge",
            "1, labelled with the last recovery's seconds (for annotations, which show labels).",
            rec_info,
        )
    )
    fams.append(
        _family(
            "headway_endpoint_certificate_expiry_timestamp_seconds",
            "gauge",
            "When the HTTPS endpoint's certificate ends (Unix time): alert well before it.",
            cert_end,
        )
    )
    fams.append(_family("headway_ingress_backends_up", "gauge", "Ingress backends (worker proxies) UP.", be_up))
    fams.append(_family("headway_ingress_backends", "gauge", "Ingress backends configured.", be_all))
    fams.append(
        _family(
            "headway_endpoint_requests_total",
            "counter",
            "Requests the endpoint received, refused ones too (HAProxy's frontend).",
            req,
        )
    )
    fams.append(
        _family(
            "headway_requests_total",
            "counter",
            "Responses by exact code and by the version that answered (version empty: the endpoint "
            "answered itself, e.g. 401 for a missing token, 503 with no worker up).",
            codes,
        )
    )
    fams.append(_histogram(latency))
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
    return exposition_text(fams)
