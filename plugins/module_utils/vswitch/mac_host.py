"""The host side of ``vif_mac``: read which MACs a host's links hold, set a VIF's MAC.

``NetlinkLinks`` reads the links over rtnetlink (rtnl.py, standard library) and sets an address
through pyroute2 (imported lazily, so the module's documentation and the unit tests need no
pyroute2). ``run`` is the module's action: it takes any object with ``read()``/``set_address()``,
which is how the tests drive it.
"""
from __future__ import annotations

import errno
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Protocol

from . import mac as macs
from . import validate as v
from .errors import BackendError, ConflictError, NotFoundError, ValidationError
from .result import Result
from .rtnl import dump_links

IFF_UP = 0x1
IFF_LOOPBACK = 0x8


class Links(Protocol):
    def read(self) -> list[dict[str, Any]]:
        """Every link: ``index``, ``interface``, ``mac``, ``kind``, ``master``, ``loopback``, ``up``."""

    def set_address(self, interface: str, mac: str) -> None:
        """Give ``interface`` the address ``mac``; raise BackendError if the kernel refuses."""


class NetlinkLinks:
    """Links of the network namespace this process runs in, over rtnetlink."""

    def read(self) -> list[dict[str, Any]]:
        # rtnl.py's one dump, decoding only the attributes used: pyroute2's import and its decoding of every
        # attribute of every link were most of a gather's time. Changes still go through pyroute2.
        return [{"index": link.index, "interface": link.name, "mac": link.mac or None, "kind": link.kind or None,
                 "master": link.master or None, "loopback": bool(link.flags & IFF_LOOPBACK),
                 "up": bool(link.flags & IFF_UP)}
                for link in dump_links()]

    def set_address(self, interface: str, mac: str) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        from .pyroute2_req import iproute

        with iproute() as ipr:
            found = ipr.link_lookup(ifname=interface)
            if not found:
                raise NotFoundError("interface", interface, "does not exist on this host")
            index = found[0]
            try:
                ipr.link("set", index=index, address=mac)
            except NetlinkError as err:
                # Drivers without live address change (IFF_LIVE_ADDR_CHANGE) answer EBUSY while up:
                # take the link down for the change only, and bring it back up even if it fails.
                was_up = bool(ipr.get_links(index)[0]["flags"] & IFF_UP)
                if err.code != errno.EBUSY or not was_up:
                    raise BackendError("interface", interface, f"refused address {mac}: {err}") from err
                ipr.link("set", index=index, state="down")
                try:
                    ipr.link("set", index=index, address=mac)
                except NetlinkError as err2:
                    raise BackendError("interface", interface, f"refused address {mac}: {err2}") from err2
                finally:
                    ipr.link("set", index=index, state="up")
            now = ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")
            if now != mac:
                raise BackendError("interface", interface, f"reports address {now} after setting {mac}")


def in_use(links: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The links that hold a MAC of their own (see ``mac.owned_address``), sorted by name."""
    masters = {link["index"]: link.get("kind") for link in links if "index" in link}
    out = []
    for link in links:
        owned = macs.owned_address(link, masters)
        if owned is not None:
            out.append({"interface": link["interface"], "mac": owned, "kind": link.get("kind") or "device"})
    return sorted(out, key=lambda item: item["interface"])


def _address_or_none(mac: Any) -> Optional[int]:
    try:
        return macs.mac_to_int(v.mac("mac", mac, unicast=False)) if mac else None
    except ValidationError:
        return None


_ENTRY_OPTIONS = ("vm", "device", "interface", "host", "mac", "bridge")
_RETURNED = ("key", "source", "xen_vif")


def _entries(params: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(field prefix, options) for each VIF of the task: the batch ``vifs`` or the top-level one."""
    if params.get("vifs") is not None:
        out = []
        for i, item in enumerate(params["vifs"]):
            if not isinstance(item, Mapping):
                raise ValidationError(f"vifs[{i}]", item, "must be a mapping with 'vm' (and 'device') or 'interface'")
            # key, source and xen_vif: what this module returns, so its own output can be fed back
            v.known_keys(f"vifs[{i}]", {k: val for k, val in item.items() if k not in _RETURNED},
                         _ENTRY_OPTIONS, "a VIF")
            entry = {name: item.get(name) for name in _ENTRY_OPTIONS}
            if entry["host"] is None:
                entry["host"] = params.get("host")
            if entry["bridge"] is None:
                entry["bridge"] = params.get("bridge")
            out.append((f"vifs[{i}].", entry))
        return out
    if params.get("vm") is None and params.get("interface") is None:
        return []
    return [("", {name: params.get(name) for name in _ENTRY_OPTIONS})]


def _in_use(params: Mapping[str, Any]) -> set[int]:
    """Phase 1: the addresses other NICs hold, as the task lists them."""
    taken: set[int] = set()
    for i, item in enumerate(params.get("in_use") or []):
        text = item.get("mac") if isinstance(item, Mapping) else item
        taken.add(macs.mac_to_int(v.mac(f"in_use[{i}]", text, unicast=False)))
    return taken


def _choose(entries: Sequence[tuple[str, dict[str, Any]]], rng: macs.MacRange, taken: set[int],
            current: Mapping[str, Any], needs_links: bool, enforce: bool) -> list[dict[str, Any]]:
    """Phase 2: each VIF's MAC (pinned or first free), checked against in_use and this task's others.

    ``taken`` grows by every address chosen here.
    """
    results: list[dict[str, Any]] = []
    chosen: dict[int, str] = {}  # address -> key, in this task
    interfaces: dict[str, str] = {}
    for at, entry in entries:
        key = macs.vif_key(at, entry["vm"], entry["device"], entry["interface"], entry["host"])
        interface = v.optional(v.ifname, at + "interface", entry["interface"])
        bridge = v.optional(v.ifname, at + "bridge", entry["bridge"])
        if interface is not None:
            if interface in interfaces:
                raise ConflictError(at + "interface", interface,
                                    f"is already the interface of {interfaces[interface]!r}")
            interfaces[interface] = key
        # Unknown (None) when the host was not looked at: set_interface=false needs no pyroute2.
        exists = (interface is not None and interface in current) if needs_links else None
        had = current.get(interface) if exists else None
        # The interface's own present address is no conflict with itself (lists gathered
        # from the fleet contain it), unless another VIF of this task took it already.
        own = _address_or_none(had)
        excused = own is not None and own in taken and own not in chosen
        if excused:
            taken.discard(own)
        if entry["mac"] is not None:
            mac = rng.check(at + "mac", macs.normalize(at + "mac", entry["mac"]))
            address = macs.mac_to_int(mac)
            if address in chosen:
                raise ConflictError(at + "mac", mac, f"is also requested for {chosen[address]!r}")
            if address in taken:
                raise ConflictError(at + "mac", mac, "is listed in in_use: another NIC holds it")
        else:
            address = macs.first_free(key, rng, taken)
            mac = macs.int_to_mac(address)
        if excused:
            taken.add(own)
        taken.add(address)
        chosen[address] = key
        results.append({
            "key": key, "mac": mac, "interface": interface, "bridge": bridge, "exists": exists,
            "before": had, "changed": bool(exists and enforce and had != mac),
            "xen_vif": macs.xen_vif_entry(mac, bridge),
        })
    return results


def _set_addresses(changes: Sequence[dict[str, Any]], links: Any, context: Any) -> None:
    """Phase 3: set every changed interface's address; on a failure, set back those already set."""
    done: list[dict[str, Any]] = []
    try:
        for r in changes:
            links.set_address(r["interface"], r["mac"])
            done.append(r)
    except Exception:
        for r in reversed(done):  # leave the host as it was
            try:
                links.set_address(r["interface"], r["before"])
            except Exception as undo:  # pragma: no cover - reported, the original error wins
                context.warn(f"could not restore {r['interface']} to {r['before']}: {undo}")
        raise


def run(params: Mapping[str, Any], context: Any, links: Optional[Links] = None) -> Result:
    """The ``vif_mac`` module: choose or check each VIF's MAC, and set it where the interface exists."""
    rng = macs.parse_prefix("prefix", params.get("prefix"))
    taken = _in_use(params)  # then also every address chosen in this task
    entries = _entries(params)
    if not entries and not params.get("gather"):
        raise ValidationError("vm", None, "is required: name the VIF by 'vm' (and 'device'), by 'interface', "
                                          "or give many in 'vifs' (or set 'gather' to only list MACs in use)")
    enforce = bool(params.get("set_interface", True))
    needs_links = params.get("gather") or (enforce and any(e["interface"] for _key, e in entries))
    links = links if links is not None else (NetlinkLinks() if needs_links else None)
    state = links.read() if needs_links and links is not None else []
    current = {link["interface"]: link.get("mac") for link in state}

    results = _choose(entries, rng, taken, current, bool(needs_links), enforce)
    changes = [r for r in results if r["changed"]]
    if changes and not context.check_mode:
        _set_addresses(changes, links, context)

    values: dict[str, Any] = {"vifs": results, "prefix": rng.prefix,
                              "xen_vif_config": macs.xen_vif_config([r["xen_vif"] for r in results])}
    if params.get("vifs") is None and results:
        values.update({name: results[0][name] for name in ("key", "mac", "interface", "exists", "xen_vif")})
    if params.get("gather"):
        values["in_use"] = in_use(state)
    return Result(
        changed=bool(changes),
        before={r["interface"]: r["before"] for r in changes},
        after={r["interface"]: r["mac"] for r in changes},
        values=values,
    )
