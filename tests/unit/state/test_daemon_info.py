"""Where the control plane is: a standby says so as soon as it waits for the lease (before,
'controller start' waited for a PID file only a leader wrote, and timed out)."""

import json
import subprocess
import sys

from headway.state import daemon_info


def test_a_controller_announces_its_api_and_role_and_withdraws(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    assert daemon_info.running_pid() is None and daemon_info.role() is None
    daemon_info.announce("https://10.0.0.3:8100", "standby")
    assert daemon_info.running_pid() is not None
    assert daemon_info.role() == "standby" and daemon_info.api_url() == "https://10.0.0.3:8100"
    daemon_info.announce("https://10.0.0.3:8100", "leader")  # it took the lease over
    assert daemon_info.role() == "leader"
    daemon_info.withdraw()
    assert daemon_info.running_pid() is None and daemon_info.api_url() is None


def test_a_file_left_by_a_process_that_ended_names_no_controller(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    code = "from headway.state import daemon_info; daemon_info.announce('http://127.0.0.1:1', 'standby')"
    subprocess.run([sys.executable, "-c", code], check=True, env={"HEADWAY_HOME": str(tmp_path)})
    assert json.loads((tmp_path / "controller.json").read_text())["role"] == "standby"
    assert daemon_info.running_pid() is None and daemon_info.role() is None and daemon_info.api_url() is None


def test_a_file_of_an_older_headway_without_a_role_is_a_leader(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    daemon_info.announce("http://127.0.0.1:1", "leader")
    info = json.loads((tmp_path / "controller.json").read_text())
    del info["role"]
    (tmp_path / "controller.json").write_text(json.dumps(info))
    assert daemon_info.role() == "leader"
