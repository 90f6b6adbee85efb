"""Where alerts go: ``alerts.json`` in the state dir (active alerts and the last events,
shown by ``status`` and ``cloud status``), the controller's log, and the webhook when one
is set — each alert POSTed once, as JSON, with the service, what happened and its
timeline's link. A webhook that does not answer is logged (never its URL: it may hold a
secret) and not retried: the next change is sent as usual.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from headway.system import paths

MAX_EVENTS = 500
TIMEOUT_S = 3.0

log = logging.getLogger("headway.alerts")


def _state_file():
    return paths.home() / "alerts.json"


def load_state() -> dict[str, Any]:
    try:
        return json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return {"alerts": {}, "events": []}


def save_state(state: dict[str, Any]) -> None:
    state["events"] = state["events"][-MAX_EVENTS:]
    paths.write_private(_state_file(), json.dumps(state, indent=2))


def deliver(event: dict[str, Any], webhook: str | None) -> None:
    """Log the event; POST it to the webhook."""
    (log.warning if event.get("raised", True) else log.info)("%s", event["message"])
    if not webhook:
        return
    try:
        r = httpx.post(webhook, json=event, timeout=TIMEOUT_S)
        if r.status_code >= 300:
            log.warning("alert webhook answered HTTP %s", r.status_code)
    except httpx.HTTPError as exc:
        log.warning("alert webhook failed: %s", type(exc).__name__)
