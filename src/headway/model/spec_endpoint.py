"""Where a service's endpoint listens: the ``endpoint:`` block of the service YAML.

A fixed ``port`` (kept across updates, rollouts and failovers; without it one is picked at
the first deploy and kept) and the address it binds (default: ``HEADWAY_INGRESS_BIND``,
127.0.0.1; in SSH mode with ingress hosts, always the cloud's moving address). ``tls``:
HTTPS on that port (the certificate and key files are read by the CLI and uploaded, as
``files`` are; plain HTTP is then not served there). ``hostnames``: the names it serves
(the TLS handshake's SNI and the Host header; any other name is refused), and what lets
several services share one port, each claiming its own names. Limits at the door:
``max_body_bytes``, a ``rate_limit`` per token, and a ``retry_budget_percent``: how much
more load the endpoint's retries may add to a failing service; ``idempotent_paths``:
requests that may be sent twice whatever their method (retried like a GET).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re

from pydantic import Field, field_validator

from headway.model.spec_base import MAX_TIMEOUT_S, Strict


class RateLimit(Strict):
    """Per token (per client address on an open endpoint): at most ``requests_per_second``
    on average over 10 s, and ``burst`` more within any one second; beyond, 429."""

    requests_per_second: float = Field(gt=0, le=1_000_000)
    burst: int = Field(default=0, ge=0, le=1_000_000)


#: A DNS name as it goes into the endpoint's config: lower case, dot-separated labels of
#: letters, digits and inner hyphens, 253 characters at most.
HOSTNAME_RE = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
MAX_HOSTNAMES = 100


def _hostname(given: str) -> str:
    name = given.strip().lower().removesuffix(".")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise ValueError(f"{given[:80]!r} is an address, not a name; an address is endpoint.bind's")
    if name.startswith("*."):
        raise ValueError(f"{given[:80]!r}: wildcards are not supported; list each name")
    if not HOSTNAME_RE.fullmatch(name):
        raise ValueError(
            f"{given[:80]!r} is not a host name; use letters, digits and hyphens in labels separated by dots"
        )
    return name


class EndpointTls(Strict):
    """Paths on the deploying machine (relative to the YAML): the certificate chain (leaf
    first) and its private key, both PEM, the key without a passphrase."""

    cert: str = Field(min_length=1, max_length=4096)
    key: str = Field(min_length=1, max_length=4096)


#: A path prefix as it goes into the endpoint's config: none of HAProxy's quotes, comments,
#: variables, braces or escapes.
PATH_PREFIX_RE = re.compile(r"/[A-Za-z0-9/._~%:@!&*+,;=-]{0,199}")
MAX_IDEMPOTENT_PATHS = 50


class EndpointConfig(Strict):
    port: int | None = Field(default=None, ge=1, le=65535)
    bind: str | None = None
    # A request whose body is larger gets 413; one that does not say its length (chunked) 411.
    max_body_bytes: int | None = Field(default=None, ge=1, le=2**40)
    rate_limit: RateLimit | None = None
    # How long a request may wait for its answer (then 504); default: http_options'
    # request_timeout_s, else 60 s.
    request_timeout_s: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S)
    # Retries on another worker: at most this share of the requests (over 10 s) more.
    retry_budget_percent: int = Field(default=20, ge=0, le=100)
    hostnames: list[str] | None = None
    tls: EndpointTls | None = None
    # Paths whose requests, whatever their method, may be sent twice (as GET, HEAD, OPTIONS,
    # PUT and DELETE are): retried on another worker like them, in flight on a host that
    # vanished too. Any other request is sent once: such a request gets 504 after the
    # request timeout.
    idempotent_paths: list[str] = Field(default_factory=list, max_length=MAX_IDEMPOTENT_PATHS)

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

    @field_validator("idempotent_paths")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        for p in v:
            if not PATH_PREFIX_RE.fullmatch(p):
                raise ValueError(
                    f"{p[:80]!r} is not a path prefix; give one that starts with / (e.g. /v1/embeddings), "
                    "at most 200 characters, of letters, digits and / . _ ~ % : @ ! & * + , ; = -"
                )
        return v

    @field_validator("hostnames")
    @classmethod
    def _hostnames(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not 1 <= len(v) <= MAX_HOSTNAMES:
            raise ValueError(f"give 1 to {MAX_HOSTNAMES} names, or leave hostnames out to serve any name")
        names = [_hostname(n) for n in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"{twice[0]} is listed twice")
        return names


#: What ``serve build`` writes into every config: Serve's own defaults, no choice of the user's.
SERVE_DEFAULT_HOSTS = ("0.0.0.0", "127.0.0.1", "::")
SERVE_DEFAULT_PORT = 8000


def with_serve_listen(endpoint: EndpointConfig, host: str | None, port: int | None) -> EndpointConfig:
    """A Serve config's ``http_options`` port and host as the endpoint's, where the
    ``endpoint:`` block does not give its own and they are a choice: not Serve's defaults,
    which every ``serve build`` file carries (taken, they would pin every such service to
    port 8000 on every address)."""
    changes: dict[str, object] = {}
    if endpoint.port is None and port not in (None, 0, SERVE_DEFAULT_PORT):
        changes["port"] = port
    if endpoint.bind is None and host is not None and host not in SERVE_DEFAULT_HOSTS:
        with contextlib.suppress(ValueError):  # a name (Serve takes one): the deploy's note says it is not used
            changes["bind"] = str(ipaddress.ip_address(host))
    return endpoint.model_copy(update=changes) if changes else endpoint


#: A gRPC servicer function as Serve imports it: ``package.module.add_XServicer_to_server``.
SERVICER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


class GrpcOptions(Strict):
    """A Serve config's gRPC proxy: with servicer functions, every worker's proxy serves
    gRPC too and the endpoint sends ``application/grpc`` requests there (the port is
    headway's to choose, as ``http_options.port``)."""

    port: int | None = Field(default=None, ge=0, le=65535)
    grpc_servicer_functions: list[str] = Field(default_factory=list, max_length=50)
    request_timeout_s: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S)
    enable_reflection: bool = True

    @property
    def enabled(self) -> bool:
        """Serve starts a gRPC proxy only when there are servicer functions to serve."""
        return bool(self.grpc_servicer_functions)

    @field_validator("grpc_servicer_functions")
    @classmethod
    def _servicers(cls, v: list[str]) -> list[str]:
        for f in v:
            if not SERVICER_RE.fullmatch(f.replace(":", ".", 1)) or len(f) > 200:
                raise ValueError(
                    f"{f[:80]!r} is not an import path of a function; give it as module.add_XServicer_to_server"
                )
        return v
