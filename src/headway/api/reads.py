"""What every route reads the same way: a service's record (404 naming the way to list
them when there is none) and its status as observed now."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from headway.control import views
from headway.control.context import Context
from headway.state import daemon_info, records
from headway.state.records import ServiceRecord


def record_or_404(name: str) -> ServiceRecord:
    rec = records.load(name)
    if rec is None:
        raise HTTPException(404, f"no service named {name}; GET /api/services lists them")
    return rec


def status_of(rec: ServiceRecord) -> dict[str, Any]:
    return views.observe(Context.load(), rec) | {"controller_pid": daemon_info.running_pid()}
