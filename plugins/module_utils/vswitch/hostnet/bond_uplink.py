"""A bond as the host-IP bridge's uplink: which member's addressing moves.

The host's IP sits on one NIC before the move, the one the operator connected with, and it
may be any member of the bond. That member's addresses, routes and MAC are what the move
carries to the bridge; the other members only join the bond (and go back as they were).
"""
from __future__ import annotations

from typing import Any, Optional

from ..errors import ConflictError, NotFoundError
from . import netops
from .spec import HostIpSpec


def _has_addresses(link: dict[str, Any]) -> bool:
    # A link-local IPv6 address is the kernel's own on every NIC: it says nothing about where the IP is.
    return bool(link["addresses"]) or any(not a["address"].startswith("fe80:") for a in link.get("addresses6") or [])


def locate(ipr, spec: HostIpSpec, journal: Optional[dict[str, Any]] = None) -> HostIpSpec:
    """``spec`` with ``uplink`` set to the member whose addressing moves.

    The member holding an address; after the move none does, and the last committed move of
    this bridge (``journal``) or the member whose MAC the bridge carries says which it was;
    else the first member.
    """
    if spec.bond is None:
        return spec
    links = {}
    for index, member in enumerate(spec.members):
        link = netops.read_link(ipr, member)
        if link is None:
            raise NotFoundError(f"uplink.members[{index}]", member, "is not an interface on this host")
        links[member] = link
    holding = [member for member, link in links.items() if _has_addresses(link)]
    if len(holding) > 1:
        raise ConflictError("uplink.members", list(spec.members), f"{' and '.join(holding)} each have addresses; "
                                                                  "the host's IP must sit on one member only")
    if holding:
        return spec.with_address_source(holding[0])
    previous = ((journal or {}).get("spec") or {}).get("address_source")
    if (journal or {}).get("phase") == "committed" and previous in links:
        return spec.with_address_source(previous)
    bridge = netops.read_link(ipr, spec.bridge)
    if bridge is not None:
        for member, link in links.items():
            if link["mac"] == bridge["mac"]:
                return spec.with_address_source(member)
    return spec.with_address_source(spec.members[0])
