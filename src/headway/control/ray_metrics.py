"""Ray's and Serve's own metrics of every node, read by the control host (the only one
the nodes' packet filters let in) and served as one text (``metrics_federation``).

A node that does not answer within ``TIMEOUT_S`` (a dead head, a host being replaced)
is skipped: a scrape must not fail because one cluster is recovering.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from headway.plan import metrics_federation
from headway.state import records
from headway.state.records import NodeRecord, ServiceRecord

TIMEOUT_S = 5.0
#: Ray's default metrics export port, for a node whose record names none.
DEFAULT_PORT = 8080


def _url(node: NodeRecord) -> str:
    return f"http://{node.ip}:{node.ports.get('metrics_export') or DEFAULT_PORT}/metrics"


def _fetch(url: str) -> str | None:
    try:
        r = httpx.get(url, timeout=TIMEOUT_S)
    except httpx.HTTPError:
        return None
    return r.text if r.status_code == 200 else None


def sources(recs: list[ServiceRecord]) -> list[tuple[dict[str, str], str]]:
    """(labels, text) of every node that answered: the nodes are read in parallel."""
    nodes = [({"service": r.service, "cluster": r.name, "node": n.name}, _url(n)) for r in recs for n in r.nodes]
    if not nodes:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        texts = list(pool.map(_fetch, [url for _, url in nodes]))
    return [(labels, text) for (labels, _), text in zip(nodes, texts, strict=True) if text is not None]


def federated() -> str:
    """Every service's nodes' metrics, each sample labelled ``service``, ``cluster``, ``node``."""
    return metrics_federation.render(sources(records.all_records()))
