"""What the operator declares for the host's IP on a bridge, validated and normalised."""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Optional

from .. import validate as v
from ..errors import ValidationError
from ..model import BondSpec
from ..settings import BRIDGE, check_bridge_rules
from . import spec6

BOOTPROTOS = ("dhcp", "static")
STATIC_NEEDS_ADDRESS = "is required with bootproto: static"
DATAPATHS = ("kernel", "userspace")


def _default(params: Mapping[str, Any], key: str, default: Any) -> Any:
    return default if params.get(key) is None else params[key]


def _interface_address(field: str, value: Any, netmask: Any) -> ipaddress.IPv4Interface:
    """``10.0.0.5/24``, or ``10.0.0.5`` with ``netmask: 255.255.255.0`` (or a prefix length)."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, value, "must be an IPv4 address with a prefix, e.g. '192.0.2.10/24'")
    text = value.strip()
    if "/" in text and netmask is not None:
        raise ValidationError("netmask", netmask, f"is given twice: address '{text}' already has a prefix")
    if "/" not in text:
        if netmask is None:
            raise ValidationError(field, value, "has no prefix length: write it as 'ADDRESS/PREFIX' "
                                                "or give netmask")
        text = f"{text}/{str(netmask).strip()}"
    try:
        iface = ipaddress.IPv4Interface(text)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError) as err:
        bad_field = "netmask" if netmask is not None and "Netmask" in type(err).__name__ else field
        raise ValidationError(bad_field, value if bad_field == field else netmask,
                              f"is not a valid IPv4 address/netmask ({err})") from None
    edges = (iface.network.network_address, iface.network.broadcast_address)
    if iface.network.prefixlen < 31 and iface.ip in edges:
        which = "network" if iface.ip == iface.network.network_address else "broadcast"
        raise ValidationError(field, value, f"is the {which} address of {iface.network}; a host needs "
                                            "another address")
    if iface.ip.is_multicast or iface.ip.is_unspecified or iface.ip.is_loopback:
        raise ValidationError(field, value, "is not a unicast host address")
    return iface


def _uplink(params: Mapping[str, Any], bridge: str) -> tuple[Optional[BondSpec], str]:
    """(the bond or None, the NIC whose addressing moves)."""
    declared = params.get("uplink")
    if not isinstance(declared, Mapping):
        uplink = v.ifname("uplink", declared)
        if uplink == bridge:
            raise ValidationError("uplink", uplink, "is the bridge itself; the uplink is the NIC that "
                                                    "holds the IP today")
        return None, uplink
    bond = BondSpec.from_params(declared)
    members = list(bond.members or ())
    if bond.name == bridge:
        raise ValidationError("uplink.bond", bond.name, "is the bridge itself; a bond needs a name of its own")
    if bridge in members:
        raise ValidationError("uplink.members", members, f"includes the bridge '{bridge}' itself")
    source = params.get("address_source")
    if source is None:
        return bond, members[0]
    if source not in members:
        raise ValidationError("address_source", source, f"is not a member of bond '{bond.name}' "
                                                        f"(members: {', '.join(members)})")
    return bond, str(source)


def _ipv4(field: str, value: Any) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value).strip()))
    except (ipaddress.AddressValueError, ValueError):
        raise ValidationError(field, value, "is not an IPv4 address") from None


@dataclass(frozen=True)
class HostIpSpec:
    bridge: str
    uplink: str
    bootproto: str = "dhcp"
    address: Optional[str] = None       # '192.0.2.10/24' (static only)
    gateway: Optional[str] = None
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    mtu: Optional[int] = None
    stp: bool = False
    forward_delay: float = 0.0
    datapath: str = "kernel"
    move_mac: bool = True
    verify_targets: tuple[str, ...] = ()
    rollback_timeout: float = 60.0      # seconds the guard waits for the controller's confirmation
    verify_timeout: float = 20.0        # seconds to reach the gateway/targets on the new path
    dhcp_timeout: float = 15.0          # seconds to obtain a lease on the bridge
    vswitchd_socket: Optional[str] = None  # datapath userspace: vswitchd's control socket (None: default)
    address6: tuple[str, ...] = ()      # '2001:db8::10/64', ...: declared static IPv6 (none: carry the uplink's)
    gateway6: Optional[str] = None      # '2001:db8::1' or 'fe80::1%xenbr0'
    ipv6_autoconf: Optional[bool] = None  # SLAAC on the bridge (None: as the uplink had it)
    dhcp6: Optional[bool] = None        # a DHCPv6 address on the bridge (None: as the uplink had it)
    # Start the uplink's own DHCP clients again for the bridge on commit; False where the host's network
    # manager takes the bridge's leases over afterwards, so that one client, not two, renews them.
    rehome_dhcp_clients: bool = True
    # A bond as the uplink (``uplink: {bond: bond0, members: [...], ...}``, as vswitch_bridge takes it);
    # ``uplink`` is then the member whose addressing moves (the one holding the IP, else the first).
    bond: Optional[BondSpec] = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> HostIpSpec:
        bridge = v.ifname("bridge", params.get("bridge"))
        bond, uplink = _uplink(params, bridge)
        bootproto = v.choice("bootproto", params.get("bootproto") or "dhcp", BOOTPROTOS)
        address = gateway = None
        if bootproto == "static":
            if params.get("address") is None:
                raise ValidationError("address", None, STATIC_NEEDS_ADDRESS)
            iface = _interface_address("address", params.get("address"), params.get("netmask"))
            address = str(iface)
            if params.get("gateway") is not None:
                gateway = _ipv4("gateway", params.get("gateway"))
                if ipaddress.IPv4Address(gateway) not in iface.network:
                    raise ValidationError("gateway", gateway, f"is not inside the bridge's network "
                                                              f"{iface.network}; the gateway must be on-link")
                if ipaddress.IPv4Address(gateway) == iface.ip:
                    raise ValidationError("gateway", gateway, "is the host's own address")
        else:
            for name in ("address", "netmask", "gateway"):
                if params.get(name) is not None:
                    raise ValidationError(name, params.get(name), "is only used with bootproto: static "
                                                                  "(DHCP supplies it)")
        dns = tuple(_ipv4(f"dns[{i}]", item) for i, item in enumerate(params.get("dns") or ()))
        search = tuple(str(item) for item in (params.get("dns_search") or ()))
        for i, item in enumerate(search):
            if not item or any(ch.isspace() for ch in item):
                raise ValidationError(f"dns_search[{i}]", item, "must be a domain name without spaces")
        targets = tuple(spec6.target(f"verify_targets[{i}]", item)
                        for i, item in enumerate(params.get("verify_targets") or ()))
        address6, gateway6, autoconf6 = spec6.parse(params, bridge)
        stp = bool(v.optional(v.boolean, "stp", params.get("stp")))
        # Without STP a host-IP bridge forwards at once: the host's own address must not wait 15 s.
        delay = BRIDGE["forward_delay"].check("forward_delay", params.get("forward_delay") if
                                              params.get("forward_delay") is not None else
                                              (BRIDGE["forward_delay"].default if stp else 0))
        check_bridge_rules(stp, delay)
        return cls(
            bridge=bridge, uplink=uplink, bootproto=bootproto, address=address, gateway=gateway,
            dns=dns, dns_search=search, mtu=v.optional(v.mtu, "mtu", params.get("mtu")),
            stp=stp, forward_delay=delay,
            datapath=v.choice("datapath", params.get("datapath") or "kernel", DATAPATHS),
            move_mac=v.optional(v.boolean, "move_mac", params.get("move_mac")) is not False,
            verify_targets=targets,
            rollback_timeout=v.seconds("rollback_timeout", _default(params, "rollback_timeout", 60), 10, 3600),
            verify_timeout=v.seconds("verify_timeout", _default(params, "verify_timeout", 20), 1, 600),
            dhcp_timeout=v.seconds("dhcp_timeout", _default(params, "dhcp_timeout", 15), 1, 600),
            vswitchd_socket=params.get("vswitchd_socket") or None,
            address6=address6, gateway6=gateway6, ipv6_autoconf=autoconf6,
            dhcp6=v.optional(v.boolean, "dhcp6", params.get("dhcp6")), bond=bond,
            rehome_dhcp_clients=v.optional(v.boolean, "rehome_dhcp_clients",
                                           params.get("rehome_dhcp_clients")) is not False,
        )

    @property
    def port(self) -> str:
        """The bridge's uplink port: the NIC, or the bond."""
        return self.bond.name if self.bond is not None else self.uplink

    @property
    def members(self) -> tuple[str, ...]:
        """The NICs the uplink is made of (one without a bond)."""
        return tuple(self.bond.members or ()) if self.bond is not None else (self.uplink,)

    def with_address_source(self, member: str) -> HostIpSpec:
        """The same spec with the addressing taken from bond member ``member``.

        On the kernel datapath that member is enslaved first: the bonding driver gives the bond, and
        every member, the MAC of its first member, so the bridge's MAC (the member's) stays the
        member's too. Member order means nothing else to a kernel bond (the primary is explicit).
        """
        bond = self.bond
        if bond is not None and self.datapath == "kernel" and bond.members and bond.members[0] != member:
            bond = replace(bond, members=(member, *(m for m in bond.members if m != member)))
        return replace(self, uplink=member, bond=bond)

    @property
    def interface(self) -> Optional[ipaddress.IPv4Interface]:
        return ipaddress.IPv4Interface(self.address) if self.address else None

    def static_interface(self) -> ipaddress.IPv4Interface:
        """The static address, for the steps that apply or verify one; a spec built without one is refused
        here (a real error: an assert would vanish under ``python -O``)."""
        iface = self.interface
        if iface is None:
            raise ValidationError("address", self.address, STATIC_NEEDS_ADDRESS)
        return iface

    def addressing(self) -> dict[str, Any]:
        """The normalised addressing, in every notation the persistent formats need."""
        iface = self.interface
        return {
            "bootproto": self.bootproto,
            "address": str(iface) if iface else None,
            "ip": str(iface.ip) if iface else None,
            "prefix": iface.network.prefixlen if iface else None,
            "netmask": str(iface.netmask) if iface else None,
            "gateway": self.gateway,
            "dns": list(self.dns),
            "dns_search": list(self.dns_search),
            "address6": list(self.address6),
            "gateway6": self.gateway6.split("%")[0] if self.gateway6 else None,
            "ipv6_autoconf": self.ipv6_autoconf,
            "dhcp6": self.dhcp6,
        }

    @property
    def ipv6_declared(self) -> bool:
        return spec6.declared(self.address6, self.gateway6, self.ipv6_autoconf) or self.dhcp6 is True

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("dns", "dns_search", "verify_targets", "address6"):
            data[key] = list(data[key])
        del data["bond"]
        if self.bond is not None:   # in the module's own form, so from_dict reads it back the same way
            data["uplink"] = {"bond": self.bond.name, **self.bond.settings()}
            data["address_source"] = self.uplink
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostIpSpec:
        return cls.from_params(data)
