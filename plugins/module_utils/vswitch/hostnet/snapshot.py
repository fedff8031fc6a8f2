"""The host's addressing before the move, and putting it back exactly."""
from __future__ import annotations

import time
from typing import Any, Optional

from ..errors import BackendError, ConflictError, NotFoundError
from ..kernel import mark_uplink
from . import clients, dhclient6, move6, netops, probe, switch_side
from .spec import HostIpSpec


def take(ipr, spec: HostIpSpec, resolv_conf: str) -> dict[str, Any]:
    """Everything the move may change: both links, their routes, resolv.conf."""
    uplink = netops.read_link(ipr, spec.uplink)
    if uplink is None:
        raise NotFoundError("uplink", spec.uplink, "is not an interface on this host")
    if uplink["master"] not in (None, spec.bridge, spec.port):
        raise ConflictError("uplink", spec.uplink, f"is already a port of '{uplink['master']}'; a NIC can be "
                                                   "the uplink of one bridge only")
    move6.check_kernel(spec, uplink)
    members = _other_members(ipr, spec)
    sw = switch_side.for_spec(spec)
    bridge = netops.read_link(ipr, spec.bridge)
    if bridge is not None and bridge["kind"] not in sw.l3_kinds:
        raise ConflictError("bridge", spec.bridge, f"is an existing interface of kind "
                                                   f"'{bridge['kind'] or 'device'}', not a {sw.datapath} bridge")
    indexes = {uplink["index"]: spec.uplink}
    if bridge is not None:
        indexes[bridge["index"]] = spec.bridge
    dhcp_clients = clients.find(spec.uplink)
    identity = dhclient6.identity(dhcp_clients, uplink["mac"])   # the DUID the uplink's address is bound to
    return {
        "taken": time.time(),
        "uplink": uplink,
        "bridge": bridge,
        "routes": netops.read_routes(ipr, indexes),
        "routes6": netops.read_routes6(ipr, indexes),
        "switch": sw.snapshot(ipr, spec, uplink),
        "members": members,
        "dhcp_clients": dhcp_clients,
        "dhcp6_identity": identity.to_dict() if identity else None,
        "resolv_conf": netops.read_file(resolv_conf),
        "resolv_conf_path": resolv_conf,
    }


def _other_members(ipr, spec: HostIpSpec) -> dict[str, dict[str, Any]]:
    """The bond's members other than the one whose addressing moves: their links as they are, for
    the rollback (their addresses too, though the planner has already refused members that are ports)."""
    found = {}
    for index, member in enumerate(spec.members):
        if member == spec.uplink:
            continue
        link = netops.read_link(ipr, member)
        if link is None:
            raise NotFoundError(f"uplink.members[{index}]", member, "is not an interface on this host")
        found[member] = link
    return found


def _put_back_link(ipr, index: int, link: dict[str, Any]) -> None:
    """A NIC's master, MAC, MTU, state and uplink mark as ``link`` recorded them."""
    master = netops.index_of(ipr, link["master"]) if link["master"] else 0
    netops.set_link(ipr, index, master=master or 0)
    netops.set_link(ipr, index, address=link["mac"], mtu=link["mtu"])
    netops.set_link(ipr, index, state="up" if link["up"] else "down")
    if "alias" in link:  # snapshots written before the uplink marker existed lack it
        mark_uplink(index, link["alias"], link["promisc"])   # in this namespace, as ipr is


def _remaining(addresses: list[dict[str, Any]], elapsed: int) -> list[dict[str, Any]]:
    """Leased addresses come back with what is left of their lifetime, permanent ones stay permanent."""
    out = []
    for addr in addresses:
        addr = dict(addr)
        for key in ("valid_lft", "preferred_lft"):
            if addr.get(key, netops.FOREVER) != netops.FOREVER:
                addr[key] = max(1, addr[key] - elapsed)
        out.append(addr)
    return out


def restore(ipr, snap: dict[str, Any], spec: HostIpSpec) -> dict[str, Any]:
    """Put both links, the routes and resolv.conf back as ``snap`` recorded them; returns what is now there.

    Idempotent: safe to run again after a partial restore or on a host that never changed.
    """
    elapsed = int(time.time() - snap["taken"])
    up, br = snap["uplink"], snap["bridge"]
    indexes = {}
    current_bridge = netops.index_of(ipr, spec.bridge)
    if current_bridge is not None:
        indexes[current_bridge] = spec.bridge
    uplink_index = netops.index_of(ipr, spec.uplink)
    if uplink_index is not None:
        indexes[uplink_index] = spec.uplink
    for route in netops.read_routes(ipr, indexes):
        if route not in snap["routes"]:
            netops.del_route(ipr, route)
    routes6 = snap.get("routes6")  # None: a journal written before IPv6 was carried; leave IPv6 alone
    if routes6 is not None:
        for route in netops.read_routes6(ipr, indexes):
            if route not in routes6:
                netops.del_route6(ipr, route)
    switch_side.for_spec(spec).restore(ipr, spec, snap.get("switch"), br)
    current_bridge = netops.index_of(ipr, spec.bridge)
    if br is not None and current_bridge is not None:
        netops.set_addresses(ipr, current_bridge, _remaining(br["addresses"], elapsed))
        if routes6 is not None:
            netops.set_addresses6(ipr, current_bridge, _remaining(br.get("addresses6") or [], elapsed))
            if br.get("ipv6"):
                netops.write_sysctls6(spec.bridge, br["ipv6"])
    if uplink_index is None:
        raise BackendError("uplink", spec.uplink, "disappeared during the transaction; cannot restore it")
    _put_back_link(ipr, uplink_index, up)
    for member, link in (snap.get("members") or {}).items():   # the bond's other members
        member_index = netops.index_of(ipr, member)
        if member_index is None:
            raise BackendError("uplink.members", member, "disappeared during the transaction; cannot restore it")
        _put_back_link(ipr, member_index, link)
        netops.set_addresses(ipr, member_index, _remaining(link["addresses"], elapsed))
    netops.set_addresses(ipr, uplink_index, _remaining(up["addresses"], elapsed))
    if routes6 is not None:
        netops.set_addresses6(ipr, uplink_index, _remaining(up.get("addresses6") or [], elapsed))
    if br is not None and current_bridge is not None:
        netops.set_link(ipr, current_bridge, state="up" if br["up"] else "down")
    for route in snap["routes"]:
        netops.add_route(ipr, route)
    if routes6 is not None:
        _restore_routes6(ipr, snap, spec)
    path = snap["resolv_conf_path"]
    if netops.read_file(path) != snap["resolv_conf"]:
        netops.write_file_atomic(path, snap["resolv_conf"])
    clients.restart(snap.get("dhcp_clients") or [])
    return summary(ipr, spec, path)


def _restore_routes6(ipr, snap: dict[str, Any], spec: HostIpSpec) -> None:
    """Static IPv6 routes go back as they were; those a router advertisement made come back the way they
    came, from an advertisement, which a solicitation on the uplink asks for (bounded)."""
    learnt = [r for r in snap["routes6"] if r.get("learnt")]
    for route in snap["routes6"]:
        if not route.get("learnt"):
            netops.add_route6(ipr, route)
    if not learnt:
        return
    up = snap["uplink"]
    deadline = time.monotonic() + 10
    index = netops.index_of(ipr, spec.uplink)
    while index is not None and time.monotonic() < deadline:
        source = netops.link_local6(ipr, index)
        if source and source not in netops.tentative6(ipr, index):
            probe.router_probe(spec.uplink, up["mac"], source, 2.0)
        have = {(r["dst"], r["dst_len"], r["gateway"]) for r in netops.read_routes6(ipr, {index: spec.uplink})}
        if all((r["dst"], r["dst_len"], r["gateway"]) in have for r in learnt):
            return
        time.sleep(0.2)


def summary(ipr, spec: HostIpSpec, resolv_conf: str) -> dict[str, Any]:
    """What the host has now, in the shape of a snapshot (for reports and diffs)."""
    uplink = netops.read_link(ipr, spec.uplink)
    bridge = netops.read_link(ipr, spec.bridge)
    indexes = {link["index"]: link["name"] for link in (uplink, bridge) if link}
    state = {"uplink": uplink, "bridge": bridge, "routes": netops.read_routes(ipr, indexes),
             "routes6": netops.read_routes6(ipr, indexes),
             "nameservers": nameservers(netops.read_file(resolv_conf))}
    if spec.bond is not None:
        state["members"] = {m: netops.read_link(ipr, m) for m in spec.members if m != spec.uplink}
    return state


def nameservers(text: Optional[str]) -> list[str]:
    return [line.split()[1] for line in (text or "").splitlines()
            if len(line.split()) >= 2 and line.split()[0] == "nameserver"]


def describe(state: dict[str, Any]) -> str:
    """One line an operator can read: where the addresses are and what the default route is."""
    parts = []
    for role in ("uplink", "bridge"):
        link = state.get(role)
        if link and (link["addresses"] or link.get("addresses6")):
            both = link["addresses"] + (link.get("addresses6") or [])
            addrs = ", ".join(f"{a['address']}/{a['prefixlen']}" for a in both)
            parts.append(f"{link['name']} has {addrs}")
    for route in state.get("routes", []):
        if route["dst_len"] == 0:
            parts.append(f"default via {route['gateway']} dev {route['dev']}")
    for route in state.get("routes6") or []:
        if route["dst_len"] == 0:
            parts.append(f"IPv6 default via {route['gateway']} dev {route['dev']}")
    if state.get("bridge") is None:
        parts.append("no bridge")
    return "; ".join(parts) or "no IPv4 addresses"


def addresses_match(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """Whether ``after`` has the same links, addresses, masters and routes as ``before``."""
    def key(state: dict[str, Any]) -> Any:
        links = []
        for role in ("uplink", "bridge"):
            link = state.get(role)
            links.append(None if link is None else (
                link["name"], link["master"], link["mac"],
                tuple((a["address"], a["prefixlen"]) for a in link["addresses"]),
                tuple((a["address"], a["prefixlen"]) for a in link.get("addresses6") or [])))
        for name, link in sorted((state.get("members") or {}).items()):   # a bond's other members
            links.append(None if link is None else (name, link["master"], link["mac"], link["mtu"], link["up"]))
        # Router-made IPv6 routes are the router's to give back (a silent router gives none); they are
        # solicited on the restored uplink but cannot be put back by hand as the kernel's own.
        return links, [(r["dst"], r["dst_len"], r["gateway"], r["dev"]) for r in state.get("routes", [])], [
            (r["dst"], r["dst_len"], r["gateway"], r["dev"]) for r in state.get("routes6") or [] if not r.get("learnt")]
    return key(before) == key(after)
