"""A shared port's door, as text: each service's names lead to its endpoint and nowhere
else, a name nobody claims is not served, and the config is valid HAProxy."""

from __future__ import annotations

import subprocess

import pytest

from headway.plan import haproxy_door as hd
from headway.system import binaries

ROOMS = (
    hd.Room("shop", ("shop.example", "www.shop.example"), "abns@hw-aaaa"),
    hd.Room("api", ("api.example",), "abns@hw-bbbb"),
)


def _door(tls: bool, tmp_path) -> str:
    return hd.render(hd.DoorSettings("0.0.0.0", 8443, tls, str(tmp_path / "door.sock"), ROOMS, unprivileged=True))


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_each_name_leads_to_its_service_and_the_config_is_valid(tls, tmp_path):
    text = _door(tls, tmp_path)
    name = "req.ssl_sni,lower" if tls else "var(txn.host)"
    assert f"use_backend to_shop if {{ {name} -m str shop.example www.shop.example }}" in text
    assert f"use_backend to_api if {{ {name} -m str api.example }}" in text
    assert "default_backend" not in text  # a name nobody claims goes nowhere
    assert text.count("send-proxy-v2") == 2 and "server endpoint abns@hw-bbbb send-proxy-v2" in text
    assert ("mode tcp" in text) is tls and ("req.ssl_hello_type 1" in text) is tls
    (tmp_path / "d.cfg").write_text(text)
    proc = subprocess.run([binaries.haproxy(), "-c", "-f", str(tmp_path / "d.cfg")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_plain_door_answers_421_for_a_name_nobody_claims(tmp_path):
    text = _door(False, tmp_path)
    assert "deny_status 421 unless { var(txn.host) -m str shop.example www.shop.example api.example }" in text


def test_a_door_on_an_ingress_host_binds_the_moving_address_it_may_not_hold(tmp_path):
    settings = hd.DoorSettings("10.213.250.100", 8443, True, str(tmp_path / "s"), ROOMS, freebind=True)
    text = hd.render(settings)
    assert "    bind 10.213.250.100:8443 transparent\n" in text
    assert " transparent" not in _door(True, tmp_path)
    (tmp_path / "d.cfg").write_text(text)
    proc = subprocess.run([binaries.haproxy(), "-c", "-f", str(tmp_path / "d.cfg")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
