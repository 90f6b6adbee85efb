"""The reconcile plan, table-driven: (desired version, observed) -> steps, pure."""

from __future__ import annotations

import pytest

from headway.model.states import State
from headway.plan.reconcile import ALLOWED, Desired, NodeView, Observed, Step, StepKind, allowed, plan

K = StepKind
A, B = "cfgA", "cfgB"  # two worker settings digests
H1, H2 = "head1", "head2"


def desired(workers=(("w-1", "w", A), ("w-2", "w", A)), head=H1, apps="apps1", version=2) -> Desired:
    return Desired(version=version, workers=tuple(workers), head_config=head, apps=apps)


def head(alive=True, config=H1) -> NodeView:
    return NodeView("head", "head", None, alive, config)


def worker(name, alive=True, config=A, group="w") -> NodeView:
    return NodeView(name, "worker", group, alive, config)


def observed(state=State.RUNNING, nodes=None, head_alive=True, apps="apps1", **kw) -> Observed:
    nodes = nodes if nodes is not None else (head(), worker("w-1"), worker("w-2"))
    return Observed(state=state, nodes=tuple(nodes), head_alive=head_alive, apps=apps, **kw)


def kinds(steps: list[Step]) -> list[tuple[str, str | None]]:
    return [(str(s.kind), s.node) for s in steps]


ROWS = [
    # (label, desired, observed, expected [(kind, node)])
    ("converged: nothing to do", desired(), observed(), []),
    ("converged after an update: RUNNING", desired(), observed(State.UPDATING), [(K.MARK_RUNNING, None)]),
    ("converged while UNHEALTHY: RUNNING again", desired(), observed(State.UNHEALTHY), [(K.MARK_RUNNING, None)]),
    ("first deploy done", desired(), observed(State.STARTING), [(K.MARK_RUNNING, None)]),
    ("new args: apps only", desired(apps="apps2"), observed(State.UPDATING), [(K.APPLY_APPS, None)]),
    (
        "resources changed: every worker rolled, one by one, then apps",
        desired(workers=(("w-1", "w", B), ("w-2", "w", B)), apps="apps2"),
        observed(State.UPDATING),
        [(K.ROLL_WORKER, "w-1"), (K.ROLL_WORKER, "w-2"), (K.APPLY_APPS, None)],
    ),
    (
        "one worker already rolled (resumed update)",
        desired(workers=(("w-1", "w", B), ("w-2", "w", B))),
        observed(State.UPDATING, nodes=(head(), worker("w-1", config=B), worker("w-2"))),
        [(K.ROLL_WORKER, "w-2")],
    ),
    (
        "scale up: add",
        desired(workers=(("w-1", "w", A), ("w-2", "w", A), ("w-3", "w", A))),
        observed(State.UPDATING),
        [(K.ADD_WORKER, "w-3")],
    ),
    ("scale down: remove", desired(workers=(("w-1", "w", A),)), observed(State.UPDATING), [(K.REMOVE_WORKER, "w-2")]),
    (
        "scale to zero",
        desired(workers=()),
        observed(State.UPDATING),
        [(K.REMOVE_WORKER, "w-1"), (K.REMOVE_WORKER, "w-2")],
    ),
    (
        "group renamed: add new before removing old",
        desired(workers=(("g-1", "g", A), ("g-2", "g", A))),
        observed(State.UPDATING),
        [(K.ADD_WORKER, "g-1"), (K.ADD_WORKER, "g-2"), (K.REMOVE_WORKER, "w-1"), (K.REMOVE_WORKER, "w-2")],
    ),
    (
        "worker moves group: rolled",
        desired(workers=(("w-1", "v", A), ("w-2", "w", A))),
        observed(State.UPDATING),
        [(K.ROLL_WORKER, "w-1")],
    ),
    (
        "head settings changed: fenced head restart",
        desired(head=H2),
        observed(State.UPDATING),
        [(K.REPLACE_HEAD, "head")],
    ),
    (
        "head and workers changed: head first",
        desired(head=H2, workers=(("w-1", "w", B), ("w-2", "w", B))),
        observed(State.UPDATING),
        [(K.REPLACE_HEAD, "head"), (K.ROLL_WORKER, "w-1"), (K.ROLL_WORKER, "w-2")],
    ),
    (
        "unknown config (old record): left alone",
        desired(workers=(("w-1", "w", B), ("w-2", "w", B))),
        observed(nodes=(head(config=None), worker("w-1", config=None), worker("w-2", config=None))),
        [],
    ),
    ("head dies: recover, nothing else", desired(apps="apps2"), observed(head_alive=False), [(K.RECOVER_HEAD, None)]),
    (
        "head lost during a rolling worker update: no update step until it is back",
        desired(workers=(("w-1", "w", B), ("w-2", "w", B))),
        observed(State.UPDATING, nodes=(head(alive=False), worker("w-1", config=B), worker("w-2")), head_alive=False),
        [(K.RECOVER_HEAD, None)],
    ),
    (
        "recovering: resumed, updates wait",
        desired(apps="apps2"),
        observed(State.HEAD_RECOVERING),
        [(K.RECOVER_HEAD, None)],
    ),
    (
        "head and a worker dead: worker replaced with the recovery",
        desired(),
        observed(nodes=(head(alive=False), worker("w-1", alive=False), worker("w-2")), head_alive=False),
        [(K.RECOVER_HEAD, None), (K.REPLACE_DEAD_WORKER, "w-1")],
    ),
    (
        "worker dead, head up: replaced",
        desired(),
        observed(nodes=(head(), worker("w-1", alive=False), worker("w-2"))),
        [(K.REPLACE_DEAD_WORKER, "w-1")],
    ),
    (
        "terminate during head recovery wins",
        desired(),
        observed(State.HEAD_RECOVERING, terminate_requested=True, head_alive=False),
        [(K.TERMINATE, None)],
    ),
    (
        "terminate during an update wins",
        desired(apps="apps2"),
        observed(State.UPDATING, terminate_requested=True),
        [(K.TERMINATE, None)],
    ),
    (
        "terminate during the first deploy wins",
        desired(),
        observed(State.STARTING, terminate_requested=True),
        [(K.TERMINATE, None)],
    ),
    ("TERMINATING resumes terminate", desired(), observed(State.TERMINATING), [(K.TERMINATE, None)]),
    ("TERMINATED: nothing", desired(), observed(State.TERMINATED), []),
    (
        "ingress gone: restarted first",
        desired(apps="apps2"),
        observed(State.UPDATING, ingress_up=False),
        [(K.RESTART_INGRESS, None), (K.APPLY_APPS, None)],
    ),
    (
        "ingress gone while the head recovers: both repairs",
        desired(),
        observed(head_alive=False, ingress_up=False),
        [(K.RESTART_INGRESS, None), (K.RECOVER_HEAD, None)],
    ),
    (
        "failed update rolls back: desired is the last RUNNING version again",
        desired(workers=(("w-1", "w", A), ("w-2", "w", A)), apps="apps1", version=1),
        observed(State.UPDATING, nodes=(head(), worker("w-1", config=B), worker("w-2")), apps="apps2"),
        [(K.ROLL_WORKER, "w-1"), (K.APPLY_APPS, None)],
    ),
    (
        "worker lost during a rollback: replaced first, then the rollback goes on",
        desired(apps="apps1", version=1),
        observed(State.UPDATING, nodes=(head(), worker("w-1", alive=False, config=B), worker("w-2")), apps="apps2"),
        [(K.REPLACE_DEAD_WORKER, "w-1"), (K.APPLY_APPS, None)],
    ),
    (
        "dead worker that no group wants: removed, not replaced",
        desired(workers=(("w-1", "w", A),)),
        observed(State.UPDATING, nodes=(head(), worker("w-1"), worker("w-2", alive=False))),
        [(K.REMOVE_WORKER, "w-2")],
    ),
    (
        "first deploy with a missing worker: added",
        desired(),
        observed(State.STARTING, nodes=(head(), worker("w-1"))),
        [(K.ADD_WORKER, "w-2")],
    ),
]


@pytest.mark.parametrize("label,d,o,expected", ROWS, ids=[r[0] for r in ROWS])
def test_plan(label, d, o, expected):
    assert kinds(plan(d, o)) == [(str(k), n) for k, n in expected]


def test_at_least_25_rows():
    assert len(ROWS) >= 25


def test_every_step_says_why():
    for _, d, o, _ in ROWS:
        for step in plan(d, o):
            assert step.reason, step


@pytest.mark.parametrize("state", list(State))
def test_plan_never_proposes_what_the_state_forbids(state):
    for _, d, o, _ in ROWS:
        for step in plan(d, Observed(**{**o.__dict__, "state": state})):
            assert allowed(state, step.kind), (state, step)


def test_head_recovering_allows_no_update_step():
    for kind in (K.ADD_WORKER, K.ROLL_WORKER, K.REMOVE_WORKER, K.APPLY_APPS, K.REPLACE_HEAD):
        assert not allowed(State.HEAD_RECOVERING, kind)
    assert all(allowed(s, K.TERMINATE) for s in State if s != State.TERMINATED)
    assert set(ALLOWED) == set(State)
