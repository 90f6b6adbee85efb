"""Where a service's endpoint listens: the ``endpoint:`` block of the service YAML.

A fixed ``port`` (kept across updates, rollouts and failovers; without it one is picked at
the first deploy and kept) and the address it binds (default: ``HEADWAY_INGRESS_BIND``,
127.0.0.1; in SSH mode with ingress hosts, always the cloud's moving address). Limits at
the door: ``max_body_bytes`` and a ``rate_limit`` per token. The block's
``hostnames`` and ``tls`` (HTTPS and several services on one port by name) are planned:
this headway refuses them by name rather than serving plain HTTP where HTTPS was asked.
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


class EndpointConfig(Strict):
    port: int | None = Field(default=None, ge=1, le=65535)
    bind: str | None = None
    # A request whose body is larger gets 413; one that does not say its length (chunked) 411.
    max_body_bytes: int | None = Field(default=None, ge=1, le=2**40)
    rate_limit: RateLimit | None = None
    hostnames: Any = None
    tls: Any = None

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

    @field_validator("hostnames", "tls")
    @classmethod
    def _planned(cls, v: Any, info: Any) -> Any:
        if v is not None:
            raise ValueError(
                f"endpoint.{info.field_name} is not available in this headway yet (HTTPS and host names "
                "are planned); remove it, or put a TLS proxy in front of the endpoint"
            )
        return v
