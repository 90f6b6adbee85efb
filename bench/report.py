"""The benchmarks' results as the sections of docs/benchmarks.md: each benchmark rewrites
its own section (between ``<!-- bench:KEY -->`` markers), dated and with the machine
named, so the document holds one run per benchmark and nothing typed by hand."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

import ray

LABELS = {
    "head-kill": "head SIGKILL",
    "head-freeze": "head frozen (SIGSTOP 30 s; fenced with SIGKILL)",
    "head-partition": "head cut off (link down in its namespace)",
    "gcs-kill": "GCS process alone SIGKILLed",
    "worker-kill": "worker SIGKILL, head up",
    "worker-kill-head-down": "worker SIGKILL while the head is down",
    "store-primary-kill": "store primary SIGKILL (Sentinel promotes the replica; the GCS exits)",
    "controller-kill": "control plane SIGKILL, then the head",
    "head-kill-x30": "30 head SIGKILLs in a row (each once RUNNING again), leak snapshots",
    "baseline-ft-no-headway": "baseline: GCS FT, no headway (head left dead, Ray's 60 s worker timeout)",
    "baseline-no-ft": "baseline: no GCS FT (Ray's defaults)",
}


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, Ray {ray.__version__}"
    )


def header(what: str) -> str:
    return f"Run of {time.strftime('%Y-%m-%d')} on {machine()}: {what}.\n"


def write_section(path: str, key: str, body: str) -> None:
    """Replace the section ``key`` of ``path`` (appended when it has none)."""
    p = Path(path)
    text = p.read_text() if p.exists() else "# Benchmarks\n"
    block = f"<!-- bench:{key} -->\n{body.rstrip()}\n<!-- /bench:{key} -->"
    pattern = re.compile(rf"<!-- bench:{re.escape(key)} -->.*?<!-- /bench:{re.escape(key)} -->", re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    p.write_text(text)


def _s(v) -> str:
    return "–" if v is None else f"{v}"


def _lat(row: dict, window: str) -> str:
    w = row.get(window)
    return "{p50_ms} / {p99_ms} / {max_ms}".format(**w) if w else "–"


def failover_markdown(rows: list[dict], rate: float) -> str:
    """One table per scenario."""
    out = [
        header(
            f"examples/hello with 2 workers, {rate:.0f} requests/s open-loop through the endpoint, "
            "times in seconds from the fault, latency p50 / p99 / max in ms"
        )
    ]
    for r in rows:
        out.append(f"\n### {LABELS.get(r['scenario'], r['scenario'])}\n\n| | |\n|---|---|")
        out.append(f"| requests sent / failed | {r['sent']:,} / **{r['failed']:,}** |")
        if r["scenario"].startswith("head-kill-x"):
            out += [
                f"| recovered | {r['recovered']} of {r['scenario'].removeprefix('head-kill-x')} |",
                f"| kill → RUNNING | median {r['running_s']} s, max {r['running_s_max']} s |",
                f"| store bytes after the first / last kill | {r['store_bytes_first_last'][0]:,} / "
                f"{r['store_bytes_first_last'][1]:,} ({r['store_bytes_per_kill']:+,} per kill) |",
                f"| store keys after the first / last kill | {r['store_keys_first_last'][0]} / "
                f"{r['store_keys_first_last'][1]} |",
                f"| leaks (stray processes, zombies, duplicate nodes, namespaces, temp dirs) | "
                f"{'none' if r['leak_free'] else r['leaks']} |",
            ]
            continue
        if "first_failure_s" in r:
            out.append(f"| first failure | {_s(r['first_failure_s'])} s after the kill ({r.get('note', '')}) |")
        else:
            out += [
                f"| detected | {_s(r.get('detect_s'))} |",
                f"| new head started | {_s(r.get('new_head_s'))} |",
                f"| workers back (re-registered / new host) | {_s(r.get('workers_back_s'))} |",
                f"| RUNNING (head) / replicas placed (worker) | {_s(r.get('running_s'))} |",
            ]
            if r.get("update_applied_s") is not None or r.get("update_error"):
                applied = r.get("update_applied_s") or f"failed: {r.get('update_error')}"
                refused = f" ({r['update_refusals']} refusals)" if r.get("update_refusals") is not None else ""
                out.append(f"| an update retried every second: applied | {applied}{refused} |")
        out.append(
            f"| latency before / during / after | {_lat(r, 'before')} · {_lat(r, 'during')} · {_lat(r, 'after')} |"
        )
    return "\n".join(out)


def publish(table: str, markdown_path: str | None, key: str) -> None:
    """Print a benchmark's table; with ``--markdown``, write it as its section too."""
    print(table)
    if markdown_path:
        write_section(markdown_path, key, table)
