"""A store process its host started at boot is found again by its pidfile, and only while
that PID works in the process's own folder (a pidfile outlives a crash). The host is this
machine: ``ssh.run`` runs the same shell text here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from headway.hosts import ssh
from headway.model.cloud_config import SshCloud
from headway.store import store_procs
from headway.store.store_conf import StoreProcess, pidfile

HOST = "10.9.0.5"


def _here(_host, command: str, timeout_s: float = 10, stdin: bytes | None = None) -> tuple[int, str, str]:
    done = subprocess.run(["/bin/sh", "-c", command], input=stdin, capture_output=True, timeout=timeout_s)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@pytest.fixture
def cfg(monkeypatch, tmp_path: Path) -> SshCloud:
    monkeypatch.setattr(ssh, "run", _here)
    return SshCloud.model_validate(
        {
            "venv": "/v",
            "store_address": "10.9.0.1",
            "hosts": [{"address": HOST, "key": str(tmp_path / "k"), "role": "head"}],
        }
    )


def _proc(folder: Path) -> StoreProcess:
    folder.mkdir()
    return StoreProcess(
        role="primary", port=7001, host=HOST, data_dir=str(folder), conf="/c", log="/l", marker=f"cloud-c/store@{HOST}"
    )


def test_the_process_in_its_folder_is_adopted_with_its_start_time(cfg: SshCloud, tmp_path: Path):
    proc = _proc(tmp_path / "store")
    child = subprocess.Popen(["sleep", "60"], cwd=proc.data_dir)  # as Redis runs: in its ``dir``
    try:
        Path(pidfile(proc)).write_text(f"{child.pid}\n")
        assert store_procs.adopt(cfg, proc)
        assert proc.pid == child.pid and proc.pid_started is not None
    finally:
        child.kill()
        child.wait()


def test_a_pidfile_left_by_a_crash_is_not_taken_for_a_live_process(cfg: SshCloud, tmp_path: Path):
    proc, other = _proc(tmp_path / "store"), tmp_path / "sentinel"
    other.mkdir()
    elsewhere = subprocess.Popen(["sleep", "60"], cwd=other)  # its PID now another's (the Sentinel's)
    try:
        Path(pidfile(proc)).write_text(f"{elsewhere.pid}\n")
        assert not store_procs.adopt(cfg, proc) and proc.pid is None
        Path(pidfile(proc)).write_text("4194304\n")  # no such process at all
        assert not store_procs.adopt(cfg, proc)
        Path(pidfile(proc)).unlink()  # never started: no pidfile
        assert not store_procs.adopt(cfg, proc)
    finally:
        elsewhere.kill()
        elsewhere.wait()
