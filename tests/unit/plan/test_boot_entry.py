"""What a host runs at boot: each entry's ``run.sh`` run by a real shell (files put back,
the process started once with its marker, hostile strings kept as data), the host's
``boot.sh`` running every entry even when one fails, and its unit verified by systemd."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from headway.plan import boot_entry as be
from headway.plan.systemd_units import render
from headway.system import procs

HOSTILE = 'm\'; touch {pwned}; echo $(id) `id` "x" \\ %n'


def _marked(marker: str) -> list[int]:
    return procs.pids_with_marker(marker)


def _wait_marked(marker: str, count: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = _marked(marker)
        if len(pids) == count:
            return pids
        time.sleep(0.05)
    return _marked(marker)


def test_marker_variable_is_the_one_processes_carry():
    assert be.MARKER_VAR == procs.MARKER_VAR


def test_run_sh_puts_files_back_and_starts_the_process_once(tmp_path: Path):
    pwned = tmp_path / "pwned"
    marker = HOSTILE.format(pwned=pwned)
    run_dir, folder = tmp_path / "run dir", tmp_path / "entry"
    folder.mkdir()
    conf = run_dir / "app.conf"
    (folder / be.copy_name(str(conf))).write_text("the config of now\n")  # as headway keeps it
    entry = be.BootEntry(
        marker=marker,
        argv=["/bin/sh", "-c", 'exec sleep 60 # "$HOME" `id`'],
        cwd=str(run_dir),
        log=str(run_dir / "out.log"),
        dirs=[(str(run_dir), 0o700)],
        files={str(conf): "the config of now\n"},
    )
    (folder / be.RUN).write_text(be.run_script(entry, str(folder)))
    try:
        # A boot that wiped the folder: it is made again, with its file, and the process runs.
        subprocess.run(["/bin/sh", str(folder / be.RUN)], check=True, timeout=20)
        (pid,) = _wait_marked(marker, 1)
        assert conf.read_text() == "the config of now\n"
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600 and stat.S_IMODE(run_dir.stat().st_mode) == 0o700
        assert Path(f"/proc/{pid}/cwd").resolve() == run_dir
        # Run again while it runs (the unit started by hand): nothing more starts.
        subprocess.run(["/bin/sh", str(folder / be.RUN)], check=True, timeout=20)
        time.sleep(0.3)
        assert _marked(marker) == [pid]
        assert not pwned.exists()  # the marker, quotes and all, stayed a string
    finally:
        for pid in _marked(marker):
            os.kill(pid, signal.SIGKILL)


def test_files_a_dead_process_left_are_removed_before_it_starts(tmp_path: Path):
    """keepalived will not start while its old pidfile names a live process (PIDs wrap)."""
    pidfile, folder = tmp_path / "k.pid", tmp_path / "entry"
    folder.mkdir()
    pidfile.write_text(f"{os.getpid()}\n")  # a live PID, as a reused one is
    marker = f"test-stale-{os.getpid()}"
    entry = be.BootEntry(
        marker,
        ["/bin/sh", "-c", f"test -e {pidfile} || exec sleep 60"],
        str(tmp_path),
        str(tmp_path / "o.log"),
        stale=[str(pidfile)],
    )
    (folder / be.RUN).write_text(be.run_script(entry, str(folder)))
    try:
        subprocess.run(["/bin/sh", str(folder / be.RUN)], check=True, timeout=20)
        assert len(_wait_marked(marker, 1)) == 1 and not pidfile.exists()
    finally:
        for pid in _marked(marker):
            os.kill(pid, signal.SIGKILL)


def test_copies_of_two_files_of_one_name_do_not_collide_and_texts_stay_out_of_repr():
    assert be.copy_name("/a/haproxy.cfg") != be.copy_name("/b/haproxy.cfg")
    entry = be.BootEntry("m", ["/bin/true"], "/", "/l", files={"/a/haproxy.cfg": "Bearer s3cret"})
    assert "s3cret" not in repr(entry)


def test_an_entry_whose_marker_cannot_be_read_is_started_without_the_check():
    entry = be.BootEntry(
        "cloud-c/store@h", ["/usr/bin/valkey-server", "/d/store.conf"], "/d", "/d/o.log", marker_readable=False
    )
    script = be.run_script(entry, "/b/x")
    assert "/proc/" not in script and "valkey-server /d/store.conf" in script


def test_boot_sh_runs_every_entry_of_its_host_only_even_after_one_fails(tmp_path: Path):
    boot_dir = tmp_path / "boot"
    mine, other = Path(be.host_folder(str(boot_dir), "10.0.0.5")), Path(be.host_folder(str(boot_dir), "10.0.0.6"))
    for name, body in (("a", "exit 1\n"), ("b", f"echo b >> {tmp_path}/ran\n")):
        (mine / name).mkdir(parents=True)
        (mine / name / be.RUN).write_text(body)
    (other / "c").mkdir(parents=True)
    (other / "c" / be.RUN).write_text(f"echo c >> {tmp_path}/ran\n")
    (mine / be.ALL).write_text(be.boot_script(str(boot_dir), "10.0.0.5"))
    done = subprocess.run(["/bin/sh", str(mine / be.ALL)], timeout=20)
    assert done.returncode == 0
    assert (tmp_path / "ran").read_text() == "b\n"  # a failed entry does not stop the next; not another host's


def test_a_host_with_no_entry_boots_without_an_error(tmp_path: Path):
    script = tmp_path / be.ALL
    script.write_text(be.boot_script(str(tmp_path / "none"), "10.0.0.5"))
    assert subprocess.run(["/bin/sh", str(script)], timeout=20).returncode == 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is missing (make system-test)")
def test_the_boot_unit_verifies_and_runs_before_ssh(tmp_path: Path):
    unit = be.unit("/var/lib/headway/boot", "10.0.0.5")
    text = render(unit)
    assert unit.name == "headway-boot-10-0-0-5.service"
    assert "Type=oneshot" in text and "RemainAfterExit=yes" in text and "Restart=" not in text
    assert "Before=ssh.service" in text and "KillMode=process" in text  # its processes outlive it
    assert "ExecStart=/bin/sh /var/lib/headway/boot/10.0.0.5/boot.sh" in text
    path = tmp_path / unit.name
    path.write_text(text)
    checked = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
