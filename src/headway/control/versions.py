"""Desired state, versioned: every accepted deploy (or scale, or rollback) of a service is
a numbered version kept in the state db — its spec, its package, where it came from and
how it ended. A failed update rolls back to the last version that ran; ``headway
rollback`` goes to any version still on record."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from headway.cluster import deps
from headway.model.errors import InputError
from headway.model.spec import ServiceSpec
from headway.plan import reconcile as plan
from headway.state import db

#: Versions kept per service (and the packages they name): older ones are forgotten.
KEEP = 20


@dataclass(frozen=True)
class Version:
    service: str
    number: int
    name: str | None
    spec: ServiceSpec
    package_uri: str | None
    digest: str
    origin: str
    created_at: float
    outcome: str
    note: str = ""

    def view(self) -> dict:
        return {
            "number": self.number,
            "name": self.name,
            "digest": self.digest,
            "origin": self.origin,
            "created_at": self.created_at,
            "outcome": self.outcome,
            "note": self.note,
            "package": (self.package_uri or "").rsplit("/", 1)[-1] or None,
        }


def _row(service: str, r: tuple) -> Version:
    number, name, spec, pkg, digest, origin, created, outcome, note = r
    return Version(
        service, number, name, ServiceSpec.model_validate(json.loads(spec)), pkg, digest, origin, created, outcome, note
    )


_COLS = "number, name, spec, package_uri, digest, origin, created_at, outcome, note"


def create(service: str, spec: ServiceSpec, package_uri: str | None, origin: str) -> Version:
    body = spec.model_dump(mode="json", by_alias=False)
    digest = plan.digest({"spec": body, "package": package_uri})
    with db.connect(write=True) as conn:
        last = conn.execute("SELECT MAX(number) FROM versions WHERE service = ?", (service,)).fetchone()[0] or 0
        conn.execute(
            f"INSERT INTO versions (service, {_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                service,
                last + 1,
                spec.version_name,
                json.dumps(body),
                package_uri,
                digest,
                origin,
                time.time(),
                "pending",
                "",
            ),
        )
        conn.execute("DELETE FROM versions WHERE service = ? AND number <= ?", (service, last + 1 - KEEP))
    return get(service, last + 1)


def clip(text: str, keep: int = 600) -> str:
    """A long error kept readable: its start says what failed, its end why (a traceback's
    last line)."""
    if len(text) <= keep:
        return text
    return text[: keep // 4] + " … " + text[-(keep - keep // 4) :]


def get(service: str, number: int) -> Version:
    with db.connect() as conn:
        r = conn.execute(f"SELECT {_COLS} FROM versions WHERE service = ? AND number = ?", (service, number)).fetchone()
    if r is None:
        raise InputError(f"service {service} has no version {number}; 'headway versions {service}' lists them")
    return _row(service, r)


def all_of(service: str) -> list[Version]:
    with db.connect() as conn:
        rows = conn.execute(f"SELECT {_COLS} FROM versions WHERE service = ? ORDER BY number", (service,)).fetchall()
    return [_row(service, r) for r in rows]


def set_outcome(service: str, number: int, outcome: str, note: str = "") -> None:
    with db.connect(write=True) as conn:
        conn.execute(
            "UPDATE versions SET outcome = ?, note = ? WHERE service = ? AND number = ?",
            (outcome, clip(note), service, number),
        )


def rollback_target(service: str, running: int | None, to: int | None) -> Version:
    """The version a rollback goes to: the one named, else the last one that ran before
    the running one."""
    if to is not None:
        return get(service, to)
    earlier = [v for v in all_of(service) if v.outcome == "ran" and (running is None or v.number < running)]
    if not earlier:
        raise InputError(f"service {service} has no earlier version that ran; name one with --to")
    return earlier[-1]


def forget(service: str) -> None:
    with db.connect(write=True) as conn:
        conn.execute("DELETE FROM versions WHERE service = ?", (service,))


def packages_in_use(service: str) -> set[str]:
    """The packages (working_dir and applications' packages) a kept version names."""
    kept = all_of(service)
    packages = {u for v in kept for u in deps.uris(service, v.spec).values()}
    return packages | {v.package_uri for v in kept if v.package_uri}
