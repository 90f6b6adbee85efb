"""Probes that may not outlive a deadline. A status read asks several hosts and stores at
once; one that vanished without a reset (unplugged, powered off) can keep a socket or an
SSH channel waiting far past any timeout we set on it (CI once saw ``cloud status`` wait
over 400 s while a store host rebooted). Each probe runs in its own daemon thread, all at
once, and whatever has not answered by the deadline is reported as late instead of
holding the whole read: a status answers in bounded time with what it could learn."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class Late(Exception):
    """The probe had not answered when the deadline came."""


def within(probe: Callable[[], Any], within_s: float) -> Any:
    """``probe``'s result, the exception it raised, or ``Late``."""
    return run_all({0: probe}, within_s)[0]


def run_all(probes: dict[Hashable, Callable[[], Any]], within_s: float) -> dict[Hashable, Any]:
    """Every probe's result by key; an exception a probe raised, or ``Late``, in its place.
    Late probes' threads are left to finish on their own (daemon threads: they never keep
    a process alive)."""
    results: dict[Hashable, Any] = {}
    done = threading.Condition()

    def one(key: Hashable, probe: Callable[[], Any]) -> None:
        try:
            value: Any = probe()
        except Exception as exc:  # noqa: BLE001 - handed to the caller, who reads it by key
            value = exc
        with done:
            results[key] = value
            done.notify_all()

    for key, probe in probes.items():
        threading.Thread(target=one, args=(key, probe), daemon=True, name=f"probe-{key}").start()
    deadline = time.monotonic() + within_s
    with done:
        while len(results) < len(probes):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            done.wait(left)
        return {key: results.get(key, Late(f"no answer within {within_s:g} s")) for key in probes}
