"""The declaration: what the modules declared on this host's kernel datapath, kept on the host.

The kernel forgets every bridge at reboot; vswitchd has its own state file, the Linux bridge has
none. So each module run that changes or confirms a kernel-datapath network records what was
declared here, and ``vswitch.boot`` rebuilds it from this file through the same model, planner
and backend. Only declared settings are kept (plus the MAC the bridge was pinned to, which the
planner chose when it created it): what the operator left alone stays the kernel's default.

File ``<OPENVIF_STATE_DIR>/declared.json``, one JSON object::

    {"format": "openvif.vswitch.declared", "version": 1,
     "bridges": {"xenbr0": {"mac": "..", "uplink": "peth0", "forward_delay": 0.0},
                 "xenbr1": {"mac": "..", "uplink": {"bond": "bond1", "members": ["eth1", "eth2"],
                                                     "mode": "active-backup"}}},
     "vlans": {"xapi3": {"parent": "xenbr0", "tag": 5}},
     "ports": {"vif1.0": {"bridge": "xenbr0"}}}

Version 2 adds ``"profiles"``: VM port profiles (profiles.py) by ``<vm>/<device>``, on either
datapath, ``{"web01/0": {"vm": "web01", "device": 0, "bridge": "xenbr0", "vlan": 10, "mac": "attached"}}``.
A declaration without profiles is still written as version 1, so collections that predate profiles
keep reading it; one with profiles is version 2, which they refuse to read or overwrite.

A bond uplink is kept as vswitch_bridge takes it, ``{"bond": NAME, "members": [...], <declared settings>}``
(settings.BOND); boot makes the bond (a Linux bonding device) before the bridge takes it as its uplink.
Later runs that name the bond only (``uplink: bond1``) keep that declaration.

Writes are atomic (temp file, fsync, rename, fsync of the directory): a crash leaves the old or
the new file, never a mix. Before a valid file is replaced it is kept as ``declared.json.good``,
the last good copy that is read when the current one is damaged.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from . import atomic
from .errors import VswitchError
from .model import BridgeSpec, Change, HostState, PortSpec, PortState, VlanSpec
from .paths import STATE_DIR_VARIABLE, boot_unit_installed, state_dir
from .profiles import PROFILE_FIELDS, Profile, check_distinct
from .settings import ACCESS_SETTINGS, BRIDGE_SETTINGS, PORT_SETTINGS, TRUNK_SETTINGS
from .vlans import format_vlans

FORMAT = "openvif.vswitch.declared"
VERSION = 2
VERSION_WITHOUT_PROFILES = 1
FILE_NAME = "declared.json"
GOOD_SUFFIX = ".good"
# Marks that a host without the boot unit has been told so, so the warning comes once per host.
WARNED_NAME = "boot-unit-missing.warned"
KERNEL = "kernel"

BRIDGE_FIELDS = (*BRIDGE_SETTINGS, "uplink")
VLAN_FIELDS = ("parent", "tag")
PORT_FIELDS = ("bridge", *PORT_SETTINGS)
TOP_FIELDS = ("format", "version", "bridges", "vlans", "ports", "profiles")


class DeclarationError(VswitchError):
    """The persisted declaration cannot be used; the message names the file and what is wrong."""

    kind = "declaration"

    def __init__(self, path: str, value: Any, reason: str) -> None:
        super().__init__(path, value, reason)

    @property
    def message(self) -> str:
        shown = "" if self.value is None else f" {self.value!r}"
        return f"declaration {self.field}:{shown} {self.reason}"

    def at(self, prefix: str) -> VswitchError:
        return self


class NewerDeclarationError(DeclarationError):
    """Written by a newer collection: never read, never overwritten."""


@dataclass
class Declaration:
    """Entries by name; each holds only declared fields (``mac`` and ``uplink`` included)."""

    bridges: dict[str, dict[str, Any]] = field(default_factory=dict)
    vlans: dict[str, dict[str, Any]] = field(default_factory=dict)
    ports: dict[str, dict[str, Any]] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)   # any datapath, by <vm>/<device>

    def to_json(self) -> dict[str, Any]:
        data = {"format": FORMAT, "version": VERSION if self.profiles else VERSION_WITHOUT_PROFILES,
                "bridges": {k: self.bridges[k] for k in sorted(self.bridges)},
                "vlans": {k: self.vlans[k] for k in sorted(self.vlans)},
                "ports": {k: self.ports[k] for k in sorted(self.ports)}}
        if self.profiles:
            data["profiles"] = {k: self.profiles[k] for k in sorted(self.profiles)}
        return data

    def bridge_spec(self, name: str) -> BridgeSpec:
        return BridgeSpec.from_params({"name": name, "datapath": KERNEL, **self.bridges[name]})

    def vlan_spec(self, name: str) -> VlanSpec:
        return VlanSpec.from_params({"name": name, **self.vlans[name]})

    def port_spec(self, name: str) -> PortSpec:
        return PortSpec.from_params({"name": name, **self.ports[name]})

    def profile(self, key: str) -> Profile:
        return Profile.from_params(self.profiles[key])

    def all_profiles(self) -> list[Profile]:
        return [self.profile(key) for key in sorted(self.profiles)]


# ------------------------------------------------------------------ reading and checking
def parse(text: str, path: str) -> Declaration:
    """The declaration in ``text`` (read from ``path``), or DeclarationError saying what is wrong."""
    if not text.strip():
        raise DeclarationError(path, None, "is empty (truncated: a declaration is a JSON object)")
    try:
        data = json.loads(text)
    except ValueError as err:
        # The writer always ends the object with "}": an object that stops before it was cut off.
        if text.lstrip().startswith("{") and not text.rstrip().endswith("}"):
            raise DeclarationError(path, None, f"is truncated: the JSON object stops after {len(text)} bytes "
                                               f"({err})") from None
        raise DeclarationError(path, None, f"is not JSON ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DeclarationError(path, None, f"is not an openvif declaration (it has no \"format\": \"{FORMAT}\")")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DeclarationError(path, version, f"is not a declaration version (this collection writes version "
                                              f"{VERSION})")
    if version > VERSION:
        raise NewerDeclarationError(path, version,
                                    f"is the version of a newer openvif.vswitch (this one reads up to version "
                                    f"{VERSION}); refusing to read or overwrite it: upgrade the collection on this "
                                    "host")
    _only(path, "", data, TOP_FIELDS)
    decl = Declaration(bridges=_entries(path, data, "bridges", BRIDGE_FIELDS),
                       vlans=_entries(path, data, "vlans", VLAN_FIELDS),
                       ports=_entries(path, data, "ports", PORT_FIELDS),
                       profiles=_entries(path, data, "profiles", PROFILE_FIELDS))
    check(decl, path)
    return decl


def _only(path: str, where: str, data: Mapping[str, Any], known: Sequence[str]) -> None:
    for key in data:
        if key not in known:
            raise DeclarationError(path, key, f"is an unknown field{' of ' + where if where else ''} (known: "
                                              f"{', '.join(known)})")


def _entries(path: str, data: Mapping[str, Any], section: str, known: Sequence[str]) -> dict[str, dict[str, Any]]:
    entries = data.get(section, {})
    if not isinstance(entries, dict):
        raise DeclarationError(path, entries, f"is not a mapping of names to entries ({section})")
    for name, entry in entries.items():
        if not isinstance(entry, dict):
            raise DeclarationError(path, entry, f"is not a mapping ({section}.{name})")
        _only(path, f"{section}.{name}", entry, known)
    return {name: dict(entry) for name, entry in entries.items()}


def check(decl: Declaration, path: str) -> None:
    """Every entry through the model, and the facts between entries a host could never have."""
    for section, build in (("bridges", decl.bridge_spec), ("vlans", decl.vlan_spec), ("ports", decl.port_spec),
                           ("profiles", decl.profile)):
        for name in getattr(decl, section):
            try:
                build(name)
            except VswitchError as err:
                raise DeclarationError(path, err.value, f"is invalid at {section}.{name}.{err.field}: "
                                                        f"{err.reason}") from None
    for key in decl.profiles:
        if decl.profile(key).key != key:
            raise DeclarationError(path, key, f"is not the key of its profile ({decl.profile(key).key})")
    try:
        check_distinct(decl.all_profiles())
    except VswitchError as err:
        raise DeclarationError(path, err.value, f"is invalid at profiles: {err.reason}") from None
    networks = set(decl.bridges) | set(decl.vlans)
    for name in sorted(set(decl.bridges) & set(decl.vlans)):
        raise DeclarationError(path, name, "is declared both as a bridge and as a VLAN network")
    for name in sorted(networks & set(decl.ports)):
        raise DeclarationError(path, name, "is declared both as a bridge and as a port of bridge "
                                           f"'{decl.ports[name]['bridge']}'; a bridge cannot be a port")
    for name, entry in sorted(decl.bridges.items()):
        if uplink_name(entry) in networks:
            raise DeclarationError(path, uplink_name(entry), f"is the uplink of bridge '{name}' and a bridge itself")
    # A port's bridge or a VLAN network's parent need not be declared here: the bridge role, the
    # host's network manager or the operator may make it; boot reports it if it is missing then.


def uplink_name(entry: Mapping[str, Any]) -> Optional[str]:
    """The uplink's name: the NIC, or the bond (an uplink kept as a bond declaration)."""
    uplink = entry.get("uplink")
    return uplink.get("bond") if isinstance(uplink, Mapping) else uplink


def _uplink_entry(spec: BridgeSpec, before: Any) -> Any:
    """What a bridge entry keeps as its uplink after a run that declared ``spec``.

    A bond keeps its declared settings across runs (the newer ones win, as for a bridge's settings);
    a run that names the bond only keeps the bond's declaration.
    """
    kept = before if isinstance(before, Mapping) else {}
    if spec.bond is not None:
        settings = kept if kept.get("bond") == spec.bond.name else {}
        return {**settings, "bond": spec.bond.name, **spec.bond.settings()}
    if spec.uplink is not None and kept.get("bond") == spec.uplink:
        return dict(kept)
    return spec.uplink


# ------------------------------------------------------------------ the store on disk
class DeclarationStore:
    def __init__(self, directory: Optional[str] = None) -> None:
        self.directory = directory or state_dir()
        self.path = os.path.join(self.directory, FILE_NAME)
        self.good_path = self.path + GOOD_SUFFIX

    def _read(self, path: str) -> Optional[Declaration]:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as err:
            raise DeclarationError(path, None, f"cannot be read ({err})") from None
        return parse(text, path)

    def load(self) -> tuple[Declaration, Optional[DeclarationError]]:
        """The declaration to use, and what was wrong with the current file if the good copy stood in.

        A damaged current file falls back to the last good copy (or raises if there is none); a
        file of a newer version is never read, and a good copy does not stand in for it.
        """
        try:
            current = self._read(self.path)
        except NewerDeclarationError:
            raise
        except DeclarationError as problem:
            try:
                good = self._read(self.good_path)
            except DeclarationError:
                good = None
            if good is None:
                raise DeclarationError(problem.field, problem.value, problem.reason + "; there is no good copy "
                                       f"({self.good_path}) to use instead") from None
            return good, problem
        return (current if current is not None else Declaration()), None

    def save(self, decl: Declaration) -> None:
        """Atomically replace the declaration, keeping the file it replaces as the last good copy."""
        check(decl, self.path)
        text = json.dumps(decl.to_json(), indent=1, sort_keys=False) + "\n"
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            atomic.write(self.path, text, mode=0o600, before_replace=self._keep_good_copy)
        except OSError as err:
            raise DeclarationError(self.path, None, f"cannot be written ({err}); set {STATE_DIR_VARIABLE} to a "
                                                    "writable directory") from None

    def _keep_good_copy(self) -> None:
        # Only a file that reads cleanly becomes the good copy; a hard link shares its inode, so
        # the rename that follows leaves the good copy holding the old content, with no window
        # in which neither exists.
        try:
            if self._read(self.path) is None:
                return
        except DeclarationError:
            return
        link = self.good_path + ".tmp"
        if os.path.lexists(link):
            os.unlink(link)
        os.link(self.path, link)
        os.replace(link, self.good_path)

    def warn_once_without_boot_unit(self) -> Optional[str]:
        """The warning to give once per host when nothing will restore the declaration at boot."""
        if boot_unit_installed():
            return None
        marker = os.path.join(self.directory, WARNED_NAME)
        if os.path.exists(marker):
            return None
        try:
            with open(marker, "w", encoding="utf-8") as handle:
                handle.write("warned that openvif-boot.service is missing\n")
        except OSError:
            pass
        return ("the networks declared on the kernel datapath will not survive a reboot: this host has no "
                f"openvif-boot.service (install it with the openvif.vswitch.boot role); the declaration is kept "
                f"in {self.path}")


# ------------------------------------------------------------------ what a module run declared
@dataclass
class Intent:
    """What one module run asserted: objects present with their declared settings, or absent."""

    bridges: list[BridgeSpec] = field(default_factory=list)
    vlans: list[VlanSpec] = field(default_factory=list)
    ports: list[PortSpec] = field(default_factory=list)
    absent_bridges: list[str] = field(default_factory=list)
    absent_ports: list[PortSpec] = field(default_factory=list)
    profiles: dict[str, Optional[dict[str, Any]]] = field(default_factory=dict)   # key -> entry, None: absent


def _declared(values: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, val in values.items():
        if val is None:
            continue
        out[key] = format_vlans(val) if key == "trunks" else val
    return out


def record(decl: Declaration, intent: Intent, changes: Iterable[Change], after: HostState) -> Declaration:
    """The declaration once a run with ``intent`` has applied ``changes`` and left the host as ``after``."""
    bridges = {k: dict(v) for k, v in decl.bridges.items()}
    vlans = {k: dict(v) for k, v in decl.vlans.items()}
    ports = {k: dict(v) for k, v in decl.ports.items()}

    def on_kernel(bridge: str) -> bool:
        state = after.bridges.get(bridge)
        return state is not None and state.datapath == KERNEL

    for name in intent.absent_bridges:
        bridges.pop(name, None)
        vlans.pop(name, None)
        for port in [p for p, entry in ports.items() if entry["bridge"] == name]:
            del ports[port]
    for change in changes:
        # Purged or moved ports leave their old bridge (a move re-adds them below).
        if change.op == "del_port" and ports.get(change.target, {}).get("bridge") == change.args.get("bridge"):
            del ports[change.target]
    for spec in intent.bridges:
        ports.pop(spec.name, None)   # the newer declaration wins: that interface is a bridge now
        if not on_kernel(spec.name):
            bridges.pop(spec.name, None)
            continue
        entry = bridges.get(spec.name, {})
        entry.update(_declared({**spec.settings(), "uplink": _uplink_entry(spec, entry.get("uplink"))}))
        entry.setdefault("mac", after.bridges[spec.name].mac)   # the pinned MAC the planner chose
        bridges[spec.name] = entry
    for vlan in intent.vlans:
        ports.pop(vlan.name, None)
        if on_kernel(vlan.name):
            vlans[vlan.name] = {"parent": vlan.parent, "tag": vlan.tag}
    for port in intent.ports:
        bridges.pop(port.name, None)   # a declared port is no bridge any more (it was deleted by hand)
        vlans.pop(port.name, None)
        if not on_kernel(port.bridge):
            ports.pop(port.name, None)
            continue
        entry = ports.get(port.name, {})
        if entry.get("bridge") != port.bridge:
            entry = {}
        settings = port.settings()
        if any(k in settings for k in ACCESS_SETTINGS):
            for key in TRUNK_SETTINGS:
                entry.pop(key, None)
        elif "trunks" in settings:
            for key in ACCESS_SETTINGS:
                entry.pop(key, None)
        entry.update(_declared({"bridge": port.bridge, **settings}))
        ports[port.name] = entry
    for port in intent.absent_ports:
        if ports.get(port.name, {}).get("bridge") == port.bridge:
            del ports[port.name]
    profiles = {k: dict(v) for k, v in decl.profiles.items()}
    for key, entry in intent.profiles.items():
        if entry is None:
            profiles.pop(key, None)
        else:
            profiles[key] = dict(entry)
    return Declaration(bridges=bridges, vlans=vlans, ports=ports, profiles=profiles)


# ------------------------------------------------------------------ drift: declared versus the host now
def drift(decl: Declaration, state: HostState) -> list[dict[str, Any]]:
    """Every difference between the declaration and the kernel now, one entry per fact.

    Each entry names the object (``kind``, ``name``), the ``field`` and both values; a ``field`` of
    ``state`` means the object itself is missing. A declared port whose interface does not exist
    (a VIF whose VM is stopped) is not drift and is not listed.
    """
    found: list[dict[str, Any]] = []

    def differs(kind: str, name: str, field_name: str, declared: Any, actual: Any) -> None:
        found.append({"kind": kind, "name": name, "field": field_name, "declared": declared, "actual": actual})

    for name in sorted(decl.bridges):
        spec = decl.bridge_spec(name)
        current = state.bridges.get(name)
        if current is None or current.datapath != KERNEL:
            differs("bridge", name, "state", "present", "absent")
            continue
        for key, val in spec.settings().items():
            if getattr(current, key) != val:
                differs("bridge", name, key, val, getattr(current, key))
        if spec.uplink is not None and current.uplink != spec.uplink:
            differs("bridge", name, "uplink", spec.uplink, current.uplink)
        elif spec.bond is not None:
            have = (state.ports.get(spec.bond.name) or PortState(name="", bridge="")).bond or {}
            for key, val in spec.bond.settings().items():
                if have.get(key) != val and not (key == "members" and sorted(have.get(key) or []) == sorted(val)):
                    differs("bond", spec.bond.name, key, val, have.get(key))
    for name in sorted(decl.vlans):
        vlan = decl.vlan_spec(name)
        current = state.bridges.get(name)
        if current is None:
            differs("vlan", name, "state", "present", "absent")
        elif (current.parent, current.tag) != (vlan.parent, vlan.tag):
            differs("vlan", name, "parent", f"VLAN {vlan.tag} on {vlan.parent}",
                    f"VLAN {current.tag} on {current.parent}" if current.parent else "a bridge")
    for name in sorted(decl.ports):
        port = decl.port_spec(name)
        if name not in state.links:
            continue   # a VIF of a VM that is not running: nothing to compare
        current = state.ports.get(name)
        if current is None or current.bridge != port.bridge:
            differs("port", name, "bridge", port.bridge, current.bridge if current else None)
            continue
        for key, val in port.settings().items():
            if getattr(current, key) != val:
                have = getattr(current, key)
                differs("port", name, key, format_vlans(val) if key == "trunks" else val,
                        format_vlans(have) if key == "trunks" and have else have)
    return found
