"""Each ``ovs-vsctl`` command, and running one command line as one transaction.

Every command reads the state as the commands before it on the line left it (``Context.state``
is the simulated result of the changes so far), so ``--if-exists del-port vif1.0 -- add-port
xenbr0 vif1.0`` works as with Open vSwitch. The changes come from the planner where a module
would make the same change (bridges, VLAN networks, attaching and detaching ports); column
writes become ``set_port`` changes validated by the settings table. Nothing is sent until every
command has succeeded, and then all of it goes to vswitchd as one transaction.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from ..bond_cli import bond_request
from ..errors import VswitchError
from ..model import BridgeSpec, Change, Features, HostState, PortSpec, VlanSpec
from ..plan import plan_bridge, plan_bridge_absent, plan_ports, plan_vlan, simulate, vlan_networks_of
from . import tables
from .syntax import Command, VsctlError, format_value, json_value, unquote

DATAPATH = "userspace"


class Context:
    def __init__(self, state: HostState, features: Features) -> None:
        self.state = state
        self.features = {DATAPATH: features}
        self.changes: list[Change] = []

    def apply(self, changes: Sequence[Change]) -> None:
        self.changes.extend(changes)
        self.state = simulate(self.state, changes)

    def plan(self, planner: Callable[[], list[Change]]) -> None:
        try:
            self.apply(planner())
        except VswitchError as err:
            raise VsctlError(err.message) from None

    def bridge(self, name: str) -> None:
        if name not in self.state.bridges:
            raise VsctlError(f"no bridge named {name}")


@dataclass(frozen=True)
class Spec:
    run: Callable[[Context, Command, dict[str, Any]], Optional[str]]
    min_args: int
    max_args: int
    options: tuple[str, ...] = ()
    changes: bool = False   # whether it can change anything (a read-only line sends nothing)


# -- bridges ----------------------------------------------------------------------------------------------
def add_br(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> None:
    name = cmd.args[0]
    parent, vlan = (cmd.args[1], cmd.args[2]) if len(cmd.args) == 3 else (None, None)
    if len(cmd.args) == 2:
        raise VsctlError("'add-br' command takes exactly 1 or 3 arguments")
    current = ctx.state.bridges.get(name)
    if current is not None:
        if cmd.has("may-exist"):
            if parent is None and current.parent is not None:
                raise VsctlError(f"\"--may-exist add-br {name}\" but {name} is a VLAN bridge for VLAN "
                                 f"{current.tag}")
            if parent is not None and (current.parent != parent or str(current.tag) != vlan):
                raise VsctlError(f"\"--may-exist add-br {name} {parent} {vlan}\" but {name} is "
                                 + ("a VLAN bridge for the wrong parent or VLAN" if current.parent
                                    else "not a VLAN bridge"))
            return
        raise VsctlError(f"cannot create a bridge named {name} because a bridge named {name} already exists")
    owner = ctx.state.bridge_of(name)
    if owner is not None:
        raise VsctlError(f"cannot create a bridge named {name} because a port named {name} already exists on "
                         f"bridge {owner}")
    if parent is None:
        ctx.plan(lambda: plan_bridge(BridgeSpec(name=name, datapath=DATAPATH), ctx.state))
        return
    ctx.bridge(parent)
    ctx.plan(lambda: plan_vlan(VlanSpec.from_params({"name": name, "parent": parent, "tag": vlan}), ctx.state,
                               ctx.features))


def del_br(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> None:
    name = cmd.args[0]
    if name not in ctx.state.bridges:
        if cmd.has("if-exists"):
            return
        raise VsctlError(f"no bridge named {name}")
    for child in vlan_networks_of(ctx.state, name):   # ovs-vsctl deletes a bridge's VLAN bridges with it
        ctx.plan(lambda child=child: plan_bridge_absent(child.name, ctx.state))
    ctx.plan(lambda: plan_bridge_absent(name, ctx.state))


def list_br(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> str:
    names = sorted(b.name for b in ctx.state.bridges.values()
                   if not (cmd.has("real") and b.parent) and not (cmd.has("fake") and not b.parent))
    return "\n".join(names) if names else None


def br_exists(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> None:
    if cmd.args[0] not in ctx.state.bridges:
        raise VsctlError("", code=2)


def br_to_vlan(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> str:
    ctx.bridge(cmd.args[0])
    return str(ctx.state.bridges[cmd.args[0]].tag or 0)


def br_to_parent(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> str:
    ctx.bridge(cmd.args[0])
    return ctx.state.bridges[cmd.args[0]].parent or cmd.args[0]


# -- ports ------------------------------------------------------------------------------------------------
def list_ports(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> str:
    ctx.bridge(cmd.args[0])
    return "\n".join(sorted(ctx.state.bridges[cmd.args[0]].ports)) or None


def add_port(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> None:
    bridge, name, settings = cmd.args[0], cmd.args[1], cmd.args[2:]
    ctx.bridge(bridge)
    owner = ctx.state.bridge_of(name)
    if owner is not None:
        if cmd.has("may-exist") and owner == bridge:
            return
        if cmd.has("may-exist"):
            raise VsctlError(f"\"--may-exist add-port {bridge} {name}\" but {name} is actually attached to bridge "
                             f"{owner}")
        raise VsctlError(f"cannot create a port named {name} because a port named {name} already exists on "
                         f"bridge {owner}")
    if name in ctx.state.bridges:
        raise VsctlError(f"cannot create a port named {name} because a bridge named {name} already exists")
    ctx.plan(lambda: plan_ports([PortSpec(name=name, bridge=bridge)], ctx.state, ctx.features))
    if settings:
        _write(ctx, "Port", name, [_assignment("Port", item) for item in settings])


def add_bond(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> None:
    """``add-bond BRIDGE BOND IFACE... [bond_mode=...] [lacp=...]``: the bond is the bridge's uplink here."""
    bridge, name, words = cmd.args[0], cmd.args[1], [unquote(word) for word in cmd.args[2:]]
    ctx.bridge(bridge)
    existing = ctx.state.ports.get(name)
    if existing is not None and cmd.has("may-exist") and existing.bridge == bridge and existing.bond is not None:
        return
    if existing is not None:
        raise VsctlError(f"cannot create a port named {name} because a port named {name} already exists on "
                         f"bridge {existing.bridge}")
    try:
        spec = bond_request(bridge, name, words, DATAPATH)
    except VswitchError as err:
        raise VsctlError(err.message) from None
    ctx.plan(lambda: plan_bridge(spec, ctx.state, ctx.features))


def del_port(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> None:
    bridge, name = (cmd.args[0], cmd.args[1]) if len(cmd.args) == 2 else (None, cmd.args[0])
    if bridge is not None:
        ctx.bridge(bridge)
    owner = ctx.state.bridge_of(name)
    if owner is None or (bridge is not None and owner != bridge):
        if cmd.has("if-exists"):
            return
        if owner is None:
            raise VsctlError(f"no port named {name}")
        raise VsctlError(f"bridge {bridge} does not have a port {name}")
    ctx.plan(lambda: plan_ports([PortSpec(name=name, bridge=owner)], ctx.state, ctx.features, present=False))


def port_to_br(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> str:
    owner = ctx.state.bridge_of(cmd.args[0])
    if owner is None:
        raise VsctlError(f"no port named {cmd.args[0]}")
    return owner


def iface_to_br(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> str:
    owner = ctx.state.bridge_of(cmd.args[0])
    if owner is None:
        raise VsctlError(f"no interface named {cmd.args[0]}")
    return owner


# -- the database commands ----------------------------------------------------------------------------------
def _row(ctx: Context, table_name: str, record: str, if_exists: bool = False) -> Optional[dict[str, Any]]:
    row = tables.read_row(table_name, record, ctx.state)
    if row is None and not if_exists:
        raise VsctlError(f"no row \"{record}\" in table {table_name}")
    return row


def _assignment(table_name: str, text: str) -> tuple[tables.Column, Optional[str], str]:
    """``column[:key]=value`` -> (column, key, value text)."""
    target, sep, value = text.partition("=")
    if not sep:
        raise VsctlError(f"{text}: argument does not end in \"=\" followed by a value")
    name, _colon, key = target.partition(":")
    col = tables.column(table_name, name)
    if key and col.kind != "map":
        raise VsctlError(f"cannot specify key to set for non-map column {col.name}")
    return col, (unquote(key) if key else None), value


def _write(ctx: Context, table_name: str, record: str, updates: Sequence[tuple[tables.Column, Optional[str], Any]],
           parsed: bool = False) -> None:
    """Give columns of one Port/Interface row new values: one set_port change for the whole row."""
    if table_name == "Bridge" or tables.is_bridge_port(ctx.state, record) is not None:
        names = ", ".join(col.name for col, _k, _v in updates)
        raise VsctlError(f"{table_name} {record}: column {names} cannot be changed here (vswitchd keeps a "
                         "bridge's own port as the bridge declares it)")
    _row(ctx, table_name, record)
    port = ctx.state.ports[record]
    row = {**tables.read_row("Port", record, ctx.state), **tables.read_row("Interface", record, ctx.state)}
    for col, key, value in updates:
        if not col.writable:
            raise VsctlError(f"{table_name} {record}: column {col.name} is read-only")
        new = value if parsed else (unquote(value) if key is not None else tables.parse_value(col, value))
        if key is not None:
            row[col.name] = {**row[col.name], key: new}
        else:
            row[col.name] = new
    differing = tables.port_settings(record, row, port)
    if differing:
        ctx.apply([Change("set_port", record, DATAPATH, {"bridge": port.bridge, **differing})])


def db_get(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> Optional[str]:
    table_name = tables.table(cmd.args[0])
    row = _row(ctx, table_name, cmd.args[1], cmd.has("if-exists"))
    if row is None:
        return None
    out = []
    for item in cmd.args[2:]:
        name, _colon, key = item.partition(":")
        col = tables.column(table_name, name)
        value = row[col.name]
        if key:
            if col.kind != "map":
                raise VsctlError(f"cannot specify key to get for non-map column {col.name}")
            key = unquote(key)
            if key not in value:
                if cmd.has("if-exists"):
                    out.append("")   # ovs-vsctl prints an empty line for a missing key
                    continue
                raise VsctlError(f"no key \"{key}\" in {table_name} record \"{cmd.args[1]}\" column {col.name}")
            out.append(format_value(value[key], "atom", _opts["bare"]))
        else:
            out.append(format_value(value, col.kind, _opts["bare"]))
    return "\n".join(out)


def db_set(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> None:
    table_name = tables.table(cmd.args[0])
    if cmd.has("if-exists") and tables.read_row(table_name, cmd.args[1], ctx.state) is None:
        return
    _write(ctx, table_name, cmd.args[1], [_assignment(table_name, item) for item in cmd.args[2:]])


def db_clear(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> None:
    table_name = tables.table(cmd.args[0])
    updates = []
    for name in cmd.args[2:]:
        col = tables.column(table_name, name)
        if col.kind == "atom" and col.atom == "string" and col.name == "type":
            raise VsctlError(f"\"clear\" operation cannot be applied to column {col.name} of table {table_name}, "
                             "which is not allowed to be empty")
        updates.append((col, None, {} if col.kind == "map" else (() if col.kind == "set" else None)))
    _write(ctx, table_name, cmd.args[1], updates, parsed=True)


def _edit(ctx: Context, cmd: Command, adding: bool) -> None:
    table_name = tables.table(cmd.args[0])
    record, col = cmd.args[1], tables.column(table_name, cmd.args[2])
    row = _row(ctx, table_name, record)
    if col.kind == "atom":
        raise VsctlError(f"\"{'add' if adding else 'remove'}\" operation cannot be applied to column {col.name} "
                         f"of table {table_name}, which is not a set or a map")
    value = row[col.name]
    for text in cmd.args[3:]:
        if col.kind == "set":
            items = set(tables.parse_value(col, text))
            value = tuple(sorted(set(value) | items)) if adding else tuple(x for x in value if x not in items)
            continue
        pairs = {}
        for item in tables.split_items(text) if text[:1] == "{" else [text]:
            key, sep, val = item.partition("=")
            pairs[unquote(key)] = unquote(val) if sep else None
        if adding:
            value = {**{k: v for k, v in pairs.items() if v is not None}, **value}   # add keeps existing keys
        else:
            value = {k: v for k, v in value.items() if not (k in pairs and pairs[k] in (None, v))}
    _write(ctx, table_name, record, [(col, None, value)], parsed=True)


def db_add(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> None:
    _edit(ctx, cmd, adding=True)


def db_remove(ctx: Context, cmd: Command, _opts: dict[str, Any]) -> None:
    _edit(ctx, cmd, adding=False)


def db_list(ctx: Context, cmd: Command, opts: dict[str, Any]) -> str:
    table_name = tables.table(cmd.args[0])
    records = cmd.args[1:] or tables.record_names(table_name, ctx.state)
    rows = [row for row in (_row(ctx, table_name, r, cmd.has("if-exists")) for r in records) if row is not None]
    wanted = cmd.options.get("columns")
    columns = [tables.column(table_name, c) for c in wanted.split(",")] if wanted else \
        list(tables.TABLES[table_name].values())
    return render(rows, columns, opts)


def render(rows: list[dict[str, Any]], columns: list[tables.Column], opts: dict[str, Any]) -> str:
    """Rows in ovs-vsctl's formats: list (default), table, json; --bare and --no-headings."""
    fmt, bare = opts["format"], opts["bare"]
    if fmt == "json":
        import json

        return json.dumps({"data": [[json_value(row[c.name], c.kind) for c in columns] for row in rows],
                           "headings": [c.name for c in columns]}, separators=(",", ":"))
    names = [c.name for c in columns]
    cells = [[format_value(row[c.name], c.kind, bare) for c in columns] for row in rows]
    if fmt == "table" and not bare:
        widths = [max([len(name), *(len(r[i]) for r in cells)]) for i, name in enumerate(names)]

        def line(texts: list[str]) -> str:
            return " ".join(text.ljust(widths[i]) for i, text in enumerate(texts)).rstrip()

        heading = [] if opts["no_headings"] else [line(names), " ".join("-" * w for w in widths)]
        return "\n".join(heading + [line(row) for row in cells])
    if bare:
        return ("\n\n" if len(columns) > 1 else "\n").join("\n".join(row) for row in cells)
    return "\n\n".join("\n".join(f"{names[i]:<20}: {cell}" for i, cell in enumerate(row)) for row in cells)


def show(ctx: Context, _cmd: Command, _opts: dict[str, Any]) -> str:
    lines = []
    for bridge in sorted(ctx.state.bridges.values(), key=lambda b: b.name):
        lines.append(f"    Bridge {bridge.name}")
        lines.append("        datapath_type: userspace")
        for name in sorted([bridge.name, *bridge.ports]):
            row = {**tables.read_row("Port", name, ctx.state), **tables.read_row("Interface", name, ctx.state)}
            lines.append(f"        Port {name}")
            if bridge.parent and name == bridge.name:
                lines.append(f"            tag: {bridge.tag}")
            for key in ("tag", "trunks", "vlan_mode"):
                if row[key] not in (None, ()):
                    lines.append(f"            {key}: {format_value(row[key], tables.TABLES['Port'][key].kind)}")
            lines.append(f"            Interface {name}")
            if row["type"]:
                lines.append(f"                type: {row['type']}")
            if row["external_ids"]:
                lines.append(f"                external_ids: {format_value(row['external_ids'], 'map')}")
    return "\n".join(lines)


def init(_ctx: Context, _cmd: Command, _opts: dict[str, Any]) -> None:
    return None


COMMANDS: dict[str, Spec] = {
    "init": Spec(init, 0, 0),
    "show": Spec(show, 0, 0),
    "add-br": Spec(add_br, 1, 3, ("may-exist",), changes=True),
    "del-br": Spec(del_br, 1, 1, ("if-exists",), changes=True),
    "list-br": Spec(list_br, 0, 0, ("real", "fake")),
    "br-exists": Spec(br_exists, 1, 1),
    "br-to-vlan": Spec(br_to_vlan, 1, 1),
    "br-to-parent": Spec(br_to_parent, 1, 1),
    "list-ports": Spec(list_ports, 1, 1),
    "list-ifaces": Spec(list_ports, 1, 1),
    "add-port": Spec(add_port, 2, 1 << 16, ("may-exist",), changes=True),
    "add-bond": Spec(add_bond, 4, 1 << 16, ("may-exist", "fake-iface"), changes=True),
    "del-port": Spec(del_port, 1, 2, ("if-exists", "with-iface"), changes=True),
    "port-to-br": Spec(port_to_br, 1, 1),
    "iface-to-br": Spec(iface_to_br, 1, 1),
    "get": Spec(db_get, 3, 1 << 16, ("if-exists", "id")),
    "set": Spec(db_set, 3, 1 << 16, ("if-exists",), changes=True),
    "add": Spec(db_add, 4, 1 << 16, (), changes=True),
    "remove": Spec(db_remove, 4, 1 << 16, (), changes=True),
    "clear": Spec(db_clear, 3, 1 << 16, (), changes=True),
    "list": Spec(db_list, 1, 1 << 16, ("columns", "if-exists")),
}


def check(cmd: Command) -> Spec:
    """The command's definition, with its argument count and options checked (before anything runs)."""
    spec = COMMANDS.get(cmd.name)
    if spec is None:
        raise VsctlError(f"unknown command '{cmd.name}'; use --help for help")
    for option in cmd.options:
        if option not in spec.options:
            raise VsctlError(f"'{cmd.name}' command has no '--{option}' option")
    if not spec.min_args <= len(cmd.args) <= spec.max_args:
        if spec.min_args == spec.max_args:
            raise VsctlError(f"'{cmd.name}' command requires exactly {spec.min_args} arguments")
        raise VsctlError(f"'{cmd.name}' command requires at least {spec.min_args} arguments")
    return spec
