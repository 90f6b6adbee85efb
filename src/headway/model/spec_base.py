"""What every part of the service YAML shares: its limits, the patterns names must match,
the strict base model (unknown fields are errors, not silently dropped) and the error type."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

# Every pattern is used with ``fullmatch``: ``$`` would let a trailing newline through
# (``"abc\n"``), and a name ends up in an HAProxy config line and in namespace names.
NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")
IMPORT_PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*")
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESOURCE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,63}")
ROUTE_RE = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")

#: The most worker nodes one service may have (every group's ``max_nodes`` counted) is the
#: control plane's setting ``HEADWAY_MAX_WORKERS``, this by default; what a worker costs the
#: endpoint is said in ``haproxy_config`` (a health check every 250 ms).
DEFAULT_MAX_WORKERS = 256
#: The most any setting allows: what one endpoint's table of servers is built for.
MAX_WORKERS = 1024
MAX_REPLICAS = 1024
#: Largest amount of one resource, and longest timeout (a day): beyond is a typo.
MAX_RESOURCE = 1_000_000
MAX_TIMEOUT_S = 86_400
#: A service YAML larger than this, or whose aliases expand to more nodes than this, is
#: refused before it is built in memory (a 600-byte alias bomb expands to gigabytes).
MAX_YAML_BYTES = 256 * 1024
MAX_YAML_NODES = 100_000
MAX_TEXT = 256  # free-form labels: instance_type, version_name, cloud, project
MAX_ENV_VALUE = 32 * 1024


class SpecError(ValueError):
    """A service YAML that cannot be used; ``problems`` holds one line per fault."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid service spec {source}:\n{lines}")


class Strict(BaseModel):
    # NaN and infinity are never a valid amount or timeout: they pass comparisons and crash later.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


def check_label(v: str | None) -> str | None:
    """A free-form label: printable, one line, bounded."""
    if v is not None and (len(v) > MAX_TEXT or not v.isprintable()):
        raise ValueError(f"must be one printable line of at most {MAX_TEXT} characters")
    return v


def check_resources(v: dict[str, float]) -> dict[str, float]:
    for key, amount in v.items():
        if not RESOURCE_RE.fullmatch(key):
            raise ValueError(
                f"resource name {key!r} is not valid; use letters, digits and _ . : / - (at most 64), "
                "starting with a letter or _"
            )
        if not 0 <= amount <= MAX_RESOURCE:
            raise ValueError(f"resource {key} is {amount}; amounts must be between 0 and {MAX_RESOURCE}")
    return v
