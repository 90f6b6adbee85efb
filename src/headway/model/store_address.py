"""A GCS store's address, parsed strictly: pure, no I/O (the spec validates with it).

Strict because a lenient parse does harm: ``redis://u:p@ss#w/rd@h`` read by a URL
parser is host ``ss`` with password ``p`` and a fragment — headway would send part of
the password to a host the user never named. Anything a Redis address cannot hold (a
fragment, a query, a path, a port outside 1-65535, a host with odd characters) is
refused with what to write instead.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from urllib.parse import unquote, urlsplit

from headway.model.errors import InputError

_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")

#: Where a fitness check probes a store's permissions (a few keys, removed after).
PROBE_NAMESPACE = "hw-probe"


class StoreError(InputError):
    """The store cannot be used; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class StoreAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    def masked(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        cred = ""
        if self.username or self.password:
            cred = f"{self.username or ''}{':***' if self.password else ''}@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{cred}{host}:{self.port}"

    def ray_address(self) -> str:
        """The value of ``RAY_REDIS_ADDRESS``: host:port, prefixed ``rediss://`` for TLS."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        hp = f"{host}:{self.port}"
        return f"rediss://{hp}" if self.tls else hp

    def with_credentials(self, username: str | None, password: str | None) -> StoreAddress:
        return replace(self, username=username or self.username, password=password or self.password)

    def __str__(self) -> str:  # never print the password by accident
        return self.masked()


def valid_host(host: str) -> bool:
    """A DNS name or an IP address: nothing a shell, a URL or a config line would read twice."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return len(host) <= 253 and _HOSTNAME.fullmatch(host) is not None


def parse_address(text: str) -> StoreAddress:
    """Accept ``host:port``, ``redis://[user[:pass]@]host[:port]`` and ``rediss://…``.

    Special characters of a password are percent-encoded (``%23`` for ``#``, ``%40``
    for ``@``, ``%2F`` for ``/``), or the password comes from redis_password_env/file."""
    raw = text.strip()
    if not raw:
        raise StoreError("empty store address; write host:port or redis://host:port")
    if any(ord(c) < 33 or ord(c) == 127 for c in raw):
        raise StoreError("the store address contains spaces or control characters; write host:port")
    if "://" not in raw:
        raw = "redis://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("redis", "rediss"):
        raise StoreError(f"unsupported scheme {parts.scheme!r} in the store address; use redis:// or rediss://")
    encode = (
        "percent-encode special characters of the password (%23 for #, %3F for ?, %2F for /, %40 for @) "
        "or give it with redis_password_env"
    )
    if "#" in raw:
        raise StoreError(f"the store address has a '#' (a URL fragment); {encode}")
    if parts.query or "?" in raw:
        raise StoreError(f"the store address has a '?' (a URL query); {encode}")
    if parts.path not in ("", "/"):
        raise StoreError(
            f"the store address has a path ({parts.path!r}); Ray uses database 0 only: write host:port, or {encode}"
        )
    if parts.netloc.count("@") > 1:
        raise StoreError(f"the store address has more than one '@'; {encode}")
    try:
        port = parts.port
    except ValueError:
        raise StoreError("the store address has an invalid port; write host:port with a port from 1 to 65535") from None
    if port is None:
        port = 6379
    elif not 1 <= port <= 65535:
        raise StoreError("the store address has an invalid port; write host:port with a port from 1 to 65535")
    host = parts.hostname
    if not host:
        raise StoreError("the store address has no host; write host:port")
    if not valid_host(host):
        raise StoreError(f"the store address's host {host!r} is not a DNS name or an IP address")
    return StoreAddress(
        host=host,
        port=port,
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
