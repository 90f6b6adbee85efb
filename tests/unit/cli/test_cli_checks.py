"""The CLI's own checks, without Ray or a control plane: versions, and a dry run that says
what a deploy would do and what is wrong — and starts nothing."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
HEADWAY = str(Path(sys.executable).parent / "headway")


def _run(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HEADWAY_HOME=str(home), HEADWAY_TMP=str(home / "t"))
    return subprocess.run([HEADWAY, *args], env=env, capture_output=True, text=True, timeout=60)


def _spec(tmp_path: Path, **overrides) -> Path:
    data = yaml.safe_load((ROOT / "examples/hello/service.yaml").read_text())
    data.update(name="t-dry", working_dir=str(ROOT / "examples/hello/app"), **overrides)
    f = tmp_path / "svc.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


def test_version_names_headway_ray_and_python(tmp_path):
    out = _run(tmp_path, "--version")
    assert out.returncode == 0
    assert out.stdout.startswith("headway 0.1.0 (Ray 2.60") and f"Python {sys.version.split()[0]}" in out.stdout


def test_dry_run_checks_and_starts_nothing(tmp_path):
    home = tmp_path / "home"
    ok = _run(home, "deploy", "-f", str(_spec(tmp_path)), "--dry-run")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "no cloud yet: a deploy would set up the managed store first" in ok.stdout
    assert "valid: a deploy would create t-dry: 1 application(s), 2 worker(s); nothing was started" in ok.stdout
    assert not (home / "controller.json").exists() and not (home / "cloud" / "cloud.json").exists()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bad = _run(
        home,
        "deploy",
        "-f",
        str(_spec(tmp_path, ray_gcs_external_storage_config={"address": f"127.0.0.1:{port}"})),
        "--dry-run",
    )
    assert bad.returncode == 2
    assert f"cannot reach the GCS store at redis://127.0.0.1:{port}" in bad.stderr
    assert "nothing was started" in bad.stderr
    one = [{"name": "hello", "import_path": "hello:build", "deployments": [{"name": "Hello", "num_replicas": 1}]}]
    strict = _run(home, "deploy", "-f", str(_spec(tmp_path, applications=one)), "--dry-run", "--strict")
    assert strict.returncode == 2 and "num_replicas 1" in strict.stdout
    built = ROOT / "tests/unit/data/serve_build.yaml"
    app = str(ROOT / "examples/hello/app")
    same = _run(home, "validate", "-f", str(built), "--name", "t-built", "--working-dir", app)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "note: http_options host/port (0.0.0.0:8000)" in same.stdout
    assert "a deploy would create t-built" in same.stdout
    nameless = _run(home, "validate", "-f", str(built))
    assert nameless.returncode == 2 and "name: required field is missing" in nameless.stderr
    assert not (home / "controller.json").exists()
    as_json = _run(home, "validate", "-f", str(built), "--name", "t-built", "--working-dir", app, "--json")
    assert as_json.returncode == 0, as_json.stderr
    found = json.loads(as_json.stdout)  # stdout holds the JSON alone; the notes went to stderr
    assert found["valid"] and found["action"] == "create" and found["name"] == "t-built" and found["workers"] == 2
    assert any("http_options" in n for n in found["notes"]) and "http_options" in as_json.stderr


def test_a_state_dir_of_a_newer_headway_is_one_paragraph_and_untouched(tmp_path):
    assert _run(tmp_path, "list").returncode == 0  # makes the state dir
    db = tmp_path / "state.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    for args in (["list"], ["status", "x"], ["token", "x"]):
        done = _run(tmp_path, *args)
        assert done.returncode == 1, done
        assert "Traceback" not in done.stderr and "schema 999" in done.stderr and "newer headway" in done.stderr
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 999


def test_import_paths_are_checked_and_code_beside_the_yaml_is_the_working_dir(tmp_path):
    home, code = tmp_path / "home", tmp_path / "code"
    code.mkdir()
    for f in (ROOT / "examples/hello/app").glob("*.py"):
        (code / f.name).write_text(f.read_text())
    built = (ROOT / "tests/unit/data/serve_build.yaml").read_text()
    (code / "serve_build.yaml").write_text(built)
    beside = _run(home, "validate", "-f", str(code / "serve_build.yaml"), "--name", "t-beside", "--json")
    assert beside.returncode == 0, beside.stderr
    assert f"working_dir: {code}, the YAML's folder" in beside.stderr
    assert json.loads(beside.stdout)["not_checked"]  # what a dry run cannot know is said
    (tmp_path / "alone.yaml").write_text(built)  # the same file away from its code: refused, naming the flag
    alone = _run(home, "deploy", "-f", str(tmp_path / "alone.yaml"), "--name", "t-alone")
    assert alone.returncode == 2 and "no module hello" in alone.stderr and "--working-dir" in alone.stderr
    (code / "typo.yaml").write_text(built.replace("hello:app", "nosuchmodule:app"))
    typo = _run(home, "validate", "-f", str(code / "typo.yaml"), "--name", "t-typo")
    assert typo.returncode == 2 and "no module nosuchmodule" in typo.stderr, typo.stderr
    (code / "attr.yaml").write_text(built.replace("hello:app", "hello:apps"))
    attr = _run(home, "deploy", "-f", str(code / "attr.yaml"), "--name", "t-attr")
    assert attr.returncode == 2 and "defines no apps" in attr.stderr
    assert not (home / "controller.json").exists()  # nothing was started


def test_validate_checks_the_endpoint_certificate_as_a_deploy_does(tmp_path):
    from headway.store import store_tls

    home = tmp_path / "home"
    mine, other = (store_tls.ensure(tmp_path / d, ["localhost"]) for d in ("a", "b"))
    good = {"port": 18443, "tls": {"cert": mine.cert, "key": mine.key}}
    ok = _run(home, "validate", "-f", str(_spec(tmp_path, endpoint=good)))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = _run(home, "validate", "-f", str(_spec(tmp_path, endpoint={"tls": {"cert": mine.cert, "key": other.key}})))
    assert bad.returncode == 2 and "endpoint.tls.key does not match the certificate" in bad.stderr, bad.stderr
    assert "nothing was started" in bad.stderr and "PRIVATE KEY" not in bad.stderr
    missing = _run(home, "validate", "-f", str(_spec(tmp_path, endpoint={"tls": {"cert": "nope.pem", "key": "k"}})))
    assert missing.returncode == 2 and "endpoint.tls.cert: cannot read" in missing.stderr, missing.stderr
    assert not (home / "controller.json").exists()
