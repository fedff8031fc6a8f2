"""DHCPv6 in the move: whether the bridge asks for an address, the asking, and the check that it has one.

Unset, ``dhcp6`` is what the uplink used: a leased /128 on it (``dhcp6.is_lease_address``) or a DHCPv6
client running for it. The move carries the uplink's leased address first, with its remaining
lifetime (``move6``); the bridge then asks the server with the same identity (the DUID and IAID the
uplink's dhclient leased with, else those of the MAC the bridge carries), so the server extends the
binding it has and the address stays the same.
No answer within ``dhcp_timeout`` fails the move, and the guard rolls both families back.
"""
from __future__ import annotations

from typing import Any, Optional

from . import clients, dhcp6, lease_keeper6, move6, netops
from .spec import HostIpSpec


def uplink_used(snap: dict[str, Any]) -> bool:
    addresses = snap["uplink"].get("addresses6") or []
    return any(dhcp6.is_lease_address(a) for a in addresses) or any(
        6 in clients.families(c["argv"]) for c in snap.get("dhcp_clients") or [])


def identity(snap: dict[str, Any], mac: str) -> dhcp6.Identity:
    """Who the bridge is to the DHCPv6 server: the uplink's dhclient where the snapshot found its DUID."""
    found = snap.get("dhcp6_identity")
    return dhcp6.Identity.from_dict(found) if found else dhcp6.Identity.of_mac(mac)


def wanted(spec: HostIpSpec, snap: dict[str, Any]) -> bool:
    return spec.dhcp6 if spec.dhcp6 is not None else uplink_used(snap)


def lease_on_bridge(ipr, spec: HostIpSpec, snap: dict[str, Any], bridge_index: int, mac: str
                    ) -> Optional[dhcp6.Lease6]:
    """Phase 2, DHCPv6: a lease for the bridge, installed; raises Verify6Error without one in time."""
    if not wanted(spec, snap):
        return None
    if move6.ready_link_local(ipr, bridge_index, spec.verify_timeout) is None:
        raise move6.Verify6Error("dhcp6", True, f"{spec.bridge} got no usable IPv6 link-local address within "
                                                f"{spec.verify_timeout:g} s, which DHCPv6 talks from")
    carried = [a for a in netops.read_addresses6(ipr, bridge_index) if dhcp6.is_lease_address(a)]
    try:
        lease = dhcp6.obtain(spec.bridge, identity(snap, mac), spec.dhcp_timeout,
                             hint=carried[0]["address"] if carried else None)
    except dhcp6.Dhcp6Timeout as err:
        raise move6.Verify6Error("dhcp6", True, f"got no lease: {err}") from None
    for addr in carried:
        if addr["address"] != lease.address:
            netops.del_address6(ipr, bridge_index, addr)  # the server gave another one: the old goes
    lease_keeper6.install(ipr, bridge_index, lease)
    return lease


def differences(spec: HostIpSpec, bridge: dict[str, Any]) -> list[str]:
    if spec.dhcp6 and not any(dhcp6.is_lease_address(a) for a in bridge.get("addresses6") or []):
        return [f"{spec.bridge} has no DHCPv6 address"]
    return []
