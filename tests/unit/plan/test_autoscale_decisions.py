"""Node autoscaling decisions, as pure functions of what the GCS reports."""

from __future__ import annotations

from headway.model.spec import WorkerGroup
from headway.model.states import State
from headway.plan import autoscale
from headway.plan import reconcile as plan
from headway.plan.autoscale import GroupView, NodeUse

CPU1 = {"CPU": 1.0}


def _group(nodes=("w-1",), lo=1, hi=3, shape=CPU1, name="w") -> GroupView:
    return GroupView(name, lo, hi, shape, tuple(nodes))


def _uses(idle: dict[str, float | None], replicas: set[str] = frozenset()) -> dict[str, NodeUse]:
    return {n: NodeUse(n, s, n in replicas) for n, s in idle.items()}


def test_waiting_replicas_add_nodes_of_the_group_that_holds_them_up_to_max():
    g = _group(nodes=("w-1",), hi=3)
    decisions, blocked = autoscale.decide([g], _uses({"w-1": 0.0}, {"w-1"}), [(CPU1, 4)], 60, {"w-1"})
    assert [(d.group, d.added) for d in decisions] == [("w", ("w-2", "w-3"))]
    assert decisions[0].nodes == ("w-1", "w-2", "w-3")
    assert blocked == ["{CPU: 1}: every group that holds it is at max_nodes"]


def test_small_requests_are_packed_onto_one_new_node():
    g = _group(shape={"CPU": 2.0})
    decisions, _ = autoscale.decide(
        [g], _uses({"w-1": 0.0}), [({"CPU": 0.5}, 3), ({"CPU": 1.0, "memory": 1e9}, 1)], 60, {"w-1"}
    )
    assert decisions[0].added == ("w-2", "w-3")  # 0.5*3 + 1 = 2.5 CPUs: two 2-CPU nodes


def test_a_request_no_group_can_hold_is_reported_not_chased():
    g = _group()
    decisions, blocked = autoscale.decide([g], _uses({"w-1": 0.0}), [({"GPU": 1.0}, 1)], 60, {"w-1"})
    assert decisions == [] and blocked == ["{GPU: 1}: no group's nodes are large enough"]


def test_the_first_group_with_the_right_shape_is_chosen():
    small = _group(name="cpu", nodes=("cpu-1",))
    gpu = _group(name="gpu", nodes=("gpu-1",), shape={"CPU": 1.0, "GPU": 1.0})
    uses = _uses({"cpu-1": 0.0, "gpu-1": 0.0})
    decisions, _ = autoscale.decide([small, gpu], uses, [({"GPU": 1.0}, 1)], 60, {"cpu-1", "gpu-1"})
    assert [(d.group, d.added) for d in decisions] == [("gpu", ("gpu-2",))]


def test_new_names_skip_those_in_use_or_retired():
    decisions, _ = autoscale.decide([_group(nodes=("w-2",))], _uses({"w-2": 0.0}), [(CPU1, 1)], 60, {"w-1", "w-2"})
    assert decisions[0].added == ("w-3",)


def test_no_decision_while_a_node_is_still_joining():
    g = _group(nodes=("w-1", "w-2"))
    assert autoscale.decide([g], _uses({"w-1": 0.0, "w-2": None}), [(CPU1, 1)], 60, {"w-1", "w-2"}) == ([], [])


def test_idle_nodes_without_replicas_go_newest_first_down_to_min():
    g = _group(nodes=("w-1", "w-2", "w-3"), lo=1)
    uses = _uses({"w-1": 500.0, "w-2": 90.0, "w-3": 61.0})
    decisions, _ = autoscale.decide([g], uses, [], 60, set())
    assert decisions[0].removed == ("w-3", "w-2") and decisions[0].nodes == ("w-1",)


def test_a_node_with_a_replica_or_not_idle_long_enough_stays():
    g = _group(nodes=("w-1", "w-2", "w-3"), lo=0)
    uses = _uses({"w-1": 500.0, "w-2": 30.0, "w-3": 500.0}, replicas={"w-1"})
    decisions, _ = autoscale.decide([g], uses, [], 60, set())
    assert decisions[0].removed == ("w-3",)


def test_nothing_is_removed_while_requests_wait():
    g = _group(nodes=("w-1", "w-2"), lo=1, hi=2)
    decisions, blocked = autoscale.decide([g], _uses({"w-1": 0.0, "w-2": 900.0}), [(CPU1, 1)], 60, set())
    assert decisions == [] and blocked  # at max: said, and the idle node is not taken away


def test_suspended_while_the_head_is_down_and_briefly_after():
    assert "HEAD_RECOVERING" in autoscale.suspended(State.HEAD_RECOVERING, None, 100.0)
    assert autoscale.suspended(State.UPDATING, None, 100.0)
    assert "afresh" in autoscale.suspended(State.RUNNING, 95.0, 100.0)
    assert autoscale.suspended(State.RUNNING, 80.0, 100.0) is None


def test_desired_workers_follow_the_autoscalers_choice_within_bounds():
    fixed, auto = WorkerGroup(name="a", count=2), WorkerGroup(name="b", min_nodes=1, max_nodes=3)
    names = [n for n, _, _ in plan.desired_workers([fixed, auto], {}, {"b": ["b-2", "b-3"]})]
    assert names == ["a-1", "a-2", "b-2", "b-3"]
    assert [n for n, _, _ in plan.desired_workers([auto], {})] == ["b-1"]  # before any choice: min_nodes
    tighter = WorkerGroup(name="b", min_nodes=2, max_nodes=2)  # a deploy moved the bounds
    assert [n for n, _, _ in plan.desired_workers([tighter], {}, {"b": ["b-3", "b-4", "b-5"]})] == ["b-3", "b-4"]
    assert [n for n, _, _ in plan.desired_workers([tighter], {}, {"b": ["b-3"]})] == ["b-3", "b-1"]
