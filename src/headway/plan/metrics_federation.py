"""Every node's Ray and Serve metrics as one Prometheus text, each sample labelled with
the service, cluster and node it came from: pure text in, text out.

Why here rather than opening the nodes' metrics ports: those ports serve without a token,
so the packet filter lets only the control host reach them (``firewall``); the control
plane reads them and serves the lot behind its metrics token, one scrape target for every
cluster.

How: a node's text is not parsed into objects (prometheus_client's parser took ~2 s for
the 3.4 MB, 8,000 samples of three services' nine nodes): each sample line gets the labels
inserted at the start of its label set, and the lines are grouped by family (the text
format wants a family's samples together, under one HELP and TYPE). A node whose text
already has a label of one of those names goes through the parser instead, its label
kept as ``exported_<name>`` (Prometheus's convention for a clash).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from headway.plan.metrics import exposition_text

#: The labels headway adds.
ADDED = ("service", "cluster", "node")
_CLASH = re.compile(r"[{,]\s*(?:service|cluster|node)\s*=")
_META = re.compile(r"#\s+(HELP|TYPE)\s+([a-zA-Z_:][a-zA-Z0-9_:]*)")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_text(added: dict[str, str]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in added.items())


class _Families:
    """Lines grouped by family, in the order families are first met."""

    def __init__(self) -> None:
        self.meta: dict[str, list[str]] = {}
        self.samples: dict[str, list[str]] = {}

    def add_text(self, added: dict[str, str], text: str) -> None:
        labels = _label_text(added)
        family = ""
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                m = _META.match(line)
                if m:
                    family = m.group(2)
                    meta = self.meta.setdefault(family, [])
                    if not any(x.split()[1] == m.group(1) for x in meta):
                        meta.append(line)
                    self.samples.setdefault(family, [])
                continue
            m = _NAME.match(line)
            if not m:
                continue
            name, rest = m.group(0), line[m.end() :]
            key = family if family and name.startswith(family) else name
            if not labels:
                pass  # already labelled (the careful way)
            elif rest.startswith("{"):
                inner = rest[1:]
                line = f"{name}{{{labels}{'' if inner.lstrip().startswith('}') else ','}{inner}"
            else:
                line = f"{name}{{{labels}}}{rest}"
            self.samples.setdefault(key, []).append(line)

    def text(self) -> str:
        out = []
        for family, samples in self.samples.items():
            out += self.meta.get(family, [])
            out += samples
        return "\n".join(out) + "\n" if out else ""


def _relabel(sample: Sample, added: dict[str, str]) -> Sample:
    labels = {(f"exported_{k}" if k in added else k): v for k, v in sample.labels.items()}
    return sample._replace(labels=labels | added)


def _parsed(added: dict[str, str], text: str) -> str:
    """The slow, careful way, for a text with a clashing label."""
    fams = []
    for fam in text_string_to_metric_families(text):
        new = Metric(fam.name, fam.documentation, fam.type)
        new.samples = [_relabel(s, added) for s in fam.samples]
        fams.append(new)
    return exposition_text(fams)


def render(sources: Iterable[tuple[dict[str, str], str]]) -> str:
    """``sources``: (the labels to add, a node's exposition text). A text that does not
    parse where it has to be parsed is left out (its node is skipped, not the scrape)."""
    fams = _Families()
    for added, text in sources:
        if _CLASH.search(text):
            try:
                text = _parsed(added, text)
            except ValueError:
                continue
            fams.add_text({}, text)
        else:
            fams.add_text(added, text)
    return fams.text()
