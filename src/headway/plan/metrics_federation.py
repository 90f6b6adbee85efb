"""Every node's Ray and Serve metrics as one Prometheus text, each sample labelled with
the service, cluster and node it came from: pure text in, text out.

Why here rather than opening the nodes' metrics ports: those ports serve without a token,
so the packet filter lets only the control host reach them (``firewall``); the control
plane reads them and serves the lot behind its metrics token, one scrape target for every
cluster.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from headway.plan.metrics import exposition_text

#: The labels headway adds; a node's own label of the same name is kept as ``exported_<name>``
#: (Prometheus's own convention for a clash).
ADDED = ("service", "cluster", "node")


def _relabel(sample: Sample, added: dict[str, str]) -> Sample:
    labels = {(f"exported_{k}" if k in added else k): v for k, v in sample.labels.items()}
    return sample._replace(labels=labels | added)


def merge(sources: Iterable[tuple[dict[str, str], str]]) -> tuple[list[Metric], list[str]]:
    """``sources``: (the labels to add, a node's exposition text). The families merged by
    name (the first node's type and help), and the sources that did not parse (skipped)."""
    fams: dict[str, Metric] = {}
    bad: list[str] = []
    for added, text in sources:
        try:
            parsed = list(text_string_to_metric_families(text))
        except ValueError:
            bad.append(added.get("node", "?"))
            continue
        for fam in parsed:
            into = fams.get(fam.name)
            if into is None:
                into = fams[fam.name] = Metric(fam.name, fam.documentation, fam.type)
            into.samples += [_relabel(s, added) for s in fam.samples]
    return list(fams.values()), bad


def render(sources: Iterable[tuple[dict[str, str], str]]) -> str:
    fams, _ = merge(sources)
    return exposition_text(fams)
