"""What the control code works with, handed down from the edge that starts the work: which
node provider runs a service, and how progress is reported."""

from __future__ import annotations

from collections.abc import Callable

from headway.cluster.local_provider import LocalProvider
from headway.cluster.node_provider import NodeProvider
from headway.cluster.ssh_provider import SshProvider
from headway.state.records import ServiceRecord
from headway.store import cloud

Progress = Callable[[str], None]

Provider = NodeProvider  # the contract; LocalProvider and SshProvider implement it


def provider_for(crec: cloud.CloudRecord | None, rec: ServiceRecord | None = None) -> Provider:
    """The provider of a cloud; a service record's mode stands in when the cloud is gone."""
    if crec is not None and crec.mode == "ssh" and crec.ssh is not None:
        return SshProvider(crec.ssh)
    mode = crec.mode if crec else rec.mode if rec else cloud.mode_default()
    return LocalProvider(mode, crec.subnet if crec else None)
