"""Can the workers serve alone? Checks of replica placement, as pure functions.

While the head is down nothing can start or move a replica. A deployment survives
the loss of a worker in that window only if its replicas sit on at least two
workers; one whose replicas all sit on one worker stops answering with it (measured:
every request failed or hung). Replicas on the head die with the head.

Two checks: ``spec_problems`` before anything starts, on what the YAML states
(``num_replicas``, ``max_replicas_per_node``, the number of workers), and
``observed_problems`` once the applications run, on where Serve really put the
replicas (this one also sees settings written in the application's code).
"""

from __future__ import annotations

from typing import Any

from headway.model.spec import ServiceSpec

FIX = "set num_replicas >= 2 and max_replicas_per_node: 1 (one replica per worker)"


def spec_problems(spec: ServiceSpec) -> list[str]:
    workers = sum(g.initial for g in spec.compute_config.worker_nodes)
    problems = []
    if workers < 2:
        problems.append(
            f"compute_config.worker_nodes: {workers} worker node(s); a service survives the loss of a "
            "worker while its head is down only with replicas on at least two workers — add a worker"
        )
    for app in spec.applications:
        for dep in app.deployments:
            where = f"applications.{app.name}.deployments.{dep.get('name', '?')}"
            num = dep.get("num_replicas")
            per_node = dep.get("max_replicas_per_node")
            if isinstance(num, int) and num < 2:
                problems.append(f"{where}: num_replicas {num} dies with its worker; {FIX}")
            elif isinstance(num, int) and isinstance(per_node, int) and per_node >= num:
                problems.append(
                    f"{where}: max_replicas_per_node {per_node} lets all {num} replicas sit on one worker; {FIX}"
                )
    return problems


def observed_problems(replicas: dict[str, dict[str, dict[str, Any]]], head_node_id: str | None) -> list[str]:
    """``replicas`` as ``serve.replicas`` returns it: per app and deployment, the node ids."""
    problems = []
    for app, deps in replicas.items():
        for dep, info in deps.items():
            nodes = set(info["node_ids"])
            where = f"{app}/{dep}"
            if head_node_id and head_node_id in nodes:
                problems.append(f"{where}: a replica runs on the head node and dies with it; give the head 0 CPUs")
            workers = nodes - {head_node_id}
            if len(workers) < 2:
                problems.append(
                    f"{where}: its {info['running']} replica(s) run on {len(workers)} worker(s); "
                    f"if that worker dies while the head is down, nothing can re-place them — {FIX}"
                )
    return problems
