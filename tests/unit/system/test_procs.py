"""Processes found by their marker, never by their name, and told apart by start time."""

import os
import subprocess
import sys
import time

from headway.system import procs


def test_marker_finds_exactly_our_processes():
    env = dict(os.environ, HEADWAY_NODE="unit-abc/w-1/1")
    other = dict(os.environ, HEADWAY_NODE="unit-abcd/w-1/1")
    mine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)
    theirs = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=other)
    try:
        deadline = time.monotonic() + 10
        while procs.pids_with_marker("unit-abc") != [mine.pid] and time.monotonic() < deadline:
            time.sleep(0.02)  # until the child has exec'd with its environment
        assert procs.pids_with_marker("unit-abc") == [mine.pid]
        assert procs.pids_with_marker("unit-abc/w-1") == [mine.pid]
        started = procs.start_time(mine.pid)
        assert procs.same_process(mine.pid, started)
        assert not procs.same_process(mine.pid, started + 1)
        procs.kill_pids([mine.pid])
        mine.wait(5)
        assert procs.pids_with_marker("unit-abc") == []
        assert theirs.poll() is None
    finally:
        for p in (mine, theirs):
            p.kill()
            p.wait()
