"""vswitchctl: operate vswitchd like ovs-vsctl/ovs-appctl (``python3 -m vswitch.cli``).

Exit status: 0 on success, 1 on an error (the message goes to stderr as
``vswitchctl: ...``), 2 for ``br-exists`` on a missing bridge, as ovs-vsctl does.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

from .bond_cli import bond_request, format_bonds, format_lacp
from .clirun import CliError, run_reporting
from .errors import VswitchError
from .rpc import Client
from .vlans import format_vlans, parse_vlans
from .vsctl.syntax import format_value

PROG = "vswitchctl"


def _state(client: Client) -> dict[str, Any]:
    return client.call("get_state")


def _require_bridge(state: dict[str, Any], name: str) -> dict[str, Any]:
    bridge = state["bridges"].get(name)
    if bridge is None:
        raise CliError(f"no bridge named {name}")
    return bridge


def _change(op: str, target: str, **args: Any) -> dict[str, Any]:
    return {"op": op, "target": target, "datapath": "userspace",
            "args": {k: val for k, val in args.items() if val is not None}}


# -- verbs ------------------------------------------------------------------------------------------------
def cmd_show(client: Client, args: argparse.Namespace) -> str:
    state = _state(client)
    if args.json:
        return json.dumps(state, indent=1, sort_keys=True)
    stats = {(r["bridge"], r["port"]): r for r in client.call("port_stats")} if args.stats else {}
    lines = []
    for name, bridge in state["bridges"].items():
        vlan = f' (VLAN {bridge["tag"]} on {bridge["parent"]})' if bridge.get("parent") else ""
        lines.append(f'Bridge {name}{vlan}')
        lines.append(f'    datapath: userspace, mac: {bridge["mac"]}, mtu: {bridge["mtu"]}, '
                     f'ageing: {bridge["ageing_time"]}s' + ("" if bridge["status"] == "ok"
                                                            else f', status: {bridge["status"]}'))
        for port_name in [name, *bridge["ports"]]:
            port = state["ports"].get(port_name, {"type": "internal", "status": bridge["status"]})
            lines.append(f"    Port {port_name}")
            lines.append(f'        type: {port["type"]}')
            path = state.get("forwarding", {}).get(port_name)
            if path:
                lines.append(f'        forwarding: {path["path"]} ({path["why"]})')
            for key, label in (("vlan", "tag"), ("native_vlan", "native_vlan"), ("mac", "mac")):
                if port.get(key) is not None:
                    lines.append(f"        {label}: {port[key]}")
            if port.get("trunks"):
                lines.append(f'        trunks: {format_vlans(port["trunks"])}')
            if port.get("external_ids"):
                lines.append(f'        external_ids: {format_value(port["external_ids"], "map")}')
            for flag in ("promiscuous", "uplink"):
                if port.get(flag):
                    lines.append(f"        {flag}: true")
            if port.get("status", "ok") != "ok":
                lines.append(f'        status: {port["status"]}')
            row = stats.get((name, port_name))
            if row:
                lines.append(f'        rx: {row["rx_packets"]} packets {row["rx_bytes"]} bytes, dropped '
                             f'{row["rx_dropped"]}; tx: {row["tx_packets"]} packets {row["tx_bytes"]} bytes, '
                             f'errors {row["tx_errors"]}')
    return "\n".join(lines)


def cmd_list_br(client: Client, args: argparse.Namespace) -> str:
    return "\n".join(_state(client)["bridges"])


def cmd_br_exists(client: Client, args: argparse.Namespace) -> str:
    if args.bridge not in _state(client)["bridges"]:
        raise CliError("", code=2)
    return ""


def cmd_list_ports(client: Client, args: argparse.Namespace) -> str:
    return "\n".join(_require_bridge(_state(client), args.bridge)["ports"])


def cmd_port_to_br(client: Client, args: argparse.Namespace) -> str:
    port = _state(client)["ports"].get(args.port)
    if port is None:
        raise CliError(f"no port named {args.port}")
    return port["bridge"]


def cmd_br_to_vlan(client: Client, args: argparse.Namespace) -> str:
    bridge = _require_bridge(_state(client), args.bridge)
    return str(bridge.get("tag") or 0)   # 0: a real bridge, as ovs-vsctl answers


def cmd_br_to_parent(client: Client, args: argparse.Namespace) -> str:
    bridge = _require_bridge(_state(client), args.bridge)
    return bridge.get("parent") or args.bridge


def cmd_add_br(client: Client, args: argparse.Namespace) -> str:
    state = _state(client)
    if args.bridge in state["bridges"]:
        if args.may_exist:
            return ""
        raise CliError(f"cannot create a bridge named {args.bridge} because a bridge named {args.bridge} "
                       "already exists")
    if args.bridge in state["ports"]:
        raise CliError(f"cannot create a bridge named {args.bridge} because a port named {args.bridge} already "
                       f"exists on bridge {state['ports'][args.bridge]['bridge']}")
    if (args.parent is None) != (args.vlan is None):
        raise CliError("add-br: a VLAN bridge needs both PARENT and VLAN (add-br BRIDGE PARENT VLAN)")
    settings = {"ageing_time": args.ageing, "mtu": args.mtu, "mac": args.mac}
    if args.parent is not None:
        settings = {"parent": args.parent, "tag": args.vlan}
    client.call("transact", {"changes": [_change("add_bridge", args.bridge, **settings)]})
    return ""


def cmd_del_br(client: Client, args: argparse.Namespace) -> str:
    state = _state(client)
    if args.bridge not in state["bridges"]:
        if args.if_exists:
            return ""
        raise CliError(f"no bridge named {args.bridge}")
    client.call("transact", {"changes": [_change("del_bridge", args.bridge,
                                                 ports=state["bridges"][args.bridge]["ports"])]})
    return ""


def _port_args(args: argparse.Namespace) -> dict[str, Any]:
    trunks = list(parse_vlans("trunks", args.trunks)) if args.trunks else None
    return {"type": args.type, "vlan": args.tag, "trunks": trunks, "native_vlan": args.native_vlan,
            "mac": args.mac, "promiscuous": True if args.promiscuous else None,
            "uplink": True if args.uplink else None}


def cmd_add_port(client: Client, args: argparse.Namespace) -> str:
    state = _state(client)
    _require_bridge(state, args.bridge)
    existing = state["ports"].get(args.port)
    if existing is not None:
        if args.may_exist and existing["bridge"] == args.bridge:
            return ""
        raise CliError(f"cannot create a port named {args.port} because a port named {args.port} already "
                       f"exists on bridge {existing['bridge']}")
    if args.port in state["bridges"]:
        raise CliError(f"cannot create a port named {args.port} because a bridge named {args.port} already exists")
    client.call("transact", {"changes": [_change("add_port", args.port, bridge=args.bridge, **_port_args(args))]})
    return ""


def cmd_add_ports(client: Client, args: argparse.Namespace) -> str:
    """Many ports in one transaction (``add-ports BR PORT...``): all join or none does."""
    state = _state(client)
    _require_bridge(state, args.bridge)
    changes = []
    for port in args.ports:
        existing = state["ports"].get(port)
        if existing is not None:
            if args.may_exist and existing["bridge"] == args.bridge:
                continue
            raise CliError(f"cannot create a port named {port} because a port named {port} already exists on "
                           f"bridge {existing['bridge']}")
        changes.append(_change("add_port", port, bridge=args.bridge, **_port_args(args)))
    if changes:
        client.call("transact", {"changes": changes})
    return ""


def cmd_del_port(client: Client, args: argparse.Namespace) -> str:
    bridge, port = (args.names[0], args.names[1]) if len(args.names) == 2 else (None, args.names[0])
    state = _state(client)
    if bridge is not None:
        _require_bridge(state, bridge)
    existing = state["ports"].get(port)
    if existing is None or (bridge is not None and existing["bridge"] != bridge):
        if args.if_exists:
            return ""
        if existing is None:
            raise CliError(f"no port named {port}")
        raise CliError(f"bridge {bridge} does not have a port {port} (it is a port of {existing['bridge']})")
    client.call("transact", {"changes": [_change("del_port", port, bridge=existing["bridge"])]})
    return ""


def cmd_set_port(client: Client, args: argparse.Namespace) -> str:
    state = _state(client)
    existing = state["ports"].get(args.port)
    if existing is None:
        raise CliError(f"no port named {args.port}")
    settings: dict[str, Any] = {}
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"{item!r}: expected KEY=VALUE (tag, trunks, native_vlan, mac, promiscuous)")
        key = {"tag": "vlan"}.get(key, key)
        if value in ("", "[]", "none"):
            settings[key] = None
        elif key in ("vlan", "native_vlan"):
            settings[key] = int(value) if value.isdigit() else value
        elif key == "trunks":
            settings[key] = list(parse_vlans("trunks", value))
        elif key == "promiscuous":
            settings[key] = value.lower() in ("true", "yes", "1", "on")
        else:
            settings[key] = value
    client.call("transact", {"changes": [{"op": "set_port", "target": args.port, "datapath": "userspace",
                                          "args": {"bridge": existing["bridge"], **settings}}]})
    return ""


def cmd_fdb_show(client: Client, args: argparse.Namespace) -> str:
    rows = client.call("fdb_show", {"bridge": args.bridge})
    if args.json:
        return json.dumps(rows, indent=1)
    width = max([4, *(len(row["port"]) for row in rows)])
    lines = [f'{"port":>{width + 1}}  VLAN  MAC                Age']
    for row in rows:
        age = "static" if row["static"] else str(row["age"])
        lines.append(f' {row["port"]:>{width}}  {row["vlan"]:>4}  {row["mac"]}  {age:>3}')
    return "\n".join(lines)


def cmd_fdb_flush(client: Client, args: argparse.Namespace) -> str:
    client.call("fdb_flush", {"bridge": args.bridge} if args.bridge else {})
    return "table successfully flushed"


COUNTERS = ("rx_packets", "rx_bytes", "rx_dropped", "tx_packets", "tx_bytes", "tx_errors")


def cmd_port_stats(client: Client, args: argparse.Namespace) -> str:
    rows = client.call("port_stats", {"bridge": args.bridge} if args.bridge else {})
    if args.port:
        rows = [r for r in rows if r["port"] == args.port]
        if not rows:
            raise CliError(f"no port named {args.port}")
    if args.json:
        return json.dumps(rows, indent=1)
    lines = []
    for row in rows:
        drops = ", ".join(f"{k[5:]}={v}" for k, v in row.items() if k.startswith("drop_") and v)
        lines.append(f'{row["bridge"]} {row["port"]}: rx {row["rx_packets"]} pkts {row["rx_bytes"]} bytes, '
                     f'dropped {row["rx_dropped"]}{f" ({drops})" if drops else ""}; tx {row["tx_packets"]} pkts '
                     f'{row["tx_bytes"]} bytes, errors {row["tx_errors"]}')
    return "\n".join(lines)


def cmd_vlog_list(client: Client, args: argparse.Namespace) -> str:
    levels = client.call("vlog_list")
    width = max(len(name) for name in levels)
    return "\n".join(f"{name:<{width}}  {level}" for name, level in levels.items())


def cmd_vlog_set(client: Client, args: argparse.Namespace) -> str:
    for spec in args.specs:
        client.call("vlog_set", {"spec": spec})
    return ""


def cmd_apply(client: Client, args: argparse.Namespace) -> str:
    text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
    try:
        data = json.loads(text)
    except ValueError as err:
        raise CliError(f"{args.file}: not JSON: {err}") from None
    changes = data.get("changes") if isinstance(data, dict) else data
    result = client.call("transact", {"changes": changes})
    return json.dumps(result)


def cmd_add_bond(client: Client, args: argparse.Namespace) -> str:
    """``add-bond BRIDGE BOND IFACE... [bond_mode=...] [lacp=...]``: the bond becomes the bridge's uplink."""
    from .bond_plan import plan_bond_uplink
    from .userspace import FEATURES, UserspaceBackend

    state = UserspaceBackend(client, include_links=True).read()
    _require_bridge(_state(client), args.bridge)
    existing = state.ports.get(args.bond)
    if existing is not None and args.may_exist and existing.bridge == args.bridge and existing.bond is not None:
        return ""
    spec = bond_request(args.bridge, args.bond, args.words)
    try:
        changes = plan_bond_uplink(spec, state.bridges.get(args.bridge), state, {"userspace": FEATURES})
    except VswitchError as err:
        raise CliError(err.message) from None
    client.call("transact", {"changes": [c.to_dict() for c in changes]})
    return ""


def cmd_bond_show(client: Client, args: argparse.Namespace) -> str:
    rows = client.call("bond_show", {"bond": args.bond} if args.bond else {})
    return json.dumps(rows, indent=1) if args.json else format_bonds(rows)


def cmd_lacp_show(client: Client, args: argparse.Namespace) -> str:
    rows = client.call("lacp_show", {"bond": args.bond} if args.bond else {})
    return json.dumps(rows, indent=1) if args.json else format_lacp(rows)


def cmd_ping(client: Client, args: argparse.Namespace) -> str:
    return json.dumps(client.call("ping"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Control vswitchd, the openvif userspace switch.")
    parser.add_argument("--socket", help="control socket (default: $VSWITCHD_SOCKET or /run/openvif/vswitchd.sock)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the daemon")
    parser.add_argument("--may-exist", action="store_true", help="add-br/add-port: no error if it already exists")
    parser.add_argument("--if-exists", action="store_true", help="del-br/del-port: no error if it does not exist")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def verb(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=func)
        return p

    p = verb("show", cmd_show, "bridges, ports and their settings")
    p.add_argument("--stats", action="store_true", help="with per-port counters")
    p.add_argument("--json", action="store_true")
    verb("list-br", cmd_list_br, "bridge names")
    verb("br-exists", cmd_br_exists, "exit 0 if BRIDGE exists, 2 if not").add_argument("bridge")
    verb("list-ports", cmd_list_ports, "ports of BRIDGE").add_argument("bridge")
    verb("port-to-br", cmd_port_to_br, "the bridge PORT belongs to").add_argument("port")
    verb("br-to-vlan", cmd_br_to_vlan, "VLAN of BRIDGE (0: not a VLAN bridge)").add_argument("bridge")
    verb("br-to-parent", cmd_br_to_parent, "parent of BRIDGE (itself)").add_argument("bridge")
    p = verb("add-br", cmd_add_br, "create BRIDGE, or BRIDGE as VLAN network VLAN on PARENT")
    p.add_argument("bridge")
    p.add_argument("parent", nargs="?")
    p.add_argument("vlan", nargs="?", type=int)
    p.add_argument("--may-exist", action="store_true", default=argparse.SUPPRESS)
    p.add_argument("--ageing", type=int)
    p.add_argument("--mtu", type=int)
    p.add_argument("--mac")
    p = verb("del-br", cmd_del_br, "delete BRIDGE and its ports")
    p.add_argument("bridge")
    p.add_argument("--if-exists", action="store_true", default=argparse.SUPPRESS)
    for name, func in (("add-port", cmd_add_port), ("add-ports", cmd_add_ports)):
        p = verb(name, func, "add PORT to BRIDGE" if name == "add-port" else "add PORTs to BRIDGE in one transaction")
        p.add_argument("bridge")
        if name == "add-port":
            p.add_argument("port")
        else:
            p.add_argument("ports", nargs="+")
        p.add_argument("--may-exist", action="store_true", default=argparse.SUPPRESS)
        p.add_argument("--type", choices=("system", "tap", "internal"))
        p.add_argument("--tag", type=int, help="access VLAN")
        p.add_argument("--trunks", help="trunk VLANs, e.g. 10-20,30")
        p.add_argument("--native-vlan", type=int)
        p.add_argument("--mac", help="port security: the only source MAC the port may use")
        p.add_argument("--promiscuous", action="store_true")
        p.add_argument("--uplink", action="store_true")
    p = verb("del-port", cmd_del_port, "delete PORT (of BRIDGE)")
    p.add_argument("names", nargs="+", metavar="[BRIDGE] PORT")
    p.add_argument("--if-exists", action="store_true", default=argparse.SUPPRESS)
    p = verb("set-port", cmd_set_port, "change PORT: tag=N trunks=10-20 native_vlan=N mac=M promiscuous=true")
    p.add_argument("port")
    p.add_argument("settings", nargs="+", metavar="KEY=VALUE")
    p = verb("fdb-show", cmd_fdb_show, "MAC table of BRIDGE: port, VLAN, MAC, age")
    p.add_argument("bridge")
    p.add_argument("--json", action="store_true")
    verb("fdb-flush", cmd_fdb_flush, "forget learned MACs (of BRIDGE)").add_argument("bridge", nargs="?")
    p = verb("port-stats", cmd_port_stats, "per-port counters (of BRIDGE / PORT)")
    p.add_argument("bridge", nargs="?")
    p.add_argument("port", nargs="?")
    p.add_argument("--json", action="store_true")
    verb("vlog-list", cmd_vlog_list, "log level of each module")
    verb("vlog-set", cmd_vlog_set, "set log levels: LEVEL or MODULE:LEVEL").add_argument("specs", nargs="+")
    verb("apply", cmd_apply, "apply a JSON transaction of changes from FILE (- for stdin)").add_argument("file")
    verb("ping", cmd_ping, "check that the daemon answers")
    p = verb("add-bond", cmd_add_bond, "add bond BOND of IFACEs as BRIDGE's uplink: bond_mode=active-backup|"
             "balance-slb|balance-tcp lacp=active|passive|off ...")
    p.add_argument("bridge")
    p.add_argument("bond")
    p.add_argument("words", nargs="+", metavar="IFACE... [KEY=VALUE]")
    p.add_argument("--may-exist", action="store_true", default=argparse.SUPPRESS)
    for name, func, text in (("bond-show", cmd_bond_show, "bonds: members, active member, counters"),
                             ("lacp-show", cmd_lacp_show, "LACP actor and partner of each bond member")):
        p = verb(name, func, text)
        p.add_argument("bond", nargs="?")
        p.add_argument("--json", action="store_true")
    sub.add_parser("vsctl", help="run an ovs-vsctl command line (vswitchctl vsctl -- add-port BR PORT tag=5 ...)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["vsctl"]:   # ovs-vsctl's own command language, also where ovs-vsctl is not installed
        from .vsctl.__main__ import main as vsctl_main

        return vsctl_main(args_in[1:])
    parser = build_parser()
    args = parser.parse_args(args_in)
    if args.command == "del-port" and len(args.names) > 2:
        parser.error("del-port takes [BRIDGE] PORT")

    def action() -> str:
        with Client(args.socket, timeout=args.timeout) as client:
            out = args.func(client, args)
        return f"{out}\n" if out else ""
    return run_reporting(PROG, action)


if __name__ == "__main__":
    # SystemExit rather than sys.exit: this file is module_utils, where sanity forbids sys.exit.
    raise SystemExit(main())
