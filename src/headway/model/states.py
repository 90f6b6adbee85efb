"""The service state machine: the allowed transitions as data, one place for all of them.

Each edge says which event causes it. A transition is recorded as an event with a
timestamp and details; the event list is the service's timeline.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class State(StrEnum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    HEAD_RECOVERING = "HEAD_RECOVERING"
    UPDATING = "UPDATING"
    UNHEALTHY = "UNHEALTHY"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"


S = State

#: (from, to) -> the event that causes the transition.
TRANSITIONS: dict[tuple[State, State], str] = {
    (S.STARTING, S.RUNNING): "every node joined and every application is RUNNING",
    (S.STARTING, S.TERMINATING): "terminate during the first deploy (it preempts it)",
    (S.RUNNING, S.UPDATING): "a deploy of the same name (new spec)",
    (S.RUNNING, S.HEAD_RECOVERING): "the watchdog declared the head dead",
    (S.RUNNING, S.UNHEALTHY): "an observed fault the watchdog cannot repair",
    (S.RUNNING, S.TERMINATING): "terminate",
    (S.UPDATING, S.RUNNING): "the update's applications are RUNNING",
    (S.UPDATING, S.UNHEALTHY): "the update failed",
    (S.UPDATING, S.HEAD_RECOVERING): "the head died during the update",
    (S.UPDATING, S.TERMINATING): "terminate",
    (S.UPDATING, S.UPDATING): "the controller resumes an update left unfinished",
    (S.HEAD_RECOVERING, S.RUNNING): "new head up, workers re-registered, applications RUNNING",
    (S.HEAD_RECOVERING, S.UNHEALTHY): "head replacement failed",
    (S.HEAD_RECOVERING, S.TERMINATING): "terminate",
    (S.HEAD_RECOVERING, S.HEAD_RECOVERING): "a restarted controller resumes an interrupted recovery",
    (S.UNHEALTHY, S.HEAD_RECOVERING): "a new attempt to replace the head, or to finish one whose new head is up",
    (S.UNHEALTHY, S.UPDATING): "a deploy of the same name",
    (S.UNHEALTHY, S.TERMINATING): "terminate",
    (S.TERMINATING, S.TERMINATING): "terminate retried after an interrupted one",
    (S.TERMINATING, S.TERMINATED): "every node, namespace and key removed",
}


class IllegalTransition(RuntimeError):
    pass


class Event(BaseModel):
    at: float
    kind: str
    state: str
    message: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


def check(current: State | str, target: State | str) -> str:
    """The reason an edge exists; raises for an edge the table does not have."""
    edge = (State(current), State(target))
    if edge not in TRANSITIONS:
        raise IllegalTransition(f"no transition {edge[0]} -> {edge[1]}")
    return TRANSITIONS[edge]


def transition_event(current: State | str, target: State | str, message: str = "", **details: Any) -> Event:
    """The event recording ``current -> target`` (validated against the table)."""
    check(current, target)
    return Event(
        at=time.time(),
        kind="state",
        state=str(State(target)),
        message=message or f"{current} -> {target}",
        details=details,
    )


def reachable(start: State = S.STARTING) -> set[State]:
    seen = {start}
    frontier = [start]
    while frontier:
        s = frontier.pop()
        for a, b in TRANSITIONS:
            if a == s and b not in seen:
                seen.add(b)
                frontier.append(b)
    return seen
