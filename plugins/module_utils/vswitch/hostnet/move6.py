"""The IPv6 part of the move: what the uplink had (or what was declared) goes onto the bridge.

Carried as they are: global and ULA addresses with their prefix lengths and remaining lifetimes
(SLAAC ones keep their address, so sessions on it live on), the routes the uplink had except those a
router advertisement made (the bridge learns those itself from a fresh advertisement, which the
verification solicits), and the switches ``accept_ra``/``autoconf``. Link-local addresses are the
kernel's: with the MAC, the bridge derives the same one the NIC had.
"""
from __future__ import annotations

import time
from typing import Any, Optional

from ..errors import ValidationError
from . import dhcp6, netops, probe
from .spec import HostIpSpec


class Verify6Error(Exception):
    """Raised with (field, value, reason) when the IPv6 side of the new path does not work."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.field, self.value, self.reason = field, value, reason


def check_kernel(spec: HostIpSpec, uplink: dict[str, Any]) -> None:
    """Declared IPv6 on a host or link where the kernel has it switched off: refuse before any change."""
    if not spec.ipv6_declared:
        return
    field, value = _declared_field(spec)
    if not netops.ipv6_available():
        raise ValidationError(field, value, "declares IPv6, but this kernel has no IPv6 (booted with "
                                            "ipv6.disable=1 or built without it)")
    every = netops.read_sysctls6("all") or {}
    if every.get("disable_ipv6") == 1:
        raise ValidationError(field, value, "declares IPv6, but net.ipv6.conf.all.disable_ipv6 is 1 on this host")
    if (uplink.get("ipv6") or {}).get("disable_ipv6") == 1:
        raise ValidationError(field, value, f"declares IPv6, but net.ipv6.conf.{spec.uplink}.disable_ipv6 is 1")


def _declared_field(spec: HostIpSpec) -> tuple[str, Any]:
    if spec.address6:
        return "address6", list(spec.address6)
    if spec.gateway6:
        return "gateway6", spec.gateway6
    if spec.ipv6_autoconf is not None:
        return "ipv6_autoconf", spec.ipv6_autoconf
    return "dhcp6", spec.dhcp6


def uses_ra(snap: dict[str, Any]) -> bool:
    """The uplink took its IPv6 configuration from router advertisements (SLAAC addresses or RA routes)."""
    up = snap["uplink"]
    sysctls = up.get("ipv6") or {}
    if not sysctls.get("accept_ra"):
        return False
    return any(r.get("learnt") for r in snap.get("routes6") or []) or any(
        a["valid_lft"] != netops.FOREVER for a in up.get("addresses6") or [])


def wanted_sysctls(spec: HostIpSpec, snap: dict[str, Any]) -> Optional[dict[str, int]]:
    up = dict(snap["uplink"].get("ipv6") or {})
    if not up:
        return None  # no IPv6 in this kernel
    if spec.ipv6_autoconf is not None:
        up["accept_ra"] = up["autoconf"] = int(spec.ipv6_autoconf)
    if spec.address6 or spec.gateway6 or spec.ipv6_autoconf or spec.dhcp6:
        up["disable_ipv6"] = 0
    return up


def unaddress_uplink(ipr, spec: HostIpSpec, snap: dict[str, Any], bridge: str) -> None:
    """Phase 1, IPv6: the uplink's routes and global addresses go (a port's own stack receives nothing);
    the bridge gets the uplink's IPv6 switches before it comes up, so it solicits routers at once."""
    for route in snap.get("routes6") or []:
        netops.del_route6(ipr, route)
    netops.flush_addresses6(ipr, snap["uplink"]["index"])
    sysctls = wanted_sysctls(spec, snap)
    if sysctls is not None:
        netops.write_sysctls6(bridge, sysctls)


def address_bridge(ipr, spec: HostIpSpec, snap: dict[str, Any], bridge_index: int) -> Optional[str]:
    """Phase 2-3, IPv6: the addresses (declared, else carried) and routes; returns the gateway to verify."""
    if spec.address6:
        addresses = [{"address": a.split("/")[0], "prefixlen": int(a.split("/")[1]), "flags": 0}
                     for a in reversed(spec.address6)]  # kernel order: the first declared listed first
    else:
        elapsed = int(time.time() - snap["taken"])
        addresses = [_remaining(a, elapsed) for a in snap["uplink"].get("addresses6") or []
                     if not a["flags"] & netops.IFA_F_TEMPORARY]  # privacy addresses are made anew
    if addresses:
        netops.set_addresses6(ipr, bridge_index, addresses, nodad=True)
    declared_gateway = spec.gateway6.split("%")[0] if spec.gateway6 else None
    carried_default = None
    for route in snap.get("routes6") or []:
        if route.get("learnt"):
            if route["dst_len"] == 0:
                carried_default = carried_default or route["gateway"]
            continue  # the bridge learns it from the advertisement the verification solicits
        if route["dst_len"] == 0 and declared_gateway:
            continue
        if route["dst_len"] == 0:
            carried_default = route["gateway"]
        netops.add_route6(ipr, {**route, "dev": spec.bridge})
    if declared_gateway:
        netops.add_route6(ipr, {"family": 6, "dst": "::", "dst_len": 0, "gateway": declared_gateway,
                                "dev": spec.bridge, "priority": None, "pref": None, "proto": 4})
        return declared_gateway
    return carried_default


def _remaining(addr: dict[str, Any], elapsed: int) -> dict[str, Any]:
    addr = dict(addr)
    for key in ("valid_lft", "preferred_lft"):
        if addr.get(key, netops.FOREVER) != netops.FOREVER:
            addr[key] = max(1 if key == "valid_lft" else 0, addr[key] - elapsed)
    return addr


def ready_link_local(ipr, bridge_index: int, timeout: float) -> Optional[str]:
    """The bridge's link-local address once duplicate detection has passed (it cannot be a source before)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        address = netops.link_local6(ipr, bridge_index)
        if address and address not in netops.tentative6(ipr, bridge_index):
            return address
        time.sleep(0.05)
    return None


def verify(ipr, spec: HostIpSpec, snap: dict[str, Any], bridge_index: int, mac: str,
           gateway: Optional[str]) -> list[str]:
    """Phase 5, IPv6: a router answers when the host relies on advertisements; the gateway answers
    neighbour discovery. Declared IPv6 targets are pinged with the IPv4 ones."""
    verified: list[str] = []
    sysctls = wanted_sysctls(spec, snap) or {}
    needs_ra = bool(sysctls.get("accept_ra")) and (spec.ipv6_autoconf is True or (
        spec.ipv6_autoconf is None and not spec.address6 and uses_ra(snap)))
    if not needs_ra and not gateway:
        return verified
    if needs_ra:
        link_local = ready_link_local(ipr, bridge_index, spec.verify_timeout)
        if link_local is None:
            raise Verify6Error("bridge", spec.bridge, f"got no usable IPv6 link-local address within "
                                                      f"{spec.verify_timeout:g} s (duplicate address detection)")
        router = probe.router_probe(spec.bridge, mac, link_local, spec.verify_timeout)
        field, value = ("ipv6_autoconf", True) if spec.ipv6_autoconf else ("uplink", spec.uplink)
        if router is None:
            raise Verify6Error(field, value, f"no router advertisement answered a solicitation on {spec.bridge} "
                                             f"within {spec.verify_timeout:g} s (SLAAC needs one)")
        verified.append(f"router {router} advertises on {spec.bridge}")
    if gateway:
        own = [a["address"] for a in netops.read_addresses6(ipr, bridge_index)
               if a["address"] not in netops.tentative6(ipr, bridge_index)]
        source = own[0] if own and not gateway.lower().startswith("fe80") else None
        if source is None:
            source = ready_link_local(ipr, bridge_index, spec.verify_timeout)
        if not probe.neighbour_probe(spec.bridge, mac, source, gateway, spec.verify_timeout):
            raise Verify6Error("gateway6", gateway, f"did not answer neighbour discovery on {spec.bridge} "
                                                    f"within {spec.verify_timeout:g} s")
        verified.append(f"gateway {gateway} answers neighbour discovery")
    return verified


def differences(ipr, spec: HostIpSpec, bridge: dict[str, Any], uplink: dict[str, Any]) -> list[str]:
    """What is not yet as declared on the IPv6 side (empty when the move has been done)."""
    diffs = []
    if uplink.get("addresses6"):
        diffs.append(f"{spec.uplink} still has IPv6 addresses")
    have = sorted(f"{a['address']}/{a['prefixlen']}" for a in bridge.get("addresses6") or []
                  if a["valid_lft"] == netops.FOREVER)
    if spec.address6 and have != sorted(spec.address6):
        diffs.append(f"{spec.bridge} IPv6 addresses are {have}, not {sorted(spec.address6)}")
    if spec.gateway6:
        gateway = spec.gateway6.split("%")[0]
        routes = netops.read_routes6(ipr, {bridge["index"]: spec.bridge})
        if not any(r["dst_len"] == 0 and r["gateway"] == gateway for r in routes):
            diffs.append(f"no IPv6 default route via {gateway} on {spec.bridge}")
    if spec.ipv6_autoconf is not None and bridge.get("ipv6"):
        want = int(spec.ipv6_autoconf)
        if (bridge["ipv6"]["accept_ra"] > 0) != bool(want) or bridge["ipv6"]["autoconf"] != want:
            diffs.append(f"{spec.bridge} accept_ra/autoconf are not {want}")
    return diffs


def addressing6(spec: HostIpSpec, state: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The IPv6 configuration to persist: as declared, else as the bridge carries it now."""
    bridge = (state or {}).get("bridge") or {}
    # DHCPv6: as declared, else as the bridge has it now (a leased /128 on it: the move asked for one)
    dhcp6_on = spec.dhcp6 if spec.dhcp6 is not None else any(
        dhcp6.is_lease_address(a) for a in bridge.get("addresses6") or [])
    if spec.address6 or spec.gateway6:
        return {"address6": list(spec.address6), "gateway6": spec.gateway6.split("%")[0] if spec.gateway6 else None,
                "ipv6_autoconf": spec.ipv6_autoconf, "dhcp6": dhcp6_on}
    static = [f"{a['address']}/{a['prefixlen']}" for a in reversed(bridge.get("addresses6") or [])
              if a["valid_lft"] == netops.FOREVER]
    gateway = next((r["gateway"] for r in (state or {}).get("routes6") or []
                    if r["dst_len"] == 0 and r["dev"] == spec.bridge and not r.get("learnt")), None)
    slaac = any(a["valid_lft"] != netops.FOREVER for a in bridge.get("addresses6") or []) or any(
        r.get("learnt") for r in (state or {}).get("routes6") or [] if r["dev"] == spec.bridge)
    # None: nothing to say, the host's default stays (files for an IPv4-only bridge do not change)
    autoconf = spec.ipv6_autoconf if spec.ipv6_autoconf is not None else (True if slaac else None)
    return {"address6": static, "gateway6": gateway, "ipv6_autoconf": autoconf, "dhcp6": dhcp6_on}
