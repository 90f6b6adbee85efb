"""The REST API's contract without Ray: every route refuses a missing or wrong token,
answers 404 for an unknown service and 422 for bad input. (A real service behind the
API is exercised in tests/integration/test_control_plane.py.)"""

import pytest
from fastapi.testclient import TestClient

from headway.api import app as api
from headway.state import db, records
from headway.state.records import NodeRecord, ServiceRecord

ROUTES = [
    ("GET", "/api/services"),
    ("GET", "/api/services/nope"),
    ("PUT", "/api/services/nope"),
    ("DELETE", "/api/services/nope"),
    ("POST", "/api/services/nope/scale"),
    ("GET", "/api/services/nope/events"),
    ("GET", "/api/services/nope/nodes"),
    ("GET", "/api/services/nope/token"),
    ("GET", "/api/storage"),
    ("POST", "/api/services/nope/chaos/kill-head"),
    ("POST", "/api/services/nope/chaos/kill-worker"),
    ("GET", "/api/operations/nope"),
    ("GET", "/api/services/nope/versions"),
    ("GET", "/api/services/nope/logs"),
    ("GET", "/api/services/nope/logs/follow"),
    ("POST", "/api/services/nope/token/rotate"),
    ("POST", "/api/services/nope/validate"),
    ("DELETE", "/api/storage/namespaces/nope"),
    ("POST", "/api/services/nope/rollback"),
    ("GET", "/api/services/nope/rollout"),
    ("POST", "/api/services/nope/rollout/promote"),
    ("POST", "/api/services/nope/rollout/rollback"),
    ("GET", "/api/services/nope/series"),
    ("GET", "/metrics"),
    ("GET", "/metrics/ray"),
]


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    monkeypatch.setenv("HEADWAY_AUTO_CLOUD", "0")
    token = db.api_token()
    c = TestClient(api.create_app())
    c.headers["Authorization"] = f"Bearer {token}"
    return c


def test_every_route_is_in_the_openapi_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    for method, path in ROUTES:
        template = path.replace("/namespaces/nope", "/namespaces/{namespace}").replace("nope", "{name}")
        template = template.replace("/operations/{name}", "/operations/{op_id}")
        assert method.lower() in paths[template], (method, template)


@pytest.mark.parametrize("method,path", ROUTES)
def test_every_route_needs_the_token(client, method, path):
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        r = client.request(method, path, headers=headers, json={})
        assert r.status_code == 401, (method, path, headers, r.text)
        assert "token" in r.json()["detail"]


# PUT creates, and validate checks a service that may not exist yet
NAMED = [r for r in ROUTES if "/services/nope" in r[1] and r[0] != "PUT" and not r[1].endswith("/validate")]


@pytest.mark.parametrize("method,path", NAMED)
def test_unknown_service_is_404_with_a_hint(client, method, path):
    body = {"group": "w", "count": 1} if path.endswith("/scale") else None
    r = client.request(method, path, json=body)
    assert r.status_code == 404, r.text
    assert "no service named nope" in r.json()["detail"]


def test_unknown_operation_is_404(client):
    assert client.get("/api/operations/feedbeef").status_code == 404


def test_invalid_yaml_is_422_and_names_the_line(client):
    r = client.put("/api/services/s", json={"yaml": "name: s\napplications: [\n"})
    assert r.status_code == 422
    assert "not valid YAML at line" in r.json()["detail"]


def test_invalid_spec_is_422_with_the_field_path(client):
    r = client.put("/api/services/s", json={"yaml": "name: s\napplications:\n  - import_path: m:a\n    colour: red\n"})
    assert r.status_code == 422
    assert "colour" in r.json()["detail"]


def test_spec_name_must_match_the_url(client):
    yaml = "name: s\napplications:\n  - import_path: m:a\nray_gcs_external_storage_config: {enable: false}\n"
    r = client.put("/api/services/other", json={"yaml": yaml})
    assert r.status_code == 422
    assert "make them agree" in r.json()["detail"]


def test_deploy_needs_a_body(client):
    assert client.put("/api/services/s", json={}).status_code == 422


def test_validate_token_rotation_and_cleanup_say_what_is_wrong(client):
    r = client.post("/api/services/s/validate", json={"yaml": "name: s\napplications: [\n"})
    assert r.status_code == 422 and "not valid YAML at line" in r.json()["detail"]
    r = client.post("/api/services/nope/token/rotate", json={"grace_s": -1})
    assert r.status_code == 422, r.text
    r = client.delete("/api/storage/namespaces/hw-x")
    assert r.status_code == 422 and "no cloud is set up" in r.json()["detail"]


def test_scale_validates_its_input(client, tmp_path):
    rec = ServiceRecord(
        name="s",
        cluster_id="c",
        mode="netns",
        head_ip="10.0.0.2",
        gcs_port=1,
        dashboard_port=2,
        serve_port=3,
        spec={
            "name": "s",
            "applications": [{"import_path": "m:a"}],
            "compute_config": {"worker_nodes": [{"name": "w", "count": 1}]},
        },
    )
    records.save(rec)
    r = client.post("/api/services/s/scale", json={"group": "x", "count": 2})
    assert r.status_code == 422 and "no worker group 'x'" in r.json()["detail"]
    assert client.post("/api/services/s/scale", json={"group": "w", "count": -1}).status_code == 422
    r = client.post("/api/services/s/chaos/kill-worker", params={"node": "w-9"})
    assert r.status_code == 404 and "no worker w-9" in r.json()["detail"]
    rec.nodes.append(NodeRecord(name="w-1", role="worker", ip="10.0.0.3", temp_dir="/t", log="/l", marker="m"))
    records.save(rec)
    listed = client.get("/api/services").json()
    assert listed == [
        {
            "name": "s",
            "state": "STARTING",
            "reason": "",
            "nodes": 1,
            "gcs_ft": True,
            "endpoint": None,
            "desired_version": None,
            "running_version": None,
            "rollout": None,
        }
    ]


def test_health_docs_and_dashboard_need_no_token(client):
    client.headers.pop("Authorization")
    assert client.get("/api/health").json()["ok"] is True
    docs = client.get("/docs").text
    assert "/static/swagger/swagger-ui-bundle.js" in docs  # local assets: no CDN
    assert client.get("/static/swagger/swagger-ui-bundle.js").status_code == 200
    page = client.get("/").text
    assert "headway" in page and "/api/services" in page  # the page holds no data itself


def test_storage_without_a_cloud(client):
    body = client.get("/api/storage").json()
    assert body["cloud"] is None and body["services"] == {}


def test_rollout_routes_without_a_rollout_and_deploy_overrides(client):
    rec = ServiceRecord(
        name="s",
        cluster_id="c",
        mode="netns",
        head_ip="10.0.0.2",
        gcs_port=1,
        dashboard_port=2,
        serve_port=3,
        spec={"name": "s", "applications": [{"import_path": "m:a"}]},
    )
    records.save(rec)
    assert client.get("/api/services/s/rollout").json() == {"name": "s", "rollout": None, "last": None}
    for path in ("/api/services/s/rollout/promote", "/api/services/s/rollout/rollback"):
        r = client.post(path)
        assert r.status_code == 422 and "has no rollout in progress" in r.json()["detail"], r.text
    # A rollout's own cluster is not a service one can address.
    records.save(rec.model_copy(update={"name": "s_r2", "parent": "s"}))
    assert client.get("/api/services/s_r2/rollout").status_code == 404
    assert [s["name"] for s in client.get("/api/services").json()] == ["s"]
    yaml = "name: s\napplications:\n  - import_path: m:a\n"
    for bad in ({"strategy": "blue-green"}, {"canary_percent": 100}, {"max_surge_percent": 0}):
        r = client.put("/api/services/s", json={"yaml": yaml} | bad)
        assert r.status_code == 422, (bad, r.text)
