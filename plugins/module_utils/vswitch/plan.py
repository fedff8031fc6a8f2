"""plan(desired, actual) -> [Change]. An empty plan means the host already matches.

Every check that needs the host's state happens here, before anything is
applied, so bad input fails with the host untouched. ``simulate`` applies a
plan to a copy of the state: check mode and diffs report exactly what a real
run would do.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Optional

from .bond_plan import plan_bond_uplink
from .errors import ConflictError, MissingFeatureError, NotFoundError, ValidationError
from .identity import stable_mac
from .model import BridgeSpec, BridgeState, Change, Features, HostState, PortSpec, PortState, VlanSpec
from .settings import ACCESS_SETTINGS, BRIDGE_SETTINGS, PORT_SETTINGS, TRUNK_SETTINGS

USERSPACE_HINT = "use datapath: userspace (vswitchd), which provides it"
# Only a kernel without bridge VLAN filtering lacks VLANs (the kernel backend programs them otherwise).
VLAN_MISSING = "which this host's kernel lacks"


def _require_bridge(state: HostState, field: str, name: str) -> BridgeState:
    bridge = state.bridges.get(name)
    if bridge is None:
        raise NotFoundError(field, name, "does not exist on this host; declare it with "
                                         "openvif.vswitch.vswitch_bridge first")
    return bridge


def _check_not_bridge(state: HostState, field: str, name: str) -> None:
    if name in state.bridges:
        raise ConflictError(field, name, "is a bridge; a bridge cannot be a port of another bridge")


def plan_bridge(spec: BridgeSpec, state: HostState,
                features: Optional[Mapping[str, Features]] = None) -> list[Change]:
    """Changes that make bridge ``spec.name`` exist with the declared settings and uplink.

    ``features``: what each datapath can do; needed only for a bond uplink (which it checks).
    """
    if spec.datapath not in state.datapaths:
        raise MissingFeatureError("datapath", spec.datapath, "is not available on this host: vswitchd is not "
                                                             "running (deploy it with the openvif.vswitch."
                                                             "vswitchd role)")
    current = state.bridges.get(spec.name)
    link = state.links.get(spec.name)
    if current is None and link is not None and link.kind != "bridge":
        raise ConflictError("name", spec.name, f"is an existing interface of kind '{link.kind or 'device'}', "
                                               "not a bridge")
    if current is not None and current.datapath != spec.datapath:
        raise ConflictError("datapath", spec.datapath, f"differs: bridge '{spec.name}' exists on the "
                                                       f"{current.datapath} datapath; remove it first "
                                                       "(state: absent) to move it")
    if current is not None and current.parent is not None:
        raise ConflictError("name", spec.name, f"is a VLAN network (VLAN {current.tag} on '{current.parent}'); "
                                               "manage it with openvif.vswitch.vswitch_vlan")
    changes: list[Change] = []
    if current is None:
        # The MAC is chosen here, not by the kernel: stable across rebuilds and reboots (neighbours'
        # ARP caches stay right), pinned so ports coming and going never change it, and known to
        # check mode and the diff.
        settings = {"mac": stable_mac(spec.name), **spec.settings()}
        changes.append(Change("add_bridge", spec.name, spec.datapath, settings))
    else:
        differing = {k: val for k, val in spec.settings().items() if getattr(current, k) != val}
        if differing:
            changes.append(Change("set_bridge", spec.name, spec.datapath, differing))
    if spec.bond is not None:
        changes.extend(plan_bond_uplink(spec, current, state, features))
    elif spec.uplink is not None:
        changes.extend(_plan_uplink(spec, spec.uplink, current, state))
    return changes


def _plan_uplink(spec: BridgeSpec, uplink: str, current: Optional[BridgeState], state: HostState) -> list[Change]:
    _check_not_bridge(state, "uplink", uplink)
    bond = state.ports.get(uplink)
    if bond is not None and bond.bond is not None and bond.bridge == spec.name:
        return []   # the bond declared before, named by its name: nothing to do
    if uplink not in state.links:
        raise NotFoundError("uplink", uplink, "does not exist on this host; an uplink must be an existing "
                                              "interface (the PIF, e.g. peth0)")
    if current is not None and current.uplink not in (None, uplink):
        raise ConflictError("uplink", uplink, f"would be a second uplink: bridge '{spec.name}' already has "
                                              f"uplink '{current.uplink}', and a network has at most one PIF; "
                                              "detach it first")
    owner = state.bridge_of(uplink)
    if owner not in (None, spec.name):
        raise ConflictError("uplink", uplink, f"requested on bridge '{spec.name}' is already a port of "
                                              f"'{owner}'")
    if owner is None:
        return [Change("add_port", uplink, spec.datapath,
                       {"bridge": spec.name, "uplink": True, "type": "system"})]
    if not state.ports[uplink].uplink:
        return [Change("set_port", uplink, spec.datapath, {"bridge": spec.name, "uplink": True})]
    return []


def plan_bridge_absent(name: str, state: HostState) -> list[Change]:
    current = state.bridges.get(name)
    if current is None:
        return []
    children = vlan_networks_of(state, name)
    if children:
        carried = ", ".join(f"'{child.name}' (VLAN {child.tag})" for child in children)
        raise ConflictError("name", name, f"still carries the VLAN networks {carried}; remove them first "
                                          "(vswitch_vlan state: absent)")
    return [Change("del_bridge", name, current.datapath, {"ports": list(current.ports)})]


def vlan_networks_of(state: HostState, parent: str) -> list[BridgeState]:
    return sorted((b for b in state.bridges.values() if b.parent == parent), key=lambda b: b.tag or 0)


def plan_vlan(spec: VlanSpec, state: HostState, features: Mapping[str, Features]) -> list[Change]:
    """Changes that make VLAN network ``spec.name`` exist as VLAN ``spec.tag`` on ``spec.parent``."""
    parent = state.bridges.get(spec.parent)
    if parent is None:
        raise NotFoundError("parent", spec.parent, "does not exist on this host; declare the parent bridge with "
                                                   "openvif.vswitch.vswitch_bridge first")
    if parent.parent is not None:
        raise ConflictError("parent", spec.parent, f"is itself a VLAN network (VLAN {parent.tag} on "
                                                   f"'{parent.parent}'); VLAN networks do not nest")
    parent_features = features.get(parent.datapath, Features())
    if not parent_features.vlan_filtering:
        raise MissingFeatureError("parent", spec.parent,
                                  f"is on the {parent.datapath} datapath, and VLAN networks need bridge VLAN "
                                  f"filtering (vlan_filtering), {VLAN_MISSING}; {USERSPACE_HINT}")
    current = state.bridges.get(spec.name)
    if current is not None:
        if current.parent == spec.parent and current.tag == spec.tag:
            return []
        what = (f"VLAN network VLAN {current.tag} on '{current.parent}'" if current.parent is not None
                else "bridge")
        raise ConflictError("name", spec.name, f"already exists as a {what}; remove it first to redeclare it")
    link = state.links.get(spec.name)
    if link is not None:
        raise ConflictError("name", spec.name, f"is an existing interface of kind '{link.kind or 'device'}'")
    for sibling in vlan_networks_of(state, spec.parent):
        if sibling.tag == spec.tag:
            raise ConflictError("tag", spec.tag, f"is already used on '{spec.parent}' by VLAN network "
                                                 f"'{sibling.name}'; one tag is one network")
    return [Change("add_bridge", spec.name, parent.datapath, {"parent": spec.parent, "tag": spec.tag})]


def _check_features(spec: PortSpec, features: Features, prefix: str) -> None:
    """Refuse what the port's datapath cannot do (the flags say what; only the kernel lacks any today)."""
    wants_vlan = spec.vlan is not None or spec.trunks is not None
    if wants_vlan and not features.vlan_filtering:
        field = "vlan" if spec.vlan is not None else "trunks"
        raise MissingFeatureError(f"{prefix}.{field}", getattr(spec, field),
                                  f"needs bridge VLAN filtering (vlan_filtering), {VLAN_MISSING}; "
                                  f"{USERSPACE_HINT}")
    if spec.promiscuous and not features.port_promiscuous:
        raise MissingFeatureError(f"{prefix}.promiscuous", True,
                                  "is not possible per port on the kernel datapath (Linux bridge); set "
                                  f"ageing_time: 0 on the bridge so every port sees all traffic, or {USERSPACE_HINT}")
    if spec.mac is not None and not features.port_security:
        raise MissingFeatureError(f"{prefix}.mac", spec.mac,
                                  f"(port security) is not available on the kernel datapath; {USERSPACE_HINT}")
    if spec.external_ids is not None and not features.external_ids:
        raise MissingFeatureError(f"{prefix}.external_ids", spec.external_ids,
                                  f"cannot be kept on the kernel datapath (the Linux bridge keeps no data per "
                                  f"port); {USERSPACE_HINT}")
    if spec.type == "internal" and not features.create_ports:
        raise MissingFeatureError(f"{prefix}.type", spec.type,
                                  "is not a kernel port type: a Linux bridge's own device is its internal "
                                  f"port; {USERSPACE_HINT}")


def check_port_features(spec: PortSpec, features: Features, prefix: str) -> None:
    """What a port of a bridge on a datapath with ``features`` cannot have (VM port profiles check it too)."""
    _check_features(spec, features, prefix)


def _port_settings_diff(spec: PortSpec, current: PortState) -> dict[str, Any]:
    differing = {k: val for k, val in spec.settings().items() if getattr(current, k) != val}
    # A port is an access port or a trunk: declaring one mode clears what the other had set.
    if any(differing.get(k) is not None for k in ACCESS_SETTINGS):
        differing.update({k: None for k in TRUNK_SETTINGS if getattr(current, k) is not None})
    elif differing.get("trunks"):
        differing.update({k: None for k in ACCESS_SETTINGS if getattr(current, k) is not None})
    return differing


def plan_ports(
    specs: Sequence[PortSpec],
    state: HostState,
    features: Mapping[str, Features],
    *,
    present: bool = True,
    move: bool = False,
    purge: Iterable[str] = (),
) -> list[Change]:
    """Changes that attach (or detach) every port in ``specs``; ``purge`` bridges lose unlisted ports."""
    changes: list[Change] = []
    seen: dict[str, int] = {}
    for index, spec in enumerate(specs):
        prefix = f"ports[{index}]"
        if spec.name in seen:
            raise ValidationError(f"{prefix}.name", spec.name, f"is listed twice (also ports[{seen[spec.name]}])")
        seen[spec.name] = index
        bridge = _require_bridge(state, f"{prefix}.bridge", spec.bridge)
        owner = state.bridge_of(spec.name)
        if not present:
            if owner == spec.bridge:
                changes.append(Change("del_port", spec.name, bridge.datapath, {"bridge": owner}))
            continue
        changes.extend(_plan_port(spec, bridge, owner, state, features, prefix, move))
    if present:
        listed = set(seen)
        for name in sorted(set(purge)):
            bridge = _require_bridge(state, "purge", name)
            for port in bridge.ports:
                if port not in listed and port != bridge.uplink:
                    # The uplink is the bridge's business (vswitch_bridge): purging it could cut the
                    # operator off the host, so it is never removed as a side effect.
                    changes.append(Change("del_port", port, bridge.datapath, {"bridge": bridge.name}))
    return changes


def _plan_port(spec: PortSpec, bridge: BridgeState, owner: Optional[str], state: HostState,
               features: Mapping[str, Features], prefix: str, move: bool) -> list[Change]:
    _check_not_bridge(state, f"{prefix}.name", spec.name)
    if bridge.parent is not None and (spec.vlan is not None or spec.trunks is not None):
        field = "vlan" if spec.vlan is not None else "trunks"
        raise ConflictError(f"{prefix}.{field}", getattr(spec, field),
                            f"cannot be set on a port of VLAN network '{bridge.name}': its ports carry VLAN "
                            f"{bridge.tag} untagged; attach the port to '{bridge.parent}' to tag it yourself")
    datapath = features.get(bridge.datapath, Features())
    _check_features(spec, datapath, prefix)
    creatable = datapath.create_ports and spec.type in ("tap", "internal")
    if spec.name not in state.links and not creatable and owner is None:
        creatable = ", or have type tap or internal so vswitchd creates it" if datapath.create_ports else ""
        raise NotFoundError(f"{prefix}.name", spec.name,
                            "does not exist on this host; a port must be an existing interface (a VIF, tap, "
                            "veth or NIC)" + creatable)
    if owner == spec.bridge:
        differing = _port_settings_diff(spec, state.ports[spec.name])
        return [Change("set_port", spec.name, bridge.datapath, {"bridge": spec.bridge, **differing})] \
            if differing else []
    changes: list[Change] = []
    if owner is not None:
        if not move:
            raise ConflictError(f"{prefix}.bridge", spec.bridge,
                                f"cannot take port '{spec.name}': it is already a port of '{owner}' (a port "
                                "belongs to one bridge only); set move: true to move it")
        old = state.bridges[owner]
        if old.uplink == spec.name:
            raise ConflictError(f"{prefix}.name", spec.name, f"is the uplink of bridge '{owner}'; change that "
                                                             "bridge's uplink with vswitch_bridge instead")
        changes.append(Change("del_port", spec.name, old.datapath, {"bridge": owner}))
    args: dict[str, Any] = {"bridge": spec.bridge, **spec.settings()}
    args.setdefault("type", "system")
    changes.append(Change("add_port", spec.name, bridge.datapath, args))
    return changes


def simulate(state: HostState, changes: Sequence[Change]) -> HostState:
    """The state the host will have once ``changes`` are applied (used for check mode and diffs)."""
    bridges = dict(state.bridges)
    ports = dict(state.ports)
    links = dict(state.links)
    for change in changes:
        args = dict(change.args)
        if change.op == "add_bridge":
            bridges[change.target] = BridgeState(name=change.target, datapath=change.datapath,
                                                 **_known(BridgeState, args))
        elif change.op == "set_bridge":
            bridges[change.target] = replace(bridges[change.target], **_known(BridgeState, args))
        elif change.op == "del_bridge":
            removed = bridges.pop(change.target)
            for port in removed.ports:
                ports.pop(port, None)
        elif change.op == "add_port":
            port = PortState(name=change.target, **_known(PortState, args))
            ports[change.target] = port
            bridge = bridges[port.bridge]
            bridges[port.bridge] = replace(bridge, ports=tuple(sorted({*bridge.ports, port.name})),
                                           uplink=port.name if port.uplink else bridge.uplink)
        elif change.op == "set_port":
            port = replace(ports[change.target], **_known(PortState, args))
            ports[change.target] = port
            if port.uplink:
                bridges[port.bridge] = replace(bridges[port.bridge], uplink=port.name)
        elif change.op == "del_port":
            port = ports.pop(change.target)
            bridge = bridges[port.bridge]
            bridges[port.bridge] = replace(bridge, ports=tuple(p for p in bridge.ports if p != port.name),
                                           uplink=None if bridge.uplink == port.name else bridge.uplink)
        else:
            raise ValueError(f"unknown change op {change.op!r}")
    return replace(state, bridges=bridges, ports=ports, links=links)


def _known(cls: type, args: Mapping[str, Any]) -> dict[str, Any]:
    names = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    return {k: val for k, val in args.items() if k in names and k not in ("name",)}


def invert(changes: Sequence[Change], before: HostState) -> list[Change]:
    """The changes that undo ``changes`` (applied to ``before``), in the order to apply them.

    Backends use it to roll back the part of a transaction that succeeded when a later
    step fails, so a failed run leaves the host exactly as it found it.
    """
    undo: list[Change] = []
    state = before
    for change in changes:
        undo.extend(reversed(_inverse_of(change, state)))
        state = simulate(state, [change])
    return list(reversed(undo))


def _inverse_of(change: Change, state: HostState) -> list[Change]:
    op, name, dp = change.op, change.target, change.datapath
    if op == "add_bridge":
        return [Change("del_bridge", name, dp, {"ports": []})]
    if op == "set_bridge":
        old = state.bridges[name]
        return [Change("set_bridge", name, dp, {k: getattr(old, k) for k in change.args})]
    if op == "del_bridge":
        old = state.bridges[name]
        settings = {k: getattr(old, k) for k in BRIDGE_SETTINGS}
        if old.parent is not None:
            settings = {"parent": old.parent, "tag": old.tag}
        steps = [Change("add_bridge", name, dp, settings)]
        steps.extend(_readd_port(state, state.ports[p]) for p in old.ports if p in state.ports)
        return steps
    if op == "add_port":
        return [Change("del_port", name, dp, {"bridge": change.args["bridge"]})]
    if op == "set_port":
        old = state.ports[name]
        previous = {k: getattr(old, k) for k in change.args if k != "bridge"}
        return [Change("set_port", name, dp, {"bridge": old.bridge, **previous})]
    if op == "del_port":
        return [_readd_port(state, state.ports[name])]
    raise ValueError(f"unknown change op {op!r}")


def _readd_port(state: HostState, port: PortState) -> Change:
    datapath = state.bridges[port.bridge].datapath
    args = {k: getattr(port, k) for k in ("bridge", *PORT_SETTINGS, "uplink", "bond")}
    return Change("add_port", port.name, datapath, {k: val for k, val in args.items() if val not in (None, False)})
