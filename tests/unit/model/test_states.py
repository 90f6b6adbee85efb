"""The state machine table: walk its graph, refuse what it does not allow."""

import pytest

from headway.model import states
from headway.model.states import State


def test_every_state_reachable_from_starting():
    assert states.reachable(State.STARTING) == set(State)


@pytest.mark.parametrize("s", [s for s in State if s != State.TERMINATED])
def test_every_live_state_can_be_terminated(s):
    assert State.TERMINATED in states.reachable(s)


def test_terminated_is_final():
    assert states.reachable(State.TERMINATED) == {State.TERMINATED}


def test_every_edge_says_why():
    assert all(reason.strip() for reason in states.TRANSITIONS.values())


@pytest.mark.parametrize(
    "a,b",
    [
        (State.STARTING, State.HEAD_RECOVERING),
        (State.HEAD_RECOVERING, State.UPDATING),
        (State.TERMINATED, State.RUNNING),
        (State.RUNNING, State.STARTING),
    ],
)
def test_illegal_transitions_raise(a, b):
    with pytest.raises(states.IllegalTransition):
        states.transition_event(a, b)


def test_updates_refused_while_head_recovering():
    # No edge HEAD_RECOVERING -> UPDATING: an update must wait for RUNNING.
    assert (State.HEAD_RECOVERING, State.UPDATING) not in states.TRANSITIONS


def test_event_records_target_and_details():
    e = states.transition_event("RUNNING", "HEAD_RECOVERING", "head lost", missed_probes=3)
    assert e.state == "HEAD_RECOVERING" and e.kind == "state"
    assert e.details == {"missed_probes": 3} and e.at > 0


def test_the_code_sets_every_state_the_table_leads_to():
    """Every target of an edge is set by some ``set_state`` call in the code (and nothing
    else is): an edge nobody can take is removed from the table, not kept as a wish."""
    import re
    from pathlib import Path

    src = Path(states.__file__).parents[1]
    targets = set()
    for f in src.rglob("*.py"):
        targets |= set(re.findall(r"set_state\(\s*rec,\s*states\.State\.([A-Z_]+)", f.read_text()))
    assert targets == {b.value for _, b in states.TRANSITIONS}
