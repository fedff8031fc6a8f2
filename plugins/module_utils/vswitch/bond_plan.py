"""Planning a bond as a bridge's uplink: every check against the host, before anything changes.

A bond is the network's one PIF: a port of the bridge, marked as its uplink, that carries a
bond record (settings.BOND). On the userspace datapath vswitchd runs it over its members'
AF_PACKET sockets; on the kernel datapath it is a Linux bonding device. Either way the plan is
one ``add_port`` (or ``set_port``) with the whole record, so check mode, the diff and the undo
of a failed run treat it like any other port setting.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from .errors import ConflictError, MissingFeatureError, NotFoundError
from .kernel_bonds import check_kernel_bond
from .model import BondSpec, BridgeSpec, BridgeState, Change, Features, HostState
from .settings import BOND, check_bond_rules

USERSPACE_BONDS = "use datapath: userspace (vswitchd bonds its own ports and needs no kernel bonding)"


def plan_bond_uplink(spec: BridgeSpec, current: Optional[BridgeState], state: HostState,
                     features: Optional[Mapping[str, Features]]) -> list[Change]:
    bond = spec.bond
    if bond is None:
        return []
    datapath = (features or {}).get(spec.datapath, Features())
    _check_datapath(spec, bond, datapath)
    name = bond.name
    if current is not None and current.uplink not in (None, name):
        raise ConflictError("uplink.bond", name, f"would be a second uplink: bridge '{spec.name}' already has "
                                                 f"uplink '{current.uplink}', and a network has at most one PIF; "
                                                 "detach it first")
    if name in state.bridges:
        raise ConflictError("uplink.bond", name, "is a bridge; a bond needs a name of its own")
    existing = state.ports.get(name)
    if existing is not None and existing.bridge != spec.name:
        raise ConflictError("uplink.bond", name, f"requested on bridge '{spec.name}' is already a port of "
                                                 f"'{existing.bridge}'")
    if existing is not None and existing.bond is None:
        raise ConflictError("uplink.bond", name, f"is a port of bridge '{spec.name}' that is not a bond; remove "
                                                 "it (vswitch_port state: absent) to make a bond of that name")
    link = state.links.get(name)
    if existing is None and link is not None:
        raise ConflictError("uplink.bond", name, f"is an existing interface of kind '{link.kind or 'device'}'; "
                                                 "a new bond needs a free name")
    if existing is not None and existing.bond is not None:
        record = {**existing.bond, **bond.settings()}
        check_bond_rules(record)
    else:
        record = bond.record()
    if spec.datapath == "kernel":
        check_kernel_bond(record, passive_missing=datapath.lacp_passive_missing)
        if existing is not None and sorted(record["members"]) == sorted(existing.bond["members"]):
            # The kernel lists members in ifindex order, not the declared one, and order means
            # nothing to its bonds (the primary is explicit): the same members are no change.
            record["members"] = list(existing.bond["members"])
    _check_members(spec, name, record["members"], state)
    if existing is None:
        return [Change("add_port", name, spec.datapath,
                       {"bridge": spec.name, "uplink": True, "type": "system", "bond": record})]
    differing: dict[str, Any] = {}
    if record != existing.bond:
        differing["bond"] = record
    if not existing.uplink:
        differing["uplink"] = True
    return [Change("set_port", name, spec.datapath, {"bridge": spec.name, **differing})] if differing else []


def _check_datapath(spec: BridgeSpec, bond: BondSpec, datapath: Features) -> None:
    if not datapath.bond_modes:
        raise MissingFeatureError("uplink.bond", bond.name,
                                  f"cannot be made on the {spec.datapath} datapath: "
                                  f"{datapath.bond_missing or 'it has no bonds'}; {USERSPACE_BONDS}")
    mode = bond.mode or BOND["mode"].default
    if mode not in datapath.bond_modes:
        why = f" ({datapath.bond_missing})" if datapath.bond_missing else ""
        raise MissingFeatureError("uplink.mode", mode, f"is not a bond mode of the {spec.datapath} datapath{why}; "
                                                       f"it has {', '.join(datapath.bond_modes)}; "
                                                       f"{USERSPACE_BONDS}, which has every mode")


def _check_members(spec: BridgeSpec, bond: str, members: list[str], state: HostState) -> None:
    mtus: dict[str, int] = {}
    for index, member in enumerate(members):
        field = f"uplink.members[{index}]"
        if member in state.bridges:
            raise ConflictError(field, member, "is a bridge; a bond's members are NICs")
        link = state.links.get(member)
        if link is None:
            raise NotFoundError(field, member, "does not exist on this host; a bond's members must be existing "
                                               "interfaces (NICs)")
        owner = state.ports.get(member)
        if owner is not None:
            role = "the uplink" if owner.uplink else "a port"
            raise ConflictError(field, member, f"is already {role} of bridge '{owner.bridge}'; a bond member "
                                               "belongs to its bond only")
        for other in state.ports.values():
            if other.bond is not None and other.name != bond and member in other.bond.get("members", ()):
                raise ConflictError(field, member, f"is already a member of bond '{other.name}' (bridge "
                                                   f"'{other.bridge}')")
        if link.master not in (None, bond):
            raise ConflictError(field, member, f"is enslaved to '{link.master}'; release it first")
        mtus[member] = link.mtu
    if len(set(mtus.values())) > 1:
        listed = ", ".join(f"{m} {mtu}" for m, mtu in mtus.items())
        raise ConflictError("uplink.members", list(members), f"have different MTUs ({listed}); a bond's members "
                                                             "must share one MTU (set them alike first)")
