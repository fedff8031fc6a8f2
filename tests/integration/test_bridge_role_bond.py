"""The bridge role with a bond as the uplink (``bridge_uplink: [eth0, eth1]``).

The physical side is a Linux bridge (``sw``, the physical switch) in the ``phys`` namespace with the
gateway's address, and two veth pairs to the host's eth0 and eth1; the host's IP sits on eth0.
Userspace datapath: vswitchd bonds eth0 and eth1 and needs no kernel bonding. Kernel datapath:
this machine's kernel has no bonding driver, so the role must refuse by name with nothing changed.
"""
from __future__ import annotations

import json

import pytest
from netlab import sh
from test_bridge_role import GATEWAY, HOST_IP, HOST_MAC, TcpSession, assert_rolled_back, golden, persisted
from test_bridge_role_userspace import usernet, vswitchd_bridges  # noqa: F401  # pylint: disable=unused-import

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NETLAB_PREFIX = "ba"
BOND = {"bridge_uplink": ["eth0", "eth1"], "bridge_bond_mode": "active-backup", "bridge_bond_primary": "eth0"}


@pytest.fixture
def bondnet(usernet):  # noqa: F811 (the imported fixture)
    """usernet with eth1 as well, both ends of the physical side in one switch with the gateway."""
    return with_second_nic(usernet)


def with_second_nic(net):
    """The host gets eth1 too; phys's two ends go into one switch (``sw``) that holds the gateway."""
    lab = net.lab
    lab.run(net.phys, "ip", "addr", "flush", "dev", "eth0")
    lab.run(net.phys, "ip", "link", "add", "sw", "type", "bridge", "stp_state", "0", "forward_delay", "0")
    lab.link(net.phys, "eth1", net.host, "eth1", up=False)
    lab.run(net.host, "ip", "link", "set", "eth1", "address", "02:00:00:77:00:51")
    for port in ("eth0", "eth1"):
        lab.run(net.phys, "ip", "link", "set", port, "master", "sw")
        lab.run(net.phys, "ip", "link", "set", port, "up")
    lab.run(net.host, "ip", "link", "set", "eth1", "up")
    lab.run(net.phys, "ip", "link", "set", "sw", "up")
    lab.run(net.phys, "ip", "addr", "add", f"{GATEWAY}/24", "dev", "sw")
    assert lab.ping_until(net.phys, HOST_IP), "the lab's physical network does not reach the host"
    return net


def userspace(net, **extra):
    return {**BOND, "bridge_datapath": "userspace", "bridge_vswitchd_socket": str(net.vswitchd_socket),
            "bridge_persist_format": "networkd", "bridge_bootproto": "static", "bridge_address": f"{HOST_IP}/24",
            "bridge_gateway": GATEWAY, **extra}


def test_bond_uplink_on_userspace_moves_the_ip_and_survives_a_member_down(bondnet):
    net = bondnet
    session = TcpSession(net)
    rc, out, stats = net.play(**userspace(net))
    assert rc == 0, out
    tap = json.loads(sh("ip", "-n", net.host, "-d", "-j", "addr", "show", "xenbr0").stdout)[0]
    assert tap["linkinfo"]["info_kind"] == "tun" and tap["address"] == HOST_MAC
    assert [f"{a['local']}/{a['prefixlen']}" for a in tap["addr_info"] if a["family"] == "inet"] == [f"{HOST_IP}/24"]
    links = net.addressing()["links"]
    assert links["eth0"]["ipv4"] == [] and links["eth1"]["ipv4"] == []
    state = vswitchd_bridges(net)
    assert state["bridges"]["xenbr0"]["uplink"] == "bond0", state
    bond = state["ports"]["bond0"]
    assert bond["uplink"] is True and bond["bond"]["members"] == ["eth0", "eth1"], bond
    assert bond["bond"]["mode"] == "active-backup" and bond["bond"]["primary"] == "eth0", bond
    assert persisted(net.root, "etc/systemd/network") == golden("userspace_bond", "networkd")

    # The primary's far end goes down: the bond carries on over eth1, the TCP session with it.
    net.lab.run(net.phys, "ip", "link", "set", "eth0", "down")
    assert net.lab.ping_until(net.phys, HOST_IP), "no traffic over eth1 after eth0 lost its link"
    echo = session.finish()
    assert echo["error"] is None and echo["echoed"] == echo["sent"] > 10, echo
    print(f"bond uplink move: TCP kept through the move and the failover, {echo['echoed']} echoes, "
          f"worst round trip {echo['worst_rtt']} s")
    net.lab.run(net.phys, "ip", "link", "set", "eth0", "up")

    rc, out, stats = net.play(**userspace(net))
    assert rc == 0 and stats["changed"] == 0, out


def test_forced_rollback_restores_both_members(bondnet):
    net = bondnet
    before = net.addressing()
    rc, out, _err = net.play(**userspace(net, bridge_gateway="10.77.0.99"))
    assert rc != 0 and "rolled back by itself" in out, out
    assert_rolled_back(net, before)   # eth0 and eth1: master, MAC, up, promiscuity, alias, addresses
    state = vswitchd_bridges(net)
    assert "xenbr0" not in state["bridges"] and "bond0" not in state.get("ports", {}), state


BAD = [
    ({"bridge_uplink": ["eth0"]}, ["uplink.members", "at least two"]),
    ({"bridge_bond_primary": "eth7"}, ["uplink.primary", "eth7", "not a member"]),
    ({"bridge_bond_mode": "balance-tcp"}, ["uplink.mode", "balance-tcp", "lacp"]),
    ({"bridge_uplink": ["eth0", "eth9"]}, ["uplink.members[1]", "eth9", "is not an interface"]),
]


@pytest.mark.parametrize(("extra", "words"), BAD, ids=["one-member", "primary", "mode-needs-lacp", "missing"])
def test_bad_bond_input_fails_before_anything_changes(bondnet, extra, words):
    net = bondnet
    before = net.addressing()
    rc, out, _err = net.play(**userspace(net, **extra))
    assert rc != 0 and all(word in out for word in words), out
    assert net.addressing() == before and not (net.root / "etc").exists()
    assert "xenbr0" not in vswitchd_bridges(net)["bridges"]


def test_member_of_another_bridge_and_mtu_mismatch_are_refused(bondnet):
    net = bondnet
    net.lab.run(net.host, "ip", "link", "add", "baother", "type", "bridge")
    net.lab.run(net.host, "ip", "link", "set", "eth1", "master", "baother")
    before = net.addressing()
    rc, out, _err = net.play(**userspace(net))
    assert rc != 0 and "uplink.members[1]" in out and "'baother'" in out, out
    assert net.addressing() == before
    net.lab.run(net.host, "ip", "link", "set", "eth1", "nomaster")
    net.lab.run(net.host, "ip", "link", "set", "eth1", "mtu", "1400")
    before = net.addressing()
    rc, out, _err = net.play(**userspace(net))
    assert rc != 0 and "different MTUs" in out and "eth1 1400" in out, out
    assert net.addressing() == before and "xenbr0" not in vswitchd_bridges(net)["bridges"]


def test_kernel_datapath_without_bonding_refuses_by_name(bondnet):
    net = bondnet
    before = net.addressing()
    rc, out, _err = net.play(**dict(userspace(net), bridge_datapath="kernel", bridge_persist_format="ifcfg"))
    assert rc != 0 and "uplink.bond" in out and "'bonding'" in out and "datapath: userspace" in out, out
    assert net.addressing() == before and not (net.root / "etc").exists()


def test_passive_lacp_on_the_kernel_is_refused_where_the_boot_files_cannot_say_it(bondnet):
    net = bondnet
    before = net.addressing()
    rc, out, _err = net.play(**dict(userspace(net), bridge_datapath="kernel", bridge_bond_mode="balance-tcp",
                                    bridge_bond_lacp="passive", bridge_bond_primary=None))
    assert rc != 0 and "bridge_bond_lacp: passive" in out and "networkd files" in out and "ifcfg" in out, out
    assert net.addressing() == before and not (net.root / "etc").exists()
