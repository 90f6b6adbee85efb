"""A rollout's decisions without Ray: the strategy, the split, the surge, the judgement, the next move."""

from __future__ import annotations

import pytest

from headway.model.spec import SpecError
from headway.model.spec_load import parse_spec
from headway.plan import haproxy_config as hc
from headway.plan import rollout_policy as rp


def _spec(**extra):
    base = {
        "name": "s",
        "applications": [{"import_path": "m:app"}],
        "compute_config": {"worker_nodes": [{"name": "w", "resources": {"CPU": 1}, "count": 2}]},
    }
    return parse_spec(base | extra, "test")


def test_strategy_override_spec_and_what_cannot_change_in_place():
    old = _spec()
    assert rp.strategy_for(old, _spec(), None)[0] == "in_place"
    assert rp.strategy_for(old, _spec(), "rollout") == ("rollout", "--strategy rollout")
    assert rp.strategy_for(old, _spec(rollout_strategy="ROLLOUT"), None)[0] == "rollout"
    assert rp.strategy_for(old, _spec(rollout_strategy="rollout"), "in_place")[0] == "in_place"
    assert rp.strategy_for(old, _spec(env_vars={"A": "1"}), None)[0] == "rollout"
    store = {"ray_gcs_external_storage_config": {"address": "redis://10.0.0.9:6379"}}
    how, why = rp.strategy_for(old, _spec(**store), None)
    assert how == "rollout" and "GCS store" in why
    assert rp.strategy_for(old, _spec(canary_percent=10), None)[0] == "rollout"


@pytest.mark.parametrize(
    "bad, says",
    [
        ({"rollout_strategy": "blue-green"}, "rollout_strategy"),
        ({"canary_percent": 100}, "canary_percent"),
        ({"max_surge_percent": 0}, "max_surge_percent"),
        ({"rollout": {"steps_percent": [10, 50]}}, "must end at 100"),
        ({"rollout": {"steps_percent": [50, 10, 100]}}, "each larger"),
        ({"rollout": {"step_interval_s": 0}}, "step_interval_s"),
        ({"rollout": {"max_error_rate": 2}}, "max_error_rate"),
        ({"rollout": {"surprise": 1}}, "surprise"),
    ],
)
def test_rollout_fields_are_checked(bad, says):
    with pytest.raises(SpecError) as exc:
        _spec(**bad)
    assert says in str(exc.value)


@pytest.mark.parametrize("n_old, n_new, percent", [(2, 2, 10), (2, 1, 25), (3, 2, 50), (2, 2, 90), (1, 3, 5)])
def test_split_weights_give_the_new_cluster_its_share(n_old, n_new, percent):
    w_old, w_new = rp.split_weights(n_old, n_new, percent)
    assert 1 <= w_old <= rp.WEIGHT_SCALE and 1 <= w_new <= rp.WEIGHT_SCALE
    share = n_new * w_new / (n_old * w_old + n_new * w_new)
    assert abs(share - percent / 100) < 0.01


def test_split_weights_at_the_ends():
    assert rp.split_weights(2, 2, 0) == (rp.WEIGHT_SCALE, 0)
    assert rp.split_weights(2, 2, 100) == (0, rp.WEIGHT_SCALE)
    assert rp.split_weights(2, 0, 50) == (rp.WEIGHT_SCALE, 0)  # no new worker yet: all to the old


def test_surge_never_exceeds_the_cap_and_ends_with_the_new_count():
    for old, new, surge in [(2, 2, 50), (4, 4, 25), (3, 5, 34), (1, 1, 1), (5, 2, 60)]:
        cap = old + rp.surge_extra(old, surge)
        for p in (0, 10, 25, 50, 75, 100):
            keep, run = rp.surge_counts(old, new, p, surge)
            assert keep + run <= max(cap, new), (old, new, surge, p, keep, run)
            assert run >= 1 and keep >= 1
        assert rp.surge_counts(old, new, 100, surge)[1] == min(new, cap - 1)
    assert rp.surge_counts(2, 2, 0, 50) == (2, 1)
    assert rp.surge_counts(2, 2, 50, 50) == (1, 2)
    assert rp.surge_counts(2, 2, 10, 100) == (2, 2)  # no cap: the whole new cluster at once


def test_judge_counts_errors_latency_and_too_little_traffic():
    th = rp.Thresholds(max_error_rate=0.01, max_p99_ratio=2.0, p99_slack_ms=50, min_requests=20)
    ok = rp.Numbers(1000, 1, 20.0)
    ok_verdict = rp.judge(ok, rp.Numbers(100, 1, 25.0), th)
    assert ok_verdict[0] is True
    bad, why = rp.judge(ok, rp.Numbers(100, 40, 20.0), th)
    assert bad is False and "5xx rate 40.0%" in why
    early, why = rp.judge(ok, rp.Numbers(5, 3, 20.0), th)  # a few requests, most failed: fail at once
    assert early is False
    assert rp.judge(ok, rp.Numbers(5, 0, 20.0), th)[0] is None
    slow, why = rp.judge(ok, rp.Numbers(100, 0, 400.0), th)
    assert slow is False and "p99 latency 400 ms" in why
    # Fewer than 100 requests: the "p99" is the one slowest request (a cold start), not judged.
    assert rp.judge(ok, rp.Numbers(rp.P99_MIN_SAMPLES - 1, 0, 400.0), th)[0] is True
    assert rp.judge(ok, rp.Numbers(100, 0, 60.0), th)[0] is True  # within the slack of a fast service


def test_p99():
    assert rp.p99([]) is None
    assert rp.p99(list(range(1, 101))) == 99
    assert rp.p99([5.0]) == 5.0


def _view(**kw):
    base = dict(
        percent=10,
        next_percent=25,
        canary_percent=None,
        promoted=False,
        held_s=10,
        interval_s=5,
        paused_by=None,
        new_backends=2,
        new_backends_up=2,
        verdict=True,
        verdict_reason="fine",
    )
    return rp.View(**(base | kw))


def test_decide_walks_the_steps():
    assert rp.decide(_view())[0] == rp.Move.ADVANCE
    assert rp.decide(_view(held_s=2))[0] == rp.Move.WAIT
    assert rp.decide(_view(paused_by="the new cluster is HEAD_RECOVERING"))[0] == rp.Move.PAUSE
    assert rp.decide(_view(verdict=False, held_s=1))[0] == rp.Move.ROLL_BACK  # at once, before the interval
    assert rp.decide(_view(new_backends_up=1))[0] == rp.Move.WAIT
    move, why = rp.decide(_view(percent=0, new_backends_up=0, held_s=rp.READY_TIMEOUT_S + 1))
    assert move == rp.Move.ROLL_BACK and "0 of 2 new worker(s)" in why
    assert rp.decide(_view(percent=0, held_s=0))[0] == rp.Move.ADVANCE  # 0 %: only the health checks
    assert rp.decide(_view(percent=100, next_percent=None))[0] == rp.Move.COMPLETE
    assert rp.decide(_view(percent=25, canary_percent=25))[0] == rp.Move.HOLD_CANARY
    assert rp.decide(_view(percent=25, canary_percent=25, promoted=True))[0] == rp.Move.ADVANCE
    # A head down wins over a failing judgement: numbers read while a head recovers are not the version's.
    assert rp.decide(_view(verdict=False, paused_by="x"))[0] == rp.Move.PAUSE


def test_a_lost_server_pauses_the_step_until_the_table_is_whole_again():
    window_up = ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.1.1:8000"]
    assert rp.lost_servers(window_up, window_up) == []
    assert rp.lost_servers(window_up, window_up[1:] + ["10.0.1.9:8000"]) == ["10.0.0.1:8000"]
    assert rp.lost_servers([], window_up) == []  # a window opened before this was recorded
    lost = ["10.0.1.1:8000"]
    # The dead worker is still in the table (not replaced): paused, and the reason names it.
    why = rp.pause_reason(None, lost, window_up, window_up[:2])
    assert why is not None and "10.0.1.1:8000 stopped answering" in why
    # Replaced, the replacement not up yet: still paused.
    table = window_up[:2] + ["10.0.1.7:8000"]
    assert rp.pause_reason(None, lost, table, window_up[:2]) is not None
    # Its replacement passes the checks: no pause (the caller opens a fresh window).
    assert rp.pause_reason(None, lost, table, table) is None
    # A head down is said first; nothing lost and nothing down: no pause.
    assert "head" in (rp.pause_reason("the new cluster's head is down", lost, table, table) or "")
    assert rp.pause_reason(None, [], table, table[:1]) is None  # a server never up is the ready timeout's
    # A failing judgement during the pause does not roll back.
    assert rp.decide(_view(verdict=False, paused_by=why))[0] == rp.Move.PAUSE


def test_next_step_with_and_without_a_canary():
    steps = [10, 25, 50, 100]
    assert rp.next_step(steps, 0, None, False) == 10
    assert rp.next_step(steps, 50, None, False) == 100
    assert rp.next_step(steps, 100, None, False) is None
    assert rp.next_step(steps, 10, 30, False) == 25
    assert rp.next_step(steps, 25, 30, False) == 30
    assert rp.next_step(steps, 30, 30, True) == 50


def test_weighted_config_and_runtime_weights_pass_haproxy():
    settings = hc.IngressSettings(bind="127.0.0.1", port=1, stats_socket="/tmp/x.sock", weighted=True)
    slots = ["10.0.0.2:8000", "10.0.0.3:8000", None]
    text = hc.render(settings, slots, {"10.0.0.2:8000": 230, "10.0.0.3:8000": 26})
    assert "balance roundrobin" in text and "dontlog-normal" not in text
    assert "server s1 10.0.0.2:8000 check tcp-ut 2s weight 230" in text
    assert "server s2 10.0.0.3:8000 check tcp-ut 2s weight 26" in text
    plain = hc.render(hc.IngressSettings(bind="127.0.0.1", port=1, stats_socket="/tmp/x.sock"), slots)
    assert "balance leastconn" in plain and "dontlog-normal" in plain and "weight" not in plain
    assert hc.weight_commands(slots, {"10.0.0.3:8000": 26}) == [
        "set weight workers/s2 26",
        "set weight workers_once/s2 26",
    ]
    assert "server s1 10.0.0.2:8000 track workers/s1 weight 230" in text


def test_parse_log_reads_server_time_and_status():
    lines = [
        "127.0.0.1:5000 [26/Nov/2026:15:00:00.001] endpoint workers/s2 0/0/1/12/13 200 120 - - ---- 3/3/0/0/0 0/0 "
        '"GET / HTTP/1.1"',
        "127.0.0.1:5001 [26/Nov/2026:15:00:00.002] endpoint workers/s10 0/0/0/250/251 500 90 - - ---- 3/3/0/0/1 0/0 "
        '"GET / HTTP/1.1"',
        "a line about something else",
    ]
    assert hc.parse_log(lines) == [("s2", 13, 200), ("s10", 251, 500)]
