"""Network namespaces' pure parts: route conflicts, the subnet's addresses, veth names."""

import ipaddress

from headway.system import netns

ROUTES = """default via 192.0.2.1 dev eth0
192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2
10.213.0.0/24 dev hwbr0 proto kernel scope link src 10.213.0.1
"""


def test_route_conflict_detected():
    sub = netns.Subnet(ipaddress.IPv4Network("192.0.2.0/25"))
    assert "192.0.2.0/24" in netns.route_conflict(sub, ROUTES)


def test_own_bridge_is_no_conflict():
    assert netns.route_conflict(netns.Subnet.configured(), ROUTES) is None


def test_subnet_addresses(monkeypatch):
    monkeypatch.setenv("HEADWAY_SUBNET", "10.9.9.0/29")
    s = netns.Subnet.configured()
    assert s.bridge_ip == "10.9.9.1"
    assert s.host_ips() == ["10.9.9.2", "10.9.9.3", "10.9.9.4", "10.9.9.5", "10.9.9.6"]


def test_veth_names_fit_the_kernel_limit():
    assert len(netns._veth_name("hw-" + "a" * 40 + ".worker-12")) <= 15


def test_a_missing_ip_tool_names_the_package(monkeypatch):
    import pytest

    from headway.system import netns

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(netns.NetnsError, match="apt-get install iproute2"):
        netns._ip("link", "show")
    assert not netns.available()
