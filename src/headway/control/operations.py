"""Changes the control plane carries out for its API: deploy/update, scale, terminate.

A change takes seconds to minutes, so the API starts it as an operation (a thread) and
answers at once with its id; the CLI polls it and prints its progress lines as they
come. Whatever fails, the operation ends with the exit code the CLI documents (one
place for that mapping: ``exit_code``) and a message without secrets.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from headway.control import changes, teardown, token_rotation
from headway.control.context import Context
from headway.model import errors
from headway.model.spec import ServiceSpec
from headway.state import db
from headway.store import storage
from headway.system import env_file

log = logging.getLogger("headway.operations")

#: Finished operations kept for polling (the newest ones).
KEEP_DONE = 200


def exit_code(kind: str, exc: BaseException) -> tuple[int, str]:
    """The CLI's exit code and message for an operation that raised ``exc`` (by its type)."""
    code = errors.exit_code_of(exc)
    if isinstance(exc, storage.StoreError):
        return code, f"{exc}\nnothing was started."
    if isinstance(exc, errors.HeadwayError | ValueError):
        return code, str(exc)
    return code, f"internal error ({type(exc).__name__}); see the controller log"


@dataclass
class Operation:
    id: str
    kind: str
    service: str
    started_at: float = field(default_factory=time.time)
    lines: list[str] = field(default_factory=list)
    done: bool = False
    exit_code: int | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    finished_at: float | None = None

    def progress(self, message: str) -> None:
        self.lines.append(f"{time.time() - self.started_at:6.1f}s {message}")
        log.info("%s %s: %s", self.kind, self.service, message)

    def view(self, since: int = 0) -> dict[str, Any]:
        out = asdict(self)
        out["lines"] = self.lines[since:]
        out["next"] = len(self.lines)
        return out


class Operations:
    """The operations of this control-plane process (they die with it, as a CLI would)."""

    def __init__(self) -> None:
        self._ops: dict[str, Operation] = {}
        self._lock = threading.Lock()

    def running(self) -> int:
        with self._lock:
            return sum(1 for o in self._ops.values() if not o.done)

    def get(self, op_id: str) -> Operation | None:
        with self._lock:
            return self._ops.get(op_id)

    def start(
        self, kind: str, name: str, work: Callable[[Operation], dict[str, Any]], env: dict[str, str]
    ) -> Operation:
        op = Operation(id=secrets.token_hex(8), kind=kind, service=name)
        with self._lock:
            done = sorted((o for o in self._ops.values() if o.done), key=lambda o: o.finished_at or 0)
            for old in done[: max(0, len(done) - KEEP_DONE)]:
                del self._ops[old.id]
            self._ops[op.id] = op
        threading.Thread(target=self._run, args=(op, work, env), name=f"op-{kind}-{name}", daemon=True).start()
        return op

    @staticmethod
    def _run(op: Operation, work: Callable[[Operation], dict[str, Any]], env: dict[str, str]) -> None:
        storage.given_env.set(env)
        try:
            env_file.apply()  # a setting changed in the file (PIP_INDEX_URL, say) counts from now on
            op.result = work(op)
            op.exit_code = 0
        except BaseException as exc:  # noqa: BLE001 - every failure becomes the operation's answer
            op.exit_code, op.error = exit_code(op.kind, exc)
            if op.exit_code == errors.EXIT_FAILED:
                unexpected = not isinstance(exc, errors.HeadwayError)
                log.warning("%s %s failed: %s", op.kind, op.service, op.error, exc_info=unexpected)
        finally:
            op.finished_at = time.time()
            op.done = True


# -- the work ----------------------------------------------------------------------------
def deploy(
    spec: ServiceSpec,
    strict: bool,
    wait: bool,
    wait_timeout: float,
    env: dict[str, str],
    package_uri: str | None,
    origin: str = "deploy",
    strategy: str | None = None,
):
    """Deploy or update; with ``wait``, a refusal for now (the head recovers, another change
    holds the service) waits and retries. ``package_uri``: the uploaded working_dir (None:
    keep the running one, as scale does)."""

    def work(op: Operation) -> dict[str, Any]:
        deadline = time.monotonic() + wait_timeout
        while True:
            try:
                ctx = Context.load()  # afresh for each attempt: a wait can see the cloud change
                rec = changes.deploy(
                    ctx, spec, op.progress, strict=strict, package_uri=package_uri, origin=origin, strategy=strategy
                )
                break
            except errors.RetryLater as exc:
                if not wait:
                    raise
                if time.monotonic() > deadline:
                    raise type(exc)(f"{exc} (gave up after --wait-timeout {wait_timeout:.0f} s)") from None
                op.progress(f"waiting: {exc}")
                changes.wait_recovered(ctx, spec.name, deadline)
                time.sleep(1)  # a head that does not answer is not "recovering" yet: don't spin
        if env:
            db.set_secrets(spec.name, env)  # repairs after this CLI is gone need them too
        return {
            "name": rec.name,
            "endpoint": rec.endpoint,
            "gcs_ft": rec.gcs_ft,
            "version": rec.running_version,
            "token_required": bool(spec.query_auth_token_enabled),
            "rollout": rec.rollout.version if rec.rollout else None,
        }

    return work


def rollback(name: str, to: int | None):
    def work(op: Operation) -> dict[str, Any]:
        rec = changes.rollback(Context.load(), name, to, op.progress)
        return {
            "name": rec.name,
            "endpoint": rec.endpoint,
            "gcs_ft": rec.gcs_ft,
            "version": rec.running_version,
            "token_required": rec.spec.query_auth_token_enabled,
        }

    return work


def terminate(name: str):
    def work(op: Operation) -> dict[str, Any]:
        teardown.terminate(Context.load(), name, op.progress)
        return {"name": name}

    return work


def rotate_token(name: str, grace_s: float) -> Callable[[Operation], dict[str, Any]]:
    """A new endpoint token; the previous one is accepted for ``grace_s`` (``token_rotation``)."""

    def work(op: Operation) -> dict[str, Any]:
        return token_rotation.rotate(Context.load(), name, grace_s, op.progress)

    return work
