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


# -- bonds: an uplink made of two or more NICs ---------------------------------------------------------------
# A bond is declared as a bridge's uplink (vswitch_bridge ``uplink: {bond: NAME, members: [...], ...}``):
# the bond is the network's one PIF. Each row is one bond setting; errors name it under ``uplink.``.
BOND_MODES = ("active-backup", "balance-slb", "balance-tcp")
LACP_MODES = ("off", "active", "passive")
LACP_RATES = ("slow", "fast")
BOND_MEMBERS_MAX = 16
BOND_DELAY_MAX = 60000   # milliseconds


def _bond_members(field: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValidationError(field, value, "must be a list of interface names (the bond's member NICs)")
    names = tuple(v.ifname(f"{field}[{index}]", name) for index, name in enumerate(value))
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ValidationError(f"{field}[{index}]", name, f"is listed twice (also {field}[{names.index(name)}])")
    if len(names) < 2:
        raise ValidationError(field, list(names), "needs at least two members: a bond of one NIC has nothing to "
                                                  "fail over to (declare a single NIC as a plain uplink instead)")
    if len(names) > BOND_MEMBERS_MAX:
        raise ValidationError(field, list(names), f"has {len(names)} members; at most {BOND_MEMBERS_MAX}")
    return names


def _milliseconds(field: str, value: Any) -> int:
    return v.integer(field, value, 0, BOND_DELAY_MAX, " milliseconds")


def _bond_mode(field: str, value: Any) -> str:
    return v.choice(field, value, BOND_MODES)


def _lacp(field: str, value: Any) -> str:
    return v.choice(field, value, LACP_MODES)


def _lacp_rate(field: str, value: Any) -> str:
    return v.choice(field, value, LACP_RATES)


def _rebalance(field: str, value: Any) -> int:
    return v.integer(field, value, 0, 10 * BOND_DELAY_MAX, " milliseconds (0 turns rebalancing off)")


BOND: Mapping[str, Setting] = {s.name: s for s in (
    Setting("members", _bond_members, None, "The NICs the bond is made of, at least two, with the same MTU, "
            "none of them a port or uplink of any bridge.",
            kernel="IFLA_MASTER of each member set to the bond device",
            userspace="each member an AF_PACKET system port of the bond", ansible_type="list"),
    Setting("mode", _bond_mode, "active-backup",
            "active-backup (one member carries all traffic, another takes over on link loss), balance-slb "
            "(source-MAC hashing over the members, rebalanced periodically; no switch support needed) or "
            "balance-tcp (L2-L4 hashing; needs lacp).",
            kernel="IFLA_BOND_MODE: active-backup, or 802.3ad with xmit_hash_policy layer3+4 for balance-tcp; "
            "balance-slb refused (the bonding driver has none)",
            userspace="bond.py's member choice per frame", ansible_type="str"),
    Setting("lacp", _lacp, "off",
            "IEEE 802.1AX (802.3ad) LACP: active sends LACPDUs, passive answers an active partner, off "
            "negotiates nothing. With LACP a member carries traffic only once the partner agrees.",
            kernel="mode 802.3ad (with balance-tcp); passive is IFLA_BOND_AD_LACP_ACTIVE 0 (Linux 5.15 and "
            "later; refused on older kernels)",
            userspace="lacp.py's actor/partner machines",
            ansible_type="str"),
    Setting("lacp_rate", _lacp_rate, "slow",
            "How often the partner is asked to send LACPDUs: fast (every second, 3 s timeout) or slow "
            "(every 30 s, 90 s timeout).", kernel="IFLA_BOND_AD_LACP_RATE",
            userspace="the actor's LACP_Timeout bit", ansible_type="str"),
    Setting("lacp_fallback", v.boolean, True, "With LACP, when the partner sends no LACPDUs at all, carry "
            "traffic active-backup over one member instead of none (OVS's lacp-fallback-ab).",
            kernel="the driver's own behaviour (one aggregator of one member); false is refused",
            userspace="active-backup over the members with link", ansible_type="bool"),
    Setting("primary", v.ifname, None, "The member active-backup prefers whenever its link is up.",
            kernel="IFLA_BOND_PRIMARY", userspace="chosen first as the active member", ansible_type="str"),
    Setting("miimon", _milliseconds, 100, "Milliseconds between carrier checks of each member (link events "
            "from netlink arrive at once as well); 0 relies on the events alone.",
            kernel="IFLA_BOND_MIIMON", userspace="carrier poll interval", ansible_type="int"),
    Setting("updelay", _milliseconds, 0, "Milliseconds a member's link must stay up before it carries traffic.",
            kernel="IFLA_BOND_UPDELAY", userspace="member enabled after the delay", ansible_type="int"),
    Setting("downdelay", _milliseconds, 0, "Milliseconds a member's link may be down before it is disabled.",
            kernel="IFLA_BOND_DOWNDELAY", userspace="member disabled after the delay", ansible_type="int"),
    Setting("rebalance_interval", _rebalance, 10000, "balance-slb: milliseconds between rebalancings of the "
            "source-MAC hash buckets over the members by the load each carried.",
            kernel="must stay at its default: the driver does not rebalance (no balance-slb)",
            userspace="bond.py's rebalance", ansible_type="int"),
)}
BOND_SETTINGS: tuple[str, ...] = tuple(BOND)


def check_bond_rules(bond: Mapping[str, Any], prefix: str = "uplink.") -> None:
    """Rules between bond settings, on the declared values (``None``: not declared)."""
    members = bond.get("members") or ()
    primary = bond.get("primary")
    if primary is not None and members and primary not in members:
        raise ValidationError(prefix + "primary", primary, f"is not a member of the bond (members: "
                                                           f"{', '.join(members)})")
    if bond.get("mode") == "balance-tcp" and bond.get("lacp") in (None, "off"):
        raise ValidationError(prefix + "mode", "balance-tcp", "needs lacp: active or passive (L4 hashing over "
                                                              "members the partner does not aggregate would "
                                                              "loop or drop frames); use balance-slb without LACP")


def bond_record(declared: Mapping[str, Any], prefix: str = "uplink.") -> dict[str, Any]:
    """A whole bond (every setting, defaults filled) from declared values: what a new bond gets."""
    record = {name: (declared.get(name) if declared.get(name) is not None else setting.default)
              for name, setting in BOND.items()}
    if not record["members"]:
        raise ValidationError(prefix + "members", None, "is required: list the bond's member NICs (at least two)")
    record["members"] = list(record["members"])
    check_bond_rules(record, prefix)
    return record


def parse_bond(field: str, value: Any) -> dict[str, Any]:
    """A bond record as vswitchd's state file and transactions carry it, validated whole."""
    if not isinstance(value, Mapping):
        raise ValidationError(field, value, "must be a mapping of bond settings")
    unknown = sorted(str(k) for k in value if k not in BOND)
    if unknown:
        raise ValidationError(f"{field}.{unknown[0]}", value[unknown[0]], f"is not a bond setting (known: "
                                                                          f"{', '.join(BOND_SETTINGS)})")
    return bond_record({k: BOND[k].check(f"{field}.{k}", val) for k, val in value.items()}, field + ".")
