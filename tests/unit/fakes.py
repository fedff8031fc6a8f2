"""A fake datapath behind our own Backend interface: state in memory, optional failure injection."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import BackendError
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import (
    BridgeState,
    Change,
    FdbEntry,
    HostState,
    Link,
    PortState,
)
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.plan import Features, simulate


class FakeBackend:
    def __init__(self, datapath: str = "kernel", links: Sequence[str] = (), features: Optional[Features] = None,
                 bridges: Sequence[BridgeState] = (), ports: Sequence[PortState] = ()) -> None:
        self.datapath = datapath
        self.features = features or Features()
        self.state = HostState(
            bridges={b.name: b for b in bridges}, ports={p.name: p for p in ports},
            links={name: Link(name=name, kind="veth") for name in links}, datapaths=(datapath,))
        self.applied: list[list[Change]] = []
        self.fail_on: Optional[str] = None   # op name that raises, after earlier changes were applied

    def read(self) -> HostState:
        return self.state

    def apply(self, changes: Sequence[Change]) -> None:
        for change in changes:
            if change.op == self.fail_on:
                raise BackendError(change.target, change.op, "was refused by the fake datapath")
        self.state = simulate(self.state, changes)
        self.applied.append(list(changes))

    def fdb(self, bridge: Optional[str] = None) -> list[FdbEntry]:
        return []
