"""The context handed down from the edge: one provider per unit of work, the cloud as
read once, and the provider a cloud's mode gives."""

from service_records import record

from headway.cluster.local_provider import LocalProvider
from headway.control import context
from headway.control.context import Context


def test_one_provider_per_context_so_what_it_planned_stays_planned():
    made = []
    ctx = Context(None, providers=lambda crec, rec=None: made.append(rec) or object())
    rec = record("RUNNING")
    assert ctx.provider(rec) is ctx.provider(rec)
    assert len(made) == 1
    fresh = ctx.with_cloud(None)
    assert fresh.provider(rec) is not ctx.provider(rec)  # a new unit of work, a new provider


def test_without_a_cloud_the_records_mode_chooses_the_provider():
    rec = record("RUNNING")
    rec.mode = "loopback"
    prov = context.provider_for(None, rec)
    assert isinstance(prov, LocalProvider) and prov.loopback
    assert Context(None).provider(rec).loopback


def test_a_context_reads_the_cloud_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADWAY_HOME", str(tmp_path))
    reads = []
    monkeypatch.setattr(context.cloud, "load", lambda: reads.append(1))
    ctx = Context.load()
    ctx.provider(record("RUNNING"))
    ctx.provider(record("RUNNING"))
    assert reads == [1] and ctx.cloud is None
