"""A node's log files read here and through the shell script a remote host runs (run by a
real bash here): tails cut at a whole line, offsets, a shrunk file, a new file."""

import os
import subprocess

from headway.cluster import node_logs
from headway.state.records import NodeRecord


def _node(tmp_path):
    temp = tmp_path / "node-tmp"
    serve = temp / "session_latest" / "logs" / "serve"
    serve.mkdir(parents=True)
    log = tmp_path / "node it's.log"  # a quote in a path: the script quotes every one
    log.write_text("Local node IP: 10.0.0.2\nRay runtime started.\n")
    (serve / "replica_app_Hello_abc.log").write_text("".join(f"INFO line {i}\n" for i in range(100)))
    return NodeRecord(name="w", role="worker", ip="10.0.0.2", temp_dir=str(temp), log=str(log), marker="m"), serve


def _remote(node, offsets, max_bytes):
    out = subprocess.run(
        ["bash", "-c", node_logs.remote_script(node.log, node.temp_dir, offsets, max_bytes)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return node_logs.parse_remote(out, tail=offsets is None)


def test_tails_offsets_and_new_files_here_and_over_the_script(tmp_path):
    node, serve = _node(tmp_path)
    for read in (lambda o, m: node_logs.read_local(node.log, node.temp_dir, o, m), lambda o, m: _remote(node, o, m)):
        tails = read(None, 64)
        replica = str(serve / "replica_app_Hello_abc.log")
        assert set(tails) == {node.log, replica}
        text, end, mtime = tails[replica]
        assert text.startswith("INFO line") and text.endswith("INFO line 99\n")  # whole lines only
        assert end == os.path.getsize(replica) and abs(mtime - os.path.getmtime(replica)) < 1.5
        assert tails[node.log][0] == "Local node IP: 10.0.0.2\nRay runtime started.\n"
        offsets = {p: e for p, (_, e, _) in tails.items()}
        assert {p: t for p, (t, _, _) in read(offsets, 64).items()} == {node.log: "", replica: ""}
        with open(replica, "a") as fh:
            fh.write("INFO line 100\n")
        (serve / "proxy_10.0.0.2.log").write_text("INFO proxy up\n")
        more = read(offsets, 64)
        assert more[replica][0] == "INFO line 100\n"
        assert more[str(serve / "proxy_10.0.0.2.log")][0] == "INFO proxy up\n"  # a new file: from its start
        os.truncate(replica, 0)
        with open(replica, "w") as fh:
            fh.write("INFO after rotation\n")
        assert read({replica: 10_000}, 64)[replica][0] == "INFO after rotation\n"
        os.truncate(replica, 0)
        (serve / "replica_app_Hello_abc.log").write_text("".join(f"INFO line {i}\n" for i in range(100)))
        (serve / "proxy_10.0.0.2.log").unlink()
