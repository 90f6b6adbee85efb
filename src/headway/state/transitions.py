"""The one way a service changes state (checked against the transition table, recorded on
its timeline, saved), and the timeline entries that are not state changes."""

from __future__ import annotations

import time
from typing import Any

from headway.model import states
from headway.state import records
from headway.state.records import ServiceRecord


def set_state(rec: ServiceRecord, target: states.State, message: str = "", **details: Any) -> None:
    """The only place a service changes state: validated against the table, recorded, saved."""
    event = states.transition_event(rec.state, target, message, **details)
    rec.events.append(event)
    rec.state = states.State(target)
    rec.reason = message if target == states.State.UNHEALTHY else ""
    records.save(rec)


def record_event(rec: ServiceRecord, kind: str, message: str, **details: Any) -> None:
    """A timeline entry that is not a state change (a node started, apps RUNNING, ...)."""
    rec.events.append(states.Event(at=time.time(), kind=kind, state=rec.state, message=message, details=details))
