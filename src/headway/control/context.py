"""What the control code works with, built once at the edge that starts a unit of work (a
controller round, an API request, a CLI command) and handed down: the cloud as it is now,
the node provider it gives a service, and the clock.

One read of the cloud record per unit of work, not one per function that needs it; and
one seam for tests, which build a ``Context`` with a fake provider instead of patching
module attributes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from headway.cluster.local_provider import LocalProvider
from headway.cluster.node_provider import NodeProvider
from headway.cluster.ssh_provider import SshProvider
from headway.state.records import ServiceRecord
from headway.store import cloud
from headway.store.cloud import CloudRecord

Progress = Callable[[str], None]

Provider = NodeProvider  # the contract; LocalProvider and SshProvider implement it


def provider_for(crec: CloudRecord | None, rec: ServiceRecord | None = None) -> Provider:
    """The provider of a cloud; a service record's mode stands in when the cloud is gone."""
    if crec is not None and crec.mode == "ssh" and crec.ssh is not None:
        return SshProvider(crec.ssh)
    mode = crec.mode if crec else rec.mode if rec else cloud.mode_default()
    return LocalProvider(mode, crec.subnet if crec else None)


@dataclass(frozen=True)
class Context:
    cloud: CloudRecord | None
    providers: Callable[[CloudRecord | None, ServiceRecord | None], Provider] = field(default=provider_for)
    clock: Callable[[], float] = field(default=time.time)
    #: One provider per context: the ports and hosts it planned stay planned for the whole unit of work.
    _providers: dict[str | None, Provider] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls) -> Context:
        """The context as the cloud record says now (the one read of it in the control code)."""
        return cls(cloud.load())

    def provider(self, rec: ServiceRecord | None = None) -> Provider:
        """The provider that runs ``rec`` (or a new service) in this cloud."""
        key = rec.mode if self.cloud is None and rec is not None else None
        if key not in self._providers:
            self._providers[key] = self.providers(self.cloud, rec)
        return self._providers[key]

    def with_cloud(self, crec: CloudRecord | None) -> Context:
        """The same context after the cloud was set up (the first deploy does that)."""
        return Context(crec, self.providers, self.clock)
