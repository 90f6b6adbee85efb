"""What headway writes on an SSH host, run here by a real shell as the host would: every
folder checked before use (a link, a folder of another user or one others may write is
refused; a missing one is made at its mode), a secret file new and 0600 from its start."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from headway.hosts import remote


def _sh(script: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], input=stdin, capture_output=True, timeout=10)


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_missing_folders_are_made_at_their_modes_and_the_root_kept_at_its_own(tmp_path):
    root, leaf = tmp_path / "hw0", tmp_path / "hw0" / "vip-10.0.0.4"
    assert _sh(remote.dirs_script(str(leaf), str(root))).returncode == 0
    assert (_mode(root), _mode(leaf)) == (0o711, 0o700)
    os.chmod(root, 0o755)
    os.chmod(leaf, 0o750)  # a package folder, readable by its service's group: kept
    assert _sh(remote.dirs_script(str(leaf), str(root))).returncode == 0
    assert (_mode(root), _mode(leaf)) == (0o711, 0o750)


@pytest.mark.parametrize("kind", ["link", "file", "writable", "theirs"])
def test_a_planted_folder_is_refused_and_nothing_written(tmp_path, kind):
    root = tmp_path / "hw0"
    root.mkdir(mode=0o711)
    planted = root / "vip-10.0.0.4"
    if kind == "link":
        (tmp_path / "elsewhere").mkdir()
        planted.symlink_to(tmp_path / "elsewhere")
    elif kind == "file":
        planted.write_text("x")
    elif kind == "writable":
        planted.mkdir()
        os.chmod(planted, 0o777)
    else:
        if os.geteuid() != 0:
            pytest.skip("giving a folder to another user needs root")
        planted.mkdir(mode=0o700)
        os.chown(planted, 65534, 65534)
    done = _sh(remote.dirs_script(str(planted / "keepalived.conf.d"), str(root)))
    assert done.returncode == 3, done
    why = done.stderr.decode()
    assert str(planted) in why and any(w in why for w in ("link", "uid 65534", "written by other users"))
    assert not (planted / "keepalived.conf.d").exists()


def test_a_folder_outside_its_root_is_a_programming_error():
    with pytest.raises(ValueError, match="is not under"):
        remote.dirs_script("/etc/x", "/tmp/hw0")


def test_a_secret_file_is_new_and_0600_from_its_start_and_never_written_through_a_link(tmp_path):
    target = tmp_path / "keepalived.conf"
    done = _sh(remote.private_file_script(str(target)), b"Zq9-content\n")
    assert done.returncode == 0, done
    assert target.read_bytes() == b"Zq9-content\n" and _mode(target) == 0o600
    # A link planted where the part file goes is replaced, never followed.
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (tmp_path / "keepalived.conf.part").symlink_to(victim)
    assert _sh(remote.private_file_script(str(target)), b"again\n").returncode == 0
    assert victim.read_text() == "untouched" and target.read_bytes() == b"again\n"
    # The content never reaches the command line.
    assert "Zq9-content" not in remote.private_file_script(str(target))
