"""Integration fixtures: a private headway home, CLI runner, and cleanup that always runs.

Each test gets its own state dir, bridge and subnet so it never touches a user's
cloud on the same machine; whatever the test leaves (even when it fails) is removed
by PID, namespace name and temp dir — never by a process-name pattern.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import yaml

from headway import binaries, netns, procs

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello"
HEADWAY = str(Path(sys.executable).parent / "headway")

pytestmark = pytest.mark.integration


@dataclass
class Cli:
    env: dict[str, str]
    home: Path
    services: list[str] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 400, check: bool = False) -> subprocess.CompletedProcess:
        proc = subprocess.run([HEADWAY, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"headway {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def status(self, name: str) -> dict:
        return json.loads(self.run("status", name, "--json", check=True).stdout)

    def write_spec(self, name: str, **overrides) -> Path:
        """examples/hello/service.yaml under another name, with overrides merged in."""
        data = yaml.safe_load((HELLO / "service.yaml").read_text())
        data["name"] = name
        data["working_dir"] = str(HELLO / "app")
        for key, value in overrides.items():
            data[key] = value
        path = self.home / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        self.services.append(name)
        return path

    def cleanup(self) -> None:
        self.run("cloud", "teardown", "--force", timeout=120)
        # Safety net for a failed test: anything still recorded or named after our services.
        for rec_file in (self.home / "services").glob("*/service.json"):
            rec = json.loads(rec_file.read_text())
            procs.kill_pids(procs.pids_with_marker(rec["cluster_id"]))
        if os.geteuid() == 0:
            for ns in netns.list_namespaces():
                if any(ns.startswith(f"hw-{s}.") for s in self.services):
                    procs.kill_pids(netns.pids(ns))
                    netns.delete(ns)
            subprocess.run(["ip", "link", "del", self.env["HEADWAY_BRIDGE"]], capture_output=True)


_counter = iter(range(1, 200))


@pytest.fixture
def cli():
    home = Path(tempfile.mkdtemp(prefix="hwt-"))
    n = next(_counter)
    env = dict(os.environ)
    env.update(
        HEADWAY_HOME=str(home),
        HEADWAY_TMP=str(home / "t"),
        HEADWAY_BRIDGE=f"hwtbr{os.getpid() % 1000}{n}"[:15],
        HEADWAY_SUBNET=f"10.213.{100 + (os.getpid() + n) % 100}.0/24",
    )
    env.pop("HEADWAY_MODE", None)
    c = Cli(env=env, home=home)
    try:
        yield c
    finally:
        c.cleanup()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def store_server(tmp_path):
    """A plain password-protected Valkey/Redis on loopback, started and stopped by PID."""
    port = _free_port()
    password = "right-pass-7Qz"
    conf = tmp_path / "store.conf"
    conf.write_text(
        f'port {port}\nbind 127.0.0.1\nrequirepass {password}\nsave ""\nappendonly no\ndir {tmp_path}\n'
    )
    proc = subprocess.Popen(
        [binaries.store_server(), str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        client = redis.Redis(port=port, password=password)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield port, password
    finally:
        proc.kill()
        proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
