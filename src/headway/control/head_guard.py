"""When a change must wait because a service's head is down: updates and scaling need the
head, so they are refused (clearly, with what to do) while it is lost or being replaced."""

from __future__ import annotations

from headway.cluster import gcs_client
from headway.control.context import Context
from headway.model import states
from headway.model.errors import HeadRecovering
from headway.state.records import ServiceRecord


def recovering_since(ctx: Context, rec: ServiceRecord) -> float | None:
    """When the head of a GCS-FT service was lost, if it is down or being replaced now."""
    if not rec.gcs_ft:
        return None
    if rec.state == states.State.HEAD_RECOVERING:
        return last_loss_at(rec)
    if rec.state in UPDATABLE and rec.head is not None and not ctx.provider(rec).alive(rec.head):
        return ctx.clock()
    return None


def last_loss_at(rec: ServiceRecord) -> float:
    """When the head was lost, as the latest entry into HEAD_RECOVERING recorded it."""
    lost = [e for e in rec.events if e.kind == "state" and e.state == states.State.HEAD_RECOVERING]
    return float(lost[-1].details.get("lost_at", lost[-1].at)) if lost else rec.updated_at


def refuse_while_recovering(ctx: Context, rec: ServiceRecord) -> None:
    """Updates and scaling need the head: refuse them, clearly, while it is down."""
    since = recovering_since(ctx, rec)
    if since is None:
        if rec.gcs_ft and rec.state in UPDATABLE and rec.head is not None and not _head_answers(rec):
            raise HeadRecovering(
                f"head node of service {rec.name} does not answer its health check (frozen or cut off?); "
                "the controller replaces it if it stays down — retry, or pass --wait"
            )
        return
    raise HeadRecovering(
        f"head node of service {rec.name} is recovering ({ctx.clock() - since:.0f} s); "
        "updates resume when it is back — retry, or pass --wait"
    )


UPDATABLE = (states.State.RUNNING, states.State.UPDATING, states.State.UNHEALTHY)


def _head_answers(rec: ServiceRecord, attempts: int = 2, timeout_s: float = 3) -> bool:
    """A head whose processes live may still be frozen or cut off: an update would hang on
    it (and hold the service lock the watchdog needs), so ask its GCS first."""
    return any(gcs_client.healthy(rec.gcs_address, rec.ray_token, timeout_s) for _ in range(attempts))
