"""A CLI pointed at a remote control plane is an API client and nothing else: it makes no
state dir, starts no control plane, and refuses what only the control host can do. (The
integration test ``test_control_plane`` drives a real one remotely.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

HEADWAY = str(Path(sys.executable).parent / "headway")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEADWAY_")}
    full = base | {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")} | env
    return subprocess.run([HEADWAY, *args], env=full, capture_output=True, text=True, timeout=60)


def test_a_remote_target_makes_no_state_dir_and_starts_nothing(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    remote = {"HEADWAY_API_URL": url, "HEADWAY_API_TOKEN": "tok-not-shown"}
    for args in (["list"], ["status", "s"], ["deploy", "-f", "x.yaml"], ["logs", "s", "-f"], ["token", "s"]):
        done = _run(tmp_path, *args, **remote)
        assert done.returncode in (1, 2), (args, done)
        assert "Traceback" not in done.stderr and "tok-not-shown" not in done.stdout + done.stderr
        if args[0] != "deploy":  # (deploy stops at the missing file, before any call)
            assert f"the control plane at {url} does not answer" in done.stderr, (args, done.stderr)
    for args in (["controller", "start"], ["cloud", "setup"], ["cloud", "teardown"], ["api", "token"]):
        done = _run(tmp_path, *args, **remote)
        assert done.returncode == 2 and "runs on the control host itself" in done.stderr, (args, done.stderr)
    assert not (tmp_path / ".headway").exists(), "a remote CLI made a state dir"


def test_context_commands_keep_the_config_file(tmp_path: Path) -> None:
    token = tmp_path / "prod.token"
    token.write_text("prod-token")
    url = f"http://127.0.0.1:{_closed_port()}"
    added = _run(tmp_path, "context", "add", "prod", "--api-url", url, "--token-file", str(token), "--use")
    assert added.returncode == 0, added.stderr
    listed = _run(tmp_path, "context", "list", "--json")
    assert '"current": "prod"' in listed.stdout and "prod-token" not in listed.stdout
    assert f"the control plane at {url} does not answer" in _run(tmp_path, "list").stderr  # the context is in use
    assert _run(tmp_path, "--context", "nope", "list").returncode == 2
    assert _run(tmp_path, "context", "use", "local").returncode == 0
    here = _run(tmp_path, "list", HEADWAY_HOME=str(tmp_path / "state"))
    assert here.returncode == 0, here.stderr  # this host's again
    assert _run(tmp_path, "context", "remove", "prod").returncode == 0
    assert _run(tmp_path, "context", "use", "prod").returncode == 2
    bad = _run(tmp_path, "context", "add", "x", "--api-url", "http://h:1/path", "--token-file", str(token))
    assert bad.returncode == 2 and "HOST:PORT only" in bad.stderr
