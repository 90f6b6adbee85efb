"""Where a service's endpoint listens: the ``endpoint:`` block of the service YAML.

A fixed ``port`` (kept across updates, rollouts and failovers; without it one is picked at
the first deploy and kept) and the address it binds (default: ``HEADWAY_INGRESS_BIND``,
127.0.0.1; in SSH mode with ingress hosts, always the cloud's moving address). The block's
``hostnames`` and ``tls`` (HTTPS and several services on one port by name) are planned:
this headway refuses them by name rather than serving plain HTTP where HTTPS was asked.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import Field, field_validator

from headway.model.spec_base import Strict


class EndpointConfig(Strict):
    port: int | None = Field(default=None, ge=1, le=65535)
    bind: str | None = None
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
