"""``vswitch_port`` in its profile form: a VM's port declared by ``vm`` and ``device``.

The profile is kept in the host's declaration (declared.py), so it outlives the run, vswitchd
restarts and reboots; the hotplug scripts and ``ovs-vsctl`` apply it whenever a VIF of the VM
appears. A VIF that realises the profile right now gets the new settings in the same run.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from . import validate as v
from .declared import Declaration, DeclarationStore
from .errors import ConflictError, NotFoundError, ValidationError, VswitchError
from .host import Host
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


def is_profile_item(item: Any) -> bool:
    """An entry of vswitch_port's ``ports`` that declares a profile (by ``vm``/``device``) and not a port."""
    return isinstance(item, Mapping) and (item.get("vm") is not None or item.get("device") is not None)


def check_profile_task(params: Mapping[str, Any], batch: bool) -> None:
    """Task options a profile cannot take: ``name``/``type`` (the single form), ``purge`` in either form
    (a profile is no interface to keep or detach), ``move`` in the single form."""
    if not batch:
        for key in NOT_WITH_PROFILE:
            if params.get(key) is not None:
                raise ValidationError(key, params[key], "cannot be combined with 'vm': a VM port profile is "
                                                        "declared by VM and device, whatever its interface is "
                                                        "called when it runs")
    for key in ("purge",) if batch else ("purge", "move"):
        if params.get(key):
            raise ValidationError(key, True, "cannot be combined with 'vm' (a profile is one VM's port)" if not batch
                                  else "cannot be combined with profile entries in 'ports' (entries with 'vm'): "
                                       "a profile is no interface to keep or detach; purge in a task of its own")


def profile_item(entry: Mapping[str, Any], default_bridge: Optional[str]) -> dict[str, Any]:
    """A profile entry of the batch form as the single form's params (its bridge defaults to the task's)."""
    for key in NOT_WITH_PROFILE:
        if entry.get(key) is not None:
            raise ValidationError(key, entry[key], "cannot be combined with 'vm': a VM port profile is declared "
                                                   "by VM and device, whatever its interface is called when it runs")
    v.known_keys("", entry, PROFILE_FIELDS, "a profile")
    item = {k: entry.get(k) for k in PROFILE_FIELDS}
    if item["bridge"] is None:
        item["bridge"] = default_bridge
    return item


@dataclass
class ProfilePlan:
    """What declaring (or forgetting) a task's profiles does: the declaration's entries before and after
    (None: absent) and the changes that give the VIFs realising them now their settings."""

    changes: list[Change] = field(default_factory=list)
    before: dict[str, Optional[dict[str, Any]]] = field(default_factory=dict)
    after: dict[str, Optional[dict[str, Any]]] = field(default_factory=dict)


def plan_profiles(items: Sequence[tuple[str, Mapping[str, Any]]], declared: Declaration, state: HostState,
                  host: Host, directory: str, absent: bool) -> ProfilePlan:
    """Plan every profile of ``items`` ((label, params): label ``ports[3]`` names the entry in errors,
    ``""`` for the single form) against the host ``state``; all checks before anything changes."""
    keys: list[str] = []
    for label, params in items:
        try:
            key = vif_key("", params.get("vm"), params.get("device"))
            if key in keys:
                raise ValidationError("vm", params.get("vm"), f"with device {key.rsplit('/', 1)[1]} is listed twice "
                                                              f"(also {items[keys.index(key)][0]})")
        except VswitchError as err:
            raise (err.at(label) if label else err) from None
        keys.append(key)
    plan = ProfilePlan(before={key: declared.profiles.get(key) for key in keys})
    kept = [p for p in declared.all_profiles() if p.key not in keys]
    planned = state
    for (label, params), key in zip(items, keys):
        if absent:
            plan.after[key] = None
            continue
        try:
            profile = Profile.from_params({k: params.get(k) for k in PROFILE_FIELDS})
            _check_against_host(profile, planned, host)
            kept.append(profile)
            check_distinct(kept)
            step = _plan_realising(profile, planned, host, directory)
        except VswitchError as err:
            raise (err.at(label) if label else err) from None
        plan.after[key] = profile.to_entry()
        plan.changes.extend(step)
        planned = simulate(planned, step)
    return plan


def profile_views(plan: ProfilePlan, state_after: HostState, directory: str) -> tuple[dict, dict, dict]:
    """(before, after) diff views of the plan's profiles, and each present one with the interfaces
    that realise it once the plan is applied."""
    before = {key: entry or {"state": "absent"} for key, entry in plan.before.items()}
    after = {key: entry or {"state": "absent"} for key, entry in plan.after.items()}
    realised = realisations(state_after, directory)
    facts = {key: {**entry, "interfaces": realised.get(key, [])} for key, entry in plan.after.items()
             if entry is not None}
    return before, after, facts


def profile_changed(plan: ProfilePlan) -> bool:
    return plan.before != plan.after or bool(plan.changes)


def profile_store(host: Host) -> DeclarationStore:
    """Profiles live in the host's declaration whether or not the run records the rest (unit tests' hosts)."""
    if host.declarations is None:
        host.declarations = DeclarationStore()
    return host.declarations


def load_declared(store: DeclarationStore) -> Declaration:
    declared, _problem = store.load()   # a damaged one falls back to its last good copy (the run warns)
    return declared


def single_result(plan: ProfilePlan, state_after: HostState, directory: str, warnings: list[str]) -> Result:
    """The single form's result: ``profile``, ``key`` and ``interfaces`` of its one profile."""
    (key, entry), = plan.after.items()
    before, after, facts = profile_views(plan, state_after, directory)
    return Result(changed=profile_changed(plan), before={"profiles": before}, after={"profiles": after},
                  warnings=warnings,
                  values={"changes": [c.describe() for c in plan.changes], "profile": entry, "key": key,
                          "interfaces": facts.get(key, {}).get("interfaces", [])})
