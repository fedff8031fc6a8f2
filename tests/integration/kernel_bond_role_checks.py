"""The bridge role with a kernel bond as the uplink, on a kernel that has the bonding driver (run inside
tests/vmkernel/vm.py, with the other kernel_*_checks.py; this machine's kernel has no bonding, so
tests/integration/test_bridge_role_bond.py can only check the refusal here).

The same physical network as test_bridge_role_bond.py (a switch in ``phys`` with the gateway, two veth
pairs to the host's eth0 and eth1, the host's IP on eth0), and the role run through Ansible as users
run it: ``bridge_uplink: [eth0, eth1]``, active-backup, kernel datapath, networkd files. The move keeps a
TCP session from the physical side to the host's IP; the bond then fails over when eth0's far end goes
down, and a second run changes nothing.
"""
from __future__ import annotations

import json
import time

import pytest
from netlab import sh
from test_bridge_role import GATEWAY, HOST_IP, HOST_MAC, PhysicalNetwork, TcpSession
from test_bridge_role_bond import BOND, with_second_nic

pytestmark = pytest.mark.integration
NETLAB_PREFIX = "kr"


@pytest.fixture
def kbondnet(netlab, ansible_env, tmp_path):
    physical = PhysicalNetwork(netlab, ansible_env, tmp_path)
    physical.play_timeout = 900   # a role run in the emulated guest takes minutes
    try:
        yield with_second_nic(physical)
    finally:
        physical.stop()


def link(net, name: str) -> dict:
    return json.loads(sh("ip", "-n", net.host, "-d", "-j", "link", "show", name).stdout)[0]


def test_the_role_moves_the_ip_onto_a_kernel_bond_that_fails_over(kbondnet):
    net = kbondnet
    role = {**BOND, "bridge_datapath": "kernel", "bridge_persist_format": "networkd", "bridge_bootproto": "static",
            "bridge_address": f"{HOST_IP}/24", "bridge_gateway": GATEWAY, "bridge_bond_miimon": 50}
    session = TcpSession(net)
    started = time.monotonic()
    rc, out, _stats = net.play(**role)
    assert rc == 0, out
    print(f"role run: {time.monotonic() - started:.0f} s")
    bond = link(net, "bond0")
    data = bond["linkinfo"]["info_data"]
    assert bond["linkinfo"]["info_kind"] == "bond" and data["mode"] == "active-backup", bond
    assert data["primary"] == "eth0" and data["miimon"] == 50, data
    assert bond["master"] == "xenbr0" and link(net, "eth0")["master"] == "bond0" == link(net, "eth1")["master"]
    bridge = json.loads(sh("ip", "-n", net.host, "-j", "addr", "show", "xenbr0").stdout)[0]
    assert bridge["address"] == HOST_MAC, bridge   # the member that held the IP gave the bond its MAC
    assert [f"{a['local']}/{a['prefixlen']}" for a in bridge["addr_info"] if a["family"] == "inet"] == \
        [f"{HOST_IP}/24"]
    links = net.addressing()["links"]
    assert links["eth0"]["ipv4"] == [] and links["eth1"]["ipv4"] == []
    files = sorted(p.name for p in (net.root / "etc" / "systemd" / "network").iterdir())
    assert files == ["05-openvif-bond0.netdev", "05-openvif-bond0.network", "05-openvif-eth0.network",
                     "05-openvif-eth1.network", "05-openvif-xenbr0.netdev", "05-openvif-xenbr0.network"], files

    # eth0's far end goes down: the driver fails over to eth1 and the session carries on.
    net.lab.run(net.phys, "ip", "link", "set", "eth0", "down")
    assert net.lab.ping_until(net.phys, HOST_IP), "no traffic over eth1 after eth0 lost its link"
    echo = session.finish()
    assert echo["error"] is None and echo["echoed"] == echo["sent"] > 10, echo
    active = json.loads(sh("ip", "-n", net.host, "-d", "-j", "link", "show", "bond0").stdout)[0]
    assert active["linkinfo"]["info_data"]["active_slave"] == "eth1", active
    print(f"bridge role, kernel bond uplink: TCP kept through the move and the failover, {echo['echoed']} "
          f"echoes, worst round trip {echo['worst_rtt']} s")
    net.lab.run(net.phys, "ip", "link", "set", "eth0", "up")

    rc, out, stats = net.play(**role)
    assert rc == 0 and stats["changed"] == 0, out
