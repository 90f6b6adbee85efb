"""A rollout's own rules, without Ray: how the two clusters share the surge as traffic
moves, what the new cluster starts with, and which changes a running rollout refuses."""

import pytest
from service_records import SPEC, record

from headway.control import rollout_start
from headway.model import errors
from headway.model.spec import ServiceSpec
from headway.state import records
from headway.state.records import NodeRecord, RolloutRecord


def spec(count: int = 4, surge: int = 50, **group) -> ServiceSpec:
    workers = [{"name": "w", "count": count, **group}, {"name": "gpu", "count": 1}]
    return ServiceSpec.model_validate(SPEC | {"max_surge_percent": surge, "compute_config": {"worker_nodes": workers}})


def test_surge_plan_keeps_the_two_clusters_within_the_surge_at_every_step():
    old, new = spec(count=4), spec(count=4, surge=50)
    for percent in (0, 10, 50, 90, 100):
        old_counts, new_counts = rollout_start.surge_plan(old, new, percent)
        assert old_counts["w"] + new_counts["w"] <= 4 + 2  # 50 % of 4 more at most
        assert old_counts["w"] >= 1 and new_counts["w"] >= 1
    assert rollout_start.surge_plan(old, new, 0) == ({"w": 4, "gpu": 1}, {"w": 2, "gpu": 1})
    assert rollout_start.surge_plan(old, new, 100)[0]["w"] == 1  # one kept to the end: removed whole


def test_surge_plan_leaves_load_following_and_new_groups_uncapped():
    autoscaled = spec(count=None, min_nodes=1, max_nodes=4)
    old_counts, new_counts = rollout_start.surge_plan(spec(), autoscaled, 0)
    assert "w" not in old_counts and "w" not in new_counts
    only_new = ServiceSpec.model_validate(SPEC | {"compute_config": {"worker_nodes": [{"name": "new", "count": 3}]}})
    assert rollout_start.surge_plan(spec(), only_new, 50) == ({}, {})


def test_with_counts_resizes_only_the_groups_named():
    resized = rollout_start.with_counts(spec(count=4), {"w": 2})
    assert [(g.name, g.count) for g in resized.compute_config.worker_nodes] == [("w", 2), ("gpu", 1)]


def test_the_new_cluster_is_named_after_its_version():
    assert rollout_start.cluster_name("shop", 7) == "shop_r7"


def test_a_running_rollout_refuses_another_change_and_says_how_to_end_it():
    rec = record("RUNNING")
    rollout_start.refuse_during_rollout(rec)  # none running: nothing to refuse
    rec.rollout = RolloutRecord(cluster="s_r2", version=2, from_version=1, percent=30)
    with pytest.raises(errors.Busy) as exc:
        rollout_start.refuse_during_rollout(rec)
    assert "version 2 (30 % of traffic)" in str(exc.value)
    assert "headway rollout promote s" in str(exc.value) and "headway rollout rollback s" in str(exc.value)


def test_prepare_records_the_rollout_before_anything_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    rec = record("RUNNING")
    rec.running_version = 1
    name, first = rollout_start.prepare(rec, spec(count=4, surge=50), 2)
    assert name == "s_r2" and first.compute_config.group("w").count == 1  # 2 old workers + 50 % surge: room for 1
    saved = records.load("s")
    assert saved is not None and saved.rollout is not None
    assert (saved.rollout.cluster, saved.rollout.version, saved.rollout.from_version) == ("s_r2", 2, 1)
    assert saved.events[-1].kind == "rollout_started"


def test_prepare_refuses_a_rollout_the_endpoint_has_no_slots_for(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    rec = record("RUNNING")
    for i in range(rollout_start.MAX_SLOTS):
        rec.nodes.append(NodeRecord(name=f"w-{i}", role="worker", ip="10.0.0.9", temp_dir="/t", log="/l", marker="m"))
    with pytest.raises(errors.InputError, match="lower max_surge_percent or deploy with --strategy in_place"):
        rollout_start.prepare(rec, spec(count=4, surge=50), 2)
    assert records.load("s") is None  # refused before anything was written


def test_a_tick_pauses_for_a_lost_server_instead_of_rolling_back_then_judges_afresh(tmp_path, monkeypatch):
    """The CI failure of 2026-12-07: a new worker killed at the canary made the surviving
    proxies answer 500 for its replicas, and the healthy version was rolled back."""
    import time
    import types

    from headway.control import rollout, rollout_window
    from headway.control import versions as versions_mod
    from headway.control.context import Context
    from headway.ingress import instances
    from headway.plan.rollout_policy import Numbers

    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))

    def node(name: str, ip: str) -> NodeRecord:
        return NodeRecord(name=name, role="worker", ip=ip, ports={}, temp_dir="/t", log="/l", marker=f"c/{name}/1")

    rec = record("RUNNING")
    rec.running_version = 1
    rec.nodes = [node("w-1", "10.0.0.3")]
    nxt = record("RUNNING").model_copy(update={"name": "s_r2", "parent": "s"})
    nxt.nodes = [node("w-1", "10.0.1.3"), node("w-2", "10.0.1.4")]
    records.save(nxt)
    table = {"10.0.0.3:8000", "10.0.1.3:8000", "10.0.1.4:8000"}
    rec.rollout = RolloutRecord(
        cluster="s_r2", version=2, from_version=1, percent=25, step_since=time.time(), window={"up": sorted(table)}
    )
    records.save(rec)
    up = {"now": table - {"10.0.1.4:8000"}}  # a new worker died: its proxy fails the checks
    bad = (Numbers(100, 0, 10.0), Numbers(40, 5, 12.0))  # and the survivors answered 500 for its replicas
    monkeypatch.setattr(instances, "up_backends", lambda crec, ing: set(up["now"]))
    monkeypatch.setattr(rollout_window, "numbers", lambda crec, rec, window, new: bad)
    monkeypatch.setattr(rollout_window, "snapshot", lambda crec, rec: {"up": sorted(up["now"])})
    monkeypatch.setattr(versions_mod, "get", lambda name, number: types.SimpleNamespace(spec=nxt.spec))
    aborted: list[str] = []
    monkeypatch.setattr(rollout, "_abort", lambda ctx, rec, nxt, why, progress, numbers=None: aborted.append(why))
    ctx = Context(None)

    rollout.tick(ctx, rec, lambda m: None)
    assert aborted == [] and "10.0.1.4:8000 stopped answering" in (rec.rollout.paused or "")
    assert rec.events[-1].kind == "rollout_paused"
    rollout.tick(ctx, rec, lambda m: None)  # still down: still paused, nothing judged
    assert aborted == [] and rec.rollout.paused

    up["now"] = table  # replaced and passing its checks: resumed, the step judged afresh from now
    rollout.tick(ctx, rec, lambda m: None)
    assert aborted == [] and rec.rollout.paused is None and rec.events[-1].kind == "rollout_resumed"
    assert rec.rollout.window == {"up": sorted(table)}

    rollout.tick(ctx, rec, lambda m: None)  # 500s with every server up: the version's own, rolled back
    assert len(aborted) == 1 and "5xx rate" in aborted[0]
