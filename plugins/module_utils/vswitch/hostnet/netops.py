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
        "addresses6": read_addresses6(ipr, index),
        "ipv6": read_sysctls6(name),
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


# -- IPv6 --------------------------------------------------------------------------------------
# Kept apart from the IPv4 functions above (and in their own snapshot keys) so that the IPv4 move,
# which hosts have run for a while, reads and writes exactly what it did before.

AF_INET6 = 10
RTPROT_RA = 9
SCOPE_LINK = 253
IFA_F_TEMPORARY, IFA_F_NODAD, IFA_F_OPTIMISTIC, IFA_F_DADFAILED = 0x01, 0x02, 0x04, 0x08
IFA_F_DEPRECATED, IFA_F_TENTATIVE, IFA_F_PERMANENT = 0x20, 0x40, 0x80
# Flags the kernel derives (DAD progress, lifetimes) rather than ones an address is created with.
DERIVED_FLAGS = IFA_F_OPTIMISTIC | IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE | IFA_F_PERMANENT
SYSCTLS6 = ("disable_ipv6", "accept_ra", "autoconf")
SYSCTL_ROOT = "/proc/sys/net/ipv6"


def ipv6_available() -> bool:
    """The kernel has IPv6 at all (built in, not booted with ipv6.disable=1)."""
    return os.path.isdir(os.path.join(SYSCTL_ROOT, "conf"))


def read_sysctls6(name: str) -> Optional[dict[str, int]]:
    """A link's IPv6 switches (disable_ipv6, accept_ra, autoconf); None without IPv6 in the kernel."""
    values = {}
    for key in SYSCTLS6:
        text = read_file(os.path.join(SYSCTL_ROOT, "conf", name, key))
        if text is None:
            return None
        values[key] = int(text.strip())
    return values


def write_sysctls6(name: str, values: dict[str, int]) -> None:
    """Set the given switches; disable_ipv6 first (re-enabling IPv6 regenerates the link-local address)."""
    for key in sorted(values, key=lambda k: k != "disable_ipv6"):
        path = os.path.join(SYSCTL_ROOT, "conf", name, key)
        if int((read_file(path) or "-1").strip()) == int(values[key]):
            continue
        with open(path, "w", encoding="ascii") as handle:
            handle.write(f"{int(values[key])}\n")


def read_addresses6(ipr, index: int) -> list[dict[str, Any]]:
    """Global and ULA addresses of a link, in the kernel's order (newest first), with lifetimes and the
    flags they were made with. Link-local addresses are left out: the kernel derives them from the MAC."""
    addresses = []
    for msg in ipr.get_addr(family=AF_INET6, index=index):
        if msg["scope"] == SCOPE_LINK:
            continue
        cache = msg.get("IFA_CACHEINFO") or {}
        flags = msg.get("IFA_FLAGS")
        addresses.append({
            "address": msg.get("IFA_ADDRESS"),
            "prefixlen": msg["prefixlen"],
            "flags": (msg["flags"] if flags is None else flags) & ~DERIVED_FLAGS,
            "valid_lft": cache.get("ifa_valid", FOREVER),
            "preferred_lft": cache.get("ifa_preferred", FOREVER),
        })
    return addresses


def tentative6(ipr, index: int) -> list[str]:
    """Addresses of a link still in duplicate address detection (not usable as a source yet)."""
    out = []
    for msg in ipr.get_addr(family=AF_INET6, index=index):
        flags = msg.get("IFA_FLAGS")
        if (msg["flags"] if flags is None else flags) & IFA_F_TENTATIVE:
            out.append(msg.get("IFA_ADDRESS"))
    return out


def link_local6(ipr, index: int) -> Optional[str]:
    for msg in ipr.get_addr(family=AF_INET6, index=index):
        if msg["scope"] == SCOPE_LINK:
            return msg.get("IFA_ADDRESS")
    return None


def add_address6(ipr, index: int, addr: dict[str, Any], nodad: bool = False) -> None:
    """``nodad``: the address is moving from the uplink, where it passed duplicate detection already;
    detecting again would make it unusable (tentative) for a second in the middle of the move."""
    flags = int(addr.get("flags") or 0) | (IFA_F_NODAD if nodad else 0)
    args: dict[str, Any] = {"index": index, "family": AF_INET6, "address": addr["address"],
                            "prefixlen": addr["prefixlen"], "IFA_FLAGS": flags & ~DERIVED_FLAGS}
    valid, preferred = addr.get("valid_lft", FOREVER), addr.get("preferred_lft", FOREVER)
    if valid != FOREVER:
        args["IFA_CACHEINFO"] = {"ifa_valid": valid, "ifa_preferred": min(preferred, valid), "cstamp": 0, "tstamp": 0}
    try:
        ipr.addr("add", **args)
    except Exception as err:
        if getattr(err, "code", None) != 17:
            raise BackendError("address6", f"{addr['address']}/{addr['prefixlen']}",
                               f"could not be added to {name_of(ipr, index)}: {err}") from err


def del_address6(ipr, index: int, addr: dict[str, Any]) -> None:
    """Remove one address; one already gone (its lifetime ran out) is no error."""
    _del_address6(ipr, index, addr)


def _del_address6(ipr, index: int, addr: dict[str, Any]) -> None:
    try:
        ipr.addr("del", index=index, family=AF_INET6, address=addr["address"], prefixlen=addr["prefixlen"])
    except Exception as err:
        if getattr(err, "code", None) != 99:
            raise


def set_addresses6(ipr, index: int, addresses: list[dict[str, Any]], nodad: bool = False) -> None:
    """Make a link's global/ULA addresses exactly ``addresses`` (given in the kernel's order: the kernel
    lists the newest first, so they are added oldest first to come back in the same order)."""
    target = [(a["address"], a["prefixlen"]) for a in addresses]
    present = [(a["address"], a["prefixlen"]) for a in read_addresses6(ipr, index)]
    if present == target:
        return
    for addr in read_addresses6(ipr, index):
        _del_address6(ipr, index, addr)
    for addr in reversed(addresses):
        add_address6(ipr, index, addr, nodad=nodad)


def flush_addresses6(ipr, index: int) -> None:
    for addr in read_addresses6(ipr, index):
        _del_address6(ipr, index, addr)


def read_routes6(ipr, indexes: dict[int, str]) -> list[dict[str, Any]]:
    """Main-table IPv6 routes through the given links except the kernel's own for addresses (prefix and
    link-local routes). ``learnt``: made from a router advertisement, as a default route (proto ra) or
    an on-link prefix (proto kernel, but with an expiry); a link that hears advertisements makes them itself."""
    routes = []
    for msg in ipr.get_routes(family=AF_INET6, table=MAIN_TABLE):
        oif = msg.get("RTA_OIF")
        expires = (msg.get("RTA_CACHEINFO") or {}).get("rta_expires", 0)
        if oif not in indexes or msg["type"] != 1 or (msg["proto"] == RTPROT_KERNEL and not expires):
            continue
        routes.append({
            "family": 6,
            "dst": msg.get("RTA_DST") or "::",
            "dst_len": msg["dst_len"],
            "gateway": msg.get("RTA_GATEWAY"),
            "dev": indexes[oif],
            "priority": msg.get("RTA_PRIORITY"),
            "pref": msg.get("RTA_PREF"),
            "proto": msg["proto"],
            "learnt": msg["proto"] == RTPROT_RA or msg["proto"] == RTPROT_KERNEL,
        })
    return sorted(routes, key=lambda r: (r["dst"], r["dst_len"], r["priority"] or 0, r["dev"]))


def _route6_args(route: dict[str, Any], index: int) -> dict[str, Any]:
    args: dict[str, Any] = {"family": AF_INET6, "dst": f"{route['dst']}/{route['dst_len']}", "oif": index,
                            "table": MAIN_TABLE, "proto": route.get("proto") or 3}
    if route.get("gateway"):
        args["gateway"] = route["gateway"]
    if route.get("priority") is not None:
        args["priority"] = route["priority"]
    if route.get("pref") is not None:
        args["RTA_PREF"] = route["pref"]
    return args


def add_route6(ipr, route: dict[str, Any]) -> None:
    index = require_index(ipr, "route.dev", route["dev"])
    try:
        ipr.route("add", **_route6_args(route, index))
    except Exception as err:
        if getattr(err, "code", None) != 17:
            raise BackendError("route6", f"{route['dst']}/{route['dst_len']} via {route.get('gateway')} "
                                         f"dev {route['dev']}", f"could not be added: {err}") from err


def del_route6(ipr, route: dict[str, Any]) -> None:
    index = index_of(ipr, route["dev"])
    if index is None:
        return
    args = _route6_args(route, index)
    args.pop("RTA_PREF", None)
    try:
        ipr.route("del", **args)
    except Exception as err:
        if getattr(err, "code", None) not in (3, 19):
            raise
