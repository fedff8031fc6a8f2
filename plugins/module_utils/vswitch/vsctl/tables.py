"""The OVSDB tables callers read and write (Bridge, Port, Interface), as views of the model.

vswitchd has one interface per port, so a Port row and its Interface row are two views of one
``PortState``; a bridge's own internal port shows as a read-only row of both, as in Open vSwitch.
Only the columns vswitchd has are here; any other is an error that names it, never ignored.

The VLAN columns map onto the model's port modes:
    tag=N                                  -> access port, vlan N
    trunks=[...]                           -> trunk
    vlan_mode=native-untagged tag=N trunks -> trunk with native VLAN N
``native-tagged`` (the native VLAN sent tagged) is something vswitchd does not do, so it is refused.
A port with neither tag nor trunks is a plain port in the default VLAN (Open vSwitch would make it
a trunk of every VLAN).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..errors import VswitchError
from ..model import BridgeState, HostState, PortState
from ..settings import PORT
from .syntax import VsctlError, split_items, unquote

VLAN_MODES = ("access", "native-tagged", "native-untagged", "trunk")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str             # "atom" (an optional single value), "set" or "map"
    atom: str = "string"  # "integer" or "string"
    writable: bool = True


TABLES: dict[str, dict[str, Column]] = {
    "Bridge": {"name": Column("name", "atom", writable=False)},
    "Port": {"name": Column("name", "atom", writable=False), "tag": Column("tag", "atom", "integer"),
             "trunks": Column("trunks", "set", "integer"), "vlan_mode": Column("vlan_mode", "atom")},
    "Interface": {"name": Column("name", "atom", writable=False), "type": Column("type", "atom"),
                  "external_ids": Column("external_ids", "map")},
}


def table(name: str) -> str:
    """The table ``name`` names: case-insensitive, a unique prefix will do (as ovs-vsctl takes it)."""
    matches = [t for t in TABLES if t.lower().startswith(name.lower())]
    exact = [t for t in matches if t.lower() == name.lower()]
    if exact or len(matches) == 1:
        return (exact or matches)[0]
    if not matches:
        raise VsctlError(f"unknown table \"{name}\" (vswitchd has {', '.join(TABLES)})")
    raise VsctlError(f"multiple table names match \"{name}\"")


def column(table_name: str, name: str) -> Column:
    """``external-ids`` is ``external_ids``; a unique prefix (``trunk``) names its column."""
    wanted = name.replace("-", "_")
    columns = TABLES[table_name]
    if wanted in columns:
        return columns[wanted]
    matches = [c for c in columns if c.startswith(wanted)]
    if len(matches) == 1:
        return columns[matches[0]]
    if matches:
        raise VsctlError(f"{table_name} contains more than one column whose name matches \"{name}\"")
    raise VsctlError(f"{table_name} does not contain a column whose name matches \"{name}\"")


def record_names(table_name: str, state: HostState) -> list[str]:
    if table_name == "Bridge":
        return sorted(state.bridges)
    return sorted({*state.ports, *state.bridges})


def read_row(table_name: str, record: str, state: HostState) -> Optional[dict[str, Any]]:
    """Every column of one row, or None when there is no such row."""
    if table_name == "Bridge":
        return {"name": record} if record in state.bridges else None
    port = state.ports.get(record)
    if port is None:
        if record not in state.bridges:
            return None
        port = PortState(name=record, bridge=record, type="internal")   # the bridge's own port
    if table_name == "Port":
        native = port.native_vlan is not None
        return {"name": record, "tag": port.native_vlan if native else port.vlan,
                "trunks": tuple(port.trunks or ()), "vlan_mode": "native-untagged" if native else None}
    return {"name": record, "type": "" if port.type == "system" else port.type,
            "external_ids": dict(port.external_ids or {})}


def parse_value(col: Column, text: str) -> Any:
    """A whole column value as written on the command line (``5``, ``[]``, ``10,20``, ``{a=b}``)."""
    if col.kind == "map":
        pairs = {}
        for item in split_items(text):
            key, sep, value = item.partition("=")
            if not sep:
                raise VsctlError(f"{text}: syntax error at \"{item}\" (a map is {{key=value, ...}})")
            pairs[unquote(key)] = unquote(value)
        return pairs
    items = [unquote(item) for item in split_items(text)]
    if col.kind == "set":
        return tuple(_atom(col, item) for item in items)
    if len(items) > 1:
        raise VsctlError(f"\"{text}\": column {col.name} takes at most one value")
    return _atom(col, items[0]) if items else None


def _atom(col: Column, text: str) -> Any:
    if col.atom == "integer":
        try:
            return int(text)
        except ValueError:
            raise VsctlError(f"\"{text}\" is not a valid integer") from None
    return text


def port_settings(record: str, row: dict[str, Any], current: PortState) -> dict[str, Any]:
    """The model's port settings that a Port/Interface row stands for, validated by the settings table."""
    tag, trunks, mode = row["tag"], tuple(row["trunks"]), row["vlan_mode"]
    if mode is not None and mode not in VLAN_MODES:
        raise VsctlError(f"constraint violation: {mode} is not one of the allowed values ({', '.join(VLAN_MODES)})")
    if mode == "native-tagged":
        raise VsctlError(f"Port {record}: vlan_mode native-tagged is not supported by vswitchd (it sends a trunk's "
                         "native VLAN untagged); use vlan_mode=native-untagged")
    if mode == "native-untagged":
        if tag is None or not trunks:
            raise VsctlError(f"Port {record}: vlan_mode native-untagged needs tag (the native VLAN) and trunks")
        wanted = {"vlan": None, "trunks": trunks, "native_vlan": tag}
    elif mode == "trunk" or (mode is None and trunks and tag is None):
        wanted = {"vlan": None, "trunks": trunks or None, "native_vlan": None}
    elif trunks and mode is None:
        raise VsctlError(f"Port {record}: tag and trunks together need vlan_mode=native-untagged (a port is an "
                         "access port or a trunk)")
    elif trunks:
        raise VsctlError(f"Port {record}: an access port (vlan_mode=access) has no trunks")
    else:
        wanted = {"vlan": tag, "trunks": None, "native_vlan": None}
    wanted["type"] = row["type"] or "system"
    wanted["external_ids"] = row["external_ids"] or None
    try:
        for name in ("vlan", "native_vlan"):
            wanted[name] = PORT[name].check("tag", wanted[name])
        wanted["trunks"] = PORT["trunks"].check("trunks", wanted["trunks"])
        wanted["type"] = PORT["type"].check("type", wanted["type"])
        wanted["external_ids"] = PORT["external_ids"].check("external_ids", wanted["external_ids"])
    except VswitchError as err:
        raise VsctlError(f"Port {record}: {err.message}") from None
    return {key: value for key, value in wanted.items() if getattr(current, key) != value}


def is_bridge_port(state: HostState, record: str) -> Optional[BridgeState]:
    """The bridge whose own internal port ``record`` is (read-only here), if any."""
    return state.bridges.get(record) if record not in state.ports else None
