"""The netlink steps of the move, over pyroute2 (never by parsing ``ip`` output).

Every function takes an open ``IPRoute`` so a transaction uses one socket, and
every value it reads or writes is plain data (dicts of str/int) that can be
stored in the guard's journal as JSON.
"""
from __future__ import annotations

import errno
import os
from typing import Any, Optional

from .. import atomic
from ..errors import BackendError, NotFoundError
from ..rtnl import IFF_PROMISC, IFF_UP

AF_INET = 2
MAIN_TABLE = 254
RTPROT_KERNEL = 2
FOREVER = 0xFFFFFFFF
BR_STATE_FORWARDING = 3


def iproute():
    """A netlink socket in the caller's network namespace (pyroute2 is imported here, lazily)."""
    from ..pyroute2_req import HOST_IP_MOVE, iproute  # guarded third-party import, checked by version

    return iproute(need=HOST_IP_MOVE)


def _nested(msg: Any, *path: str) -> Any:
    for key in path:
        if msg is None:
            return None
        msg = msg.get(key)
    return msg


def index_of(ipr, name: str) -> Optional[int]:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def require_index(ipr, field: str, name: str) -> int:
    index = index_of(ipr, name)
    if index is None:
        raise NotFoundError(field, name, "is not an interface on this host")
    return index


def name_of(ipr, index: Optional[int]) -> Optional[str]:
    if not index:
        return None
    links = ipr.get_links(index)
    return links[0].get("IFLA_IFNAME") if links else None


def read_link(ipr, name: str) -> Optional[dict[str, Any]]:
    """The facts about one link that the move changes and a rollback must put back."""
    index = index_of(ipr, name)
    if index is None:
        return None
    msg = ipr.get_links(index)[0]
    kind = _nested(msg, "IFLA_LINKINFO", "IFLA_INFO_KIND") or ""
    link: dict[str, Any] = {
        "name": name,
        "index": index,
        "kind": kind,
        "mac": msg.get("IFLA_ADDRESS"),
        "mtu": msg.get("IFLA_MTU"),
        "up": bool(msg["flags"] & IFF_UP),
        "master": name_of(ipr, msg.get("IFLA_MASTER")),
        "alias": msg.get("IFLA_IFALIAS") or None,
        "promisc": bool(msg["flags"] & IFF_PROMISC),
        "addresses": read_addresses(ipr, index),
    }
    if kind == "bridge":
        # The bridge's own settings are the switch's business (hostnet/switch_side.py reads them
        # through the kernel backend); the move only needs to know which ports it has.
        link["ports"] = sorted(
            port.get("IFLA_IFNAME") for port in ipr.get_links()
            if port.get("IFLA_MASTER") == index
        )
    return link


def read_addresses(ipr, index: int) -> list[dict[str, Any]]:
    """IPv4 addresses of a link, with their remaining lifetimes (DHCP leases are not forever)."""
    addresses = []
    for msg in ipr.get_addr(family=AF_INET, index=index):
        cache = msg.get("IFA_CACHEINFO") or {}
        addresses.append({
            "address": msg.get("IFA_ADDRESS"),
            "prefixlen": msg["prefixlen"],
            "broadcast": msg.get("IFA_BROADCAST"),
            "label": msg.get("IFA_LABEL"),
            "scope": msg["scope"],
            "valid_lft": cache.get("ifa_valid", FOREVER),
            "preferred_lft": cache.get("ifa_preferred", FOREVER),
        })
    return sorted(addresses, key=lambda a: (a["address"], a["prefixlen"]))


def read_routes(ipr, indexes: dict[int, str]) -> list[dict[str, Any]]:
    """Main-table IPv4 routes through the given links, except those the kernel makes for addresses."""
    routes = []
    for msg in ipr.get_routes(family=AF_INET, table=MAIN_TABLE):
        oif = msg.get("RTA_OIF")
        if oif not in indexes or msg["proto"] == RTPROT_KERNEL:
            continue
        routes.append({
            "dst": msg.get("RTA_DST") or "0.0.0.0",
            "dst_len": msg["dst_len"],
            "gateway": msg.get("RTA_GATEWAY"),
            "dev": indexes[oif],
            "priority": msg.get("RTA_PRIORITY"),
            "prefsrc": msg.get("RTA_PREFSRC"),
            "proto": msg["proto"],
            "scope": msg["scope"],
            "type": msg["type"],
        })
    return sorted(routes, key=lambda r: (r["dst"], r["dst_len"], r["priority"] or 0, r["dev"]))


def _route_args(route: dict[str, Any], index: int) -> dict[str, Any]:
    args: dict[str, Any] = {"dst": f"{route['dst']}/{route['dst_len']}", "oif": index, "table": MAIN_TABLE,
                            "proto": route.get("proto") or 3, "scope": route.get("scope", 0),
                            "type": route.get("type", 1)}
    if route.get("gateway"):
        args["gateway"] = route["gateway"]
    if route.get("priority") is not None:
        args["priority"] = route["priority"]
    if route.get("prefsrc"):
        args["prefsrc"] = route["prefsrc"]
    return args


def add_route(ipr, route: dict[str, Any]) -> None:
    index = require_index(ipr, "route.dev", route["dev"])
    try:
        ipr.route("add", **_route_args(route, index))
    except Exception as err:  # pyroute2 raises NetlinkError; EEXIST means it is already there
        if getattr(err, "code", None) != 17:
            raise BackendError("route", f"{route['dst']}/{route['dst_len']} via {route.get('gateway')} "
                                        f"dev {route['dev']}", f"could not be added: {err}") from err


def del_route(ipr, route: dict[str, Any]) -> None:
    index = index_of(ipr, route["dev"])
    if index is None:
        return
    try:
        ipr.route("del", **_route_args(route, index))
    except Exception as err:
        if getattr(err, "code", None) not in (3, 19):  # ESRCH / ENODEV: already gone
            raise


def add_address(ipr, index: int, addr: dict[str, Any]) -> None:
    args: dict[str, Any] = {"index": index, "address": addr["address"], "prefixlen": addr["prefixlen"]}
    if addr.get("broadcast"):
        args["broadcast"] = addr["broadcast"]
    valid, preferred = addr.get("valid_lft", FOREVER), addr.get("preferred_lft", FOREVER)
    if valid != FOREVER:
        args["IFA_CACHEINFO"] = {"ifa_valid": valid, "ifa_preferred": min(preferred, valid),
                                 "cstamp": 0, "tstamp": 0}
    try:
        ipr.addr("add", **args)
    except Exception as err:
        if getattr(err, "code", None) != 17:
            raise BackendError("address", f"{addr['address']}/{addr['prefixlen']}",
                               f"could not be added to {name_of(ipr, index)}: {err}") from err


def flush_addresses(ipr, index: int) -> None:
    for addr in read_addresses(ipr, index):
        try:
            ipr.addr("del", index=index, address=addr["address"], prefixlen=addr["prefixlen"])
        except Exception as err:
            if getattr(err, "code", None) != 99:  # EADDRNOTAVAIL: already gone
                raise


def set_addresses(ipr, index: int, addresses: list[dict[str, Any]]) -> None:
    """Make a link's IPv4 addresses exactly ``addresses``."""
    wanted = {(a["address"], a["prefixlen"]) for a in addresses}
    for addr in read_addresses(ipr, index):
        if (addr["address"], addr["prefixlen"]) not in wanted:
            ipr.addr("del", index=index, address=addr["address"], prefixlen=addr["prefixlen"])
    have = {(a["address"], a["prefixlen"]) for a in read_addresses(ipr, index)}
    for addr in addresses:
        if (addr["address"], addr["prefixlen"]) not in have:
            add_address(ipr, index, addr)


def set_link(ipr, index: int, **kwargs: Any) -> None:
    ipr.link("set", index=index, **kwargs)


def delete_link(ipr, name: str) -> None:
    index = index_of(ipr, name)
    if index is not None:
        ipr.link("del", index=index)


def port_state(ipr, index: int) -> Optional[int]:
    msg = ipr.get_links(index)[0]
    return _nested(msg, "IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA", "IFLA_BRPORT_STATE")


def read_file(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_file_atomic(path: str, text: Optional[str]) -> None:
    """Replace ``path`` with ``text`` (None: remove it) so readers never see half a file."""
    if text is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if os.path.islink(path):  # resolv.conf is often a symlink (resolvconf, systemd-resolved)
        path = os.path.realpath(path)

    def replace(tmp: str, target: str) -> None:
        try:
            os.replace(tmp, target)
        except OSError as err:
            if err.errno != errno.EBUSY:
                raise
            # A bind-mounted file (containers mount /etc/resolv.conf) cannot be replaced: rewrite it.
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.unlink(tmp)
    atomic.write(path, text, replace=replace)


def resolv_conf_text(old: Optional[str], nameservers: list[str], search: list[str]) -> str:
    """Nameservers replaced (and search domains, when given); every other line of the old file kept."""
    replaced = ("nameserver", "search", "domain") if search else ("nameserver",)
    kept = [line for line in (old or "").splitlines() if not line.split()[:1] or line.split()[0] not in replaced]
    lines = kept + (["search " + " ".join(search)] if search else [])
    lines.extend(f"nameserver {server}" for server in nameservers)
    return "\n".join(lines) + "\n"
