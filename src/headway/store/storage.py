"""The GCS store: addresses, connections, pre-flight checks, namespaces, cleanup.

Ray keeps a cluster's GCS tables in Redis hashes named ``RAY<namespace>@<TABLE>``;
everything here that touches keys works on exactly one namespace's pattern.
Passwords never leave this module in an error message: errors name the masked
address.
"""

from __future__ import annotations

import contextlib
import contextvars
import secrets
from collections.abc import Mapping
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from headway.model.store_address import PROBE_NAMESPACE, StoreAddress, StoreError, parse_address

__all__ = ["StoreAddress", "StoreError", "parse_address"]  # and the functions below

DEFAULT_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


#: Environment variables a caller handed over for this thread's work: the control plane
#: deploys and repairs on behalf of a CLI whose environment it does not share.
given_env: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("given_env", default={})  # noqa: B039


def resolve_password(
    env_name: str | None,
    file_path: str | None,
    stored: Mapping[str, str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """A password given by reference: an environment variable or a file. The variable is
    looked up in what the current change was handed, then in ``stored`` (what the last
    successful deploy was handed), then in ``environ`` — the CLI's own environment. The
    control plane passes none: a caller of its API must not read the daemon's variables."""
    if env_name:
        value = given_env.get().get(env_name) or (stored or {}).get(env_name) or (environ or {}).get(env_name)
        if value is None:
            raise StoreError(f"environment variable {env_name} (redis_password_env) is not set; export it")
        return value
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:
            raise StoreError(f"cannot read redis_password_file {file_path} ({exc.strerror}); check the path") from None
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
        if addr.client_cert:
            kwargs.update(ssl_certfile=addr.client_cert, ssl_keyfile=addr.client_key)
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
        if addr.tls and ("SSL" in reason or "certificate" in reason.lower()):
            raise StoreError(
                f"TLS to the store at {addr.masked()} failed ({reason}); check redis_certificate_path "
                f"(the CA that signed the server's certificate; now {addr.ca_cert or DEFAULT_CA_BUNDLE}) "
                "and that the server speaks TLS on that port"
            ) from None
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


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis MATCH pattern (``*?[]\\`` escaped)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def key_pattern(namespace: str) -> str:
    """Exactly this namespace's keys: the namespace is matched literally, never as a glob."""
    return f"RAY{glob_escape(namespace)}@*"


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


# -- fitness, usage, isolation ---------------------------------------------------------------
def _info_strings(client: redis.Redis) -> dict[str, str]:
    return {str(k): str(v) for k, v in client.info("everything").items()}


def _shards(client: redis.Redis) -> int | None:
    try:
        raw = client.execute_command("CLUSTER", "INFO")
    except redis.ResponseError:
        return None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    for line in text.splitlines():
        if line.startswith("cluster_size:"):
            return int(line.split(":", 1)[1])
    return None


def _probe(client: redis.Redis, namespace: str) -> tuple[tuple[str, ...], str | None]:
    """Run, on one key of ``namespace``, each command the GCS runs; return the denied ones."""
    key = f"RAY{namespace}@HEADWAY_PROBE"
    steps = [
        ("HSET", lambda: client.hset(key, "f", "v")),
        ("HGET", lambda: client.hget(key, "f")),
        ("HMGET", lambda: client.hmget(key, ["f"])),
        ("HGETALL", lambda: client.hgetall(key)),
        ("HEXISTS", lambda: client.hexists(key, "f")),
        ("HSCAN", lambda: client.hscan(key, 0)),
        ("SCAN", lambda: client.scan(0, match=key_pattern(namespace), count=10)),
        ("HDEL", lambda: client.hdel(key, "f")),
        ("DEL", lambda: client.delete(key)),
        ("UNLINK", lambda: client.unlink(key)),
        ("DEL DUMMY", lambda: client.delete("DUMMY")),
    ]
    denied = []
    for name, run in steps:
        try:
            run()
        except redis.exceptions.NoPermissionError:
            denied.append(name)
        except redis.ResponseError as exc:
            if "NOPERM" in str(exc):
                denied.append(name)
            else:
                return tuple(denied), f"{name} failed on the store: {exc}"
    with contextlib.suppress(redis.ResponseError):
        client.unlink(key)
    return tuple(denied), None


def inspect(addr: StoreAddress, namespace: str = PROBE_NAMESPACE, timeout_s: float = 3.0):
    """Everything the fitness checks judge, read from the store (reachability checked first)."""
    from headway.plan.store_fitness import StoreFacts  # pure module; imported here to keep layers clear

    check_reachable(addr, timeout_s)
    client = connect(addr, timeout_s)
    try:
        try:
            info = _info_strings(client)
        except redis.exceptions.NoPermissionError:
            return StoreFacts(info={}, denied=("INFO",))
        shards = _shards(client) if info.get("cluster_enabled") == "1" else None
        denied, probe_error = _probe(client, namespace)
        return StoreFacts(info=info, shards=shards, denied=denied, probe_error=probe_error)
    finally:
        client.close()


def namespace_bytes(client: redis.Redis, namespace: str) -> int:
    """Bytes the namespace's keys take (``MEMORY USAGE`` of each hash)."""
    total = 0
    for key in namespace_keys(client, namespace):
        total += client.memory_usage(key, samples=0) or 0
    return total


def memory(client: redis.Redis) -> dict[str, int]:
    info = client.info("memory")
    return {"used_memory": int(info.get("used_memory", 0)), "maxmemory": int(info.get("maxmemory", 0))}


def service_user(namespace: str) -> str:
    return namespace  # one ACL user per service namespace, named after it


def acl_rules(namespace: str, password: str) -> list[str]:
    """The ACL of one service's user: its own keys only, and only what the GCS runs.

    ``DUMMY``: the GCS deletes it when it connects (to detect cluster mode); ``INFO``: it
    reads the server's role and sections at start."""
    return [
        "reset",
        "on",
        f">{password}",
        f"~{key_pattern(namespace)}",
        "~DUMMY",
        "resetchannels",
        "-@all",
        "+@connection",
        "+@hash",
        "+@keyspace",
        "+@read",
        "+@write",
        "+info",
        "-@admin",
        "-@dangerous",
        "+info",
        "+scan",
    ]


def create_service_user(client: redis.Redis, namespace: str, password: str) -> str:
    user = service_user(namespace)
    client.execute_command("ACL", "SETUSER", user, *acl_rules(namespace, password))
    return user


def delete_service_user(client: redis.Redis, namespace: str) -> None:
    with contextlib.suppress(redis.ResponseError):
        client.execute_command("ACL", "DELUSER", service_user(namespace))
