"""A service's logs as one stream (no Ray): every node's files merged by time, one node's
or one application's part, --since, a retired node's logs kept, unknown names refused."""

from __future__ import annotations

import threading
import time

import pytest
from service_records import record

from headway.cluster import node_logs
from headway.control import log_archive, log_stream, logs
from headway.control.context import Context
from headway.model.errors import InputError
from headway.state import records
from headway.state.records import NodeRecord


class _Files:
    """A provider whose nodes' files are here (as a local provider's are)."""

    def read_logs(self, node, offsets):
        return node_logs.read_local(node.log, node.temp_dir, offsets)

    def remove(self, node):
        pass


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + ",000"


@pytest.fixture
def service(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path / "home"))
    rec = record("RUNNING")
    rec.spec.applications[0].name = "app"
    now = time.time()
    for name, role, lines in (
        ("head", "head", [(now - 600, "INFO {} controller -- old")]),
        ("w-1", "worker", [(now - 30, "INFO {} replica -- GET / 200"), (now - 5, "ERROR {} replica -- boom")]),
        ("w-2", "worker", [(now - 20, "INFO {} replica -- GET / 200")]),
    ):
        temp = tmp_path / name
        serve = temp / "session_latest" / "logs" / "serve"
        serve.mkdir(parents=True)
        text = "".join(line.format(_stamp(t)) + "\n" for t, line in lines)
        if role == "worker":
            text += "Traceback (most recent call last):\nZeroDivisionError\n" if name == "w-1" else ""
            (serve / "replica_app_D_x.log").write_text(text)
        else:
            (serve / "controller_1.log").write_text(text)
        log = tmp_path / f"{name}.log"
        log.write_text("Ray runtime started.\n")
        rec.nodes.append(NodeRecord(name=name, role=role, ip="10.0.0.9", temp_dir=str(temp), log=str(log), marker=name))
    records.save(rec)
    return Context(None, providers=lambda crec, r=None: _Files()), rec


def test_every_node_merged_by_time_with_its_node(service):
    ctx, rec = service
    got = log_stream.read(ctx, rec, log_stream.Filter(), None, 100)
    sources = [ln.split(" | ")[0].split(" ")[-1] for ln in got]
    assert {"head", "w-1", "w-2"} <= set(sources)
    body = [ln.split(" | ", 1)[1] for ln in got if "replica --" in ln or "controller --" in ln]
    assert [b.split(" -- ")[1] for b in body] == ["old", "GET / 200", "GET / 200", "boom"]  # by time
    trace = got.index(next(ln for ln in got if ln.endswith("| Traceback (most recent call last):")))
    assert got[trace - 1].endswith("boom") and got[trace].split(" w-1 ")[0] == got[trace - 1].split(" w-1 ")[0]


def test_since_one_node_and_one_application(service):
    ctx, rec = service
    recent = log_stream.read(ctx, rec, log_stream.Filter(), 60, 1000)
    assert not any("old" in ln for ln in recent) and any("boom" in ln for ln in recent)
    w2 = log_stream.read(ctx, rec, log_stream.Filter(node="w-2"), None, 100)
    assert w2 and all(" w-2 | " in ln for ln in w2)
    app = log_stream.read(ctx, rec, log_stream.Filter(app="app"), None, 100)
    assert app and not any("Ray runtime started" in ln or "controller --" in ln for ln in app)
    with pytest.raises(InputError, match="has no node w-9; its nodes: head, w-1, w-2"):
        log_stream.read(ctx, rec, log_stream.Filter(node="w-9"), None, 100)
    with pytest.raises(InputError, match="has no application nope; its applications: app"):
        log_stream.read(ctx, rec, log_stream.Filter(app="nope"), None, 100)
    with pytest.raises(InputError, match="10m"):
        logs.since_of("ten minutes")
    assert logs.lines_wanted(None, 600) == logs.MAX_LINES and logs.lines_wanted(None, None) == 100


def test_a_retired_node_keeps_its_logs_until_terminate(service):
    ctx, rec = service
    old = next(n for n in rec.nodes if n.name == "w-1")
    log_archive.retire(_Files(), rec, old)
    rec.nodes = [n for n in rec.nodes if n is not old]
    records.save(rec)
    got = log_stream.read(ctx, rec, log_stream.Filter(node="w-1"), None, 100)
    assert any(ln.endswith("boom") and " w-1 (retired) | " in ln for ln in got), got
    log_archive.forget(rec.name)
    with pytest.raises(InputError, match="has no node w-1"):
        log_stream.read(ctx, rec, log_stream.Filter(node="w-1"), None, 100)


def test_follow_prints_what_is_appended_and_stops(service):
    ctx, rec = service
    stop = threading.Event()
    lines = logs.follow(ctx, rec, logs.Source(node="w-2"), 5, stop)
    head = [next(lines) for _ in range(3)]
    assert head[0].startswith("-- s: node w-2")
    replica = rec.nodes[2].temp_dir + "/session_latest/logs/serve/replica_app_D_x.log"
    with open(replica, "a") as fh:
        fh.write(f"INFO {_stamp(time.time())} replica -- followed\n")
    assert "followed" in next(lines)
    stop.set()
    assert list(lines) == []
