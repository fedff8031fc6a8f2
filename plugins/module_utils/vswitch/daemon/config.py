"""vswitchd's configuration and the one function that changes it: ``apply_changes``.

Configuration is plain data (what the state file holds): bridges with their settings,
ports with their bridge and settings. ``apply_changes`` takes ``model.Change`` dicts
(exactly what ``Change.to_dict`` produces, so one plan drives both datapaths), checks
each argument with the validators the modules use, and returns a new configuration or
raises a typed error naming the change: it never modifies its input, which is how a
transaction applies whole or not at all.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from .. import validate as v
from ..errors import ConflictError, MissingFeatureError, NotFoundError, ValidationError, VswitchError
from ..model import OPS
from ..settings import BRIDGE, PORT, UPLINK, check_port_rules, parse_bond

BRIDGE_DEFAULTS: dict[str, Any] = {**{name: s.default for name, s in BRIDGE.items()}, "parent": None, "tag": None}
# A VLAN network ("VLAN <tag> on <parent>", OVS's fake bridge) is a bridge with these two set; they are
# fixed at creation: re-tagging a network under its VMs would move them silently.
VLAN_KEYS = ("parent", "tag")
# A bond port also has "bond" (its record, settings.BOND); other ports do not carry the key at all.
PORT_DEFAULTS: dict[str, Any] = {**{name: s.default for name, s in PORT.items()}, UPLINK.name: UPLINK.default}
MAX_BRIDGES = 1024
MAX_PORTS = 16384
MAX_CHANGES = 65536


def _bridge_setting(key: str, value: Any) -> Any:
    if key == "stp":
        if v.boolean(key, value):
            raise MissingFeatureError(key, value, "is not implemented by vswitchd (no spanning tree); use "
                                                  "datapath: kernel for STP, or keep stp: false")
        return False
    if key in BRIDGE:
        # None keeps the default only where the default is None (an unpinned MAC).
        setting = BRIDGE[key]
        return setting.check(key, value) if setting.default is None else setting.parse(key, value)
    if key == "parent":
        return v.optional(v.ifname, key, value)
    if key == "tag":
        return v.optional(v.vlan_id, key, value)
    raise ValidationError(key, value, f"is not a bridge setting (known: {', '.join(BRIDGE_DEFAULTS)})")


def _port_setting(key: str, value: Any) -> Any:
    if key == "bridge":
        return v.ifname(key, value)
    if key == "bond":   # a bond port: its whole record (settings.BOND), validated as one
        return None if value is None else parse_bond(key, value)
    setting = UPLINK if key == UPLINK.name else PORT.get(key)
    if setting is None:
        raise ValidationError(key, value, f"is not a port setting (known: bridge, {', '.join(PORT_DEFAULTS)})")
    if value is None and (setting.default is None or isinstance(setting.default, bool)):
        return setting.default   # a flag left out is off; an optional setting is unset
    parsed = setting.parse(key, value)
    return list(parsed) if isinstance(parsed, tuple) else parsed   # trunks: JSON keeps lists


def _settings(check: Any, args: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in args.items():
        try:
            out[str(key)] = check(str(key), value)
        except VswitchError as err:
            raise err.at("args") from None
    return out


class Config:
    """Bridges and ports as declared; ``to_json``/``from_json`` are the state file's body."""

    def __init__(self, bridges: Mapping[str, dict[str, Any]] | None = None,
                 ports: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.bridges: dict[str, dict[str, Any]] = dict(bridges or {})
        self.ports: dict[str, dict[str, Any]] = dict(ports or {})

    def copy(self) -> Config:
        return Config(copy.deepcopy(self.bridges), copy.deepcopy(self.ports))

    def ports_of(self, bridge: str) -> list[str]:
        return sorted(name for name, port in self.ports.items() if port["bridge"] == bridge)

    def vlans_of(self, parent: str) -> list[str]:
        return sorted(name for name, b in self.bridges.items() if b.get("parent") == parent)

    def uplink_of(self, bridge: str) -> str | None:
        for name, port in self.ports.items():
            if port["bridge"] == bridge and port.get("uplink"):
                return name
        return None

    def to_json(self) -> dict[str, Any]:
        return {"bridges": {name: dict(sorted(b.items())) for name, b in sorted(self.bridges.items())},
                "ports": {name: dict(sorted(p.items())) for name, p in sorted(self.ports.items())}}

    @classmethod
    def from_json(cls, data: Any) -> Config:
        """Rebuild (and re-validate) a configuration read from disk."""
        if not isinstance(data, Mapping):
            raise ValidationError("state", type(data).__name__, "must be an object")
        bridges_in, ports_in = data.get("bridges", {}), data.get("ports", {})
        if not isinstance(bridges_in, Mapping) or not isinstance(ports_in, Mapping):
            raise ValidationError("state", "bridges/ports", "must be objects")
        changes = [{"op": "add_bridge", "target": name, "args": settings}
                   for name, settings in bridges_in.items()]
        changes += [{"op": "add_port", "target": name, "args": settings} for name, settings in ports_in.items()]
        return apply_changes(Config(), changes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self.to_json() == other.to_json()


def apply_changes(config: Config, changes: Sequence[Any]) -> Config:
    """The configuration after ``changes``; raises (naming ``changes[i]``) if any of them cannot apply."""
    if not isinstance(changes, (list, tuple)):
        raise ValidationError("changes", type(changes).__name__, "must be a list of changes")
    if len(changes) > MAX_CHANGES:
        raise ValidationError("changes", len(changes), f"is too many changes for one transaction "
                                                       f"(at most {MAX_CHANGES})")
    new = config.copy()
    for index, change in enumerate(changes):
        try:
            _apply_one(new, change)
        except VswitchError as err:
            raise err.at(f"changes[{index}]") from None
    _check_whole(new)
    return new


def _apply_one(config: Config, change: Any) -> None:
    if not isinstance(change, Mapping):
        raise ValidationError("", change, "must be an object with op, target and args")
    op = change.get("op")
    if op not in OPS:
        raise ValidationError("op", op, f"must be one of {', '.join(OPS)}")
    datapath = change.get("datapath", "userspace")
    if datapath != "userspace":
        raise ValidationError("datapath", datapath, "is not 'userspace'; vswitchd only applies changes of the "
                                                    "userspace datapath")
    target = v.ifname("target", change.get("target"))
    args = change.get("args")
    if args is None:
        args = {}
    if not isinstance(args, Mapping):   # not `or {}`: an empty list would pass as no arguments
        raise ValidationError("args", args, "must be an object")
    if op.endswith("_bridge"):
        _bridge_op(config, op, target, args)
    else:
        _port_op(config, op, target, args)


def _bridge_op(config: Config, op: str, name: str, args: Mapping[str, Any]) -> None:
    current = config.bridges.get(name)
    if op == "del_bridge":
        if current is None:
            raise NotFoundError("target", name, "is not a bridge of vswitchd")
        for port in config.ports_of(name):
            del config.ports[port]
        del config.bridges[name]
        return
    settings = _settings(_bridge_setting, {k: val for k, val in args.items() if k != "ports"})
    if op == "add_bridge":
        if current is not None:
            raise ConflictError("target", name, "already exists as a bridge of vswitchd")
        if name in config.ports:
            raise ConflictError("target", name, f"is already a port of bridge '{config.ports[name]['bridge']}'")
        if len(config.bridges) >= MAX_BRIDGES:
            raise ConflictError("target", name, f"would exceed the limit of {MAX_BRIDGES} bridges")
        config.bridges[name] = {**BRIDGE_DEFAULTS, **settings}
    else:
        if current is None:
            raise NotFoundError("target", name, "is not a bridge of vswitchd")
        for key in VLAN_KEYS:
            if key in settings and settings[key] != current.get(key):
                raise ConflictError(f"args.{key}", settings[key], f"cannot change: '{name}' was created with "
                                    f"{key} {current.get(key)!r}; delete it and create it again")
        current.update(settings)


def _port_op(config: Config, op: str, name: str, args: Mapping[str, Any]) -> None:
    current = config.ports.get(name)
    settings = _settings(_port_setting, args)
    bridge = settings.get("bridge")
    if op == "add_port":
        if bridge is None:
            raise ValidationError("args.bridge", None, "is required: say which bridge the port joins")
        if bridge not in config.bridges:
            raise NotFoundError("args.bridge", bridge, "is not a bridge of vswitchd")
        if current is not None:
            raise ConflictError("target", name, f"is already a port of bridge '{current['bridge']}'")
        if name in config.bridges:
            raise ConflictError("target", name, "is a bridge (its internal port); a bridge cannot be a port")
        if len(config.ports) >= MAX_PORTS:
            raise ConflictError("target", name, f"would exceed the limit of {MAX_PORTS} ports")
        config.ports[name] = {**PORT_DEFAULTS, **settings}
        return
    if current is None:
        raise NotFoundError("target", name, "is not a port of vswitchd")
    if bridge is not None and bridge != current["bridge"]:
        raise ConflictError("args.bridge", bridge, f"differs: port '{name}' is a port of '{current['bridge']}'")
    if op == "del_port":
        del config.ports[name]
    else:
        current.update(settings)


def _check_whole(config: Config) -> None:
    """Constraints between fields, checked on the result so a transaction may pass through states."""
    tags: dict[tuple[str, int], str] = {}
    for name, bridge in sorted(config.bridges.items()):
        parent, tag = bridge.get("parent"), bridge.get("tag")
        if parent is None and tag is None:
            continue
        if parent is None or tag is None:
            missing = "parent" if parent is None else "tag"
            raise ValidationError(f"bridges.{name}.{missing}", None,
                                  "is required: a VLAN network has both a parent bridge and a tag")
        if parent not in config.bridges:
            raise NotFoundError(f"bridges.{name}.parent", parent,
                                f"is not a bridge of vswitchd (a parent cannot be removed while it carries VLAN "
                                f"network '{name}')")
        if config.bridges[parent].get("parent") is not None:
            raise ConflictError(f"bridges.{name}.parent", parent, "is itself a VLAN network; VLAN networks do not "
                                                                  "nest")
        other = tags.setdefault((parent, tag), name)
        if other != name:
            raise ConflictError(f"bridges.{name}.tag", tag, f"is already used on '{parent}' by VLAN network "
                                                            f"'{other}'")
    _check_bonds(config)
    uplinks: dict[str, str] = {}
    for name, port in sorted(config.ports.items()):
        if port["bridge"] not in config.bridges:
            raise NotFoundError(f"ports.{name}.bridge", port["bridge"], "is not a bridge of vswitchd")
        tag = config.bridges[port["bridge"]].get("tag")
        if tag is not None and (port["vlan"] is not None or port["trunks"]):
            raise ConflictError(f"ports.{name}.vlan", port["vlan"] or port["trunks"],
                                f"cannot be set on a port of VLAN network '{port['bridge']}': its ports carry "
                                f"VLAN {tag} untagged")
        check_port_rules(port["vlan"], port["trunks"], port["native_vlan"], prefix=f"ports.{name}.")
        if port["uplink"]:
            other = uplinks.setdefault(port["bridge"], name)
            if other != name:
                raise ConflictError(f"ports.{name}.uplink", True, f"would be a second uplink of bridge "
                                    f"'{port['bridge']}' (it has '{other}'); a network has at most one PIF")


def _check_bonds(config: Config) -> None:
    """A bond's members are NICs of that bond only: no port of vswitchd, no member of another bond."""
    owners: dict[str, str] = {}
    for name, port in sorted(config.ports.items()):
        bond = port.get("bond")
        if bond is None:
            continue
        if port["type"] != "system":
            raise ConflictError(f"ports.{name}.type", port["type"], "cannot be a bond's type: a bond is made of "
                                                                    "system ports (its members)")
        for index, member in enumerate(bond["members"]):
            field = f"ports.{name}.bond.members[{index}]"
            if member in config.ports or member in config.bridges:
                what = ("a bridge" if member in config.bridges
                        else f"a port of bridge '{config.ports[member]['bridge']}'")
                raise ConflictError(field, member, f"is {what}; a bond member belongs to its bond only")
            other = owners.setdefault(member, name)
            if other != name:
                raise ConflictError(field, member, f"is already a member of bond '{other}'")
