"""The CLI starts fast and talks to scripts: ``--help`` loads none of the heavy libraries,
tab completion knows the services (and creates no state dir to find out), and piped
output keeps whole lines.

Each case runs a fresh interpreter: what a test process imported before says nothing about
what ``headway`` loads.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from headway.state import records

#: What a command loads only when it runs: Ray, SSH, the store's client, the HTTP stacks,
#: and every headway layer below the CLI that brings them.
HEAVY = (
    "ray",
    "paramiko",
    "redis",
    "httpx",
    "fastapi",
    "uvicorn",
    "grpc",
    "headway.control",
    "headway.cluster",
    "headway.store",
    "headway.ingress",
    "headway.hosts",
    "headway.api",
)

HEADWAY = str(Path(sys.executable).with_name("headway"))


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "HEADWAY_HOME": str(home), **extra}


def _loaded_by(argv: list[str], home: Path) -> set[str]:
    code = (
        "import sys\n"
        "from headway.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print('\\n'.join(sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=_env(home), capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_help_loads_no_heavy_library(tmp_path: Path) -> None:
    for argv in (["--help"], ["deploy", "--help"], ["cloud", "setup", "--help"], ["logs", "--help"]):
        loaded = _loaded_by(argv, tmp_path)
        heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY or m.rsplit(".", 1)[0] in HEAVY)
        assert not heavy, f"headway {' '.join(argv)} loads {heavy[:8]}"
        assert "click" in loaded  # the probe itself works: it saw what was loaded


def test_help_time_is_printed(tmp_path: Path) -> None:
    """The figure for docs/benchmarks.md (no timed assertion: this machine is shared)."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([HEADWAY, "--help"], env=_env(tmp_path), capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    print(f"headway --help: median {statistics.median(times):.3f} s of 3 (min {min(times):.3f}, max {max(times):.3f})")


def _complete(words: str, home: Path) -> list[str]:
    env = _env(home, COMP_WORDS=words, COMP_CWORD=str(len(words.split(" ")) - 1), _HEADWAY_COMPLETE="bash_complete")
    done = subprocess.run([HEADWAY], env=env, capture_output=True, text=True, check=True)
    return [line.split(",", 1)[1] for line in done.stdout.splitlines() if line.startswith("plain,")]


def test_tab_completes_commands_and_service_names(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "state"
    assert _complete("headway sta", home) == ["status"]
    assert _complete("headway status ", home) == []
    assert not home.exists(), "completion created a state dir"
    monkeypatch.setenv("HEADWAY_HOME", str(home))
    spec = {"name": "x", "applications": [{"import_path": "m:a"}], "compute_config": {"worker_nodes": []}}
    for name in ("alpha", "beta", "alps"):
        records.save(
            records.ServiceRecord(
                name=name,
                cluster_id="c",
                mode="loopback",
                state="RUNNING",
                spec=spec,
                head_ip="127.0.0.1",
                gcs_port=1,
                dashboard_port=2,
                serve_port=3,
            )
        )
    assert _complete("headway status al", home) == ["alpha", "alps"]
    assert _complete("headway logs ", home) == ["alpha", "alps", "beta"]


def test_completion_script_names_the_program(tmp_path: Path) -> None:
    done = subprocess.run([HEADWAY, "completion", "bash"], env=_env(tmp_path), capture_output=True, text=True)
    assert done.returncode == 0 and "_HEADWAY_COMPLETE=bash_complete" in done.stdout


def test_piped_output_keeps_whole_lines(tmp_path: Path) -> None:
    long = "word " * 80
    code = f"from headway.cli.cli_common import out\nout.print({long!r})\nout.print('[bold]x[/] ' + {long!r})\n"
    done = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    assert [line.rstrip() for line in lines] == [long.rstrip(), "x " + long.rstrip()], lines
