"""The store's status answers in bounded time when a host hangs: a store host that vanished
without a reset once held ``cloud status`` for over 400 s."""

import threading
import time

import pytest

from headway.store import cloud_setup
from headway.store.cloud import CloudRecord, password_path
from headway.store.store_conf import StoreProcess


def _proc(role: str, port: int, host: str) -> StoreProcess:
    return StoreProcess(role=role, port=port, host=host, data_dir="/d", conf="/c", log="/l", marker=f"m-{port}")


@pytest.fixture
def rec(tmp_path, monkeypatch) -> CloudRecord:
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    password_path().parent.mkdir(parents=True, exist_ok=True)
    password_path().write_text("s3cret-pw\n")
    return CloudRecord(
        id="c1",
        mode="local",
        bind=["127.0.0.1"],
        maxmemory="64mb",
        store=[_proc("primary", 7001, "10.9.0.2"), _proc("replica", 7002, "10.9.0.3")],
        sentinels=[_proc("sentinel", 7101, "10.9.0.2"), _proc("sentinel", 7102, "10.9.0.3")],
        created_at=0.0,
    )


def test_a_hanging_host_is_shown_not_answering_and_the_rest_is_still_read(rec, monkeypatch):
    hung = threading.Event()

    def is_running(_rec: CloudRecord, proc: StoreProcess) -> bool:
        if proc.host == "10.9.0.2":  # the primary's host: neither answers nor resets
            hung.wait()
        return False

    def current_primary(_rec: CloudRecord) -> tuple[str, int]:
        raise ConnectionError("s3cret-pw refused")  # a Sentinel that failed, password and all

    monkeypatch.setattr(cloud_setup, "is_running", is_running)
    monkeypatch.setattr(cloud_setup, "current_primary", current_primary)
    monkeypatch.setattr(cloud_setup, "PROBE_WITHIN_S", 0.3)
    start = time.monotonic()
    st = cloud_setup.status(rec)
    hung.set()
    assert time.monotonic() - start < 3
    primary, replica = st["store"]
    assert primary["running"] is False and "no answer within 0.3 s" in primary["error"]
    assert replica == {"role": "replica", "host": "10.9.0.3", "port": 7002, "running": False}
    late, down = st["sentinels"]
    assert late["running"] is False and "no answer within 0.3 s" in late["error"]  # not known: said so
    assert down == {"host": "10.9.0.3", "port": 7102, "running": False}  # seen not running
    assert st["primary_port"] == 7001  # no Sentinel answered: the recorded primary
    assert "s3cret" not in repr(st)
