"""The move itself (uplink's IP -> bridge) and the check that tells whether it is needed."""
from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import BackendError
from . import clients, dhcp, move6, move_dhcp6, netops, probe, switch_side
from .snapshot import nameservers
from .spec import HostIpSpec

RTPROT_STATIC, RTPROT_DHCP = 4, 16


class VerifyError(BackendError):
    """The new configuration is in place but the network cannot be reached through it."""


def in_desired_state(ipr, spec: HostIpSpec, resolv_conf: str) -> tuple[bool, list[str]]:
    """Whether the host already has the IP on the bridge as declared; the differences otherwise."""
    diffs: list[str] = []
    bridge = netops.read_link(ipr, spec.bridge)
    uplink = netops.read_link(ipr, spec.uplink)
    if uplink is None:
        return False, [f"uplink {spec.uplink} does not exist"]
    sw = switch_side.for_spec(spec)
    if bridge is None or bridge["kind"] not in sw.l3_kinds:
        return False, [f"bridge {spec.bridge} does not exist"]
    diffs.extend(sw.differences(ipr, spec, bridge, uplink))
    if uplink["addresses"]:
        diffs.append(f"{spec.uplink} still has IPv4 addresses")
    diffs.extend(move6.differences(ipr, spec, bridge, uplink))
    diffs.extend(move_dhcp6.differences(spec, bridge))
    if spec.mtu and bridge["mtu"] != spec.mtu:
        diffs.append(f"{spec.bridge} mtu is {bridge['mtu']}, not {spec.mtu}")
    if spec.move_mac and bridge["mac"] != uplink["mac"]:
        diffs.append(f"{spec.bridge} does not carry {spec.uplink}'s MAC")
    have = [(a["address"], a["prefixlen"]) for a in bridge["addresses"]]
    if spec.bootproto == "static":
        iface = spec.static_interface()
        if have != [(str(iface.ip), iface.network.prefixlen)]:
            diffs.append(f"{spec.bridge} addresses are {have}, not [{spec.address}]")
        if spec.gateway:
            routes = netops.read_routes(ipr, {bridge["index"]: spec.bridge})
            if not any(r["dst_len"] == 0 and r["gateway"] == spec.gateway for r in routes):
                diffs.append(f"no default route via {spec.gateway} on {spec.bridge}")
    else:
        if not have:
            diffs.append(f"{spec.bridge} has no address")
        elif any(a["valid_lft"] == netops.FOREVER for a in bridge["addresses"]):
            diffs.append(f"{spec.bridge} has a static address, not a DHCP lease")
    if spec.dns and nameservers(netops.read_file(resolv_conf)) != list(spec.dns):
        diffs.append(f"{resolv_conf} nameservers are not {list(spec.dns)}")
    return not diffs, diffs


def _wait_forwarding(ipr, port_index: int, spec: HostIpSpec) -> None:
    """With STP on, a port listens and learns for 2 x forward_delay before it forwards."""
    limit = (2 * spec.forward_delay + 5) if spec.stp else 3.0
    deadline = time.monotonic() + limit
    while netops.port_state(ipr, port_index) != netops.BR_STATE_FORWARDING:
        if time.monotonic() >= deadline:
            raise VerifyError("uplink", spec.uplink, f"did not reach the forwarding state on {spec.bridge} "
                                                     f"within {limit:g} s")
        time.sleep(0.1)


@dataclass
class Addressing:
    """What the bridge was given: its own address, the gateway to use and how the routes are marked."""

    own_ip: str
    gateway: Optional[str]
    proto: int
    lease: Optional[dhcp.Lease] = None


def apply(ipr, spec: HostIpSpec, snap: dict[str, Any], hold: Optional[Callable[[str], None]] = None
          ) -> dict[str, Any]:
    """Move the addressing to the bridge and verify it. Raises on any failure; never rolls back itself
    (the guard does, from the snapshot)."""
    hold = hold or (lambda step: None)
    bridge_index = _bridge_the_uplink(ipr, spec, snap, hold)
    mac = netops.read_link(ipr, spec.bridge)["mac"]
    addressing = _address_the_bridge(ipr, spec, snap["uplink"], bridge_index, mac)
    network = ipaddress.IPv4Network(f"{addressing.own_ip}/{netops.read_addresses(ipr, bridge_index)[0]['prefixlen']}",
                                    strict=False)
    gateway = _move_routes(ipr, spec, snap, addressing, network)
    gateway6 = move6.address_bridge(ipr, spec, snap, bridge_index)
    try:
        lease6 = move_dhcp6.lease_on_bridge(ipr, spec, snap, bridge_index, mac)
    except move6.Verify6Error as err:
        raise VerifyError(err.field, err.value, err.reason) from None
    _point_resolv_conf(spec, snap, addressing.lease)
    hold("addressed")
    verified = _verify(spec, mac, addressing.own_ip, gateway, network)
    if lease6:
        verified.append(f"DHCPv6 server {lease6.server} leased {lease6.address} for {lease6.valid} s")
    try:
        verified += move6.verify(ipr, spec, snap, bridge_index, mac, gateway6)
    except move6.Verify6Error as err:
        raise VerifyError(err.field, err.value, err.reason) from None
    lease = addressing.lease
    return {"lease": lease.to_dict() if lease else None, "lease6": lease6.to_dict() if lease6 else None,
            "gateway": gateway, "gateway6": gateway6,
            "address": f"{addressing.own_ip}/{network.prefixlen}",
            "address6": [f"{a['address']}/{a['prefixlen']}" for a in netops.read_addresses6(ipr, bridge_index)],
            "verified": verified}


def _bridge_the_uplink(ipr, spec: HostIpSpec, snap: dict[str, Any], hold: Callable[[str], None]) -> int:
    """Phase 1: the uplink joins the bridge and loses its addressing; returns the bridge's index."""
    uplink_index = snap["uplink"]["index"]
    sw = switch_side.for_spec(spec)
    bridge_index = sw.attach(ipr, spec, snap["uplink"])
    clients.stop(snap.get("dhcp_clients") or [])  # they would put the IP back on the NIC at renewal
    for route in snap["routes"]:
        netops.del_route(ipr, route)
    netops.flush_addresses(ipr, uplink_index)
    move6.unaddress_uplink(ipr, spec, snap, spec.bridge)
    hold("unaddressed")
    for member in spec.members:   # the NIC, or every member of the bond
        index = netops.require_index(ipr, "uplink", member)
        if spec.mtu:
            netops.set_link(ipr, index, mtu=spec.mtu)
        netops.set_link(ipr, index, state="up")
    netops.set_link(ipr, bridge_index, state="up")
    if sw.datapath == "kernel":   # the bridge's port is the NIC or the bonding device (vswitchd's bond is no netdev)
        port_index = netops.require_index(ipr, "uplink", spec.port)
        netops.set_link(ipr, port_index, state="up")
        _wait_forwarding(ipr, port_index, spec)
    hold("bridged")
    return bridge_index


def _address_the_bridge(ipr, spec: HostIpSpec, up: dict[str, Any], bridge_index: int, mac: str) -> Addressing:
    """Phase 2: the declared static address, or a DHCP lease asked for the address the uplink had."""
    if spec.bootproto == "static":
        iface = spec.static_interface()
        netops.set_addresses(ipr, bridge_index, [{"address": str(iface.ip), "prefixlen": iface.network.prefixlen}])
        return Addressing(str(iface.ip), spec.gateway, RTPROT_STATIC)
    previous = up["addresses"][0]["address"] if up["addresses"] else None
    try:
        lease = dhcp.obtain_lease(spec.bridge, mac, spec.dhcp_timeout, requested=previous)
    except dhcp.DhcpTimeout as err:
        raise VerifyError("bootproto", "dhcp", f"got no lease: {err}") from None
    netops.set_addresses(ipr, bridge_index, [{"address": lease.address, "prefixlen": lease.prefixlen,
                                              "valid_lft": lease.lease_time,
                                              "preferred_lft": lease.lease_time}])
    return Addressing(lease.address, lease.routers[0] if lease.routers else None, RTPROT_DHCP, lease)


def _move_routes(ipr, spec: HostIpSpec, snap: dict[str, Any], addressing: Addressing,
                 network: ipaddress.IPv4Network) -> Optional[str]:
    """Phase 3: the uplink's routes that still make sense, and the default route; returns the gateway."""
    gateway = addressing.gateway
    for route in snap["routes"]:
        if route["dst_len"] == 0 and gateway:
            continue  # the new configuration names its own default gateway
        if route.get("gateway") and ipaddress.IPv4Address(route["gateway"]) not in network:
            continue  # not reachable from the new address: it belonged to the old one
        netops.add_route(ipr, {**route, "dev": spec.bridge, "prefsrc": None})
    if gateway is None:
        return next((r["gateway"] for r in snap["routes"] if r["dst_len"] == 0 and r.get("gateway")), None)
    if gateway:
        netops.add_route(ipr, {"dst": "0.0.0.0", "dst_len": 0, "gateway": gateway, "dev": spec.bridge,
                               "proto": addressing.proto, "scope": 0, "type": 1})
    return gateway


def _point_resolv_conf(spec: HostIpSpec, snap: dict[str, Any], lease: Optional[dhcp.Lease]) -> None:
    """Phase 4: the declared (or leased) nameservers and search domains."""
    servers = list(spec.dns) or (lease.dns if lease else [])
    search = list(spec.dns_search) or ([lease.domain] if lease and lease.domain else [])
    if servers:
        path = snap["resolv_conf_path"]
        text = netops.resolv_conf_text(netops.read_file(path), servers, search)
        if text != netops.read_file(path):
            netops.write_file_atomic(path, text)


def _verify(spec: HostIpSpec, mac: str, own_ip: str, gateway: Optional[str],
            network: ipaddress.IPv4Network) -> list[str]:
    """Phase 5: the gateway answers ARP on the bridge and every declared target answers ping."""
    verified = []
    if gateway and ipaddress.IPv4Address(gateway) in network:
        if not probe.arp_probe(spec.bridge, mac, own_ip, gateway, spec.verify_timeout):
            raise VerifyError("gateway", gateway, f"did not answer ARP on {spec.bridge} from {own_ip} within "
                                                  f"{spec.verify_timeout:g} s")
        verified.append(f"gateway {gateway} answers ARP")
    for target in spec.verify_targets:
        if not probe.ping(target, spec.verify_timeout):
            raise VerifyError("verify_targets", target, f"did not answer ICMP echo within "
                                                        f"{spec.verify_timeout:g} s")
        verified.append(f"{target} answers ping")
    return verified
