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
    monkeypatch.setattr(serve, "get_applications", lambda head: next(seen))
    monkeypatch.setattr(serve.time, "sleep", lambda s: None)
    assert serve.wait_running(None, ["a"], 10, partial_ok=True) == {"a": "DEPLOYING"}
    monkeypatch.setattr(serve, "get_applications", lambda head: app("DEPLOYING", 1))
    with pytest.raises(serve.ServeError):
        serve.wait_running(None, ["a"], 0.01)  # without partial_ok: RUNNING or the timeout
