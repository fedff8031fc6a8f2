"""A bond uplink through the modules, against a real vswitchd (and the kernel's refusal on this kernel)."""
from __future__ import annotations

import gzip

import pytest
from vswitchd_lab import Daemon

NETLAB_PREFIX = "bd"   # this area's namespaces (tests/conftest.py)
pytestmark = pytest.mark.integration


@pytest.fixture
def bond_hv(hv, ansible_env, tmp_path):
    daemon = Daemon(hv.ns, tmp_path).start()
    hv.env = dict(hv.env, VSWITCHD_SOCKET=str(daemon.socket))
    for nic in ("eth1", "eth2", "eth3", "eth4", "eth5", "eth6"):
        hv.veth(nic)
    hv.lab.run(hv.ns, "ip", "link", "set", "eth4", "mtu", "9000")
    try:
        yield hv, daemon
    finally:
        daemon.stop()


BOND = {"bond": "bond0", "members": ["eth1", "eth2"], "mode": "balance-slb", "miimon": 50}


def test_bond_uplink_check_mode_first_then_idempotent_and_reported(bond_hv):
    hv, daemon = bond_hv
    args = {"name": "xenbr0", "datapath": "userspace", "uplink": BOND}
    checked = hv.module("vswitch_bridge", check=True, **args)
    assert checked["changed"] is True and not checked.get("failed"), checked
    assert checked["bridge"]["bond"]["members"] == ["eth1", "eth2"]
    assert daemon.call("get_state")["bridges"] == {}, "check mode changed the daemon"
    first = hv.module("vswitch_bridge", **args)
    assert first["changed"] is True and first["bridge"] == checked["bridge"], first
    port = daemon.call("get_state")["ports"]["bond0"]
    assert port["uplink"] is True and port["bond"]["mode"] == "balance-slb" and port["bond"]["miimon"] == 50
    assert hv.module("vswitch_bridge", **args)["changed"] is False

    changed = hv.module("vswitch_bridge", name="xenbr0", datapath="userspace",
                        uplink={**BOND, "mode": "active-backup", "primary": "eth2"})
    assert changed["changed"] is True and changed["changes"] == [c for c in changed["changes"] if "set_port" in c]
    info = hv.module("vswitch_info")
    bond = info["vswitch"]["bonds"]["bond0"]
    assert bond["mode"] == "active-backup" and bond["bridge"] == "xenbr0"
    assert bond["active_member"] == "eth2", bond
    assert {m["name"]: m["link"] for m in bond["members"]} == {"eth1": "up", "eth2": "up"}
    assert all("lacp_actor" in m for m in bond["members"])


BAD = [
    ({"bond": "bond1", "members": ["eth5"]}, "uplink.members", "at least two members"),
    ({"bond": "bond1", "members": ["eth5", "eth4"]}, "uplink.members", "different MTUs (eth5 1500, eth4 9000)"),
    ({"bond": "bond1", "members": ["eth5", "eth1"]}, "uplink.members[1]", "already a member of bond 'bond0'"),
    ({"bond": "bond1", "members": ["eth5", "eth3"]}, "uplink.members[1]", "already the uplink of bridge 'xapi1'"),
    ({"bond": "bond1", "members": ["eth5", "vif9"]}, "uplink.members[1]", "does not exist"),
    ({"bond": "bond1", "members": ["eth5", "eth6"], "primary": "eth1"}, "uplink.primary", "not a member"),
    ({"bond": "bond1", "members": ["eth5", "eth6"], "mode": "balance-tcp"}, "uplink.mode", "needs lacp"),
    ({"bond": "bond1", "members": ["eth5", "eth6"], "lacp": "sometimes"}, "uplink.lacp", "must be one of"),
]


def test_bad_bonds_fail_naming_the_field_and_change_nothing(bond_hv):
    hv, daemon = bond_hv
    assert hv.module("vswitch_bridge", name="xenbr0", datapath="userspace", uplink=BOND)["changed"] is True
    assert hv.module("vswitch_bridge", name="xapi1", uplink="eth3")["changed"] is True
    state, links = daemon.call("get_state"), hv.links()
    for uplink, field, why in BAD:
        result = hv.module("vswitch_bridge", name="xenbr1", datapath="userspace", uplink=uplink)
        assert result.get("failed") and result["msg"].startswith(f"{field}:") and why in result["msg"], result
    second = hv.module("vswitch_bridge", name="xenbr0", datapath="userspace",
                       uplink={"bond": "bond2", "members": ["eth5", "eth6"]})
    assert second.get("failed") and "second uplink" in second["msg"], second
    assert daemon.call("get_state")["bridges"] == state["bridges"]
    assert daemon.call("get_state")["ports"] == state["ports"]
    assert hv.links() == links, "a refused bond changed the host's links"


def test_kernel_datapath_refuses_a_bond_naming_the_missing_module(bond_hv):
    hv, _daemon = bond_hv
    links = hv.links()
    result = hv.module("vswitch_bridge", name="xenbr0", uplink={**BOND, "mode": "active-backup"})
    assert result.get("failed"), result
    assert result["msg"].startswith("uplink.bond: 'bond0'") and "datapath: userspace" in result["msg"], result
    with gzip.open("/proc/config.gz", "rt") as handle:
        has_bonding = "\nCONFIG_BONDING=" in handle.read()
    if not has_bonding:
        assert "kernel module 'bonding'" in result["msg"], result
    print(f"\nkernel datapath refusal: {result['msg']}")
    assert hv.links() == links, "the refusal changed the host"
