"""Every bridge and port setting, declared once.

Each ``Setting`` holds what the collection knows about one setting: its name, the
validator that normalises a declared value, the value a new bridge or port has,
the documentation text, and how each datapath realises it (the kernel: which
netlink attribute and in which unit; vswitchd: what it does). The model's specs,
the planner's inverse, the kernel's encode and decode, vswitchd's validation and
the modules' argument specs (checked by tests/unit/test_settings.py) all read this
table, so adding a setting means adding a row here and its realisation in the
kernel codec and in the daemon.

The rules between settings (STP needs a long enough forward delay; a port is an
access port or a trunk) live here too, as functions both the model and the daemon call.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from . import validate as v
from .errors import ValidationError
from .rtnl import IFLA_BR_AGEING_TIME, IFLA_BR_FORWARD_DELAY, IFLA_BR_STP_STATE
from .vlans import parse_vlans

PORT_TYPES = ("system", "tap", "internal")
USER_HZ = 100  # the kernel exchanges bridge timers in clock_t


@dataclass(frozen=True)
class BridgeAttr:
    """Where the kernel keeps a bridge setting: an IFLA_BR_* attribute, in units of 1/``scale``."""

    rtnl: int            # the attribute number, for rtnl.py's reads
    pyroute2: str        # pyroute2's name of it, for changes
    scale: int = 1

    def encode(self, value: Any) -> int:
        return int(round(float(value) * self.scale))


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[str, Any], Any]   # (field, value) -> normalised value, or ValidationError
    default: Any                       # what a new bridge or port has when the setting is not declared
    doc: str
    kernel: str                        # how the Linux bridge realises it
    userspace: str                     # what vswitchd does with it
    ansible_type: str = "raw"          # the modules' argument_spec type
    bridge_attr: Optional[BridgeAttr] = None   # kernel: an IFLA_BR_* attribute (else a link attribute)

    def check(self, field: str, value: Any) -> Any:
        """The normalised value, ``None`` kept as 'not declared'."""
        return None if value is None else self.parse(field, value)

    def decode(self, raw: int) -> Any:
        """The setting's value from the kernel's attribute (``bridge_attr`` settings only)."""
        if self.bridge_attr is None:
            raise ValueError(f"setting {self.name!r} is not an IFLA_BR_* attribute")
        if isinstance(self.default, bool):
            return bool(raw)
        if isinstance(self.default, float):
            return raw / self.bridge_attr.scale
        return raw // self.bridge_attr.scale


def _ageing(field: str, value: Any) -> int:
    return v.integer(field, value, 0, v.AGEING_MAX, " seconds")


def _forward_delay(field: str, value: Any) -> float:
    return v.seconds(field, value, v.FORWARD_DELAY_MIN, v.FORWARD_DELAY_MAX)


def _port_type(field: str, value: Any) -> str:
    return v.choice(field, value, PORT_TYPES)


BRIDGE: Mapping[str, Setting] = {s.name: s for s in (
    Setting("stp", v.boolean, False, "Run the 802.1D spanning tree protocol on the bridge.",
            kernel="IFLA_BR_STP_STATE", userspace="refused: vswitchd has no spanning tree",
            ansible_type="bool", bridge_attr=BridgeAttr(IFLA_BR_STP_STATE, "br_stp_state")),
    Setting("forward_delay", _forward_delay, 15.0, "Seconds a port spends listening and learning before it "
            "forwards (C(brctl setfd)).",
            kernel="IFLA_BR_FORWARD_DELAY in clock_t", userspace="kept (vswitchd forwards at once)",
            ansible_type="float", bridge_attr=BridgeAttr(IFLA_BR_FORWARD_DELAY, "br_forward_delay", USER_HZ)),
    Setting("ageing_time", _ageing, 300, "Seconds a learned MAC stays in the forwarding table "
            "(C(brctl setageing)); 0 turns learning off, so the bridge floods every frame like a hub.",
            kernel="IFLA_BR_AGEING_TIME in clock_t", userspace="the FDB's ageing; 0 floods every frame",
            ansible_type="int", bridge_attr=BridgeAttr(IFLA_BR_AGEING_TIME, "br_ageing_time", USER_HZ)),
    Setting("mtu", v.mtu, 1500, "MTU of the bridge device.", kernel="IFLA_MTU of the bridge",
            userspace="the internal port's MTU", ansible_type="int"),
    Setting("mac", v.mac, None, "MAC address of the bridge device; a new bridge gets a stable one.",
            kernel="IFLA_ADDRESS of the bridge (pinned)", userspace="the internal port's MAC", ansible_type="str"),
)}

PORT: Mapping[str, Setting] = {s.name: s for s in (
    Setting("type", _port_type, "system", "system (an existing interface), tap (a VIF vswitchd creates) or "
            "internal (a host-side port vswitchd creates).", kernel="only system: the port must exist",
            userspace="system via AF_PACKET; tap and internal are TAPs vswitchd creates", ansible_type="str"),
    Setting("vlan", v.vlan_id, None, "Access VLAN: frames leave the port untagged, enter tagged with it.",
            kernel="bridge VLAN entry PVID+untagged", userspace="access port", ansible_type="int"),
    Setting("trunks", parse_vlans, None, "VLANs the port carries tagged (a trunk).",
            kernel="bridge VLAN entries, tagged", userspace="trunk port", ansible_type="raw"),
    Setting("native_vlan", v.vlan_id, None, "VLAN a trunk carries untagged.",
            kernel="bridge VLAN entry PVID+untagged on a trunk", userspace="native VLAN", ansible_type="int"),
    Setting("mac", v.mac, None, "Port security: the port may only source this MAC.",
            kernel="refused: the Linux bridge has no port security", userspace="drops other source MACs",
            ansible_type="str"),
    Setting("promiscuous", v.boolean, False, "The port sees every frame of its VLANs.",
            kernel="refused per port (ageing_time: 0 on the bridge instead)", userspace="floods to it",
            ansible_type="bool"),
    Setting("external_ids", v.string_map, None, "What the port is to the rest of the system: the VM "
            "identity hotplug scripts record (C(attached-mac), C(iface-id), C(vm-id), C(xen-vm-name), "
            "C(xs-vm-uuid), ...), as Open vSwitch keeps it in the Interface table's external_ids. The map "
            "is declared whole; an empty map clears it.",
            kernel="refused: the Linux bridge keeps no data per port",
            userspace="kept with the port in the state file; shown by vswitchctl show, ovs-vsctl list "
            "Interface and vswitch_info", ansible_type="dict"),
)}

BRIDGE_SETTINGS: tuple[str, ...] = tuple(BRIDGE)
PORT_SETTINGS: tuple[str, ...] = tuple(PORT)
# Set by the planner, not declared: the port that is the bridge's uplink (PIF).
UPLINK = Setting("uplink", v.boolean, False, "The port is the bridge's uplink (PIF).",
                 kernel="alias openvif:uplink + promiscuous", userspace="uplink flag", ansible_type="bool")


def parse_settings(table: Mapping[str, Setting], params: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting of ``table`` from ``params``, validated (``None`` where not declared)."""
    return {name: setting.check(name, params.get(name)) for name, setting in table.items()}


def check_bridge_rules(stp: Any, forward_delay: Optional[float], field: str = "forward_delay") -> None:
    """802.1D needs a forward delay of at least 2 s while STP runs (Linux accepts 0-30 s without it)."""
    if stp and forward_delay is not None and forward_delay < v.STP_FORWARD_DELAY_MIN:
        raise ValidationError(field, forward_delay, f"is too short with STP on; 802.1D needs at least "
                                                    f"{v.STP_FORWARD_DELAY_MIN:g} seconds")


def check_port_rules(vlan: Optional[int], trunks: Any, native_vlan: Optional[int], prefix: str = "") -> None:
    """A port is an access port (vlan) or a trunk (trunks, native_vlan), never both."""
    if vlan is not None and trunks:
        raise ValidationError(prefix + "vlan", vlan, "cannot be combined with trunks: a port is either an access "
                                                     "port (vlan) or a trunk (trunks, native_vlan)")
    if native_vlan is not None and not trunks:
        raise ValidationError(prefix + "native_vlan", native_vlan, "needs trunks: only a trunk port has a native "
                                                                   "VLAN")


# Declaring one port mode clears the other mode's settings (the planner's rule, stated once).
ACCESS_SETTINGS = ("vlan",)
TRUNK_SETTINGS = ("trunks", "native_vlan")
