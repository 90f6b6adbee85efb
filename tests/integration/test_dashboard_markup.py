"""The dashboard escapes everything it shows: served the real page with an API whose every
text field (a service's reason, an application's or deployment's name, a Serve status,
a node, a backend, a group, a count, a rollout's message) carries markup, headless
Chromium shows that markup as text — no element, no script of it runs."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import pytest
from test_control_plane import CHROMEDRIVER, CHROMIUM, _browser

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists(),
    reason="Debian's chromium is not installed (make system-test)",
)

#: Markup that, if it became HTML, would add an element with class "pwn" and set a flag.
M = '<b class="pwn">x</b><img class="pwn" src="/nope" onerror="window.__pwned=1">\'"'


def _status() -> dict:
    return {
        "name": "hostile",
        "state": M,
        "reason": M,
        "endpoint": M,
        "nodes": [{"name": M, "role": M, "ip": M, "alive": True}],
        "ingress": {
            "backends": [{"address": M, "status": M, "requests": M, "errors": M, "retries": M, "redispatches": M}]
        },
        "applications": [{"name": M, "status": M, "replicas": {M: {"running": M, "target": M}}}],
        "groups": [{"name": M, "nodes": M, "min": M, "max": M, "autoscaled": False}],
        "waiting": [M],
        "storage": {"usage": {"bytes": 1024}},
        "last_rollout": {"message": M},
    }


def _events() -> list:
    return [
        {"kind": "state", "state": "HEAD_RECOVERING", "at": 1.0, "details": {}, "message": M},
        {"kind": "state", "state": "RUNNING", "at": 9.0, "details": {}, "message": M},
    ]


def _series() -> dict:
    now = time.time()
    points = [
        {
            "t": now - 20 + i,
            "requests": 10,
            "errors_5xx": 0,
            "p50_ms": 2,
            "p99_ms": 5,
            "nodes": 3,
            "replicas": 2,
            "state": M,
        }
        for i in range(3)
    ]
    return {"period_s": 10, "points": points, "marks": [{"t": now - 19, "kind": M, "text": M}]}


class _Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the handler's API
        path = self.path.split("?")[0]
        if path == "/":
            body, kind = resources.files("headway").joinpath("web/index.html").read_bytes(), "text/html"
        else:
            data = {
                "/api/services": [{"name": "hostile"}],
                "/api/storage": {"cloud": {"address": M, "percent": 12.5, "alert_percent": M}, "alerts": {}},
                "/api/services/hostile": _status(),
                "/api/services/hostile/events": _events(),
                "/api/services/hostile/series": _series(),
            }.get(path)
            if data is None:
                self.send_error(404)
                return
            body, kind = json.dumps(data).encode(), "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def test_markup_in_every_field_is_shown_as_text():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="hwt-chrome-")
    driver = _browser(profile)
    try:
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/#token=t")
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline:
            text = driver.execute_script("return document.body.innerText")
            if text.count('<b class="pwn">') >= 10:
                break
            time.sleep(0.2)
        shown = text.count('<b class="pwn">')
        print(f"the markup is shown as text {shown} times")
        assert shown >= 10, text[:2000]
        assert driver.execute_script("return document.querySelectorAll('.pwn').length") == 0
        marks = driver.execute_script(
            "return [...document.querySelectorAll('[data-mark] title')].map(t => t.textContent)"
        )
        assert marks and all(m == M for m in marks), marks  # a mark's text, as text
        time.sleep(0.5)  # an injected image would have failed to load by now
        assert driver.execute_script("return window.__pwned === undefined")
    finally:
        driver.quit()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
