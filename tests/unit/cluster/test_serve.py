"""What Serve is given (the config) and how a deploy waits for it (RUNNING, or a rollout's
partial start)."""

import pytest

from headway.cluster import serve
from headway.model.spec_load import parse_spec


def test_serve_config():
    spec = parse_spec(
        {
            "name": "s",
            "env_vars": {"A": "1"},
            "http_options": {"request_timeout_s": 7},
            "applications": [
                {"name": "a", "import_path": "m:a", "args": {"x": 1}},
                {
                    "name": "b",
                    "import_path": "m:b",
                    "route_prefix": "/b",
                    "runtime_env": {"working_dir": "file:///other.zip"},
                },
            ],
        }
    )
    cfg = serve.serve_config(spec, "file:///wd.zip", 8000)
    assert cfg["proxy_location"] == "EveryNode"
    assert cfg["http_options"] == {"host": "0.0.0.0", "port": 8000, "request_timeout_s": 7}
    a, b = cfg["applications"]
    assert a["runtime_env"] == {"working_dir": "file:///wd.zip", "env_vars": {"A": "1"}}
    assert a["args"] == {"x": 1}
    assert b["runtime_env"]["working_dir"] == "file:///other.zip"


def test_wait_running_partial_needs_a_replica_of_every_deployment(monkeypatch):
    """A rollout's new cluster may start smaller than its version: DEPLOYING is enough once
    every deployment runs a replica — not while Serve has listed none yet."""

    def app(status: str, running: int, listed: bool = True) -> dict:
        deps = {"D": {"replicas": [{"state": "RUNNING", "node_id": "n1"}] * running, "target_num_replicas": 2}}
        return {"applications": {"a": {"status": status, "deployments": deps if listed else {}}}}

    seen = iter([app("DEPLOYING", 0, listed=False), app("DEPLOYING", 0), app("DEPLOYING", 1)])
    monkeypatch.setattr(serve, "get_applications", lambda head, within_s: next(seen))
    monkeypatch.setattr(serve.time, "sleep", lambda s: None)
    assert serve.wait_running(None, ["a"], 10, partial_ok=True) == {"a": "DEPLOYING"}
    monkeypatch.setattr(serve, "get_applications", lambda head, within_s: app("DEPLOYING", 1))
    with pytest.raises(serve.ServeError):
        serve.wait_running(None, ["a"], 0.01)  # without partial_ok: RUNNING or the timeout


class _Clock:
    """time.monotonic and time.sleep on a clock the test moves (each sleep moves it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def _deploying(running: int, target: int = 24) -> dict:
    deps = {"D": {"replicas": [{"state": "RUNNING", "node_id": "n"}] * running, "target_num_replicas": target}}
    return {"applications": {"a": {"status": "RUNNING" if running == target else "DEPLOYING", "deployments": deps}}}


def test_a_large_service_that_keeps_starting_replicas_is_waited_for_past_the_timeout(monkeypatch):
    """24 replicas, one every 20 s (8 minutes in all), against a 60 s timeout: each replica
    started is progress, so the deploy ends RUNNING; one that stops starting them fails."""
    clock = _Clock()
    monkeypatch.setattr(serve, "time", clock)
    monkeypatch.setattr(serve, "get_applications", lambda head, within_s: _deploying(min(24, int(clock.now // 20))))
    assert serve.wait_running(None, ["a"], 60) == {"a": "RUNNING"}
    assert clock.now >= 24 * 20
    clock.now = 0.0
    monkeypatch.setattr(serve, "get_applications", lambda head, within_s: _deploying(min(5, int(clock.now // 20))))
    with pytest.raises(serve.ServeError, match=r"no replica started, in the last 60 s.*\(5 replica\(s\) running\)"):
        serve.wait_running(None, ["a"], 60)
    assert 100 + 60 <= clock.now < 100 + 61  # the fifth replica at 100 s, then a minute of nothing


def test_a_dashboard_that_stops_answering_is_named_and_not_shown_as_no_applications(monkeypatch):
    clock, shown = _Clock(), []
    monkeypatch.setattr(serve, "time", clock)
    monkeypatch.setattr(serve, "get_applications", lambda head, within_s: _deploying(1) if clock.now < 10 else None)
    with pytest.raises(serve.ServeError, match="dashboard has not answered for 50 s"):
        serve.wait_running(None, ["a"], 60, on_progress=lambda *seen: shown.append(seen))
    assert shown == [({"a": "DEPLOYING"}, 1, 24)]  # never an empty list of applications


def test_each_replica_started_is_said_once():
    """A large deploy says how far it got: each status change and each replica more, once."""
    clock, shown = _Clock(), []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(serve, "time", clock)
        mp.setattr(serve, "get_applications", lambda head, within_s: _deploying(min(3, int(clock.now // 2)), 3))
        assert serve.wait_running(None, ["a"], 60, on_progress=lambda *seen: shown.append(seen)) == {"a": "RUNNING"}
    assert shown == [({"a": "DEPLOYING"}, n, 3) for n in range(3)] + [({"a": "RUNNING"}, 3, 3)]


def test_grpc_options_reach_serve_with_headways_port_and_a_proxy_can_import_the_servicers(tmp_path):
    from headway.control.node_start import proxy_env
    from headway.state.records import ServiceRecord

    base = {"name": "g", "applications": [{"name": "a", "import_path": "m:a"}]}
    grpc = {"port": 7000, "grpc_servicer_functions": ["protos.add_GreeterServicer_to_server"], "request_timeout_s": 5}
    spec = parse_spec(base | {"grpc_options": grpc})
    cfg = serve.serve_config(spec, "file:///wd.zip", 8000, None, 9100)
    assert cfg["grpc_options"] == {
        "port": 9100,  # headway's, not the file's 7000
        "grpc_servicer_functions": ["protos.add_GreeterServicer_to_server"],
        "enable_reflection": True,
        "request_timeout_s": 5,
    }
    assert "grpc_options" not in serve.serve_config(parse_spec(base), None, 8000)  # no servicers, no gRPC

    pkg = tmp_path / "working_dir-abc.zip"
    pkg.write_bytes(b"PK")
    ids = {"name": "g", "cluster_id": "cg", "mode": "local", "state": "RUNNING", "gcs_ft": False}
    rec = ServiceRecord(**ids, spec=spec, head_ip="1", gcs_port=1, dashboard_port=1, serve_port=1)
    rec.working_dir_uri = f"file://{pkg}"
    assert proxy_env(rec, spec) == {"PYTHONPATH": f"{pkg}/working_dir"}  # the zip, read in place
    assert proxy_env(rec, parse_spec(base)) == {}


@pytest.mark.parametrize("bad", ["add_servicer", "m.add; import os", "m..add", ".m.add"])
def test_a_servicer_function_must_be_an_import_path(bad):
    from headway.model.spec_base import SpecError

    with pytest.raises(SpecError, match="is not an import path of a function"):
        parse_spec(
            {"name": "g", "applications": [{"import_path": "m:a"}], "grpc_options": {"grpc_servicer_functions": [bad]}}
        )
