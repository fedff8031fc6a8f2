"""Plugging a VM's VIF when it appears, and unplugging it when it goes: the hotplug scripts' core.

Xen's ``vif-openvif`` and the QEMU/libvirt ``openvif-ifup``/``openvif-ifdown`` scripts (hotplug_cli.py)
call ``plug`` and ``unplug``. A plug finds the profile the VIF realises (profiles.py), merges it with
what the caller asked (Xen's ``bridge=xenbr0.5``), and attaches the VIF through the same model,
planner and backends as the modules: a Linux bridge port (with its VLAN entries where the bridge
filters VLANs) or a vswitchd port. Every check runs before anything changes; an error leaves the VIF
unattached and the host as it was.

Which interface realises which profile is written to ``<state dir>/vifs/<ifname>.json`` at plug time
and removed at unplug (vswitch_info reads it; a vswitchd port also says it in its external IDs).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Optional, Tuple

from . import atomic
from .declared import DeclarationStore
from .errors import NotFoundError
from .host import Host
from .model import BridgeState, Change, HostState, PortSpec
from .paths import state_dir
from .plan import plan_ports, vlan_networks_of
from .profiles import DEVICE_ID, PROFILE_ID, Profile, VifIdentity, match, parse_bridge_string, resolve
from .vlans import format_vlans

REALISED_DIR = "vifs"


@dataclass
class PlugResult:
    changes: list[Change]
    bridge: str
    datapath: str
    profile: Optional[str]   # the key of the profile the VIF realises


def load_profiles(store: Optional[DeclarationStore] = None) -> list[Profile]:
    """Every declared profile (a damaged declaration falls back to its last good copy; none raises)."""
    declared, _problem = (store or DeclarationStore()).load()
    return declared.all_profiles()


CallerBridge = Tuple[Optional[str], Optional[int], Optional[Tuple[int, ...]]]


def caller_bridge(state: HostState, text: Optional[str]) -> CallerBridge:
    """Bridge, VLAN and trunks from Xen's ``bridge=``; a bridge literally named so (a VLAN network
    ``xenbr0.5``) is that bridge, as for vif-bridge."""
    if not text:
        return None, None, None
    if text in state.bridges:
        return text, None, None
    return parse_bridge_string(text)


def plan_plug(state: HostState, features: Mapping[str, Any], profiles: Sequence[Profile], who: VifIdentity,
              bridge_text: Optional[str] = None, external_ids: Optional[Mapping[str, str]] = None
              ) -> tuple[list[Change], PlugResult]:
    """The changes that plug ``who``: pure, so a bad request fails before anything is touched."""
    profile = match(profiles, who)
    bridge, vlan, trunks = caller_bridge(state, bridge_text)
    spec = resolve(profile, who, bridge, vlan, trunks)
    current = state.bridges.get(spec.bridge)
    if current is None:
        raise NotFoundError("bridge", spec.bridge, "does not exist on this host (declare it with "
                                                   "openvif.vswitch.vswitch_bridge)")
    _check_vlans_carried(spec, current, state)
    if current.datapath == "userspace":
        ids = {**(spec.external_ids or {}), **(external_ids or {})}
        if profile is not None:
            ids.update({PROFILE_ID: profile.key, DEVICE_ID: str(profile.device)})
        spec = replace(spec, external_ids=ids or None)
    changes = plan_ports([spec], state, features, move=True)
    return changes, PlugResult(changes, spec.bridge, current.datapath, profile.key if profile else None)


def _check_vlans_carried(spec: PortSpec, bridge: BridgeState, state: HostState) -> None:
    """A VIF's VLANs must be ones its bridge carries out: on a trunk port (the uplink, or any port with
    trunks) or as a VLAN network; an uplink with no VLAN settings carries them all. A VLAN nobody
    declared is a typo in the VM's configuration, not a new network. A bridge without an uplink or
    trunk (an internal network) keeps its VLANs inside the host, and any VLAN is its to use."""
    wanted = set(spec.trunks or ()) | {tag for tag in (spec.vlan, spec.native_vlan) if tag is not None}
    if not wanted:
        return
    carriers = [state.ports[name] for name in bridge.ports if name in state.ports and name != spec.name
                and (state.ports[name].trunks or state.ports[name].uplink)]
    if not carriers:
        return
    if any(port.vlan is None and not port.trunks for port in carriers):
        return   # a plain uplink carries every VLAN to the wire, on both datapaths (kernel_vlans.py)
    carried = {child.tag for child in vlan_networks_of(state, bridge.name) if child.tag is not None}
    for port in carriers:
        carried |= set(port.trunks or ()) | {tag for tag in (port.vlan, port.native_vlan) if tag is not None}
    missing = sorted(wanted - carried)
    if missing:
        names = ", ".join(f"'{port.name}'" for port in carriers)
        raise NotFoundError("vlan", missing[0] if len(missing) == 1 else format_vlans(tuple(missing)),
                            f"is not carried by '{bridge.name}': its trunks ({names}) carry "
                            f"{format_vlans(tuple(sorted(carried))) if carried else 'no VLAN'} and no VLAN network "
                            "declares it")


def plug(host: Host, profiles: Sequence[Profile], who: VifIdentity, bridge_text: Optional[str] = None,
         external_ids: Optional[Mapping[str, str]] = None, directory: Optional[str] = None) -> PlugResult:
    state = host.read()
    changes, result = plan_plug(state, host.features, profiles, who, bridge_text, external_ids)
    if changes:
        host.apply(changes, state)
    # Both datapaths bring the VIF up as they attach it (vswitchd before it binds its socket).
    record_realisation(who.ifname, result, directory)
    return result


def unplug(host: Host, ifname: str, directory: Optional[str] = None) -> list[Change]:
    """Detach the VIF from whatever bridge has it and forget it; a VIF already gone is no error."""
    state = host.read()
    changes = []
    owner = state.bridge_of(ifname)
    if owner is not None:
        changes = [Change("del_port", ifname, state.bridges[owner].datapath, {"bridge": owner})]
        host.apply(changes, state)
    forget_realisation(ifname, directory)
    return changes


# ------------------------------------------------------------------ which interface realises which profile
def _realised_dir(directory: Optional[str]) -> str:
    return os.path.join(directory or state_dir(), REALISED_DIR)


def record_realisation(ifname: str, result: PlugResult, directory: Optional[str] = None) -> None:
    where = _realised_dir(directory)
    path = os.path.join(where, ifname + ".json")
    if result.profile is None:
        forget_realisation(ifname, directory)
        return
    os.makedirs(where, mode=0o700, exist_ok=True)
    atomic.write(path, json.dumps({"interface": ifname, "profile": result.profile, "bridge": result.bridge,
                                   "datapath": result.datapath}) + "\n", mode=0o600)


def forget_realisation(ifname: str, directory: Optional[str] = None) -> None:
    try:
        os.unlink(os.path.join(_realised_dir(directory), ifname + ".json"))
    except FileNotFoundError:
        pass


def realisations(state: HostState, directory: Optional[str] = None) -> dict[str, list[str]]:
    """Profile key -> the interfaces that realise it now: attached VIFs the hotplug recorded, and
    vswitchd ports whose external IDs name the profile (plugged through ovs-vsctl)."""
    found: dict[str, set[str]] = {}
    where = _realised_dir(directory)
    try:
        names = sorted(os.listdir(where))
    except FileNotFoundError:
        names = []
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(where, name), encoding="utf-8") as handle:
                entry = json.load(handle)
        except (OSError, ValueError):
            continue
        port = state.ports.get(str(entry.get("interface")))
        if port is not None and port.bridge == entry.get("bridge"):   # a VIF gone without an unplug: stale
            found.setdefault(str(entry["profile"]), set()).add(port.name)
    for port in state.ports.values():
        key = (port.external_ids or {}).get(PROFILE_ID)
        if key:
            found.setdefault(key, set()).add(port.name)
    return {key: sorted(names) for key, names in found.items()}
