"""Where a service's endpoint listens: the ``endpoint:`` block of the service YAML.

A fixed ``port`` (kept across updates, rollouts and failovers; without it one is picked at
the first deploy and kept) and the address it binds (default: ``HEADWAY_INGRESS_BIND``,
127.0.0.1; in SSH mode with ingress hosts, always the cloud's moving address). ``tls``:
HTTPS on that port (the certificate and key files are read by the CLI and uploaded, as
``files`` are; plain HTTP is then not served there). Limits at the door:
``max_body_bytes`` and a ``rate_limit`` per token. ``hostnames`` (several services on one
port, told apart by name) is planned: this headway refuses it by name rather than serving
every name.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import Field, field_validator

from headway.model.spec_base import Strict


class RateLimit(Strict):
    """Per token (per client address on an open endpoint): at most ``requests_per_second``
    on average over 10 s, and ``burst`` more within any one second; beyond, 429."""

    requests_per_second: float = Field(gt=0, le=1_000_000)
    burst: int = Field(default=0, ge=0, le=1_000_000)


class EndpointTls(Strict):
    """Paths on the deploying machine (relative to the YAML): the certificate chain (leaf
    first) and its private key, both PEM, the key without a passphrase."""

    cert: str = Field(min_length=1, max_length=4096)
    key: str = Field(min_length=1, max_length=4096)


class EndpointConfig(Strict):
    port: int | None = Field(default=None, ge=1, le=65535)
    bind: str | None = None
    # A request whose body is larger gets 413; one that does not say its length (chunked) 411.
    max_body_bytes: int | None = Field(default=None, ge=1, le=2**40)
    rate_limit: RateLimit | None = None
    hostnames: Any = None
    tls: EndpointTls | None = None

    @field_validator("bind")
    @classmethod
    def _bind(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ValueError(
                f"{v[:80]!r} is not an IP address; give an address of this machine to listen on, e.g. 0.0.0.0"
            ) from None

    @field_validator("hostnames")
    @classmethod
    def _planned(cls, v: Any) -> Any:
        if v is not None:
            raise ValueError(
                "endpoint.hostnames is not available in this headway yet (services told apart by name on "
                "one port are planned); remove it: each service has its own port"
            )
        return v
