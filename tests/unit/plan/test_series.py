"""A service's history points from two readings of the endpoint's counters."""

import pytest

from headway.model import states
from headway.plan import series
from headway.plan.haproxy_counts import BUCKETS_MS


def _reading(requests, e5xx, per_bucket):
    """``per_bucket``: requests in each bucket (not cumulative), the last one above the bounds."""
    cum, total = [], 0
    for n in per_bucket:
        total += n
        cum.append(total)
    return series.Reading(requests, e5xx, cum[: len(BUCKETS_MS)] + [total])


def _spread(**at):
    out = [0] * (len(BUCKETS_MS) + 1)
    for le, n in at.items():
        out[BUCKETS_MS.index(int(le[1:])) if le != "inf" else len(BUCKETS_MS)] = n
    return out


def test_quantiles_interpolate_inside_the_bucket_like_prometheus():
    hist = _reading(0, 0, _spread(b10=50, b25=50)).buckets  # half under 10 ms, half in (10, 25]
    assert series.quantile(0.5, hist) == 10.0
    assert series.quantile(0.99, hist) == pytest.approx(10 + 15 * 0.98)
    assert series.quantile(0.25, hist) == pytest.approx(7.5)  # (5, 10]: 0 in (0, 5], so 5 + 5 * 0.5
    assert series.quantile(0.5, [0] * (len(BUCKETS_MS) + 1)) is None
    above = _reading(0, 0, _spread(inf=3)).buckets
    assert series.quantile(0.99, above) == BUCKETS_MS[-1]


def test_a_point_counts_the_interval_only():
    before = _reading(1000, 4, _spread(b10=900, b100=100))
    now = _reading(1120, 6, _spread(b10=1000, b100=110, b1000=10))
    p = series.point(100.0, before, now, nodes=3, replicas=2, state="RUNNING")
    assert p["requests"] == 120 and p["errors_5xx"] == 2
    assert p["p50_ms"] == pytest.approx(5 + 5 * (60 / 100))  # 60th of the 100 in (5, 10]
    assert 500 < p["p99_ms"] <= 1000
    assert (p["t"], p["nodes"], p["replicas"], p["state"]) == (100.0, 3, 2, "RUNNING")


def test_a_restarted_endpoint_counts_from_zero_and_a_missing_reading_is_no_figure():
    before = _reading(5000, 10, _spread(b10=5000))
    after_reload = _reading(30, 0, _spread(b25=30))
    p = series.point(1.0, before, after_reload, 3, 2, "RUNNING")
    assert p["requests"] == 30 and p["errors_5xx"] == 0 and 10 < p["p50_ms"] <= 25
    for b, n in ((None, after_reload), (before, None)):
        q = series.point(1.0, b, n, 3, None, "HEAD_RECOVERING")
        assert q["requests"] is None and q["p99_ms"] is None and q["replicas"] is None


def test_reading_adds_the_backends_up_and_survives_json():
    ing = {
        "frontend": {"requests": 40, "hrsp_5xx": 1},
        "responses": {
            "by_backend": {
                a: {"buckets_ms": {str(le): n for le in BUCKETS_MS}, "count": n, "sum_ms": 1}
                for a, n in (("a:1", 10), ("b:1", 20))
            }
        },
    }
    r = series.reading(ing)
    assert r.requests == 40 and r.buckets == [30] * (len(BUCKETS_MS) + 1)
    assert series.Reading.from_json(r.to_json()) == r
    assert series.reading(None) is None and series.Reading.from_json(None) is None


def test_marks_head_failures_recoveries_and_rollouts():
    events = [
        states.transition_event("STARTING", "RUNNING", "up").model_dump(),
        states.transition_event("RUNNING", "HEAD_RECOVERING", "lost").model_dump(),
        states.transition_event("HEAD_RECOVERING", "RUNNING", "back", downtime_s=9.5).model_dump(),
        {"kind": "rollout_started", "at": 10**10, "details": {}},
        {"kind": "worker_lost", "at": 10**10, "details": {}},
    ]
    got = series.marks(events, since=0)
    assert [m["kind"] for m in got] == ["head_lost", "head_back", "rollout_started"]
    assert "9.5" in got[1]["text"]
    assert [m["kind"] for m in series.marks(events, since=10**10)] == ["rollout_started"]
