"""Where the bridge lives: the kernel (a Linux bridge over netlink) or vswitchd (userspace).

Either way the host's IP ends up on a netdev named like the bridge: the Linux bridge device
itself, or vswitchd's internal port (a TAP). This module only creates, checks and undoes the
switch side (bridge + uplink port), and it does so as the modules do: ``plan_bridge`` against
the host's state, applied by ``Host.apply``. Putting the switch back is planning toward the
bridge as the snapshot recorded it (every setting in the table, so none is forgotten).
Addresses and routes are netops' job for both datapaths.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Optional

from ..errors import ConflictError, MissingFeatureError
from ..host import Backend, Host
from ..model import BRIDGE_SETTINGS, BridgeSpec, Change, HostState
from ..paths import socket_path
from ..plan import plan_bridge, plan_bridge_absent
from ..rpc import Client
from . import netops
from .spec import HostIpSpec


class PlannedSwitch:
    """The bridge and its uplink on one datapath, changed only through the planner."""

    def __init__(self, datapath: str, l3_kinds: tuple[str, ...], vswitchd_socket: Optional[str] = None) -> None:
        self.datapath = datapath
        self.l3_kinds = l3_kinds   # the kind of netdev that carries the host's IP on this datapath
        self.vswitchd_socket = vswitchd_socket

    @contextmanager
    def _host(self) -> Iterator[tuple[Host, HostState]]:
        """The kernel backend always (it knows the links), vswitchd's when the bridge lives there.

        The kernel backend's netlink socket is closed on the way out: the guard's processes run
        for minutes, and a socket left to the garbage collector closed a descriptor number that
        had been reused by then (EBADF in a later step).
        """
        from ..kernel import KernelBackend

        kernel = KernelBackend()
        backends: list[Backend] = [kernel]
        if self.datapath == "userspace":
            from ..userspace import UserspaceBackend

            backends.append(UserspaceBackend(Client(self.vswitchd_socket)))
        host = Host(backends)
        try:
            try:
                state = host.read()
            except (OSError, ConnectionError) as err:
                raise MissingFeatureError("datapath", self.datapath,
                                          f"needs vswitchd, whose control socket {self.vswitchd_socket} does not "
                                          f"answer ({err}); deploy it with the openvif.vswitch.vswitchd role")
            yield host, state
        finally:
            kernel.close()

    def _wanted(self, spec: HostIpSpec, uplink: Mapping[str, Any]) -> BridgeSpec:
        return BridgeSpec(name=spec.bridge, datapath=self.datapath, stp=spec.stp, forward_delay=spec.forward_delay,
                          mtu=spec.mtu or uplink["mtu"], mac=uplink["mac"] if spec.move_mac else None,
                          uplink=spec.port, bond=spec.bond)

    def snapshot(self, ipr, spec: HostIpSpec, uplink: Mapping[str, Any]) -> dict[str, Any]:
        """The bridge and the uplink's port as the switch has them before the move.

        The whole plan is made here, in the module, and thrown away: whatever the planner refuses (a
        bond member that is a port elsewhere, members with different MTUs, a mode or a bond the
        datapath lacks) fails before the guard starts and anything changes.
        """
        with self._host() as (host, state):
            bridge = state.bridges.get(spec.bridge)
            owner = state.bridge_of(spec.port)
            if owner not in (None, spec.bridge):
                field = "uplink.bond" if spec.bond is not None else "uplink"
                raise ConflictError(field, spec.port, f"is already a port of {self.datapath} bridge '{owner}'")
            plan_bridge(self._wanted(spec, uplink), state, host.features)
            port = state.ports.get(spec.port)
            return {"bridge": None if bridge is None else bridge.to_facts(),
                    "uplink_port": None if port is None else port.to_facts()}

    def attach(self, ipr, spec: HostIpSpec, uplink: dict[str, Any]) -> int:
        with self._host() as (host, state):
            host.apply(plan_bridge(self._wanted(spec, uplink), state, host.features), state)
            return netops.require_index(ipr, "bridge", spec.bridge)

    def differences(self, ipr, spec: HostIpSpec, bridge: dict[str, Any], uplink: dict[str, Any]) -> list[str]:
        """What the planner would still change: empty when the switch side is as declared."""
        with self._host() as (host, state):
            if spec.bridge not in state.bridges:
                return [f"{spec.bridge} is not a bridge of the {self.datapath} datapath"]
            return [change.describe() for change in plan_bridge(self._wanted(spec, uplink), state, host.features)]

    def restore(self, ipr, spec: HostIpSpec, saved: Optional[dict[str, Any]], bridge_link: Optional[dict]) -> None:
        with self._host() as (host, state):
            before = _recorded_bridge(saved, bridge_link)
            if before is None:
                changes = plan_bridge_absent(spec.bridge, state)   # the move created it: remove it, uplink and all
            else:
                settings = {key: before.get(key) for key in BRIDGE_SETTINGS if before.get(key) not in (None, "")}
                changes = plan_bridge(BridgeSpec(name=spec.bridge, datapath=self.datapath, **settings), state)
                joined_by_move = (saved or {}).get("uplink_port") is None
                if joined_by_move and state.bridge_of(spec.port) == spec.bridge:
                    changes.append(Change("del_port", spec.port, self.datapath, {"bridge": spec.bridge}))
            host.apply(changes, state)


def _recorded_bridge(saved: Optional[dict[str, Any]], bridge_link: Optional[dict]) -> Optional[dict[str, Any]]:
    """The bridge's settings before the move, or None if there was no bridge.

    Journals written before the kernel datapath recorded its switch side (``saved`` is None) still
    have the bridge link, with the settings the move could change.
    """
    if saved is not None:
        return saved.get("bridge")
    if bridge_link is None or bridge_link.get("kind") != "bridge":
        return None
    return {key: bridge_link.get(key) for key in ("stp", "forward_delay", "mtu", "mac")}


def for_spec(spec: HostIpSpec) -> PlannedSwitch:
    if spec.datapath == "userspace":
        return PlannedSwitch("userspace", ("tun",), spec.vswitchd_socket or socket_path())
    return PlannedSwitch("kernel", ("bridge",))
