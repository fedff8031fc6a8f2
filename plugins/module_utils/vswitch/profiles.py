"""VM port profiles: a VM's port declared by VM identity and device index, not by interface name.

Xen names a VIF ``vif<domid>.<devid>`` and the domid changes at every start; libvirt names taps
``vnetN`` in the order they come. What lasts is the VM (its name or UUID) and the NIC's index, so
an operator declares the port once for ``(vm, device)`` and every VIF of that VM that appears later
gets exactly those settings, whoever plugs it (the collection's own hotplug scripts, or Xen's
``vif-openvswitch`` and libvirt through ``ovs-vsctl``).

A profile holds the same port settings as a port (the ``PORT`` rows of settings.py, except
``type``: how a VIF appears decides that), and one profile-only value: ``mac: attached``, which
makes the port-security MAC the MAC the toolstack gives the VIF (Xen's backend ``mac`` in
xenstore, libvirt's ``attached-mac``), that is, the MAC the ``vif_mac`` role wrote into the VM's
configuration, without typing it a second time.

This file is the model (``Profile``), how a VIF says who it is (``VifIdentity``), which profile a
VIF realises (``match``) and what port that makes (``resolve``). Storing profiles is declared.py's
job; plugging is hotplug.py's.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from . import validate as v
from .errors import ConflictError, NotFoundError, ValidationError
from .mac import vif_key
from .model import PortSpec
from .settings import PORT, check_port_rules, parse_settings
from .vlans import format_vlans, parse_vlans

# The port settings a profile declares: every PORT row but the port's type.
PROFILE_SETTINGS: tuple[str, ...] = tuple(name for name in PORT if name != "type")
ATTACHED = "attached"   # mac: the VIF's own attached MAC (from the toolstack) is the port-security MAC
PROFILE_FIELDS: tuple[str, ...] = ("vm", "device", "bridge", *PROFILE_SETTINGS)

# The external IDs callers record, by what they say (Open vSwitch's names, as the callers send them).
VM_NAME_IDS = ("xen-vm-name",)
VM_UUID_IDS = ("xen-vm-uuid", "vm-id", "xs-vm-uuid")
ATTACHED_MAC_ID = "attached-mac"
DEVICE_ID = "openvif-device"     # set by the collection's hotplug scripts, which know the device index
PROFILE_ID = "openvif-profile"   # set on a userspace port that realises a profile: which one

_XEN_VIF = re.compile(r"^vif(\d+)\.(\d+)(-emu)?$")
# Xen's bridge= string as vif-openvswitch reads it: BR[.TAG][:T1:T2...]
_BRIDGE_STRING = re.compile(r"^([^.:]+)(?:\.(\d+))?(?::(\d+(?::\d+)*))?$")


@dataclass(frozen=True)
class Profile:
    vm: str
    device: int
    bridge: str
    settings: Mapping[str, Any] = field(default_factory=dict)   # declared PROFILE_SETTINGS only

    @property
    def key(self) -> str:
        return f"{self.vm}/{self.device}"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Profile:
        key = vif_key("", params.get("vm"), params.get("device"))
        vm, device = key.rsplit("/", 1)
        if params.get("bridge") is None:
            raise ValidationError("bridge", None, f"is required: say which bridge VM '{vm}' device {device} "
                                                  "is plugged into")
        bridge = v.ifname("bridge", params["bridge"])
        mac = params.get("mac")
        settings = parse_settings(PORT, {k: params.get(k) for k in PROFILE_SETTINGS if k != "mac"})
        settings.pop("type", None)
        if mac is not None:
            settings["mac"] = ATTACHED if mac == ATTACHED else PORT["mac"].check("mac", mac)
        check_port_rules(settings["vlan"], settings["trunks"], settings["native_vlan"])
        return cls(vm=vm, device=int(device), bridge=bridge,
                   settings={k: val for k, val in settings.items() if val is not None})

    def to_entry(self) -> dict[str, Any]:
        """The JSON the declaration keeps (trunks as text, like the ports' entries)."""
        entry: dict[str, Any] = {"vm": self.vm, "device": self.device, "bridge": self.bridge}
        for key, val in self.settings.items():
            entry[key] = format_vlans(val) if key == "trunks" else val
        return entry


@dataclass(frozen=True)
class VifIdentity:
    """Who a VIF is, as far as its caller says: any of the VM's name and UUID, the device index, its MAC."""

    ifname: str
    vm_names: tuple[str, ...] = ()
    device: Optional[int] = None
    attached_mac: Optional[str] = None

    @classmethod
    def from_external_ids(cls, ifname: str, ids: Mapping[str, str], device: Optional[int] = None) -> VifIdentity:
        names = [ids[key] for key in (*VM_NAME_IDS, *VM_UUID_IDS) if ids.get(key)]
        if device is None and ids.get(DEVICE_ID, "").isdigit():
            device = int(ids[DEVICE_ID])
        if device is None:
            device = xen_device(ifname)
        mac = ids.get(ATTACHED_MAC_ID)
        return cls(ifname=ifname, vm_names=tuple(_vm_name(n) for n in names), device=device,
                   attached_mac=attached_mac(mac) if mac else None)


def _vm_name(name: str) -> str:
    """A VM name or UUID as profile keys hold it (UUIDs in lower case, as vif_mac keys them)."""
    return vif_key("", name.strip()).rsplit("/", 1)[0]


def attached_mac(value: str, field_name: str = "attached-mac") -> str:
    """The MAC a caller says the VIF has: a NIC's MAC is unicast, anything else is refused."""
    return v.mac(field_name, value)


def xen_device(ifname: str) -> Optional[int]:
    """The device index of a Xen VIF name (``vif<domid>.<devid>``, ``-emu`` for the emulated tap)."""
    found = _XEN_VIF.match(ifname)
    return int(found.group(2)) if found else None


def parse_bridge_string(value: str) -> tuple[str, Optional[int], Optional[tuple[int, ...]]]:
    """Xen's ``bridge=`` as vif-openvswitch reads it: ``xenbr0.5`` is VLAN 5, ``xenbr0:10:20`` a trunk."""
    found = _BRIDGE_STRING.match(value or "")
    if not found:
        raise ValidationError("bridge", value, "is not a bridge as Xen's vif scripts read it: BRIDGE[.VLAN]"
                                               "[:TRUNK1:TRUNK2...], such as xenbr0, xenbr0.5 or xenbr0:10:20")
    bridge = v.ifname("bridge", found.group(1))
    vlan = v.vlan_id("bridge", int(found.group(2))) if found.group(2) else None
    trunks = parse_vlans("bridge", found.group(3).replace(":", ",")) if found.group(3) else None
    return bridge, vlan, trunks


def match(profiles: Iterable[Profile], who: VifIdentity) -> Optional[Profile]:
    """The profile ``who`` realises, or None; two profiles claiming one VIF is a ConflictError.

    A VIF matches a profile of its VM (by name or UUID) with the same device index. Callers that
    give no device index (libvirt's ``ovs-vsctl`` calls carry only the VM's UUID and the MAC) match
    the VM's profile whose declared MAC is the VIF's, or the VM's only profile.
    """
    if not who.vm_names:
        return None
    mine = [p for p in profiles if p.vm in who.vm_names]
    if who.device is not None:
        found = [p for p in mine if p.device == who.device]
    else:
        found = [p for p in mine if who.attached_mac and p.settings.get("mac") == who.attached_mac]
        if not found and len(mine) == 1:
            found = mine
    if len(found) > 1:
        raise ConflictError("vm", who.vm_names[0], f"matches the profiles {', '.join(p.key for p in found)} for "
                                                   f"VIF '{who.ifname}' (the VM is declared by its name and by "
                                                   "its UUID): declare it once")
    return found[0] if found else None


def port_security_mac(profile: Profile, who: VifIdentity) -> Optional[str]:
    declared = profile.settings.get("mac")
    if declared == ATTACHED:
        if who.attached_mac is None:
            raise NotFoundError("mac", ATTACHED, f"is declared by profile {profile.key}, but VIF '{who.ifname}' "
                                                 "came without an attached MAC (xenstore's backend mac, libvirt's "
                                                 "attached-mac)")
        return who.attached_mac
    if declared is not None and who.attached_mac is not None and declared != who.attached_mac:
        raise ConflictError("attached-mac", who.attached_mac, f"differs from {declared}, the port-security MAC of "
                                                              f"profile {profile.key}: VIF '{who.ifname}' would "
                                                              "lose every frame it sends")
    return declared


def resolve(profile: Optional[Profile], who: VifIdentity, bridge: Optional[str], vlan: Optional[int] = None,
            trunks: Optional[tuple[int, ...]] = None) -> PortSpec:
    """The port VIF ``who`` must be: what its caller asked (bridge, VLAN or trunk) and its profile, which
    must agree; a caller that names neither bridge nor VLAN takes the profile's."""
    if profile is None:
        if bridge is None:
            raise NotFoundError("bridge", None, f"is not given for VIF '{who.ifname}' and no profile declares "
                                                "one for its VM")
        return PortSpec.from_params({"name": who.ifname, "bridge": bridge, "vlan": vlan, "trunks": trunks})
    if bridge is not None and bridge != profile.bridge:
        raise ConflictError("bridge", bridge, f"differs from '{profile.bridge}', the bridge of profile "
                                              f"{profile.key} that VIF '{who.ifname}' realises")
    wanted = dict(profile.settings)
    asked = {"vlan": vlan, "trunks": trunks}
    for key, val in asked.items():
        if val is None:
            continue
        declared = wanted.get(key)
        other = "trunks" if key == "vlan" else "vlan"
        shown = format_vlans(val) if key == "trunks" else val
        if declared is not None and declared != val:
            raise ConflictError(key, shown, f"asked by the caller for VIF '{who.ifname}' differs from profile "
                                            f"{profile.key}, which declares {key} "
                                            f"{format_vlans(declared) if key == 'trunks' else declared}")
        if declared is None and wanted.get(other) is not None:
            raise ConflictError(key, shown, f"asked by the caller for VIF '{who.ifname}' contradicts profile "
                                            f"{profile.key}, which declares {other} (a port is an access port or "
                                            "a trunk)")
        wanted[key] = val
    wanted["mac"] = port_security_mac(profile, who)
    return PortSpec.from_params({"name": who.ifname, "bridge": profile.bridge, **wanted})


def check_distinct(profiles: Iterable[Profile]) -> None:
    """Two profiles cannot lock one MAC: two NICs would claim the same address."""
    owner: dict[str, str] = {}
    for profile in profiles:
        mac = profile.settings.get("mac")
        if mac is None or mac == ATTACHED:
            continue
        if mac in owner:
            raise ConflictError("mac", mac, f"is the port-security MAC of profile {owner[mac]} already; profile "
                                            f"{profile.key} cannot have it too")
        owner[mac] = profile.key
