"""Who a service's nodes run as and what their sandbox covers: pure decisions, and the
host's ability to make the namespaces, asked for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from headway.system import node_supervisor, node_user


def test_a_service_keeps_its_uid_and_a_new_one_takes_the_lowest_free():
    base = node_user.UID_BASE
    taken = [("a", base), ("b", base + 2), ("a_r3", None)]
    assert node_user.allocate("a", taken) == base  # a redeploy, or a rollout's cluster of service a
    assert node_user.allocate("c", taken) == base + 1
    assert node_user.allocate("c", [*taken, ("d", base + 1)]) == base + 3


def test_a_node_gets_a_home_and_temp_dir_of_its_own_and_a_name():
    box = node_user.Sandbox(2_000_007, 2_000_007)
    assert box.env("/tmp/hw0/abc") == {"HOME": "/tmp/hw0/abc", "TMPDIR": "/tmp/hw0/abc", "USER": "hw2000007",
                                       "LOGNAME": "hw2000007"}  # fmt: skip


@pytest.fixture
def open_tmp():
    """A folder under /tmp that anyone may pass (pytest's own lies under a 0700 one)."""
    d = Path(tempfile.mkdtemp(prefix="hwt-cover-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_the_cover_hides_the_state_dir_and_each_closed_folder_on_the_way_to_what_is_exposed(open_tmp):
    tmp_path = open_tmp
    closed, open_ = tmp_path / "root", tmp_path / "opt"
    (closed / ".pyenv" / "versions").mkdir(parents=True)
    (open_ / "venv").mkdir(parents=True)
    (tmp_path / "state").mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(closed, 0o700)
    os.chmod(open_, 0o755)
    exposed = [str(closed / ".pyenv" / "versions"), str(open_ / "venv")]
    assert node_supervisor.closed_ancestor(exposed[0]) == str(closed)
    assert node_supervisor.closed_ancestor(exposed[1]) is None
    covers = node_supervisor.covers([str(tmp_path / "state"), str(closed / ".pyenv")], exposed)
    assert covers == [str(closed), str(tmp_path / "state")]  # /root/.pyenv lies inside /root: one cover


def test_the_probe_failure_says_what_the_host_lacks():
    assert node_user.probe_problem(0, "", "host h") is None
    why = node_user.probe_problem(1, "unshare: unshare failed: Operation not permitted\n", "host 10.0.0.4")
    assert "host 10.0.0.4: cannot give a node its own PID and mount namespaces" in why
    assert "Operation not permitted" in why


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")
def test_this_machine_can_box_nodes_in():
    assert subprocess.run(node_user.PROBE, capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_a_node_runs_a_python_whose_venv_lies_under_a_closed_folder_and_sees_nothing_else_there(open_tmp):
    """As when headway is installed in a folder only root may enter (a clone under a 0700
    temp dir, pyenv under /root): the sandbox binds the venv back, and hides the rest."""
    closed = open_tmp / "closed"
    closed.mkdir(mode=0o700)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(closed / "venv")], check=True)
    (closed / "secret").write_text("not for nodes")
    python = str(closed / "venv" / "bin" / "python")
    box = {"uid": 2_000_099, "gid": 2_000_099, "hide": [], "expose": []}
    probe = f"import os, sys; print(os.getuid(), sys.prefix); print(os.path.exists({str(closed / 'secret')!r}))"
    cmd = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
    cmd += node_supervisor.supervised(python, [python, "-c", probe], box)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd="/")
    assert done.returncode == 0, done
    uid, prefix = done.stdout.splitlines()[0].split()
    assert (int(uid), prefix) == (2_000_099, str(closed / "venv"))
    assert done.stdout.splitlines()[1] == "False", "the closed folder's other files were visible"
