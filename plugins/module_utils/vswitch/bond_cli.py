"""``add-bond``, ``bond-show`` and ``lacp-show``: shared by vswitchctl and the ovs-vsctl front end.

``add-bond BRIDGE BOND IFACE... [KEY=VALUE...]`` takes Open vSwitch's words (``bond_mode=``,
``lacp=``, ``bond_updelay=``, ``bond_downdelay=``, ``other_config:lacp-time=fast``,
``other_config:lacp-fallback-ab=``, ``other_config:bond-miimon-interval=``,
``other_config:bond-rebalance-interval=``, ``other_config:bond-primary=``) as well as the
settings table's own names (``mode=``, ``lacp_rate=``, ``primary=``, ...). It becomes the
declaration a module would make (a bond as the bridge's uplink) and goes through the same
planner, so every check (members in use, MTUs, primary) is the module's.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import ValidationError
from .model import BridgeSpec
from .settings import BOND

OVS_WORDS = {
    "bond_mode": "mode", "lacp": "lacp", "bond_updelay": "updelay", "bond_downdelay": "downdelay",
    "other_config:lacp-time": "lacp_rate", "other_config:lacp-fallback-ab": "lacp_fallback",
    "other_config:bond-miimon-interval": "miimon", "other_config:bond-rebalance-interval": "rebalance_interval",
    "other_config:bond-primary": "primary",
}
_BOOLS = {"true": True, "false": False}


def bond_request(bridge: str, bond: str, words: Sequence[str], datapath: str = "userspace") -> BridgeSpec:
    """The declaration ``add-bond BRIDGE BOND IFACE... [KEY=VALUE...]`` makes."""
    members = [w for w in words if "=" not in w]
    params: dict[str, Any] = {"bond": bond, "members": members}
    for word in words:
        if "=" not in word:
            continue
        key, _eq, value = word.partition("=")
        name = OVS_WORDS.get(key, key)
        if name not in BOND or name == "members":
            raise ValidationError(key, value, f"is not a bond setting (known: {', '.join(OVS_WORDS)}, "
                                              f"{', '.join(n for n in BOND if n != 'members')})")
        params[name] = _typed(name, value.strip('"'))
    return BridgeSpec.from_params({"name": bridge, "datapath": datapath, "uplink": params})


def _typed(name: str, text: str) -> Any:
    kind = BOND[name].ansible_type
    if kind == "bool":
        return _BOOLS.get(text.lower(), text)
    return text   # ints and choices: the table's validators take text


def format_bonds(rows: Sequence[dict[str, Any]]) -> str:
    """``bond-show`` in the spirit of ``ovs-appctl bond/show``."""
    out = []
    for row in rows:
        out.append(f"---- {row['bond']} ----")
        out.append(f"bridge: {row['bridge']}")
        out.append(f"bond_mode: {row.get('mode')}")
        out.append(f"lacp_status: {row.get('lacp_status')}")
        out.append(f"active member: {row.get('active_member') or 'none'}")
        out.append(f"failovers: {row.get('failovers', 0)}, MACs announced: {row.get('announced', 0)}")
        for member in row.get("members", ()):
            flag = "enabled" if member["enabled"] else "disabled"
            active = " (active)" if member["active"] else ""
            buckets = f", {member['buckets']} buckets" if member.get("buckets") is not None else ""
            lacp = f", lacp {member['lacp']}" if member.get("lacp") else ""
            out.append(f"\nmember {member['name']}: {flag}{active}")
            out.append(f"  link: {member['link']}{lacp}{buckets}; status {member['status']}")
            out.append(f"  rx {member['rx_packets']} pkts {member['rx_bytes']} bytes (dropped inactive "
                       f"{member['dropped_inactive']}); tx {member['tx_packets']} pkts {member['tx_bytes']} bytes, "
                       f"errors {member['tx_errors']}")
        out.append("")
    return "\n".join(out).rstrip()


def format_lacp(rows: Sequence[dict[str, Any]]) -> str:
    """``lacp-show`` in the spirit of ``ovs-appctl lacp/show``."""
    out = []
    for row in rows:
        status = "active" if row.get("lacp") == "active" else row.get("lacp")
        out.append(f"---- {row['bond']} ----")
        out.append(f"  status: {status}{' negotiated' if row.get('negotiated') else ''}")
        out.append(f"  sys_id: {row.get('sys_id')}")
        out.append(f"  sys_priority: {row.get('sys_priority')}")
        out.append(f"  aggregation key: {row.get('key')}")
        out.append(f"  lacp_time: {row.get('lacp_rate')}")
        for member in row.get("members", ()):
            state = f"{member['rx_state']}{' attached' if member['attached'] else ''}"
            out.append(f"\nmember: {member['name']}: {state}")
            out.append(f"  port_id: {member['port_id']}")
            out.append(f"  may_enable: {str(member['may_enable']).lower()}")
            out.append(f"  lacpdus: rx {member['rx_pdus']} tx {member['tx_pdus']} errors {member['rx_errors']}")
            for side in ("actor", "partner"):
                info = member[side]
                out.append(f"  {side} sys_id: {info['sys_id']}")
                out.append(f"  {side} port_id: {info['port_id']}")
                out.append(f"  {side} key: {info['key']}")
                out.append(f"  {side} state: {' '.join(info['state'])}")
        out.append("")
    return "\n".join(out).rstrip()
