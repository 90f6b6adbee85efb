"""One change at a time per service (a lock file in its folder that names what holds it),
terminate's request that preempts a change at its next safe point, and the lock that
serialises address and port allocation across services."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path

from headway.model.errors import Busy, Cancelled
from headway.system import paths


@contextlib.contextmanager
def locked(name: str, doing: str = "a change") -> Iterator[None]:
    """One change at a time per service; ``doing`` says which, to whoever is refused."""
    d = paths.service_dir(name)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"service {name} is busy ({holder(name)}); retry when it is done, or pass --wait") from None
        fh.truncate(0)
        fh.write(doing)
        fh.flush()
        try:
            yield
        finally:
            fh.truncate(0)
            fcntl.flock(fh, fcntl.LOCK_UN)


def holder(name: str) -> str:
    """What holds the service's lock right now (written by the holder)."""
    try:
        return (paths.service_dir(name) / ".lock").read_text().strip() or "another change"
    except OSError:
        return "another change"


def _terminate_flag(name: str) -> Path:
    return paths.service_dir(name) / ".terminate"


def request_terminate(name: str) -> None:
    """Ask every change and repair of the service to stop at its next safe point."""
    f = _terminate_flag(name)
    f.parent.mkdir(parents=True, exist_ok=True)
    f.touch()


def terminate_requested(name: str) -> bool:
    return _terminate_flag(name).exists()


def check_cancelled(name: str) -> None:
    """A safe point: a change or repair that terminate has preempted stops here."""
    if terminate_requested(name):
        raise Cancelled(f"terminate of service {name} preempted this change")


@contextlib.contextmanager
def locked_waiting(name: str, doing: str, timeout_s: float) -> Iterator[bool]:
    """Like ``locked`` but waits up to ``timeout_s`` for the holder to let go; yields
    whether the lock was had (terminate goes on without it after the wait)."""
    deadline = time.monotonic() + timeout_s
    with contextlib.ExitStack() as stack:
        while True:
            try:
                stack.enter_context(locked(name, doing))
                had = True
                break
            except Busy:
                if time.monotonic() >= deadline:
                    had = False
                    break
                time.sleep(0.2)
        yield had


def is_locked(name: str) -> bool:
    """Another command holds the service right now (probed without waiting)."""
    f = paths.service_dir(name) / ".lock"
    if not f.exists():
        return False
    with open(f) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


@contextlib.contextmanager
def allocation_lock() -> Iterator[None]:
    """Serialises address/port allocation across services."""
    with open(paths.home() / ".alloc.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
