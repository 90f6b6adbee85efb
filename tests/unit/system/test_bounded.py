"""Probes run at once, and one that hangs is reported late instead of holding the read."""

import threading
import time

from headway.system import bounded


def test_every_result_comes_back_by_key_with_a_raised_exception_in_its_place():
    def boom() -> int:
        raise ValueError("no such host")

    got = bounded.run_all({"a": lambda: 1, ("b", 2): lambda: "two", "c": boom}, 5)
    assert got["a"] == 1 and got[("b", 2)] == "two"
    assert isinstance(got["c"], ValueError) and str(got["c"]) == "no such host"


def test_a_hanging_probe_is_late_and_the_others_are_not_held():
    never = threading.Event()
    start = time.monotonic()
    got = bounded.run_all({"hangs": never.wait, "quick": lambda: "ok"}, 0.3)
    took = time.monotonic() - start
    never.set()
    assert got["quick"] == "ok"
    assert isinstance(got["hangs"], bounded.Late) and "0.3 s" in str(got["hangs"])
    assert 0.25 <= took < 3


def test_probes_run_at_once_not_one_after_another():
    start = time.monotonic()
    got = bounded.run_all({i: (lambda: time.sleep(0.4) or "slept") for i in range(5)}, 10)
    assert set(got.values()) == {"slept"}
    assert time.monotonic() - start < 1.5  # five 0.4 s probes in turn would take 2 s


def test_no_probe_returns_at_once():
    assert bounded.run_all({}, 1) == {}


def test_one_probe_within_a_deadline():
    never = threading.Event()
    assert bounded.within(lambda: "ok", 5) == "ok"
    assert isinstance(bounded.within(never.wait, 0.2), bounded.Late)
    never.set()
