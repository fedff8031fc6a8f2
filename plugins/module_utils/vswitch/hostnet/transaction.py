"""The move itself (uplink's IP -> bridge) and the check that tells whether it is needed."""
from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any, Optional

from ..errors import BackendError
from . import clients, dhcp, netops, probe, switch_side
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


def apply(ipr, spec: HostIpSpec, snap: dict[str, Any], hold: Optional[Callable[[str], None]] = None
          ) -> dict[str, Any]:
    """Move the addressing to the bridge and verify it. Raises on any failure; never rolls back itself
    (the guard does, from the snapshot)."""
    hold = hold or (lambda step: None)
    up = snap["uplink"]
    uplink_index = up["index"]
    sw = switch_side.for_spec(spec)
    bridge_index = sw.attach(ipr, spec, up)
    clients.stop(snap.get("dhcp_clients") or [])  # they would put the IP back on the NIC at renewal
    for route in snap["routes"]:
        netops.del_route(ipr, route)
    netops.flush_addresses(ipr, uplink_index)
    hold("unaddressed")
    if spec.mtu:
        netops.set_link(ipr, uplink_index, mtu=spec.mtu)
    netops.set_link(ipr, uplink_index, state="up")
    netops.set_link(ipr, bridge_index, state="up")
    if sw.datapath == "kernel":
        _wait_forwarding(ipr, uplink_index, spec)
    hold("bridged")
    mac = netops.read_link(ipr, spec.bridge)["mac"]
    lease: Optional[dhcp.Lease] = None
    if spec.bootproto == "static":
        iface = spec.static_interface()
        netops.set_addresses(ipr, bridge_index, [{"address": str(iface.ip), "prefixlen": iface.network.prefixlen}])
        own_ip, gateway = str(iface.ip), spec.gateway
        proto = RTPROT_STATIC
    else:
        previous = up["addresses"][0]["address"] if up["addresses"] else None
        try:
            lease = dhcp.obtain_lease(spec.bridge, mac, spec.dhcp_timeout, requested=previous)
        except dhcp.DhcpTimeout as err:
            raise VerifyError("bootproto", "dhcp", f"got no lease: {err}") from None
        netops.set_addresses(ipr, bridge_index, [{"address": lease.address, "prefixlen": lease.prefixlen,
                                                  "valid_lft": lease.lease_time,
                                                  "preferred_lft": lease.lease_time}])
        own_ip, gateway = lease.address, (lease.routers[0] if lease.routers else None)
        proto = RTPROT_DHCP
    network = ipaddress.IPv4Network(f"{own_ip}/{netops.read_addresses(ipr, bridge_index)[0]['prefixlen']}",
                                    strict=False)
    for route in snap["routes"]:
        if route["dst_len"] == 0 and gateway:
            continue  # the new configuration names its own default gateway
        if route.get("gateway") and ipaddress.IPv4Address(route["gateway"]) not in network:
            continue  # not reachable from the new address: it belonged to the old one
        netops.add_route(ipr, {**route, "dev": spec.bridge, "prefsrc": None})
    if gateway is None:
        gateway = next((r["gateway"] for r in snap["routes"] if r["dst_len"] == 0 and r.get("gateway")), None)
    elif gateway:
        netops.add_route(ipr, {"dst": "0.0.0.0", "dst_len": 0, "gateway": gateway, "dev": spec.bridge,
                               "proto": proto, "scope": 0, "type": 1})
    servers = list(spec.dns) or (lease.dns if lease else [])
    search = list(spec.dns_search) or ([lease.domain] if lease and lease.domain else [])
    if servers:
        path = snap["resolv_conf_path"]
        text = netops.resolv_conf_text(netops.read_file(path), servers, search)
        if text != netops.read_file(path):
            netops.write_file_atomic(path, text)
    hold("addressed")
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
    return {"lease": lease.to_dict() if lease else None, "gateway": gateway, "address": f"{own_ip}/"
            f"{network.prefixlen}", "verified": verified}
