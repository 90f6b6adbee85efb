"""What a read command shows when no control plane answers: the same views, read straight
from the state dir on the control host.

Kept apart so the other CLI modules load none of the control code (Ray's, SSH's and the
store's libraries come with it): ``headway --help`` and a read through the API stay fast,
and this module is imported only when a command falls back to it (``_via_api``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from headway.control import chaos as chaos_mod
from headway.control import logs as logs_mod
from headway.control import preflight, rollout_window, store_usage, views
from headway.control.context import Context, Progress
from headway.model.spec import ServiceSpec
from headway.state import daemon_info, records


def status(name: str) -> dict:
    return views.observe(Context.load(), records.existing(name)) | {"controller_pid": daemon_info.running_pid()}


def events(name: str) -> list[dict]:
    return views.timeline(records.existing(name))


def service_list() -> list[dict]:
    return views.service_list()


def versions(name: str) -> dict:
    return views.versions_view(records.existing(name))


def config(name: str, number: int | None) -> dict:
    return views.config_view(records.existing(name), number)


def rollout_status(name: str) -> dict:
    return rollout_window.status(Context.load().cloud, records.existing(name))


def logs(name: str, source: dict, lines: int) -> list[dict]:
    return logs_mod.read(Context.load(), records.existing(name), logs_mod.Source(**source), lines)


def follow_logs(name: str, source: dict, lines: int, stop: threading.Event) -> Iterator[str]:
    """Followed here, on the control host, where the state dir and the nodes are reachable."""
    return logs_mod.follow(Context.load(), records.existing(name), logs_mod.Source(**source), lines, stop)


def chaos(name: str, action: str, node: str | None) -> dict:
    return chaos_mod.crash(Context.load(), records.existing(name), "head" if action == "kill-head" else "worker", node)


def dry_run(spec: ServiceSpec, strict: bool, progress: Progress) -> dict:
    return preflight.dry_run(Context.load(), spec, strict, progress)


def token(name: str) -> dict:
    return views.endpoint_token_view(records.existing(name))


def storage() -> dict:
    return views.storage_view(Context.load())


def cleanup(namespace: str) -> dict:
    return {"namespace": namespace, "removed_keys": store_usage.cleanup_leftover(Context.load().cloud, namespace)}
