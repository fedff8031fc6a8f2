"""The ``userspace`` datapath backend: bridges and ports inside vswitchd, over its control socket.

It reads the daemon's configuration as ``BridgeState``/``PortState`` and sends a whole
plan as ONE ``transact`` call: the daemon applies it all or nothing, so ``apply``
never leaves a half-applied plan behind. The daemon accepts exactly the dicts of
``Change.to_dict``, so one plan drives both datapaths.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from .model import BridgeState, Change, FdbEntry, Features, HostState, Link, PortState
from .paths import socket_configured, socket_path
from .rpc import Client, DaemonUnavailable
from .settings import BOND_MODES, BRIDGE, PORT, Setting

FEATURES = Features(vlan_filtering=True, port_promiscuous=True, port_security=True, create_ports=True,
                    external_ids=True, bond_modes=BOND_MODES)


class UserspaceBackend:
    datapath = "userspace"
    features = FEATURES

    def __init__(self, client: Optional[Client] = None, *, include_links: bool = False) -> None:
        """``include_links``: also report the daemon's network devices (for hosts without the kernel backend)."""
        self.client = client or Client()
        self.include_links = include_links

    def read(self) -> HostState:
        state = self.client.call("get_state")
        bridges = {
            name: BridgeState(name=name, datapath="userspace", **{**_settings(BRIDGE, b), "mac": b.get("mac") or ""},
                              uplink=b.get("uplink"), ports=tuple(sorted(b.get("ports", ()))),
                              parent=b.get("parent"), tag=b.get("tag"))
            for name, b in state.get("bridges", {}).items()
        }
        ports = {
            name: PortState(name=name, bridge=p["bridge"], **_settings(PORT, p), uplink=bool(p.get("uplink")),
                            bond=p.get("bond"))
            for name, p in state.get("ports", {}).items()
        }
        links: dict[str, Link] = {}
        if self.include_links:
            links = {name: Link(name=name) for name in state.get("links", [])}
        return HostState(bridges=bridges, ports=ports, links=links, datapaths=(self.datapath,))

    def apply(self, changes: Sequence[Change]) -> None:
        if changes:
            self.client.call("transact", {"changes": [_jsonable(c.to_dict()) for c in changes]})

    def fdb(self, bridge: Optional[str] = None) -> list[FdbEntry]:
        rows = self.client.call("fdb_show", {"bridge": bridge} if bridge else {})
        return [FdbEntry(bridge=r["bridge"], port=r["port"], mac=r["mac"], vlan=r.get("vlan"), age=r.get("age"),
                         static=bool(r.get("static")), local=bool(r.get("local")))
                for r in rows]

    def bonds(self) -> list[dict[str, Any]]:
        """Each bond as running: mode, members with link and LACP state, active member, counters."""
        shown = self.client.call("bond_show")
        lacp = {row["bond"]: row for row in self.client.call("lacp_show")}
        for row in shown:
            members = {m["name"]: m for m in lacp.get(row["bond"], {}).get("members", ())}
            for member in row.get("members", ()):
                found = members.get(member["name"])
                if found is not None:
                    member["lacp_actor"], member["lacp_partner"] = found["actor"], found["partner"]
        return shown

    def stats(self, bridge: Optional[str] = None) -> list[dict[str, Any]]:
        """Per-port counters (rx/tx packets and bytes, drops by reason)."""
        return self.client.call("port_stats", {"bridge": bridge} if bridge else {})


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    args = {k: list(val) if isinstance(val, tuple) else val for k, val in data["args"].items()}
    return {**data, "args": args}


def open_userspace(path: Optional[str] = None, **kwargs: Any) -> Optional[UserspaceBackend]:
    """The backend if vswitchd's control socket exists on this host, else None (datapath unavailable).

    A socket named for this run (``path``, or ``VSWITCHD_SOCKET``) that does not exist is an error, not
    "no vswitchd here": reading the kernel alone would then report a host without its userspace bridges
    and plan against that incomplete state. A socket that exists but does not answer fails on the
    first read, with the path.
    """
    configured = path is not None or socket_configured()
    path = path or socket_path()
    if not os.path.exists(path):
        if configured:
            raise DaemonUnavailable("vswitchd_socket", path, "is configured for this host (VSWITCHD_SOCKET) but "
                                    "does not exist: vswitchd is not running there, or the path is wrong")
        return None
    return UserspaceBackend(Client(path), **kwargs)


def _settings(table: Mapping[str, Setting], record: Mapping[str, Any]) -> dict[str, Any]:
    """The table's settings from vswitchd's record (it stores them validated; JSON has lists for tuples)."""
    values = {name: record.get(name, setting.default) for name, setting in table.items()}
    return {name: tuple(value) if isinstance(value, list) else value for name, value in values.items()}
