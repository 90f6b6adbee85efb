"""Where a service's nodes read its packages, whichever controller starts them."""

from pathlib import Path

from service_records import record

from headway.cluster.local_provider import LocalProvider
from headway.cluster.package import package_home
from headway.control import node_start
from headway.state.records import NodeRecord


def _uri_of_first_controller(tmp_path: Path, content: bytes | None) -> str:
    """A package the first controller (another state folder) deployed, there or gone."""
    first = tmp_path / "first-home" / "services" / "s" / "pkg" / "working_dir-0123456789ab.zip"
    if content is not None:
        first.parent.mkdir(parents=True)
        first.write_bytes(content)
    return f"file://{first}"


def test_a_standby_ships_its_own_copy_of_a_package_to_where_the_nodes_read_it(tmp_path, monkeypatch):
    """Serve's config names the package under the first controller's state folder; a
    standby that took over has the same file (by name: its content's hash) under its own,
    restored from the store. A worker it starts must find the package at the first path:
    it once did not, and the replica that worker should have held never started."""
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path / "standby-home"))
    rec = record("RUNNING")
    rec.working_dir_uri = _uri_of_first_controller(tmp_path, None)  # another machine's
    own = tmp_path / "standby-home" / "services" / "s" / "pkg" / "working_dir-0123456789ab.zip"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"zip")
    read_at = rec.working_dir_uri[7:]
    assert node_start.packages(rec) == [(str(own), read_at)]
    assert package_home(read_at) == str(tmp_path / "first-home")
    node = NodeRecord(name="worker-1", role="worker", ip="10.0.0.3", temp_dir=str(tmp_path / "n"), log="l", marker="m")
    LocalProvider("loopback").distribute(str(own), node, None, read_at)
    assert Path(read_at).read_bytes() == b"zip"


def test_the_path_itself_when_this_controller_deployed_it_and_nothing_when_no_copy_exists(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path / "home"))
    rec = record("RUNNING")
    rec.working_dir_uri = _uri_of_first_controller(tmp_path, b"zip")
    assert node_start.packages(rec) == [(rec.working_dir_uri[7:], rec.working_dir_uri[7:])]
    rec.working_dir_uri = "gs://bucket/pkg.zip"  # Ray fetches it itself
    assert node_start.packages(rec) == []
    rec.working_dir_uri = _uri_of_first_controller(tmp_path / "elsewhere", None)
    assert node_start.packages(rec) == []  # nothing to ship: the start says so, not this
