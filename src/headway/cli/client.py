"""The CLI's side of the API: find the control plane (a remote one ``target`` names, else
this state dir's), call it, follow an operation until it ends. Errors come back as
``ApiError`` with the CLI's exit code.

A standby answers ``307`` with the leader's address (which it checked against the cloud's
controllers): the request is sent there once more, with the same token and the same CA.
No other redirect is followed, and never twice."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx

from headway.cli import target
from headway.state import daemon_info, db

#: HTTP status → the CLI's exit code (documented in ``cli``).
EXIT_BY_STATUS = {400: 2, 404: 2, 409: 3, 422: 2}


def verify() -> str | bool:
    """How the CLI checks the API's TLS certificate: ``HEADWAY_API_CA`` (a CA file), else
    the system's CAs."""
    return os.environ.get("HEADWAY_API_CA") or True


class ApiError(RuntimeError):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip() or f"HTTP {resp.status_code}"
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI's own validation errors
        return "; ".join(f"{'.'.join(str(x) for x in d.get('loc', []))}: {d.get('msg')}" for d in detail)
    return str(detail or body)


def leader_url(location: str | None, path: str) -> str | None:
    """Where a standby's 307 sends ``path``: the same path on an http(s) origin, else None."""
    if not location:
        return None
    try:
        parts = urlsplit(location)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    if parts.path != urlsplit(path).path:
        return None
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class Client:
    def __init__(
        self, base_url: str, token: str, verify: str | bool, hint: str, remote: bool = False, timeout_s: float = 60.0
    ):
        self.base_url = base_url
        self.remote = remote  # another host's: no state dir here to fall back to
        self._hint = hint  # what to read when it does not answer
        self._http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s, verify=verify
        )

    def unreachable(self, exc: Exception) -> ApiError:
        return ApiError(f"the control plane at {self.base_url} does not answer ({type(exc).__name__}); {self._hint}", 1)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._send(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from None
        if resp.status_code >= 400:
            raise ApiError(_detail(resp), EXIT_BY_STATUS.get(resp.status_code, 1))
        if resp.status_code == 307:
            raise ApiError(f"{self.base_url} is a standby and sent this request on to no usable leader", 1)
        return resp.json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, sent on to the leader once if a standby answers 307; a read (GET) is
        sent once more on a fresh connection when the one it went out on was closed under it:
        the server ends a keep-alive connection idle for 5 s, and a client stalled that long (a
        loaded machine) may reuse it at that very moment."""
        try:
            resp = self._http.request(method, path, **kwargs)
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
            if method != "GET":
                raise
            resp = self._http.request(method, path, **kwargs)
        leader = leader_url(resp.headers.get("location"), path) if resp.status_code == 307 else None
        return self._http.request(method, leader, **kwargs) if leader else resp

    @contextmanager
    def stream(self, path: str, **kwargs: Any) -> Iterator[Iterator[str]]:
        """A GET whose answer comes as it is written (a followed log), text as it arrives."""
        try:
            with self._http.stream("GET", path, timeout=httpx.Timeout(10.0, read=None), **kwargs) as resp:
                leader = leader_url(resp.headers.get("location"), path) if resp.status_code == 307 else None
                if leader is None:
                    yield self._text(resp)
                    return
            with self._http.stream("GET", leader, timeout=httpx.Timeout(10.0, read=None), **kwargs) as resp:
                yield self._text(resp)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from None

    @staticmethod
    def _text(resp: httpx.Response) -> Iterator[str]:
        if resp.status_code >= 400:
            resp.read()
            raise ApiError(_detail(resp), EXIT_BY_STATUS.get(resp.status_code, 1))
        return resp.iter_text()

    def follow(self, op: dict[str, Any], show: Callable[[str], None], poll_s: float = 0.3) -> dict[str, Any]:
        """Print an operation's progress lines as they come; return it once done."""
        since = 0
        while True:
            for line in op["lines"]:
                show(line)
            since = op["next"]
            if op["done"]:
                return op
            time.sleep(poll_s)
            op = self.call("GET", f"/api/operations/{op['id']}", params={"since": since})


def _remote() -> Client | None:
    r = target.remote()
    return None if r is None else Client(r.url, r.token, r.ca or True, f"named by {r.named_by}", remote=True)


def running() -> Client | None:
    """A client of the remote control plane, or of this host's if one runs now (reads may
    fall back to the state dir without it)."""
    remote = _remote()
    if remote is not None:
        return remote
    url = daemon_info.api_url()
    token = db.get_token("api")
    return Client(url, token, verify(), f"see {daemon_info.logfile()}") if url and token else None


def ensure(timeout_s: float = 20.0) -> Client:
    """A client of the control plane: the remote one, or this host's, started first if
    none runs. This host's may be a standby that sends its callers to the leader (307):
    that answers too; one with no leader to send to (503) is waited for."""
    remote = _remote()
    if remote is not None:
        return remote
    daemon_info.start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        c = running()
        if c is not None:
            try:
                if httpx.get(c.base_url + "/api/health", timeout=2, verify=verify()).status_code in (200, 307):
                    return c
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    raise ApiError(f"the control plane does not answer; see {daemon_info.logfile()}", 1)
