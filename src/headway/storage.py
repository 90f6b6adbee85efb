"""The GCS store: addresses, connections, pre-flight checks, namespaces, cleanup.

Ray keeps a cluster's GCS tables in Redis hashes named ``RAY<namespace>@<TABLE>``;
everything here that touches keys works on exactly one namespace's pattern.
Passwords never leave this module in an error message: errors name the masked
address.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

DEFAULT_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


class StoreError(RuntimeError):
    """The store cannot be used; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class StoreAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_cert: str | None = None

    def masked(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        cred = ""
        if self.username or self.password:
            cred = f"{self.username or ''}{':***' if self.password else ''}@"
        return f"{scheme}://{cred}{self.host}:{self.port}"

    def ray_address(self) -> str:
        """The value of ``RAY_REDIS_ADDRESS``: host:port, prefixed ``rediss://`` for TLS."""
        hp = f"{self.host}:{self.port}"
        return f"rediss://{hp}" if self.tls else hp

    def with_credentials(self, username: str | None, password: str | None) -> StoreAddress:
        return replace(self, username=username or self.username, password=password or self.password)

    def __str__(self) -> str:  # never print the password by accident
        return self.masked()


def parse_address(text: str) -> StoreAddress:
    """Accept ``host:port``, ``redis://[user[:pass]@]host[:port]`` and ``rediss://…``."""
    raw = text.strip()
    if not raw:
        raise StoreError("empty store address; write host:port or redis://host:port")
    if "://" not in raw:
        raw = "redis://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("redis", "rediss"):
        raise StoreError(
            f"unsupported scheme {parts.scheme!r} in the store address; use redis:// or rediss://"
        )
    try:
        port = parts.port or 6379
    except ValueError:
        raise StoreError("the store address has an invalid port; write host:port") from None
    if not parts.hostname:
        raise StoreError("the store address has no host; write host:port")
    return StoreAddress(
        host=parts.hostname,
        port=port,
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def resolve_password(env_name: str | None, file_path: str | None) -> str | None:
    """A password given by reference: an environment variable or a file."""
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise StoreError(f"environment variable {env_name} (redis_password_env) is not set; export it")
        return value
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:
            raise StoreError(
                f"cannot read redis_password_file {file_path} ({exc.strerror}); check the path"
            ) from None
    return None


def connect(addr: StoreAddress, timeout_s: float = 3.0, retries: int = 0) -> redis.Redis:
    """A client for ``addr``. No silent retries by default: a check must answer in seconds."""
    kwargs: dict = dict(
        retry=Retry(NoBackoff(), retries),
        host=addr.host,
        port=addr.port,
        username=addr.username,
        password=addr.password,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        decode_responses=False,
    )
    if addr.tls:
        kwargs.update(ssl=True, ssl_ca_certs=addr.ca_cert or DEFAULT_CA_BUNDLE)
    return redis.Redis(**kwargs)


def check_reachable(addr: StoreAddress, timeout_s: float = 3.0) -> dict:
    """Connect, authenticate and PING; return ``INFO server``. Raise StoreError with the fix."""
    client = connect(addr, timeout_s)
    try:
        client.ping()
        return client.info("server")
    except redis.AuthenticationError:
        raise StoreError(
            f"the store at {addr.masked()} rejected the credentials; check the password "
            "(redis_password_env / redis_password_file, or the address) and the username"
        ) from None
    except redis.ResponseError as exc:
        text = str(exc)
        if "NOAUTH" in text or "WRONGPASS" in text or "invalid password" in text.lower():
            raise StoreError(
                f"the store at {addr.masked()} requires a valid password; give one with "
                "redis_password_env or redis_password_file"
            ) from None
        detail = scrub(text, addr.password)
        raise StoreError(f"the store at {addr.masked()} answered an error: {detail}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        reason = scrub(str(exc), addr.password) or type(exc).__name__
        raise StoreError(
            f"cannot reach the GCS store at {addr.masked()} ({reason}); check the address, "
            "that the server runs and that this machine may connect to it, "
            "or run 'headway cloud setup' and leave address empty"
        ) from None
    finally:
        client.close()


def scrub(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` masked, for errors that quote a server or client message."""
    return text.replace(secret, "***") if secret else text


def key_pattern(namespace: str) -> str:
    return f"RAY{namespace}@*"


def namespace_keys(client: redis.Redis, namespace: str) -> list[bytes]:
    return list(client.scan_iter(match=key_pattern(namespace), count=500))


def delete_namespace(client: redis.Redis, namespace: str) -> int:
    """UNLINK exactly this namespace's keys; return how many were removed."""
    keys = namespace_keys(client, namespace)
    removed = 0
    for i in range(0, len(keys), 500):
        removed += client.unlink(*keys[i : i + 500])
    return removed


def namespaces_in_store(client: redis.Redis) -> set[str]:
    """Every Ray namespace that has keys in the store."""
    found: set[str] = set()
    for key in client.scan_iter(match="RAY*@*", count=1000):
        text = key.decode(errors="replace")
        found.add(text[3 : text.index("@")])
    return found


def new_namespace(service: str) -> str:
    """A fresh namespace per service cluster, so two clusters never share tables."""
    return f"hw-{service}-{secrets.token_hex(4)}"
