"""Where the bridge lives: the kernel (a Linux bridge over netlink) or vswitchd (userspace).

Either way the host's IP ends up on a netdev named like the bridge: the Linux bridge device
itself, or vswitchd's internal port (a TAP). This module only creates, checks and undoes the
switch side (bridge + uplink port); addresses and routes are netops' job for both.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

from ..errors import ConflictError, MissingFeatureError
from ..kernel import mark_uplink
from ..model import BridgeSpec, Change, Link
from ..paths import socket_path
from ..plan import plan_bridge
from ..rpc import Client
from ..userspace import UserspaceBackend
from . import netops
from .spec import HostIpSpec


class KernelSwitch:
    datapath = "kernel"
    l3_kinds = ("bridge",)

    def snapshot(self, ipr, spec: HostIpSpec) -> Optional[dict[str, Any]]:
        return None  # the bridge link itself (in the snapshot's links) is the whole switch state

    def attach(self, ipr, spec: HostIpSpec, uplink: dict[str, Any]) -> int:
        index = netops.ensure_bridge(ipr, spec.bridge, stp=spec.stp, forward_delay=spec.forward_delay,
                                     mtu=spec.mtu or uplink["mtu"], mac=uplink["mac"] if spec.move_mac else None)
        netops.set_link(ipr, uplink["index"], master=index)
        mark_uplink(ipr, uplink["index"])
        return index

    def differences(self, ipr, spec: HostIpSpec, bridge: dict[str, Any], uplink: dict[str, Any]) -> list[str]:
        diffs = []
        if uplink["master"] != spec.bridge:
            diffs.append(f"{spec.uplink} is not a port of {spec.bridge}")
        if bridge["stp"] != spec.stp or abs(bridge["forward_delay"] - spec.forward_delay) > 0.01:
            diffs.append(f"{spec.bridge} stp/forward_delay differ")
        return diffs

    def restore(self, ipr, spec: HostIpSpec, saved: Optional[dict[str, Any]], bridge_link: Optional[dict]) -> None:
        if bridge_link is None:
            netops.delete_link(ipr, spec.bridge)  # also releases the uplink


class UserspaceSwitch:
    """vswitchd over its control socket: one ``transact`` per step, applied whole or not at all."""

    datapath = "userspace"
    l3_kinds = ("tun",)

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def _backend(self) -> UserspaceBackend:
        try:
            backend = UserspaceBackend(Client(self.socket_path))
            backend.read()
        except (OSError, ConnectionError) as err:
            raise MissingFeatureError("datapath", "userspace", f"needs vswitchd, whose control socket "
                                                               f"{self.socket_path} does not answer ({err}); "
                                                               "deploy it with the openvif.vswitch.vswitchd role")
        return backend

    def snapshot(self, ipr, spec: HostIpSpec) -> Optional[dict[str, Any]]:
        state = self._backend().read()
        bridge = state.bridges.get(spec.bridge)
        port = state.ports.get(spec.uplink)
        if port is not None and port.bridge != spec.bridge:
            raise ConflictError("uplink", spec.uplink, f"is already a port of vswitchd bridge '{port.bridge}'")
        return {"bridge": None if bridge is None else bridge.to_facts(),
                "uplink_port": None if port is None else port.to_facts()}

    def attach(self, ipr, spec: HostIpSpec, uplink: dict[str, Any]) -> int:
        backend = self._backend()
        state = backend.read()
        state = replace(state, links={**state.links, spec.uplink: Link(name=spec.uplink)})
        wanted = BridgeSpec(name=spec.bridge, datapath="userspace", stp=spec.stp, forward_delay=spec.forward_delay,
                            mtu=spec.mtu or uplink["mtu"], mac=uplink["mac"] if spec.move_mac else None,
                            uplink=spec.uplink)
        backend.apply(plan_bridge(wanted, state))
        return netops.require_index(ipr, "bridge", spec.bridge)

    def differences(self, ipr, spec: HostIpSpec, bridge: dict[str, Any], uplink: dict[str, Any]) -> list[str]:
        state = self._backend().read()
        current = state.bridges.get(spec.bridge)
        if current is None:
            return [f"{spec.bridge} is not a bridge of vswitchd"]
        diffs = []
        if current.uplink != spec.uplink:
            diffs.append(f"{spec.uplink} is not the uplink of vswitchd bridge {spec.bridge}")
        if current.stp != spec.stp or abs(current.forward_delay - spec.forward_delay) > 0.01:
            diffs.append(f"{spec.bridge} stp/forward_delay differ")
        return diffs

    def restore(self, ipr, spec: HostIpSpec, saved: Optional[dict[str, Any]], bridge_link: Optional[dict]) -> None:
        backend = self._backend()
        state = backend.read()
        saved = saved or {}
        changes: list[Change] = []
        if saved.get("bridge") is None:
            if spec.bridge in state.bridges:
                changes.append(Change("del_bridge", spec.bridge, "userspace",
                                      {"ports": list(state.bridges[spec.bridge].ports)}))
        else:
            old = saved["bridge"]
            settings = {k: old[k] for k in ("stp", "forward_delay", "mtu", "mac") if old.get(k) not in (None, "")}
            changes.append(Change("set_bridge", spec.bridge, "userspace", settings))
            if saved.get("uplink_port") is None and spec.uplink in state.ports:
                changes.append(Change("del_port", spec.uplink, "userspace", {"bridge": spec.bridge}))
        backend.apply(changes)


def for_spec(spec: HostIpSpec):
    if spec.datapath == "userspace":
        return UserspaceSwitch(spec.vswitchd_socket or socket_path())
    return KernelSwitch()
