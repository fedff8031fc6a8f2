"""``vswitch_port`` in its profile form: a VM's port declared by ``vm`` and ``device``.

The profile is kept in the host's declaration (declared.py), so it outlives the run, vswitchd
restarts and reboots; the hotplug scripts and ``ovs-vsctl`` apply it whenever a VIF of the VM
appears. A VIF that realises the profile right now gets the new settings in the same run.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from . import validate as v
from .declared import Declaration, DeclarationStore
from .errors import ConflictError, NotFoundError, ValidationError, VswitchError
from .host import Host, converge
from .hotplug import realisations
from .mac import vif_key
from .model import Change, HostState, PortSpec
from .plan import check_port_features, plan_ports, simulate
from .profiles import ATTACHED, PROFILE_FIELDS, PROFILE_ID, Profile, VifIdentity, check_distinct, resolve
from .result import Result

# Options of vswitch_port that name an interface, which a profile has none of.
NOT_WITH_PROFILE = ("name", "ports", "type")
A_UNICAST_MAC = "02:00:00:00:00:01"   # stands in for 'attached' when checking what the datapath can do


def _check_against_host(profile: Profile, state: HostState, host: Host) -> None:
    bridge = state.bridges.get(profile.bridge)
    if bridge is None:
        raise NotFoundError("bridge", profile.bridge, "does not exist on this host; declare it with "
                                                      "openvif.vswitch.vswitch_bridge first")
    settings = dict(profile.settings)
    if settings.get("mac") == ATTACHED:
        settings["mac"] = A_UNICAST_MAC
    spec = PortSpec.from_params({"name": "profile", "bridge": profile.bridge, **settings})
    try:
        check_port_features(spec, host.features.get(bridge.datapath), "")
    except VswitchError as err:
        raise type(err)(err.field.lstrip("."), profile.settings.get(err.field.lstrip("."), err.value),
                        err.reason) from None
    if bridge.parent is not None and (spec.vlan is not None or spec.trunks is not None):
        raise ConflictError("vlan" if spec.vlan is not None else "trunks", spec.vlan or list(spec.trunks or ()),
                            f"cannot be set on a port of VLAN network '{bridge.name}': its ports carry VLAN "
                            f"{bridge.tag} untagged; declare the profile on '{bridge.parent}' to tag it")


def _plan_realising(profile: Profile, state: HostState, host: Host, directory: str) -> list[Change]:
    """Give the VIFs that realise the profile now its declared settings."""
    changes: list[Change] = []
    planned = state
    for ifname in realisations(state, directory).get(profile.key, []):
        port = planned.ports[ifname]
        ids = dict(port.external_ids or {})
        mac = ids.get("attached-mac")
        who = VifIdentity(ifname=ifname, vm_names=(profile.vm,), device=profile.device,
                          attached_mac=v.mac("attached-mac", mac) if mac else None)
        spec = resolve(profile, who, None)
        bridge = planned.bridges.get(spec.bridge)
        if bridge is not None and bridge.datapath == "userspace":
            spec = replace(spec, external_ids={**(spec.external_ids or {}), **ids, PROFILE_ID: profile.key})
        step = plan_ports([spec], planned, host.features, move=True)
        changes.extend(step)
        planned = simulate(planned, step)
    return changes


def profile_action(params: Mapping[str, Any], host: Host, check_mode: bool) -> Result:
    for key in NOT_WITH_PROFILE:
        if params.get(key) is not None:
            raise ValidationError(key, params[key], "cannot be combined with 'vm': a VM port profile is declared by "
                                                    "VM and device, whatever its interface is called when it runs")
    for key in ("purge", "move"):
        if params.get(key):
            raise ValidationError(key, True, "cannot be combined with 'vm' (a profile is one VM's port)")
    store = host.declarations
    if store is None:
        store = DeclarationStore()
    declared, problem = store.load()
    warnings = list(host.warnings)
    if problem is not None:
        warnings.append(problem.message + f"; using the last good copy {store.good_path}")
    absent = params.get("state") == "absent"
    key = vif_key("", params.get("vm"), params.get("device"))
    before_entry = declared.profiles.get(key)
    state = host.read()
    changes: list[Change] = []
    if absent:
        after_entry = None
    else:
        profile = Profile.from_params({k: params.get(k) for k in PROFILE_FIELDS})
        _check_against_host(profile, state, host)
        check_distinct([p for p in declared.all_profiles() if p.key != key] + [profile])
        after_entry = profile.to_entry()
        changes = _plan_realising(profile, state, host, store.directory)
    profiles = {k: dict(val) for k, val in declared.profiles.items() if k != key}
    if after_entry is not None:
        profiles[key] = after_entry
    updated = Declaration(bridges=declared.bridges, vlans=declared.vlans, ports=declared.ports, profiles=profiles)
    converge(host, changes, state, check_mode)
    if not check_mode and (updated != declared or problem is not None):
        store.save(updated)
    interfaces = realisations(simulate(state, changes), store.directory).get(key, []) if after_entry else []
    view_before = {"profiles": {key: before_entry or {"state": "absent"}}}
    view_after = {"profiles": {key: after_entry or {"state": "absent"}}}
    return Result(changed=before_entry != after_entry or bool(changes), before=view_before, after=view_after,
                  warnings=warnings,
                  values={"changes": [c.describe() for c in changes], "profile": after_entry, "key": key,
                          "interfaces": interfaces})
