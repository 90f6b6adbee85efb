"""The REST API of rollouts: follow one, promote a canary, roll one back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from headway.control import rollout, rollout_window
from headway.control.context import Context
from headway.control.operations import Operation, Operations
from headway.state import records


def status(name: str) -> dict[str, Any]:
    """The rollout in progress (None when there is none) and how the last one ended."""
    rec = records.load(name)
    if rec is None or rec.parent is not None:
        raise HTTPException(404, f"no service named {name}; GET /api/services lists them")
    return rollout_window.status(Context.load().cloud, rec)


def router(ops: Operations, auth: list) -> APIRouter:
    """The routes, each behind ``auth``; a rollback runs as an operation of ``ops``."""
    router = APIRouter()

    @router.get("/api/services/{name}/rollout", dependencies=auth, tags=["rollouts"])
    def rollout_status(name: str) -> dict[str, Any]:
        """The step, the traffic split, both versions' numbers in this step and the steps before."""
        return status(name)

    @router.post("/api/services/{name}/rollout/promote", dependencies=auth, tags=["rollouts"])
    def promote(name: str) -> dict[str, Any]:
        """A rollout held at its canary goes on with its remaining steps."""
        status(name)
        rollout.promote(name)
        return status(name)

    @router.post("/api/services/{name}/rollout/rollback", dependencies=auth, tags=["rollouts"], status_code=202)
    def roll_back(name: str) -> dict[str, Any]:
        """Traffic back to the running version at once; the new cluster is removed. An operation to poll."""
        if status(name)["rollout"] is None:
            raise HTTPException(422, f"service {name} has no rollout in progress")

        def work(op: Operation) -> dict[str, Any]:
            rec = rollout.roll_back(Context.load(), name, op.progress)
            return {"name": name, "version": rec.running_version}

        return ops.start("rollout-rollback", name, work, {}).view()

    return router
