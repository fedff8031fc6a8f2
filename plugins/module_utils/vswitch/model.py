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
from .vlans import format_vlans, parse_vlans

DATAPATHS = ("kernel", "userspace")
PORT_TYPES = ("system", "tap", "internal")
# The interface alias that marks a kernel bridge port as the bridge's uplink (PIF).
# The kernel has no notion of "uplink", and keeping the mark on the link itself means
# the fact survives across runs without a state file on the host.
UPLINK_ALIAS = "openvif:uplink"


def _bool(field_name: str, value: Any) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    raise ValidationError(field_name, value, "must be true or false")


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

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> BridgeSpec:
        name = v.ifname("name", params.get("name"))
        stp = _bool("stp", params.get("stp"))
        delay = v.optional(v.seconds, "forward_delay", params.get("forward_delay"),
                           v.FORWARD_DELAY_MIN, v.FORWARD_DELAY_MAX)
        if stp and delay is not None and delay < v.STP_FORWARD_DELAY_MIN:
            raise ValidationError("forward_delay", params.get("forward_delay"),
                                  f"is too short with STP on; 802.1D needs at least "
                                  f"{v.STP_FORWARD_DELAY_MIN:g} seconds")
        uplink = v.optional(v.ifname, "uplink", params.get("uplink"))
        if uplink == name:
            raise ValidationError("uplink", uplink, "is the bridge itself; an uplink must be another interface")
        return cls(
            name=name,
            datapath=v.choice("datapath", params.get("datapath") or "kernel", DATAPATHS),
            stp=stp,
            forward_delay=delay,
            ageing_time=v.optional(v.integer, "ageing_time", params.get("ageing_time"), 0, v.AGEING_MAX, " seconds"),
            mtu=v.optional(v.mtu, "mtu", params.get("mtu")),
            mac=v.optional(v.mac, "mac", params.get("mac")),
            uplink=uplink,
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


BRIDGE_SETTINGS = ("stp", "forward_delay", "ageing_time", "mtu", "mac")
PORT_SETTINGS = ("type", "vlan", "trunks", "native_vlan", "mac", "promiscuous")


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

    @classmethod
    def from_params(cls, params: Mapping[str, Any], default_bridge: Optional[str] = None) -> PortSpec:
        name = v.ifname("name", params.get("name"))
        bridge_value = params.get("bridge") or default_bridge
        if bridge_value is None:
            raise ValidationError("bridge", None, f"is required: say which bridge port '{name}' belongs to")
        bridge = v.ifname("bridge", bridge_value)
        if bridge == name:
            raise ValidationError("name", name, "is the bridge itself; a bridge cannot be its own port")
        trunks_value = params.get("trunks")
        trunks = None if trunks_value is None else parse_vlans("trunks", trunks_value)
        vlan = v.optional(v.vlan_id, "vlan", params.get("vlan"))
        native = v.optional(v.vlan_id, "native_vlan", params.get("native_vlan"))
        if vlan is not None and trunks:
            raise ValidationError("vlan", vlan, "cannot be combined with trunks: a port is either an access "
                                                "port (vlan) or a trunk (trunks, native_vlan)")
        if native is not None and not trunks:
            raise ValidationError("native_vlan", native, "needs trunks: only a trunk port has a native VLAN")
        return cls(
            name=name,
            bridge=bridge,
            type=v.optional(v.choice, "type", params.get("type"), PORT_TYPES),
            vlan=vlan,
            trunks=trunks,
            native_vlan=native,
            mac=v.optional(v.mac, "mac", params.get("mac")),
            promiscuous=_bool("promiscuous", params.get("promiscuous")),
        )

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
    type: str = "system"
    vlan: Optional[int] = None
    trunks: Optional[tuple[int, ...]] = None
    native_vlan: Optional[int] = None
    mac: Optional[str] = None
    promiscuous: bool = False
    uplink: bool = False

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
    stp: bool = False
    forward_delay: float = 15.0
    ageing_time: int = 300
    mtu: int = 1500
    mac: str = ""
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
