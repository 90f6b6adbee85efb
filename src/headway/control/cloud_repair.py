"""The cloud's own repairs, run by the controller between its service rounds: the managed
store's dead processes restarted (with every service's ACL user: ACLs do not replicate),
keepalived on the ingress hosts, and which store process is the primary now."""

from __future__ import annotations

import logging

from headway.control.store_access import store_user_password
from headway.hosts import vip
from headway.state import records
from headway.store import cloud, cloud_setup, storage

log = logging.getLogger("headway.controller")


def store_primary(crec: cloud.CloudRecord | None) -> str | None:
    """The managed store's primary as Sentinel names it now, or None without an answer."""
    found = cloud.sentinel_primary(crec) if crec is not None else None
    return f"{found[0]}:{found[1]}" if found else None


def repair(crec: cloud.CloudRecord | None) -> None:
    """Restart a dead process of the managed store (a dead primary comes back as a replica
    of the promoted one) and keepalived where it is missing; then make sure every running
    store process has every service's ACL user (ACLs do not replicate, and a process
    restarted while its host was still marked down would otherwise miss them)."""
    if crec is None:
        return
    if crec.ssh is not None and crec.ssh.ingress is not None:
        for host in vip.ensure(crec.ssh, crec.id):
            log.warning("endpoint address: keepalived restarted on %s", host)
    restarted = cloud_setup.restart_dead(crec)
    if restarted:
        log.warning("managed store: restarted the process(es) on port(s) %s", restarted)
    users = [
        (r.namespace, store_user_password(r))
        for r in records.all_records()
        if r.store_user and r.storage_source == "cloud" and r.namespace
    ]
    if not users:
        return
    for client in cloud.admin_clients(crec):
        try:
            for namespace, password in users:
                storage.create_service_user(client, namespace, password)
        except Exception:  # noqa: BLE001 - the next check tries again
            log.exception("managed store: giving the service users to a store process failed")
        finally:
            client.close()
