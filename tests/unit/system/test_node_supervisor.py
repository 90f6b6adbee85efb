"""headway's node supervisor, run for real on stand-in ``ray start`` scripts (no Ray):
what it watches, what it stops, what it says and when it exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from headway.control.node_start import ray_failure_line
from headway.system import node_supervisor, procs

#: A stand-in node process: says it runs (a file beside it), then sleeps.
STANDIN = "import pathlib, sys, time; pathlib.Path(sys.argv[0] + '.up').touch(); time.sleep(120)"
NAMES = ("raylet_standin", "gcs_standin", "a", "b", "half_started")
PY = sys.executable  # not a shim that writes to the node's output


def _starter(tmp_path: Path, body: str) -> str:
    """A stand-in for ``ray start``: launches its 'node processes' (``python3 <dir>/x.py``,
    each sleeping) in the background and, as ``ray start`` does, returns once they run — a
    process still between fork and exec would be adopted under the shell's name."""
    node = tmp_path / "node"
    node.mkdir(exist_ok=True)
    for name in NAMES:
        (node / f"{name}.py").write_text(STANDIN)
    started = [n for n in NAMES if f"{node}/{n}.py &" in body]
    wait = "".join(f"while [ ! -e {node}/{n}.py.up ]; do sleep 0.02; done\n" for n in started)
    lines = body.split("\n")
    script = tmp_path / "ray"
    script.write_text("#!/bin/sh\n" + "\n".join(lines[:-1]) + "\n" + wait + lines[-1] + "\n")
    script.chmod(0o755)
    return str(script)


def _start(tmp_path: Path, body: str) -> subprocess.Popen:
    cmd = node_supervisor.supervised(sys.executable, [_starter(tmp_path, body), "start"])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _children(pid: int) -> dict[int, str]:
    found = {}
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


def _wait_children(pid: int, n: int) -> dict[int, str]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kids = {p: c for p, c in _children(pid).items() if not procs._is_zombie(p)}
        if len(kids) >= n:
            return kids
        time.sleep(0.05)
    raise AssertionError(f"children of {pid}: {_children(pid)}")


@pytest.fixture
def cleanup():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        procs.kill_pids([*_children(p.pid), p.pid])


def test_a_crashed_node_process_ends_the_node_and_is_named(tmp_path, cleanup):
    sup = _start(tmp_path, f"{PY} {tmp_path}/node/raylet_standin.py &\n{PY} {tmp_path}/node/gcs_standin.py &\nexit 0")
    cleanup.append(sup)
    kids = _wait_children(sup.pid, 2)
    victim = next(p for p, c in kids.items() if "gcs_standin" in c)
    survivor = next(p for p in kids if p != victim)
    assert "node up" in sup.stdout.readline()  # it watches them now (killed before, it names a zombie)
    os.kill(victim, signal.SIGKILL)
    assert sup.wait(timeout=10) == 1
    out = sup.stdout.read()
    assert f"(pid {victim}) exited with code -9" in out and "exited unexpectedly" in out
    assert "gcs_standin" in ray_failure_line(out)  # what the timeline shows for a failed head
    assert not procs.alive(survivor)  # the rest of the node goes with it


def test_a_stopped_process_is_not_a_crash(tmp_path, cleanup):
    sup = _start(tmp_path, f"{PY} {tmp_path}/node/a.py &\n{PY} {tmp_path}/node/b.py &\nexit 0")
    cleanup.append(sup)
    kids = _wait_children(sup.pid, 2)
    first, second = sorted(kids)
    assert "node up" in sup.stdout.readline()
    os.kill(first, signal.SIGTERM)  # how Ray stops its own processes
    time.sleep(0.5)
    assert sup.poll() is None and procs.alive(second)
    os.kill(second, signal.SIGTERM)
    assert sup.wait(timeout=10) == 0


def test_the_ray_client_server_is_stopped_once_the_node_is_up(tmp_path, cleanup):
    up = tmp_path / "client_server.up"
    client_server = (
        f"{PY} -c \"import pathlib, time; pathlib.Path('{up}').touch(); time.sleep(120)\" -m ray.util.client.server &"
    )
    running = f"while [ ! -e {up} ]; do sleep 0.02; done"
    sup = _start(tmp_path, f"{PY} {tmp_path}/node/raylet_standin.py &\n{client_server}\n{running}\nexit 0")
    cleanup.append(sup)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        live = [c for p, c in _children(sup.pid).items() if not procs._is_zombie(p)]
        if len(live) == 1 and "raylet_standin" in live[0]:  # the starter gone, the client server stopped
            break
        time.sleep(0.05)
    assert len(live) == 1 and "raylet_standin" in live[0]
    assert sup.poll() is None


def test_a_failed_ray_start_is_the_exit_code_and_its_own_words_are_last(tmp_path, cleanup):
    said = "RuntimeError: raylet did not register in time"
    sup = _start(tmp_path, f"{PY} {tmp_path}/node/half_started.py &\necho '{said}'\nexit 3")
    cleanup.append(sup)
    assert sup.wait(timeout=10) == 3
    out = sup.stdout.read().strip().splitlines()
    assert out[-1] == said and ray_failure_line("\n".join(out)) == said
    assert not [p for p in _children(sup.pid) if not procs._is_zombie(p)]


def test_process_names_as_ray_logs_call_them():
    assert node_supervisor._name("/v/lib/ray/core/src/ray/raylet/raylet --x=1") == "raylet"
    assert node_supervisor._name("/v/ray/core/src/ray/gcs/gcs_server --p") == "gcs_server"
    assert node_supervisor._name("/v/bin/python -u /v/ray/dashboard/dashboard.py --host=x") == "dashboard"
    assert node_supervisor._name("/v/bin/python -m ray.util.client.server --port 1") == "ray.util.client.server"
