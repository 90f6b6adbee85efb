"""The CLI's side of the API: find this state dir's control plane, call it, follow an
operation until it ends. Errors come back as ``ApiError`` with the CLI's exit code."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import httpx

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


class Client:
    def __init__(self, base_url: str, token: str, timeout_s: float = 60.0):
        self.base_url = base_url
        self._http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s, verify=verify()
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._send(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(
                f"the control plane at {self.base_url} does not answer ({type(exc).__name__}); "
                f"see {daemon_info.logfile()}",
                1,
            ) from None
        if resp.status_code >= 400:
            raise ApiError(_detail(resp), EXIT_BY_STATUS.get(resp.status_code, 1))
        return resp.json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; a read (GET) is sent once more on a fresh connection when the one it
        went out on was closed under it: the server ends a keep-alive connection idle for 5 s,
        and a client stalled that long (a loaded machine) may reuse it at that very moment."""
        try:
            return self._http.request(method, path, **kwargs)
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
            if method != "GET":
                raise
            return self._http.request(method, path, **kwargs)

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


def running() -> Client | None:
    """A client of the control plane if one runs now (reads may fall back without it)."""
    url = daemon_info.api_url()
    token = db.get_token("api")
    return Client(url, token) if url and token else None


def ensure(timeout_s: float = 20.0) -> Client:
    """A client of the control plane, started first if none runs."""
    daemon_info.start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        c = running()
        if c is not None:
            try:
                if httpx.get(c.base_url + "/api/health", timeout=2, verify=verify()).status_code == 200:
                    return c
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    raise ApiError(f"the control plane does not answer; see {daemon_info.logfile()}", 1)
