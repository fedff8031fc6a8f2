"""VLAN networks end to end: two hypervisors on vswitchd joined by a physical trunk, VMs on VLANs 5 and 6.

Everything is declared through the modules in one playbook (vswitch_bridge, vswitch_vlan,
vswitch_port); the proof is real traffic: same VLAN reaches across hosts, other VLANs never,
and frames on the trunk carry the right 802.1Q tag.
"""
from __future__ import annotations

import sys

import pytest
import yaml
from ansible_runner import run_playbook, write_inventory
from vswitchd_lab import Capture, Daemon, mac_of, vlan_ids

pytestmark = pytest.mark.integration

# VM -> (host, VIF, VLAN network, address). All in one subnet, so only the switch keeps VLANs apart.
VMS = {
    "vm1": ("hv1", "vif1.0", "xapi5", "10.9.0.1"),
    "vm2": ("hv1", "vif2.0", "xapi6", "10.9.0.2"),
    "vm3": ("hv2", "vif3.0", "xapi5", "10.9.0.3"),
    "vm4": ("hv2", "vif4.0", "xapi6", "10.9.0.4"),
}

PLAY = [{
    "hosts": "hypervisors", "gather_facts": False,
    "environment": {"VSWITCHD_SOCKET": "{{ vswitchd_socket }}"},
    "tasks": [
        {"name": "parent bridge with the trunk uplink",
         "openvif.vswitch.vswitch_bridge": {"name": "xenbr0", "datapath": "userspace", "uplink": "peth0"}},
        {"name": "VLAN networks", "loop": [["xapi5", 5], ["xapi6", 6]],
         "openvif.vswitch.vswitch_vlan": {"name": "{{ item[0] }}", "parent": "xenbr0", "tag": "{{ item[1] }}"}},
        {"name": "VIFs", "openvif.vswitch.vswitch_port": {"ports": "{{ vifs }}", "purge": True}},
        {"name": "facts", "openvif.vswitch.vswitch_info": {"fdb": False}},
        {"name": "the VLAN networks are reported",
         "ansible.builtin.assert": {"that": ["vswitch.vlans.xapi5 == {'parent': 'xenbr0', 'tag': 5}",
                                             "vswitch.vlans.xapi6.tag == 6"]}},
    ],
}]


@pytest.fixture
def trunked_hosts(netlab, tmp_path):
    hosts = {name: netlab.ns(name) for name in ("hv1", "hv2")}
    # The physical trunk between the two hosts, through a "wire" namespace (a plain Linux bridge) where
    # captures see every frame on it: on the hosts' own ends the XDP fast path takes frames before, and
    # sends them past, the packet taps a capture uses.
    wire = netlab.ns("wire")
    netlab.link(hosts["hv1"], "peth0", wire, "hv1")
    netlab.link(hosts["hv2"], "peth0", wire, "hv2")
    netlab.run(wire, "ip", "link", "add", "trunk", "type", "bridge", "stp_state", "0", "forward_delay", "0")
    netlab.run(wire, "ip", "link", "set", "trunk", "up")
    for end in ("hv1", "hv2"):
        netlab.run(wire, "ip", "link", "set", end, "master", "trunk")
    daemons = {}
    try:
        for name, ns in hosts.items():
            daemons[name] = Daemon(ns, tmp_path, name=f"vswitchd-{name}").start()
        for vm, (host, vif, _net, address) in VMS.items():
            vm_ns = netlab.ns(vm)
            netlab.link(hosts[host], vif, vm_ns, "eth0")
            netlab.run(vm_ns, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
        yield netlab, hosts, daemons
    finally:
        for daemon in daemons.values():
            daemon.stop()


def write_play(tmp_path, hosts, daemons):
    host_vars = {name: {"vswitchd_socket": str(daemons[name].socket),
                        "vifs": [{"name": vif, "bridge": net, "type": "system"}
                                 for _vm, (host, vif, net, _a) in VMS.items() if host == name]}
                 for name in hosts}
    inventory = write_inventory(tmp_path, hosts, sys.executable, group="hypervisors", host_vars=host_vars)
    (tmp_path / "site.yml").write_text(yaml.safe_dump(PLAY))
    return inventory, tmp_path / "site.yml"


def test_vms_on_one_vlan_meet_across_hosts_and_never_cross_vlans(trunked_hosts, ansible_env, tmp_path):
    lab, hosts, daemons = trunked_hosts
    inventory, play = write_play(tmp_path, hosts, daemons)
    rc, out, stats = run_playbook(ansible_env, inventory, play)
    assert rc == 0, out
    assert stats["hv1"]["changed"] >= 3 and stats["hv2"]["changed"] >= 3, out

    ns = {vm: f"{lab.prefix}-{vm}" for vm in VMS}
    assert lab.ping_until(ns["vm1"], "10.9.0.3"), "VLAN 5 does not reach across the trunk"
    assert lab.ping_until(ns["vm2"], "10.9.0.4"), "VLAN 6 does not reach across the trunk"
    for source, target in (("vm1", "10.9.0.2"), ("vm1", "10.9.0.4"), ("vm3", "10.9.0.2"), ("vm4", "10.9.0.1")):
        assert not lab.ping(ns[source], target, count=2), f"{source} reached {target} on another VLAN"

    # Frames on the trunk carry their network's tag, in both directions: captured on the wire, each at
    # the wire's end facing the host that sent them.
    wire = f"{lab.prefix}-wire"
    for (near, far), tag in ((("vm1", "vm3"), 5), (("vm2", "vm4"), 6)):
        at_far_host = Capture(lab, wire, VMS[near][0], seconds=2.0)
        at_near_host = Capture(lab, wire, VMS[far][0], seconds=2.0)
        assert lab.ping(ns[near], VMS[far][3], count=3)
        assert vlan_ids(at_far_host.frames(), mac_of(lab, ns[near], "eth0")) == {tag}
        assert vlan_ids(at_near_host.frames(), mac_of(lab, ns[far], "eth0")) == {tag}

    # vswitchctl answers as ovs-vsctl does for fake bridges.
    hv1 = daemons["hv1"]
    assert hv1.ctl("br-to-vlan", "xapi5", check=True).stdout.strip() == "5"
    assert hv1.ctl("br-to-parent", "xapi6", check=True).stdout.strip() == "xenbr0"
    assert hv1.ctl("br-to-vlan", "xenbr0", check=True).stdout.strip() == "0"
    assert set(hv1.ctl("list-br", check=True).stdout.split()) == {"xenbr0", "xapi5", "xapi6"}
    assert hv1.ctl("list-ports", "xapi5", check=True).stdout.split() == ["vif1.0"]
    fdb = hv1.ctl("fdb-show", "xapi5", "--json", check=True).stdout
    assert '"vlan": 5' in fdb and '"vlan": 6' not in fdb
    # A dump of every bridge lists each learned entry once (a VLAN network shares its parent's table).
    rows = hv1.call("fdb_show")
    keys = [(r["port"], r["vlan"], r["mac"]) for r in rows]
    assert keys and len(keys) == len(set(keys)) and {r["bridge"] for r in rows} == {"xenbr0"}

    rc, out, stats = run_playbook(ansible_env, inventory, play)
    assert rc == 0 and stats["hv1"]["changed"] == 0 and stats["hv2"]["changed"] == 0, out

    # A restart brings the VLAN networks back (the state file lists 'xapi5' before its parent).
    before = hv1.call("get_state")
    hv1.stop()
    hv1.start()
    assert hv1.call("get_state")["bridges"] == before["bridges"]
    assert lab.ping_until(ns["vm1"], "10.9.0.3") and not lab.ping(ns["vm1"], "10.9.0.4", count=2)


def learned(daemon: Daemon, bridge: str) -> set:
    """(VLAN, MAC) of the entries ``daemon`` learned on ``bridge`` (static ones left out)."""
    return {(row["vlan"], row["mac"]) for row in daemon.call("fdb_show", {"bridge": bridge}) if not row["static"]}


def test_flushing_a_vlan_network_keeps_the_other_vlans_of_its_parent(trunked_hosts, ansible_env, tmp_path):
    lab, hosts, daemons = trunked_hosts
    inventory, play = write_play(tmp_path, hosts, daemons)
    rc, out, _stats = run_playbook(ansible_env, inventory, play)
    assert rc == 0, out
    ns = {vm: f"{lab.prefix}-{vm}" for vm in VMS}
    for vm_ns in ns.values():  # only our pings may teach the switch (no IPv6 chatter relearning a flushed MAC)
        lab.run(vm_ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
    vms = {vlan: {(vlan, mac_of(lab, ns[vm], "eth0")) for vm, (_host, _vif, net, _a) in VMS.items()
                  if net == f"xapi{vlan}"} for vlan in (5, 6)}
    assert lab.ping_until(ns["vm1"], "10.9.0.3") and lab.ping_until(ns["vm2"], "10.9.0.4")
    hv1 = daemons["hv1"]
    assert learned(hv1, "xenbr0") >= vms[5] | vms[6], "hv1 learned both VLANs' VMs (local and across the trunk)"

    assert hv1.ctl("fdb-flush", "xapi5", check=True).stdout.strip() == "table successfully flushed"
    kept = learned(hv1, "xenbr0")
    assert not kept & vms[5], "the VLAN network's own entries are forgotten"
    assert kept >= vms[6], "the parent's other VLANs keep theirs"
    assert not learned(hv1, "xapi5") & vms[5] and learned(hv1, "xapi6") >= vms[6]

    hv1.ctl("fdb-flush", "xenbr0", check=True)
    assert not learned(hv1, "xenbr0") & vms[6], "flushing the parent forgets every VLAN it carries"
    assert lab.ping_until(ns["vm1"], "10.9.0.3") and learned(hv1, "xapi5") >= vms[5], "traffic teaches it again"


def test_vlan_errors_leave_the_daemon_unchanged(vswitchd, netlab, hv, ansible_env, tmp_path):
    daemon = vswitchd(hv.ns)
    hv.env = dict(ansible_env, VSWITCHD_SOCKET=str(daemon.socket))
    assert hv.module("vswitch_bridge", name="xenbr0", datapath="userspace")["changed"]
    assert hv.module("vswitch_vlan", name="xapi5", parent="xenbr0", tag=5)["changed"]
    before = daemon.call("get_state")
    cases = [
        ({"name": "xapi7", "parent": "xenbr0", "tag": 5}, "tag: 5 is already used on 'xenbr0' by VLAN network 'xapi5'"),
        ({"name": "xapi7", "parent": "xenbr9", "tag": 7}, "parent: 'xenbr9' does not exist"),
        ({"name": "xapi7", "parent": "xenbr0", "tag": 4095}, "tag: 4095 is not a usable VLAN tag"),
        ({"name": "xapi7", "parent": "xenbr0", "tag": 0}, "tag: 0 is not a usable VLAN tag"),
        ({"name": "xapi7", "parent": "xapi5", "tag": 7}, "do not nest"),
        ({"name": "xapi5", "parent": "xenbr0", "tag": 6}, "already exists as a VLAN network VLAN 5"),
    ]
    for args, expected in cases:
        result = hv.module("vswitch_vlan", **args)
        assert result.get("failed") and expected in result["msg"], (args, result.get("msg"))
    removing_parent = hv.module("vswitch_bridge", name="xenbr0", datapath="userspace", state="absent")
    assert removing_parent.get("failed") and "still carries the VLAN networks 'xapi5'" in removing_parent["msg"]
    trunk_error = hv.module("vswitch_port", bridge="xenbr0", name="vif1.0", type="tap", trunks="10-20,15")
    assert trunk_error.get("failed") and "overlap" in trunk_error["msg"]
    assert daemon.call("get_state") == before
    assert hv.module("vswitch_vlan", name="xapi5", state="absent")["changed"]
    assert hv.module("vswitch_bridge", name="xenbr0", datapath="userspace", state="absent")["changed"]


def test_kernel_parent_fails_naming_the_missing_feature(hv):
    assert hv.module("vswitch_bridge", name="xenbr0")["changed"]
    result = hv.module("vswitch_vlan", name="xapi5", parent="xenbr0", tag=5)
    assert result.get("failed") and "vlan_filtering" in result["msg"] and "datapath: userspace" in result["msg"]
    assert "xapi5" not in hv.links()
