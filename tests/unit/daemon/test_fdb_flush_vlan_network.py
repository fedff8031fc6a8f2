"""fdb_flush of a VLAN network (fake bridge) forgets only its tag in the parent's shared table.

The switch is built from its configuration without devices (no TAPs, no sockets): forwarding
tables and the control methods are all that these tests exercise.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from vswitch.daemon.config import Config, apply_changes
from vswitch.daemon.datapath import Port
from vswitch.daemon.db import StateFile
from vswitch.daemon.fdb import mac_bytes
from vswitch.daemon.methods import make_methods
from vswitch.daemon.switch import Switch, parents_first
from vswitch.errors import NotFoundError

NOW = 100.0
UPLINK, VIF5, VIF6 = Port("peth0"), Port("vif1.0"), Port("vif2.0")
# (VLAN, MAC, port) learned in xenbr0's table: VLAN 5 is xapi5's, VLAN 6 xapi6's, VLAN 0 the parent's own.
LEARNED = [
    (5, "02:00:00:00:05:01", VIF5), (5, "02:00:00:00:05:02", UPLINK),
    (6, "02:00:00:00:06:01", VIF6), (6, "02:00:00:00:06:02", UPLINK),
    (0, "02:00:00:00:00:01", UPLINK),
]
STATIC_VLAN5 = (5, "02:00:00:00:05:99", VIF5)   # a port-security VIF on xapi5


def ch(op: str, target: str, **args: object) -> dict[str, object]:
    return {"op": op, "target": target, "datapath": "userspace", "args": args}


@pytest.fixture
def switch(tmp_path: Path) -> Switch:
    """xenbr0 with VLAN networks xapi5 and xapi6, entries learned on VLANs 0, 5 and 6."""
    sw = Switch(StateFile(str(tmp_path / "state.json")))
    sw.config = apply_changes(Config(), [ch("add_bridge", "xenbr0"),
                                         ch("add_bridge", "xapi5", parent="xenbr0", tag=5),
                                         ch("add_bridge", "xapi6", parent="xenbr0", tag=6)])
    for name, settings in parents_first(sw.config.bridges):
        sw._new_bridge(name, settings)
    fdb = sw.bridges["xenbr0"].fdb
    for vlan, mac, port in LEARNED:
        fdb.learn(vlan, mac_bytes(mac), port, NOW)
    vlan, mac, port = STATIC_VLAN5
    fdb.add_static(vlan, mac_bytes(mac), port)
    return sw


def flush(sw: Switch, bridge: str | None = None) -> dict[str, object]:
    return make_methods(sw, lambda: NOW, {})["fdb_flush"]({} if bridge is None else {"bridge": bridge})


def keys(sw: Switch, bridge: str | None = None) -> set[tuple[int, str]]:
    return {(row["vlan"], row["mac"]) for row in sw.fdb(bridge, NOW)}


def learned_on(vlan: int) -> set[tuple[int, str]]:
    return {(v, mac) for v, mac, _port in LEARNED if v == vlan}


def test_flushing_a_vlan_network_keeps_the_other_vlans_of_the_parent(switch):
    assert flush(switch, "xapi5") == {"flushed": True}
    assert keys(switch, "xenbr0") == learned_on(0) | learned_on(6) | {STATIC_VLAN5[:2]}
    assert len(switch.bridges["xenbr0"].fdb) == 3, "the learned count follows what was flushed"


def test_a_flushed_vlan_network_shows_only_its_static_entries(switch):
    flush(switch, "xapi5")
    assert keys(switch, "xapi5") == {STATIC_VLAN5[:2]}
    assert keys(switch, "xapi6") == learned_on(6), "fdb-show of a VLAN network shows only its tag"


def test_flushing_the_parent_forgets_every_vlan_it_carries(switch):
    flush(switch, "xenbr0")
    assert keys(switch) == {STATIC_VLAN5[:2]}
    assert len(switch.bridges["xenbr0"].fdb) == 0


def test_flushing_every_bridge_forgets_everything_learned(switch):
    flush(switch)
    assert keys(switch) == {STATIC_VLAN5[:2]}


def test_a_port_flush_after_a_vlan_flush_still_finds_its_entries(switch):
    """The per-port index stays right, so a port leaving the bridge still takes its entries along."""
    flush(switch, "xapi6")
    assert switch.bridges["xenbr0"].fdb.flush_port(UPLINK) == 2   # VLAN 5 and VLAN 0; VLAN 6's went
    assert keys(switch, "xenbr0") == {(5, "02:00:00:00:05:01"), STATIC_VLAN5[:2]}


def test_flushing_an_unknown_bridge_fails(switch):
    with pytest.raises(NotFoundError):
        flush(switch, "xapi7")
