"""Two controllers and one lease, on a real store (no Ray): one acts at a time, a new one
takes over when the lease runs out, and the old one — woken after it — is fenced: its
renewal and its state writes are refused."""

from __future__ import annotations

import base64
import time
from types import SimpleNamespace

import pytest
import redis

from headway.control import leader
from headway.state import state_snapshot
from headway.store import cloud, storage


def test_the_lease_fences_an_old_leader_that_wakes_up(store_server, monkeypatch, tmp_path):
    port, password = store_server
    addr = storage.StoreAddress(host="127.0.0.1", port=port, password=password)
    crec = SimpleNamespace(id="ab12cd34")
    monkeypatch.setattr(cloud, "store_address", lambda _rec: addr)
    monkeypatch.setattr(cloud, "load", lambda: None)
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    for home, text in ((home_a, "leader a"), (home_b, ""), (tmp_path / "check", "")):
        (home / "services").mkdir(parents=True)
        (home / "services" / "note").write_text(text)
        (home / "cloud").mkdir()
        (home / "cloud" / "snapshot.key").write_text("s" * 64)  # copied with the cloud folder
    (home_a / "services" / "svc" / "pkg").mkdir(parents=True)
    (home_a / "services" / "svc" / "pkg" / "working_dir-abc.zip").write_bytes(b"z" * 300_000)

    a, b = leader.Lease(crec, lease_s=0.5), leader.Lease(crec, lease_s=0.5)
    assert a.acquire() and a.epoch == 1
    assert not b.acquire()  # one holder at a time
    assert a.renew() == "act" and a.put_state(home_a) is True
    assert a.put_state(home_a) is None  # unchanged: not written again
    size = state_snapshot.size(home_a)
    assert size is not None and size["bytes"] < 10_000 and size["package_bytes"] == 300_000

    time.sleep(0.7)  # a "sleeps" past its lease (a paused process, a partitioned host)
    assert b.acquire() and b.epoch == 2  # the fencing token moves on
    assert b.restore_state(home_b) and (home_b / "services" / "note").read_text() == "leader a"
    # The package came on its own key, once.
    assert (home_b / "services" / "svc" / "pkg" / "working_dir-abc.zip").read_bytes() == b"z" * 300_000
    (home_b / "services" / "note").write_text("leader b")
    assert b.put_state(home_b) is True

    # a wakes up: its renewal says stop, and its write of the state is refused.
    (home_a / "services" / "note").write_text("stale")
    assert a.renew() == "stop"
    assert a.put_state(home_a) is False
    raw = redis.Redis(port=port, password=password).get("headway:ab12cd34:state")
    state_snapshot.restore(base64.b64decode(raw), tmp_path / "check")
    assert (tmp_path / "check" / "services" / "note").read_text() == "leader b"

    # Whoever can write the store (its admin password) cannot hand a standby a state of
    # their own: without the controllers' key, the standby refuses it and unpacks nothing.
    (tmp_path / "evil" / "services").mkdir(parents=True)
    (tmp_path / "evil" / "services" / "note").write_text("forged")
    (tmp_path / "evil" / "cloud").mkdir()
    (tmp_path / "evil" / "cloud" / "snapshot.key").write_text("x" * 64)
    good = redis.Redis(port=port, password=password).get("headway:ab12cd34:state")
    forged = base64.b64encode(state_snapshot.build(tmp_path / "evil"))
    redis.Redis(port=port, password=password).set("headway:ab12cd34:state", forged)
    with pytest.raises(state_snapshot.SnapshotRefused):
        leader.Lease(crec, lease_s=0.5).restore_state(tmp_path / "check")
    assert (tmp_path / "check" / "services" / "note").read_text() == "leader b"
    redis.Redis(port=port, password=password).set("headway:ab12cd34:state", good)

    # The store lost the key (a failover that outlasted the lease): the holder reclaims it,
    # since no one acquired it since; one that was fenced cannot.
    redis.Redis(port=port, password=password).delete("headway:ab12cd34:leader")
    assert a.renew() == "stop"
    assert b.renew() == "act" and not leader.Lease(crec).acquire()

    # A clean stop hands over at once; a release by the fenced one changes nothing.
    a.release()
    assert not leader.Lease(crec).acquire()
    b.release()
    assert leader.Lease(crec).acquire()
