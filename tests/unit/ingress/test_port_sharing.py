"""Who may have an endpoint's port, decided from the records before anything starts:
services share a port only by name, all with TLS or none, on one address; a name has one
service; a port held without names is nobody else's."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from headway.ingress import endpoint
from headway.model.spec import ServiceSpec
from headway.state import records
from headway.state.records import IngressRecord, ServiceRecord

PORT = 18443


def _spec(name: str, **block) -> ServiceSpec:
    return ServiceSpec.model_validate(
        {"name": name, "applications": [{"import_path": "m:a"}], "endpoint": {"port": PORT} | block}
    )


def _running(name: str, hostnames: list[str], tls: bool = True, bind: str = "127.0.0.1") -> None:
    """A service whose endpoint has the port (a record only: nothing runs)."""
    spec = _spec(name).model_dump(mode="json")
    ids = {"name": name, "cluster_id": f"c{name}", "mode": "local", "state": "RUNNING", "gcs_ft": False}
    rec = ServiceRecord(**ids, spec=spec, head_ip="127.0.0.1", gcs_port=1, dashboard_port=1, serve_port=1)
    rec.ingress = IngressRecord(bind=bind, port=PORT, config="c", socket="s", log="l", tls=tls, hostnames=hostnames)
    records.save(rec)


TLS = {"tls": {"cert": "c.pem", "key": "k.pem"}}


@pytest.mark.parametrize(
    "held,asked,said",
    [
        ([], {"hostnames": ["api.example"]} | TLS, f"endpoint.port {PORT} is the endpoint of service shop; pick"),
        (["shop.example"], TLS, f"endpoint.port {PORT} is the endpoint of service shop; pick another port, or give"),
        (["shop.example"], {"hostnames": ["shop.example"]} | TLS, "endpoint.hostnames: shop.example is served by"),
        (["shop.example"], {"hostnames": ["api.example"]}, f"endpoint.port {PORT} serves HTTPS for service shop"),
        (["shop.example"], {"hostnames": ["api.example"], "bind": "0.0.0.0"} | TLS, "give endpoint.bind: 127.0.0.1"),
        (["shop.example"], {"hostnames": ["api.example"]} | TLS, None),
    ],
    ids=["held without names", "asked without names", "a name taken", "tls on one side", "another address", "ok"],
)
def test_a_port_is_shared_only_by_name(tmp_path, monkeypatch, held, asked, said):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    _running("shop", held)
    problem = endpoint.listen_problem(None, _spec("api", **asked))
    assert problem == said if said is None else said in (problem or ""), problem


def test_its_own_port_is_no_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    _running("shop", ["shop.example"])
    assert endpoint.listen_problem(None, _spec("shop", hostnames=["shop.example", "www.shop.example"], **TLS)) is None


def test_on_ingress_hosts_a_port_is_shared_by_name_on_the_moving_address(tmp_path, monkeypatch):
    """Every endpoint there listens on the moving address, whatever ``endpoint.bind`` says:
    two services share a port by name without naming it; the rules are the same."""
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    _running("shop", ["shop.example"], bind="10.0.0.100")
    with_ingress_hosts = SimpleNamespace(ssh=SimpleNamespace(ingress=SimpleNamespace(address="10.0.0.100")))
    assert endpoint.listen_problem(with_ingress_hosts, _spec("api", hostnames=["api.example"], **TLS)) is None
    assert "shop.example is served by service shop" in (
        endpoint.listen_problem(with_ingress_hosts, _spec("api", hostnames=["shop.example"], **TLS)) or ""
    )
    assert "is the endpoint of service shop" in (endpoint.listen_problem(with_ingress_hosts, _spec("api")) or "")
