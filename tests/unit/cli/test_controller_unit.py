"""The controller as a system service: the unit ``controller unit`` prints passes
``systemd-analyze verify`` (nothing is started), and the controller takes its settings
from the env file over the environment it inherited. No Ray: a controller with no service."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HEADWAY = str(Path(sys.executable).parent / "headway")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is missing (make system-test)")
def test_the_printed_unit_verifies(tmp_path: Path) -> None:
    env = os.environ | {"HEADWAY_HOME": str(tmp_path / "state")}
    done = subprocess.run(
        [HEADWAY, "controller", "unit", "--env-file", str(tmp_path / "c.env")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    unit = tmp_path / "headway-controller.service"
    unit.write_text(done.stdout)
    start = next(line for line in done.stdout.splitlines() if line.startswith("ExecStart="))
    python, *args = start.removeprefix("ExecStart=").split()
    assert Path(python).parent == Path(sys.executable).parent and args == ["-m", "headway.daemon"]  # this venv
    assert f"EnvironmentFile=-{tmp_path / 'c.env'}" in done.stdout and "KillMode=process" in done.stdout
    checked = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(done.stdout.replace("KillMode=process", "KillMode=sometimes"))
    said = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True)
    assert "kill mode" in said.stderr  # the check would see a unit systemd reads wrongly
    assert not (tmp_path / "state").exists()  # printing a unit makes no state dir


def test_the_controller_takes_its_settings_from_the_env_file(tmp_path: Path) -> None:
    port, home, config = _free_port(), tmp_path / "state", tmp_path / "controller.env"
    config.write_text(f"# set by the operator\nHEADWAY_API_PORT={port}\n")
    env = os.environ | {"HEADWAY_HOME": str(home), "HEADWAY_CONTROLLER_ENV": str(config), "HEADWAY_API_PORT": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "headway.daemon"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (home / "controller.json").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        info = json.loads((home / "controller.json").read_text())
        assert info["api"] == f"http://127.0.0.1:{port}"  # the file's port, not the inherited 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    config.write_text("HEADWAY_API_PORT 8765\n")
    bad = subprocess.run([sys.executable, "-m", "headway.daemon"], env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "controller.env:1: not a KEY=VALUE line" in bad.stderr
    config.write_text("HEADWAY_MAX_WORKERS=lots\n")
    bad = subprocess.run([sys.executable, "-m", "headway.daemon"], env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "HEADWAY_MAX_WORKERS='lots' in the control plane's settings is not a" in bad.stderr
    assert not (home / "controller.json").exists()  # it did not start
