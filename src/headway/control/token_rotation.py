"""A service's endpoint token, changed without a gap: the new token is let in at once, the
one it replaces for a grace period (an hour unless told), then refused.

Both changes are the endpoint's seamless reload (the old HAProxy finishes what it holds,
the new one takes the listening socket): no connection is dropped and no request fails.
The controller ends grace periods (``expire``); a service busy with a change then is
visited again at its next store check. No token is ever written to the timeline or a log.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from headway.control.context import Context, Progress
from headway.ingress import endpoint
from headway.model.errors import Busy, InputError
from headway.state import db, locks, records
from headway.state.transitions import record_event

DEFAULT_GRACE_S = 3600.0
MAX_GRACE_S = 7 * 24 * 3600.0


def _quiet(_: str) -> None:
    pass


def rotate(ctx: Context, name: str, grace_s: float = DEFAULT_GRACE_S, progress: Progress = _quiet) -> dict[str, Any]:
    """A new token for ``name``'s endpoint; the previous one is accepted for ``grace_s``."""
    if not 0 <= grace_s <= MAX_GRACE_S:
        raise InputError(f"grace: {grace_s:g} s is not between 0 and {MAX_GRACE_S:.0f} s (7 days)")
    with locks.locked(name, "a token rotation"):
        rec = records.existing(name)
        if not rec.spec.query_auth_token_enabled:
            raise InputError(f"service {name} has query_auth_token_enabled: false; its endpoint needs no token")
        if rec.ingress is None:
            raise InputError(f"service {name} has no endpoint yet; deploy it first")
        new = secrets.token_urlsafe(32)
        until = db.rotate_token(endpoint.token_scope(name), new, grace_s, ctx.clock())
        how = endpoint.apply_update(ctx.cloud, rec, rec.spec)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(until))
        progress(f"endpoint {how}: the new token is let in, the previous one until {stamp}")
        record_event(rec, "token_rotated", f"a new endpoint token; the previous one is accepted until {stamp}")
        records.save(rec)
    return {"name": name, "token": new, "previous_accepted_until": until}


def expire(ctx: Context) -> list[str]:
    """End the grace periods that are over: the endpoint reloads without the old token.
    The services it did that for."""
    done = []
    for scope in db.expired_rotations(ctx.clock()):
        name = scope.removeprefix(endpoint.token_scope(""))
        try:
            with locks.locked(name, "a token expiry"):
                rec = records.load(name)
                if rec is not None and rec.ingress is not None:
                    endpoint.apply_update(ctx.cloud, rec, rec.spec)
                    record_event(rec, "token_expired", "the previous endpoint token's grace period ended: refused now")
                    records.save(rec)
                db.forget_rotated(scope)
                done.append(name)
        except Busy:
            continue  # a change holds it: the next check ends it
    return done
