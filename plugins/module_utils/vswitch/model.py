"""The one model both datapaths share.

``*Spec`` classes are what the operator declares: built with ``from_params``,
which validates and normalises every field (``None`` means "leave as it is").
``*State`` classes are what a backend reads from the host. ``Change`` is one
step of a plan; backends apply lists of them as a transaction.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from . import validate as v
from .errors import ValidationError
from .settings import (
    BOND,
    BRIDGE,
    BRIDGE_SETTINGS,
    PORT,
    PORT_SETTINGS,
    bond_record,
    check_bond_rules,
    check_bridge_rules,
    check_port_rules,
    parse_settings,
)
from .vlans import format_vlans

DATAPATHS = ("kernel", "userspace")
# The interface alias that marks a kernel bridge port as the bridge's uplink (PIF).
# The kernel has no notion of "uplink", and keeping the mark on the link itself means
# the fact survives across runs without a state file on the host.
UPLINK_ALIAS = "openvif:uplink"


@dataclass(frozen=True)
class Features:
    """What a datapath on this host can do; backends report it, the planner enforces it."""

    vlan_filtering: bool = False   # the datapath carries VLANs (VLAN networks, access and trunk ports)
    port_promiscuous: bool = False
    port_security: bool = False
    create_ports: bool = False     # can create tap/internal ports itself
    external_ids: bool = False     # keeps external IDs with each port
    bond_modes: tuple[str, ...] = ()   # the bond modes it can run (empty: no bonds at all)
    bond_missing: str = ""             # why it has no bonds, or lacks some modes (for the error)
    lacp_passive_missing: str = ""     # why its bonds cannot be LACP-passive ("" when they can)


@dataclass(frozen=True)
class BondSpec:
    """A bond as a bridge's uplink: ``uplink: {bond: NAME, members: [...], mode: ..., ...}``.

    Settings come from settings.BOND (one row each); ``None`` means "not declared": a new bond
    takes the row's default, an existing one keeps what it has.
    """

    name: str
    members: Optional[tuple[str, ...]] = None
    mode: Optional[str] = None
    lacp: Optional[str] = None
    lacp_rate: Optional[str] = None
    lacp_fallback: Optional[bool] = None
    primary: Optional[str] = None
    miimon: Optional[int] = None
    updelay: Optional[int] = None
    downdelay: Optional[int] = None
    rebalance_interval: Optional[int] = None

    KEYS = ("bond", *BOND)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], prefix: str = "uplink.") -> BondSpec:
        v.known_keys(prefix.rstrip("."), params, cls.KEYS, "a bond")
        name = v.ifname(prefix + "bond", params.get("bond"))
        settings = {key: setting.check(prefix + key, params.get(key)) for key, setting in BOND.items()}
        if settings["members"] is None:
            raise ValidationError(prefix + "members", None, f"is required: list the NICs bond '{name}' is made "
                                                            "of (at least two)")
        if name in settings["members"]:
            raise ValidationError(prefix + "members", list(settings["members"]), f"includes the bond '{name}' "
                                                                                 "itself")
        check_bond_rules(settings, prefix)
        return cls(name=name, **settings)

    def settings(self) -> dict[str, Any]:
        """The declared settings (members as a list, as records keep them)."""
        declared = {k: getattr(self, k) for k in BOND if getattr(self, k) is not None}
        if "members" in declared:
            declared["members"] = list(declared["members"])
        return declared

    def record(self) -> dict[str, Any]:
        """The whole bond a new one gets: declared settings over the table's defaults."""
        return bond_record(self.settings())


@dataclass(frozen=True)
class BridgeSpec:
    name: str
    datapath: str = "kernel"
    stp: Optional[bool] = None
    forward_delay: Optional[float] = None
    ageing_time: Optional[int] = None
    mtu: Optional[int] = None
    mac: Optional[str] = None
    uplink: Optional[str] = None
    bond: Optional[BondSpec] = None   # set when the uplink is a bond (``uplink`` is then its name)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> BridgeSpec:
        name = v.ifname("name", params.get("name"))
        settings = parse_settings(BRIDGE, params)
        check_bridge_rules(settings["stp"], settings["forward_delay"])
        declared = params.get("uplink")
        bond = BondSpec.from_params(declared) if isinstance(declared, Mapping) else None
        uplink = bond.name if bond is not None else v.optional(v.ifname, "uplink", declared)
        if uplink == name:
            raise ValidationError("uplink.bond" if bond else "uplink", uplink, "is the bridge itself; an uplink "
                                                                               "must be another interface")
        if bond is not None and name in (bond.members or ()):
            raise ValidationError("uplink.members", list(bond.members or ()), f"includes the bridge '{name}' "
                                                                              "itself")
        return cls(
            name=name,
            datapath=v.choice("datapath", params.get("datapath") or "kernel", DATAPATHS),
            uplink=uplink,
            bond=bond,
            **settings,
        )

    def settings(self) -> dict[str, Any]:
        """The bridge settings this spec manages (unset ones are left alone)."""
        managed = {k: getattr(self, k) for k in BRIDGE_SETTINGS}
        return {k: val for k, val in managed.items() if val is not None}


@dataclass(frozen=True)
class VlanSpec:
    """A VLAN network: "VLAN <tag> on <parent>", a network of its own (OVS's fake bridge).

    VIFs attach to it like to any bridge and see its traffic untagged; the parent's uplink
    carries it tagged.
    """

    name: str
    parent: str
    tag: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> VlanSpec:
        name = v.ifname("name", params.get("name"))
        if params.get("parent") is None:
            raise ValidationError("parent", None, f"is required: say which bridge carries VLAN network '{name}'")
        parent = v.ifname("parent", params.get("parent"))
        if parent == name:
            raise ValidationError("parent", parent, "is the VLAN network itself; the parent is another bridge")
        if params.get("tag") is None:
            raise ValidationError("tag", None, "is required: the 802.1Q tag (1-4094) of this VLAN network")
        return cls(name=name, parent=parent, tag=v.vlan_id("tag", params.get("tag")))


@dataclass(frozen=True)
class PortSpec:
    name: str
    bridge: str
    type: Optional[str] = None
    vlan: Optional[int] = None
    trunks: Optional[tuple[int, ...]] = None
    native_vlan: Optional[int] = None
    mac: Optional[str] = None
    promiscuous: Optional[bool] = None
    external_ids: Optional[dict[str, str]] = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any], default_bridge: Optional[str] = None) -> PortSpec:
        name = v.ifname("name", params.get("name"))
        bridge_value = params.get("bridge") or default_bridge
        if bridge_value is None:
            raise ValidationError("bridge", None, f"is required: say which bridge port '{name}' belongs to")
        bridge = v.ifname("bridge", bridge_value)
        if bridge == name:
            raise ValidationError("name", name, "is the bridge itself; a bridge cannot be its own port")
        settings = parse_settings(PORT, params)
        check_port_rules(settings["vlan"], settings["trunks"], settings["native_vlan"])
        return cls(name=name, bridge=bridge, **settings)

    def settings(self) -> dict[str, Any]:
        managed = {k: getattr(self, k) for k in PORT_SETTINGS}
        return {k: val for k, val in managed.items() if val is not None}


@dataclass(frozen=True)
class Link:
    """Any network device the host has (bridges, veths, taps, NICs)."""

    name: str
    kind: str = ""          # rtnetlink's IFLA_INFO_KIND: bridge, veth, tun, ... ('' for NICs)
    master: Optional[str] = None
    mtu: int = 1500
    mac: str = ""
    up: bool = False
    promisc: bool = False
    alias: Optional[str] = None


@dataclass(frozen=True)
class PortState:
    name: str
    bridge: str
    type: str = PORT["type"].default
    vlan: Optional[int] = None
    trunks: Optional[tuple[int, ...]] = None
    native_vlan: Optional[int] = None
    mac: Optional[str] = None
    promiscuous: bool = PORT["promiscuous"].default
    external_ids: Optional[dict[str, str]] = None
    uplink: bool = False
    bond: Optional[dict[str, Any]] = None   # a bond port: its whole record (settings.BOND), else None

    def to_facts(self) -> dict[str, Any]:
        # Built by hand: dataclasses.asdict deep-copies, which cost 0.1 s for a 1,000-port diff.
        facts = {name: getattr(self, name) for name in _PORT_FIELDS}
        facts["trunks"] = format_vlans(self.trunks) if self.trunks else None
        return facts


_PORT_FIELDS = tuple(PortState.__dataclass_fields__)


@dataclass(frozen=True)
class BridgeState:
    name: str
    datapath: str = "kernel"
    stp: bool = BRIDGE["stp"].default
    forward_delay: float = BRIDGE["forward_delay"].default
    ageing_time: int = BRIDGE["ageing_time"].default
    mtu: int = BRIDGE["mtu"].default
    mac: str = ""   # read from the host, which always has one (the table's None is "choose one")
    uplink: Optional[str] = None
    ports: tuple[str, ...] = ()
    parent: Optional[str] = None   # set for a VLAN network: the bridge that carries it...
    tag: Optional[int] = None      # ...and its 802.1Q tag there

    def to_facts(self) -> dict[str, Any]:
        facts = asdict(self)
        facts["ports"] = list(self.ports)
        return facts


@dataclass(frozen=True)
class FdbEntry:
    bridge: str
    port: str
    mac: str
    vlan: Optional[int] = None
    age: Optional[float] = None   # seconds since last seen; None for static/local entries
    static: bool = False
    local: bool = False


@dataclass(frozen=True)
class HostState:
    """What the host has now, across every datapath that answered."""

    bridges: Mapping[str, BridgeState] = field(default_factory=dict)
    ports: Mapping[str, PortState] = field(default_factory=dict)
    links: Mapping[str, Link] = field(default_factory=dict)
    datapaths: tuple[str, ...] = ("kernel",)

    def bridge_of(self, port: str) -> Optional[str]:
        state = self.ports.get(port)
        return state.bridge if state else None


@dataclass(frozen=True)
class Change:
    """One step of a plan. ``op`` is one of the OPS below; ``args`` its arguments."""

    op: str
    target: str
    datapath: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        details = ", ".join(f"{k}={val}" for k, val in sorted(self.args.items()))
        return f"{self.op} {self.target}" + (f" ({details})" if details else "")

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "target": self.target, "datapath": self.datapath, "args": dict(self.args)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        return cls(op=str(data["op"]), target=str(data["target"]), datapath=str(data.get("datapath", "kernel")),
                   args=dict(data.get("args") or {}))


# add_bridge(settings..., uplink?) / del_bridge / set_bridge(settings...)
# add_port(bridge, settings...) / del_port(bridge) / set_port(settings...)
OPS = ("add_bridge", "del_bridge", "set_bridge", "add_port", "del_port", "set_port")
