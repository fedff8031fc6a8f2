"""The IPv6 half of the declaration: static addresses with prefixes, a gateway, SLAAC on or off.

Nothing declared means "carry what the uplink has": its global and ULA addresses, its IPv6 routes
and its acceptance of router advertisements go to the bridge as they are.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Optional

from .. import validate as v
from ..errors import ValidationError


def _as_list(value: Any) -> list:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def interface6(field: str, value: Any) -> ipaddress.IPv6Interface:
    """``2001:db8::10/64``: a unicast global or ULA address, always with its prefix length."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, value, "must be an IPv6 address with a prefix, e.g. '2001:db8::10/64'")
    text = value.strip()
    if "/" not in text:
        raise ValidationError(field, value, "has no prefix length: write it as 'ADDRESS/PREFIX', "
                                            "e.g. '2001:db8::10/64'")
    prefix = text.rsplit("/", 1)[1]
    if prefix.isdigit() and int(prefix) > 128:
        raise ValidationError(field, value, f"has prefix length {prefix}; an IPv6 prefix is at most 128")
    try:
        iface = ipaddress.IPv6Interface(text)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError) as err:
        raise ValidationError(field, value, f"is not a valid IPv6 address/prefix ({err})") from None
    if iface.ip.is_link_local:
        raise ValidationError(field, value, "is link-local: the kernel derives it from the bridge's MAC, "
                                            "it cannot be declared")
    if iface.ip.is_multicast or iface.ip.is_unspecified or iface.ip.is_loopback:
        raise ValidationError(field, value, "is not a unicast host address")
    if iface.ip.ipv4_mapped is not None:
        raise ValidationError(field, value, "is an IPv4-mapped address; declare IPv4 in address")
    return iface


def gateway6(field: str, value: Any, bridge: str, networks: list) -> str:
    """A global gateway inside a declared prefix, or a link-local one with the bridge named:
    ``fe80::1%xenbr0`` (a link-local address means nothing without the link it is on)."""
    text = str(value).strip()
    address, _sep, zone = text.partition("%")
    try:
        gateway = ipaddress.IPv6Address(address)
    except (ipaddress.AddressValueError, ValueError):
        raise ValidationError(field, value, "is not an IPv6 address") from None
    if gateway.is_multicast or gateway.is_unspecified or gateway.is_loopback:
        raise ValidationError(field, value, "is not a unicast router address")
    if gateway.is_link_local:
        if not zone:
            raise ValidationError(field, value, f"is link-local and names no interface: write it as "
                                                f"'{gateway}%{bridge}'")
        if zone != bridge:
            raise ValidationError(field, value, f"names interface '{zone}', but the gateway is reached on "
                                                f"the bridge '{bridge}'")
        return f"{gateway}%{bridge}"
    if zone:
        raise ValidationError(field, value, "is a global address; only a link-local gateway takes '%INTERFACE'")
    if networks and not any(gateway in net for net in networks):
        raise ValidationError(field, value, f"is not inside the bridge's IPv6 prefixes "
                                            f"({', '.join(str(n) for n in networks)}); the gateway must be "
                                            "on-link (or link-local)")
    return str(gateway)


def parse(params: Mapping[str, Any], bridge: str) -> tuple[tuple[str, ...], Optional[str], Optional[bool]]:
    """(address6, gateway6, ipv6_autoconf), validated; gateway6 keeps its '%bridge' when link-local."""
    values = _as_list(params.get("address6"))
    ifaces = [interface6("address6" if len(values) == 1 and not isinstance(params.get("address6"), list)
                         else f"address6[{i}]", item) for i, item in enumerate(values)]
    seen = set()
    for i, iface in enumerate(ifaces):
        if iface.ip in seen:
            raise ValidationError(f"address6[{i}]", values[i], "is declared twice")
        seen.add(iface.ip)
    gateway = None
    if params.get("gateway6") not in (None, ""):
        gateway = gateway6("gateway6", params.get("gateway6"), bridge, [i.network for i in ifaces])
        if any(str(i.ip) == gateway for i in ifaces):
            raise ValidationError("gateway6", params.get("gateway6"), "is the host's own address")
    autoconf = v.optional(v.boolean, "ipv6_autoconf", params.get("ipv6_autoconf"))
    return tuple(str(i) for i in ifaces), gateway, autoconf


def declared(address6: tuple[str, ...], gateway: Optional[str], autoconf: Optional[bool]) -> bool:
    return bool(address6) or gateway is not None or autoconf is not None


def target(field: str, value: Any) -> str:
    """A verification target of either family."""
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ValidationError(field, value, "is not an IPv4 or IPv6 address") from None
