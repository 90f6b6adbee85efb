"""Prometheus exposition rendered from observed status: names, labels, values."""

import re

from prometheus_client.parser import text_string_to_metric_families

from headway.model import states
from headway.plan import metrics
from headway.plan.haproxy_counts import BUCKETS_MS


def _status(state="RUNNING", head_alive=True, with_ingress=True):
    return {
        "name": "svc",
        "state": state,
        "nodes": [
            {"name": "head", "role": "head", "alive": head_alive},
            {"name": "w-1", "role": "worker", "alive": True},
        ],
        "ingress": {
            "frontend": {"requests": 120, "hrsp_2xx": 115, "hrsp_4xx": 3, "hrsp_5xx": 2},
            "backends": [
                {"status": "UP", "errors": 1, "retries": 2, "redispatches": 1},
                {"status": "DOWN", "errors": 4, "retries": 0, "redispatches": 0},
            ],
        }
        if with_ingress
        else None,
        "storage": {"source": "cloud", "address": "127.0.0.1:1", "usage": {"bytes": 411200, "store_percent": 12.5}},
        "events": [
            states.transition_event("STARTING", "RUNNING", "up").model_dump(),
            states.transition_event("RUNNING", "HEAD_RECOVERING", "lost").model_dump(),
            states.transition_event("HEAD_RECOVERING", "RUNNING", "head replaced", downtime_s=9.5).model_dump(),
            states.transition_event("RUNNING", "HEAD_RECOVERING", "lost").model_dump(),
            states.transition_event("HEAD_RECOVERING", "RUNNING", "head replaced", downtime_s=12.25).model_dump(),
        ],
    }


def _key(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


class _Samples(dict):
    """Samples by ``name{labels}``, the labels in any order (the library sorts them)."""

    def __getitem__(self, key: str) -> float:
        name, _, rest = key.partition("{")
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
        return super().__getitem__(_key(name, labels))


def _values(text: str) -> _Samples:
    """Every sample, read back by prometheus_client's own parser."""
    out = _Samples()
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            out[_key(smp.name, smp.labels)] = smp.value
    return out


def test_every_metric_with_its_value():
    v = _values(metrics.render([_status()]))
    assert v['headway_service_state{service="svc",state="RUNNING"}'] == 1
    assert v['headway_service_state{service="svc",state="HEAD_RECOVERING"}'] == 0
    assert v['headway_head_up{service="svc"}'] == 1
    assert v['headway_recoveries_total{service="svc"}'] == 2
    assert v['headway_last_recovery_seconds{service="svc"}'] == 12.25
    assert v['headway_ingress_backends_up{service="svc"}'] == 1
    assert v['headway_ingress_backends{service="svc"}'] == 2
    assert v['headway_endpoint_requests_total{service="svc"}'] == 120
    assert v['headway_responses_total{service="svc",code="5xx"}'] == 2
    assert v['headway_request_errors_total{service="svc"}'] == 2 + 5
    assert v['headway_backend_retries_total{service="svc"}'] == 3
    assert v['headway_store_memory_percent{store="cloud"}'] == 12.5
    assert v['headway_service_store_bytes{service="svc"}'] == 411200


def test_head_down_or_recovering_is_not_up_and_no_ingress_means_no_backend():
    v = _values(metrics.render([_status(state="HEAD_RECOVERING", head_alive=True, with_ingress=False)]))
    assert v['headway_head_up{service="svc"}'] == 0
    assert v['headway_ingress_backends_up{service="svc"}'] == 0
    assert v['headway_service_state{service="svc",state="HEAD_RECOVERING"}'] == 1


def test_exposition_format_help_type_and_escaping():
    st = _status()
    st["name"] = 'a"b'
    text = metrics.render([st])
    assert "# TYPE headway_recoveries_total counter" in text
    assert "# HELP headway_head_up " in text
    assert 'service="a\\"b"' in text
    assert text.endswith("\n")


def test_no_recovery_yet():
    st = _status()
    st["events"] = st["events"][:1]
    v = _values(metrics.render([st]))
    assert v['headway_recoveries_total{service="svc"}'] == 0
    assert not any(k.startswith("headway_last_recovery_seconds") for k in v)


def test_groups_and_replicas():
    st = _status()
    st["groups"] = [{"name": "pool", "nodes": 2, "min": 1, "max": 3, "autoscaled": True}]
    st["applications"] = [{"name": "work", "replicas": {"Work": {"running": 2, "target": 3, "node_ids": []}}}]
    v = _values(metrics.render([st]))
    assert v['headway_group_nodes{service="svc",group="pool"}'] == 2
    assert v['headway_group_nodes_bound{service="svc",group="pool",bound="max"}'] == 3
    assert v['headway_group_nodes_bound{service="svc",group="pool",bound="min"}'] == 1
    assert v['headway_replicas{service="svc",application="work",deployment="Work"}'] == 2


def test_rollout_percent_only_while_one_runs():
    st = _status()
    assert not any(k.startswith("headway_rollout_percent") for k in _values(metrics.render([st])))
    st["rollout"] = {"version": 4, "percent": 25}
    assert _values(metrics.render([st]))['headway_rollout_percent{service="svc",version="4"}'] == 25


def test_counters_are_exact_integers_at_any_size():
    """``:g`` once printed 20,000,001 as ``2e+07``: every count reads back exactly."""
    st = _status()
    st["ingress"]["frontend"]["requests"] = 20_000_001
    st["ingress"]["frontend"]["hrsp_5xx"] = 2**31 + 7
    st["ingress"]["responses"] = {"by_backend": {}, "own": {"401": 2**40 + 1}}
    v = _values(metrics.render([st]))
    assert v['headway_endpoint_requests_total{service="svc"}'] == 20_000_001
    assert v['headway_responses_total{service="svc",code="5xx"}'] == 2**31 + 7
    assert v['headway_requests_total{service="svc",version="",code="401"}'] == 2**40 + 1


def test_codes_and_latency_histogram_by_version():
    """Each backend's counts go to the version it serves; one no longer listed to the running one."""
    st = _status()
    st["running_version"] = 3

    def backend(codes, buckets, sum_ms):
        return {
            "codes": codes,
            "buckets_ms": dict(zip(map(str, BUCKETS_MS), buckets, strict=True)),
            "sum_ms": sum_ms,
            "count": sum(codes.values()),
        }

    many = [5] * len(BUCKETS_MS)
    st["ingress"]["responses"] = {
        "by_backend": {
            "10.0.0.1:8000": backend({"200": 4, "404": 1}, [1, 2, 3] + many[3:], 120),
            "10.0.0.2:8000": backend({"200": 3}, [0, 0, 3] + [3] * (len(BUCKETS_MS) - 3), 60),
            "10.0.0.9:8000": backend({"500": 1}, [0] * (len(BUCKETS_MS) - 1) + [1], 20_000),
        },
        "own": {"401": 7, "503": 2},
    }
    st["ingress"]["versions"] = {"10.0.0.1:8000": 3, "10.0.0.2:8000": 4}
    v = _values(metrics.render([st]))
    assert v['headway_requests_total{service="svc",version="3",code="200"}'] == 4
    assert v['headway_requests_total{service="svc",version="3",code="404"}'] == 1
    assert v['headway_requests_total{service="svc",version="3",code="500"}'] == 1  # a replaced worker's
    assert v['headway_requests_total{service="svc",version="4",code="200"}'] == 3
    assert v['headway_requests_total{service="svc",version="",code="401"}'] == 7
    assert v['headway_request_duration_seconds_bucket{service="svc",version="3",le="0.005"}'] == 1
    assert v['headway_request_duration_seconds_bucket{service="svc",version="3",le="0.025"}'] == 3
    assert v['headway_request_duration_seconds_bucket{service="svc",version="3",le="+Inf"}'] == 6
    assert v['headway_request_duration_seconds_count{service="svc",version="3"}'] == 6
    assert v['headway_request_duration_seconds_sum{service="svc",version="3"}'] == 20.12
    assert v['headway_request_duration_seconds_bucket{service="svc",version="4",le="0.01"}'] == 0
    assert v['headway_request_duration_seconds_count{service="svc",version="4"}'] == 3


def test_the_state_snapshot_size_is_a_metric():
    from headway.plan import metrics

    text = metrics.render([], {"bytes": 12_345_678, "package_bytes": 50_000_000})
    v = _values(text)
    assert v['headway_state_snapshot_bytes{part="snapshot"}'] == 12_345_678
    assert v['headway_state_snapshot_bytes{part="packages"}'] == 50_000_000
    assert "headway_state_snapshot_bytes" not in metrics.render([])


def test_an_https_endpoint_says_when_its_certificate_ends():
    secure = _status() | {"certificate": {"names": ["api.example"], "expires_at": 1_900_000_000.0, "expiring": False}}
    plain = _status() | {"name": "plain", "certificate": None}
    v = _values(metrics.render([secure, plain]))
    assert v['headway_endpoint_certificate_expiry_timestamp_seconds{service="svc"}'] == 1_900_000_000.0
    assert 'headway_endpoint_certificate_expiry_timestamp_seconds{service="plain"}' not in v
