"""What each module does, as plain functions of (params, host, check_mode) -> Result.

Modules stay thin: they declare their arguments and call one function here.
Every function follows the same shape: build specs (validation), read the
host, plan, apply unless in check mode, and report a diff computed from the
plan, so check mode and a real run can never disagree.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from . import validate as v
from .declared import DeclarationStore, Intent, drift, record
from .errors import ConflictError, ValidationError, VswitchError
from .host import Host, converge
from .hotplug import realisations
from .model import BridgeSpec, Change, HostState, PortSpec, VlanSpec
from .plan import plan_bridge, plan_bridge_absent, plan_ports, plan_vlan, simulate
from .profile_actions import (
    check_profile_task,
    is_profile_item,
    load_declared,
    plan_profiles,
    profile_changed,
    profile_item,
    profile_store,
    profile_views,
    single_result,
)
from .profiles import PROFILE_FIELDS
from .result import Result
from .settings import BRIDGE_SETTINGS, PORT_SETTINGS


def _bridge_view(state: HostState, name: str) -> dict[str, Any]:
    bridge = state.bridges.get(name)
    if bridge is None:
        return {"name": name, "state": "absent"}
    view = {"state": "present", **bridge.to_facts()}
    uplink = state.ports.get(bridge.uplink) if bridge.uplink else None
    if uplink is not None and uplink.bond is not None:
        view["bond"] = dict(uplink.bond)   # the diff shows a bond's settings and members changing
    return view


def _converge(host: Host, changes: Sequence[Change], state: HostState, check_mode: bool,
              intent: Intent) -> HostState:
    """Apply the plan (unless checking), record what was declared, and return the state it leads to.

    The one place where module runs meet the persisted declaration: it is read before anything
    changes (a damaged or newer one fails the run with the host untouched, check mode included)
    and written only after the host took the whole plan, so a failed run leaves it as it was.
    """
    predicted = simulate(state, changes)
    store = host.declarations
    declared, problem = None, None
    if store is not None:
        declared, problem = store.load()
        if problem is not None:
            host.warnings.append(problem.message + f"; using the last good copy {store.good_path} (a real run "
                                                   "writes it back as the declaration)")
    converge(host, changes, state, check_mode)
    if store is not None and declared is not None and not check_mode:
        updated = record(declared, intent, changes, predicted)
        if updated != declared or problem is not None:
            store.save(updated)
            warning = store.warn_once_without_boot_unit() if updated.bridges or updated.vlans else None
            if warning:
                host.warnings.append(warning)
    return predicted


def _report(host: Host, changes: Sequence[Change], before: Any, after: Any, **values: Any) -> Result:
    return Result(changed=bool(changes), before=before, after=after, warnings=list(host.warnings),
                  values={"changes": [c.describe() for c in changes], **values})


BRIDGE_KEYS = ("name", "datapath", *BRIDGE_SETTINGS, "uplink")
PORT_KEYS = ("name", "bridge", *PORT_SETTINGS)


def bridge(params: Mapping[str, Any], host: Host, check_mode: bool) -> Result:
    """One bridge (``name``), or many in one read, one plan and one transaction (``bridges``)."""
    items = params.get("bridges")
    if items is not None and params.get("name") is not None:
        raise ValidationError("name", params["name"], "cannot be combined with 'bridges'; list it there instead")
    if items is None and params.get("name") is None:
        raise ValidationError("name", None, "is required: give a bridge 'name' or a list of 'bridges'")
    if items is not None:
        for key in BRIDGE_KEYS[2:]:   # datapath has a default, so only the others can be told apart
            if params.get(key) is not None:
                raise ValidationError(key, params[key], "cannot be combined with 'bridges'; set it per entry")
    entries = [dict(params)] if items is None else items
    absent = params.get("state") == "absent"
    state = host.read()
    planned, changes, names = state, [], []
    intent = Intent()
    for index, entry in enumerate(entries):
        try:
            if not isinstance(entry, Mapping):
                raise ValidationError("", entry, "must be a mapping with at least 'name'")
            if items is not None:   # the single form's entry is the task's own params, state and all
                v.known_keys("", entry, BRIDGE_KEYS, "a bridge")
            item = {k: entry.get(k) for k in BRIDGE_KEYS}
            spec = BridgeSpec.from_params({"name": item["name"]} if absent else item)
            if spec.name in names:
                raise ValidationError("name", spec.name, f"is listed twice (also bridges[{names.index(spec.name)}])")
            step = plan_bridge_absent(spec.name, planned) if absent else plan_bridge(spec, planned, host.features)
        except VswitchError as err:
            raise (err.at(f"bridges[{index}]") if items is not None else err) from None
        names.append(spec.name)
        if absent:
            intent.absent_bridges.append(spec.name)
        else:
            intent.bridges.append(spec)
        changes.extend(step)
        planned = simulate(planned, step)
    after = _converge(host, changes, state, check_mode, intent)
    if items is None:
        view = _bridge_view(after, names[0])
        return _report(host, changes, _bridge_view(state, names[0]), view, bridge=view)
    before_views = {name: _bridge_view(state, name) for name in names}
    after_views = {name: _bridge_view(after, name) for name in names}
    return _report(host, changes, {"bridges": before_views}, {"bridges": after_views}, bridges=after_views)


def _vlan_view(state: HostState, name: str) -> dict[str, Any]:
    bridge = state.bridges.get(name)
    if bridge is None or bridge.parent is None:
        return {"name": name, "state": "absent"}
    return {"name": name, "state": "present", "parent": bridge.parent, "tag": bridge.tag,
            "datapath": bridge.datapath, "ports": list(bridge.ports)}


def vlan(params: Mapping[str, Any], host: Host, check_mode: bool) -> Result:
    state = host.read()
    if params.get("state") == "absent":
        name = VlanSpec.from_params({"name": params.get("name"), "parent": "-", "tag": 1}).name
        current = state.bridges.get(name)
        if current is not None and current.parent is None:
            raise ConflictError("name", name, "is a bridge, not a VLAN network; remove it with vswitch_bridge")
        changes = plan_bridge_absent(name, state)
        intent = Intent(absent_bridges=[name])
    else:
        spec = VlanSpec.from_params(params)
        name = spec.name
        changes = plan_vlan(spec, state, host.features)
        intent = Intent(vlans=[spec])
    after = _converge(host, changes, state, check_mode, intent)
    view = _vlan_view(after, name)
    return _report(host, changes, _vlan_view(state, name), view, vlan=view)


def _port_specs(params: Mapping[str, Any], items: Optional[Sequence[tuple[int, Any]]] = None) -> list[PortSpec]:
    """The ports of the task: its single port, or the batch form's entries (``items``: (index in
    ``ports``, entry), the profile entries left out)."""
    single = params.get("name")
    batch = params.get("ports") is not None
    if not batch and single is None:
        raise ValidationError("ports", None, "is required: give a port 'name' or a list of 'ports'")
    if batch and single is not None:
        raise ValidationError("name", single, "cannot be combined with 'ports'; list it in 'ports' instead")
    if items is None:
        items = list(enumerate(params["ports"])) if batch else [(0, {k: params.get(k) for k in PORT_KEYS})]
    specs = []
    for index, item in items:
        entry = {"name": item} if isinstance(item, str) else item
        if not isinstance(entry, Mapping):
            raise ValidationError(f"ports[{index}]", item, "must be a port name or a mapping with 'name' "
                                                           "(or 'vm' for a VM port profile)")
        v.known_keys(f"ports[{index}]", entry, PORT_KEYS, "a port")
        try:
            specs.append(PortSpec.from_params(entry, default_bridge=params.get("bridge")))
        except VswitchError as err:
            raise (err.at(f"ports[{index}]") if batch else err) from None
    return specs


_PORT_INDEX = re.compile(r"ports\[(\d+)\]")


def _relabel(err: VswitchError, positions: Sequence[int]) -> VswitchError:
    """The planner numbers the ports it was given; in a batch with profile entries, say the entry's own index."""
    def number(found: re.Match) -> str:
        index = int(found.group(1))
        return f"ports[{positions[index]}]" if index < len(positions) else found.group(0)
    return type(err)(_PORT_INDEX.sub(number, err.field), err.value, _PORT_INDEX.sub(number, err.reason))


def _ports_view(state: HostState, names: Sequence[str]) -> dict[str, Any]:
    view = {}
    for name in names:
        port = state.ports.get(name)
        view[name] = port.to_facts() if port else {"name": name, "bridge": None}
    return {"ports": view}


def port(params: Mapping[str, Any], host: Host, check_mode: bool) -> Result:
    """Ports, VM port profiles (``vm``/``device``: the profile form), or both in one batch (``ports``
    entries with ``name`` or with ``vm``): one read, one plan and one transaction."""
    items = params.get("ports")
    single_profile = params.get("vm") is not None or params.get("device") is not None
    profile_items: list[tuple[str, Mapping[str, Any]]] = []
    port_items: Optional[list[tuple[int, Any]]] = None
    if single_profile:
        check_profile_task(params, batch=False)
        profile_items = [("", {k: params.get(k) for k in PROFILE_FIELDS})]
        port_items = []
    elif items is not None and any(is_profile_item(item) for item in items):
        check_profile_task(params, batch=True)
        port_items = []
        for index, item in enumerate(items):
            if not is_profile_item(item):
                port_items.append((index, item))
                continue
            try:
                profile_items.append((f"ports[{index}]", profile_item(item, params.get("bridge"))))
            except VswitchError as err:
                raise err.at(f"ports[{index}]") from None
    specs = _port_specs(params, port_items) if port_items is None or port_items else []
    present = params.get("state", "present") != "absent"
    purge: list[str] = []
    if params.get("purge"):
        purge = sorted({spec.bridge for spec in specs} | ({params["bridge"]} if params.get("bridge") else set()))
    state = host.read()
    try:
        changes = plan_ports(specs, state, host.features, present=present, move=bool(params.get("move")),
                             purge=purge)
    except VswitchError as err:
        if items is None and err.field.startswith("ports[0]."):
            raise type(err)(err.field[len("ports[0]."):], err.value, err.reason) from None
        raise (_relabel(err, [index for index, _item in port_items]) if port_items else err) from None
    intent = Intent(ports=specs) if present else Intent(absent_ports=specs)
    if not profile_items:
        after = _converge(host, changes, state, check_mode, intent)
        touched = sorted({spec.name for spec in specs} | {c.target for c in changes})
        after_view = _ports_view(after, touched)
        return _report(host, changes, _ports_view(state, touched), after_view, ports=after_view["ports"])
    store = profile_store(host)
    profiles = plan_profiles(profile_items, load_declared(store), simulate(state, changes), host, store.directory,
                             absent=not present)
    changes = [*changes, *profiles.changes]
    intent.profiles = dict(profiles.after)
    after = _converge(host, changes, state, check_mode, intent)
    if single_profile:
        return single_result(profiles, after, store.directory, list(host.warnings))
    touched = sorted({spec.name for spec in specs} | {c.target for c in changes})
    after_view = _ports_view(after, touched)
    before_profiles, after_profiles, facts = profile_views(profiles, after, store.directory)
    return Result(changed=bool(changes) or profile_changed(profiles),
                  before={**_ports_view(state, touched), "profiles": before_profiles},
                  after={**after_view, "profiles": after_profiles}, warnings=list(host.warnings),
                  values={"changes": [c.describe() for c in changes], "ports": after_view["ports"],
                          "profiles": facts})


def info(params: Mapping[str, Any], host: Host) -> Result:
    state = host.read()
    wanted: Optional[set[str]] = set(params["bridges"]) if params.get("bridges") else None
    bridges = {name: b.to_facts() for name, b in sorted(state.bridges.items())
               if wanted is None or name in wanted}
    ports = {name: p.to_facts() for name, p in sorted(state.ports.items()) if p.bridge in bridges}
    vlans = {name: {"parent": b["parent"], "tag": b["tag"]} for name, b in bridges.items() if b["parent"]}
    facts: dict[str, Any] = {"bridges": bridges, "ports": ports, "vlans": vlans, "datapaths": list(state.datapaths)}
    facts["bonds"] = _bond_facts(host, state, bridges)
    if params.get("fdb", True):
        facts["fdb"] = [vars(entry) for entry in host.fdb() if entry.bridge in bridges]
    if host.declarations is not None:
        facts["declaration"] = _declaration_facts(host.declarations, state, wanted)
        facts["profiles"] = _profile_facts(host.declarations, state, wanted)
    return Result(changed=False, values={"vswitch": facts, "ansible_facts": {"vswitch": facts}})


def _bond_facts(host: Host, state: HostState, bridges: Mapping[str, Any]) -> dict[str, Any]:
    """Each bond of the reported bridges: its declared record, and how it runs where the datapath says."""
    running: dict[str, dict[str, Any]] = {}
    for backend in host.backends.values():
        reader = getattr(backend, "bonds", None)
        if reader is not None:
            running.update({row["bond"]: row for row in reader()})
    facts = {}
    for name, port in sorted(state.ports.items()):
        if port.bond is None or port.bridge not in bridges:
            continue
        live = running.get(name, {})
        facts[name] = {"bridge": port.bridge, "mode": port.bond["mode"], "lacp": port.bond["lacp"],
                       "settings": dict(port.bond), "active_member": live.get("active_member"),
                       "lacp_status": live.get("lacp_status"), "failovers": live.get("failovers"),
                       "members": live.get("members") or [{"name": m} for m in port.bond["members"]]}
    return facts


def _declaration_facts(store: DeclarationStore, state: HostState, wanted: Optional[set[str]]) -> dict[str, Any]:
    """Where the declaration is and how the host drifted from it; a damaged one is reported, not fatal."""
    facts: dict[str, Any] = {"path": store.path, "error": None, "drift": []}
    try:
        declared, problem = store.load()
    except VswitchError as err:
        facts["error"] = err.message
        return facts
    if problem is not None:
        facts["error"] = problem.message
        facts["path"] = store.good_path
    entries = drift(declared, state)
    if wanted is not None:
        entries = [e for e in entries if e["name"] in wanted
                   or (e["kind"] == "port" and declared.ports[e["name"]]["bridge"] in wanted)]
    facts["drift"] = entries
    return facts


def _profile_facts(store: DeclarationStore, state: HostState, wanted: Optional[set[str]]) -> dict[str, Any]:
    """Each declared profile, and the interfaces that realise it now (empty while its VM is stopped)."""
    try:
        declared, _problem = store.load()
    except VswitchError:
        return {}   # reported under declaration.error
    realised = realisations(state, store.directory)
    return {key: {**entry, "interfaces": realised.get(key, [])} for key, entry in sorted(declared.profiles.items())
            if wanted is None or entry["bridge"] in wanted}
