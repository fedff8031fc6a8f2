"""The kernel datapath's VLANs on a kernel that has bridge vlan_filtering (run inside tests/vmkernel/vm.py).

Not collected by a plain ``pytest tests`` run (the name does not match ``test_*.py``): this
machine's kernel lacks vlan_filtering. tests/integration/test_kernel_vlan_filtering.py
boots Debian's kernel and runs this file there; by hand::

    python3 tests/vmkernel/vm.py -- .venv/bin/python -m pytest -p no:cacheprovider \
        tests/integration/kernel_vlan_checks.py

Everything goes through the modules, as an operator would; the proof is real traffic between
VM namespaces and tags seen on the wire.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from ansible_runner import run_module, run_playbook, write_inventory
from netlab import link_witness

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "daemon"))
from vswitchd_lab import Capture, mac_of, vlan_ids  # noqa: E402

pytestmark = pytest.mark.integration

# VM -> (host, VIF, bridge, port settings, {device: address}); 10.9.0.0/24 is shared by VLAN 5,
# VLAN 6 and the untagged network, so only the switches keep them apart.
VMS = {
    "vm1": ("hv1", "vif1.0", "xapi5", {}, {"eth0": "10.9.0.1"}),
    "vm2": ("hv1", "vif2.0", "xapi6", {}, {"eth0": "10.9.0.2"}),
    "vm3": ("hv2", "vif3.0", "xapi5", {}, {"eth0": "10.9.0.3"}),
    "vm4": ("hv2", "vif4.0", "xapi6", {}, {"eth0": "10.9.0.4"}),
    "vm5": ("hv1", "vif5.0", "xenbr0", {"vlan": 7}, {"eth0": "10.9.7.5"}),
    "vm6": ("hv2", "vif6.0", "xenbr0", {"vlan": 7}, {"eth0": "10.9.7.6"}),
    # A trunk VIF: the VM tags its own traffic (802.1Q devices in the VM), VLANs 5 and 7.
    "vm7": ("hv1", "vif7.0", "xenbr0", {"trunks": "5,7"}, {"eth0.5": "10.9.0.7", "eth0.7": "10.9.7.7"}),
    "vm8": ("hv1", "vif8.0", "xenbr0", {}, {"eth0": "10.9.0.8"}),
    "vm9": ("hv2", "vif9.0", "xenbr0", {}, {"eth0": "10.9.0.9"}),
}
REACH = [("vm1", "10.9.0.3"), ("vm2", "10.9.0.4"), ("vm5", "10.9.7.6"), ("vm7", "10.9.0.3"), ("vm7", "10.9.7.6"),
         ("vm8", "10.9.0.9")]
NEVER = [("vm1", "10.9.0.4"), ("vm1", "10.9.0.9"), ("vm2", "10.9.0.3"), ("vm4", "10.9.0.8"), ("vm9", "10.9.0.1"),
         ("vm8", "10.9.0.3")]

PLAY = [{
    "hosts": "hypervisors", "gather_facts": False,
    "tasks": [
        {"name": "parent bridge with the trunk uplink",
         "openvif.vswitch.vswitch_bridge": {"name": "xenbr0", "uplink": "peth0"}},
        {"name": "VLAN networks", "loop": [["xapi5", 5], ["xapi6", 6]],
         "openvif.vswitch.vswitch_vlan": {"name": "{{ item[0] }}", "parent": "xenbr0", "tag": "{{ item[1] }}"}},
        {"name": "VIFs", "openvif.vswitch.vswitch_port": {"ports": "{{ vifs }}", "purge": True}},
        {"name": "facts", "openvif.vswitch.vswitch_info": {"fdb": False}},
        {"name": "the VLAN networks and port VLANs are reported",
         "ansible.builtin.assert": {"that": [
             "vswitch.vlans.xapi5 == {'parent': 'xenbr0', 'tag': 5}", "vswitch.vlans.xapi6.tag == 6",
             "vswitch.bridges.xapi5.parent == 'xenbr0'",
             "vswitch.ports['vif1.0' if inventory_hostname == 'hv1' else 'vif3.0'].bridge == 'xapi5'",
             "vswitch.ports['vif5.0' if inventory_hostname == 'hv1' else 'vif6.0'].vlan == 7",
             "vswitch.ports.peth0.uplink and vswitch.ports.peth0.trunks is none"]}},
    ],
}]


def test_the_guest_kernel_has_vlan_filtering():
    from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.kernel import KernelBackend

    backend = KernelBackend()
    try:
        assert backend.features.vlan_filtering, "this kernel lacks vlan_filtering: run me in tests/vmkernel/vm.py"
    finally:
        backend.close()


@pytest.fixture
def trunked_hosts(netlab):
    hosts = {name: netlab.ns(name) for name in ("hv1", "hv2")}
    netlab.link(hosts["hv1"], "peth0", hosts["hv2"], "peth0")  # the physical trunk between the two hosts
    for vm, (host, vif, _bridge, _settings, addresses) in VMS.items():
        vm_ns = netlab.ns(vm)
        netlab.link(hosts[host], vif, vm_ns, "eth0")
        # No IPv6 chatter: it would teach the switches addresses behind the test's back.
        netlab.run(vm_ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        for device, address in addresses.items():
            if "." in device:
                netlab.run(vm_ns, "ip", "link", "add", "link", "eth0", "name", device, "type", "vlan",
                           "id", device.split(".")[1])
                netlab.run(vm_ns, "ip", "link", "set", device, "up")
            netlab.run(vm_ns, "ip", "addr", "add", f"{address}/24", "dev", device)
    return netlab, hosts


def write_play(tmp_path: Path, hosts: dict[str, str]) -> tuple[Path, Path]:
    host_vars = {name: {"vifs": [{"name": vif, "bridge": bridge, **settings}
                                 for _vm, (host, vif, bridge, settings, _a) in VMS.items() if host == name]}
                 for name in hosts}
    inventory = write_inventory(tmp_path, hosts, sys.executable, group="hypervisors", host_vars=host_vars)
    (tmp_path / "site.yml").write_text(yaml.safe_dump(PLAY))
    return inventory, tmp_path / "site.yml"


def explain(lab, hosts: dict[str, str]) -> str:
    """What the hosts' bridges hold, for a failure message."""
    return "\n".join(f"{name}:\n" + lab.run(ns, "bridge", "-compressvlans", "vlan", "show").stdout
                     + lab.run(ns, "ip", "-br", "link").stdout for name, ns in hosts.items())


def bridge_vlans(lab, ns: str) -> dict:
    return {entry["ifname"]: entry["vlans"] for entry in json.loads(lab.run(ns, "bridge", "-j", "vlan").stdout)}


def test_vlans_on_kernel_bridges_reach_across_the_trunk_and_never_cross(trunked_hosts, ansible_env, tmp_path):
    lab, hosts = trunked_hosts
    inventory, play = write_play(tmp_path, hosts)
    rc, out, stats = run_playbook(ansible_env, inventory, play)
    assert rc == 0, out
    assert stats["hv1"]["changed"] >= 3 and stats["hv2"]["changed"] >= 3, out

    ns = {vm: f"{lab.prefix}-{vm}" for vm in VMS}
    for source, target in REACH:
        assert lab.ping_until(ns[source], target), f"{source} does not reach {target}\n{explain(lab, hosts)}"
    for source, target in NEVER:
        assert not lab.ping(ns[source], target, count=2), f"{source} reached {target} across VLANs"

    # On the wire between the hosts each network carries its tag; the untagged network none.
    # Six seconds: under TCG starting the second capture's Python alone can take a second or two, and the
    # first capture's window must still hold the three pings (a 2 s window once closed before them).
    for near, far, tag in (("vm1", "vm3", 5), ("vm2", "vm4", 6), ("vm5", "vm6", 7), ("vm8", "vm9", None)):
        at_far = Capture(lab, hosts[VMS[far][0]], "peth0", seconds=6.0)
        at_near = Capture(lab, hosts[VMS[near][0]], "peth0", seconds=6.0)
        assert lab.ping(ns[near], next(iter(VMS[far][4].values())), count=3)
        assert vlan_ids(at_far.frames(), mac_of(lab, ns[near], "eth0")) == {tag}
        assert vlan_ids(at_near.frames(), mac_of(lab, ns[far], "eth0")) == {tag}

    # What the kernel holds: access ports have one PVID, the trunk VIF its tags, the VLAN network's
    # link end in the parent is an access port of the tag, and VLAN networks are bridges of their own.
    vlans = bridge_vlans(lab, hosts["hv1"])
    assert vlans["vif5.0"] == [{"vlan": 7, "flags": ["PVID", "Egress Untagged"]}]
    assert [v["vlan"] for v in vlans["vif7.0"]] == [5, 7] and all("flags" not in v for v in vlans["vif7.0"])
    assert vlans["xapi5-vp"] == [{"vlan": 5, "flags": ["PVID", "Egress Untagged"]}]
    links = {link["ifname"]: link for link in json.loads(lab.run(hosts["hv1"], "ip", "-d", "-j", "link").stdout)}
    assert links["xenbr0"]["linkinfo"]["info_data"]["vlan_filtering"] == 1
    assert links["vif1.0"]["master"] == "xapi5" and links["xapi5"]["linkinfo"]["info_kind"] == "bridge"

    before = link_witness(hosts["hv1"]), bridge_vlans(lab, hosts["hv1"])
    rc, out, stats = run_playbook(ansible_env, inventory, play)
    assert rc == 0 and stats["hv1"]["changed"] == 0 and stats["hv2"]["changed"] == 0, out
    assert (link_witness(hosts["hv1"]), bridge_vlans(lab, hosts["hv1"])) == before


def test_port_vlan_changes_check_mode_and_removal(trunked_hosts, ansible_env, tmp_path):
    lab, hosts = trunked_hosts
    inventory, play = write_play(tmp_path, hosts)
    assert run_playbook(ansible_env, inventory, play)[0] == 0
    hv1, ns = hosts["hv1"], {vm: f"{lab.prefix}-{vm}" for vm in VMS}
    port = {"bridge": "xenbr0", "name": "vif5.0", "trunks": "7-9", "native_vlan": 5}

    # Check mode predicts the change and touches nothing.
    before = bridge_vlans(lab, hv1)
    checked = run_module(ansible_env, inventory, "hv1", "openvif.vswitch.vswitch_port", port, check=True)
    assert checked["changed"] and not checked.get("failed"), checked
    assert bridge_vlans(lab, hv1) == before

    # Access -> trunk with a native VLAN: vm5's untagged frames are now VLAN 5.
    changed = run_module(ansible_env, inventory, "hv1", "openvif.vswitch.vswitch_port", port)
    assert changed["changed"], changed
    assert [(v["vlan"], v.get("flags", [])) for v in bridge_vlans(lab, hv1)["vif5.0"]] == [
        (5, ["PVID", "Egress Untagged"]), (7, []), (8, []), (9, [])]
    lab.run(ns["vm5"], "ip", "addr", "add", "10.9.0.55/24", "dev", "eth0")
    assert lab.ping_until(ns["vm5"], "10.9.0.3") and not lab.ping(ns["vm5"], "10.9.0.4", count=2)
    again = run_module(ansible_env, inventory, "hv1", "openvif.vswitch.vswitch_port", port)
    assert not again["changed"], again

    # Bad input fails naming the field, and the host is as it was.
    before = link_witness(hv1), bridge_vlans(lab, hv1)
    # (The planner's checks are the same for both datapaths and tested in full on this machine's
    # kernel; a guest run costs ~20 s per module call, so only a sample runs here.)
    for module, args, expected in (
        ("vswitch_port", {"bridge": "xapi5", "name": "vif1.0", "vlan": 9}, "cannot be set on a port of VLAN network"),
        ("vswitch_vlan", {"name": "xapi9", "parent": "xenbr0", "tag": 5}, "tag: 5 is already used"),
    ):
        result = run_module(ansible_env, inventory, "hv1", f"openvif.vswitch.{module}", args)
        assert result.get("failed") and expected in result["msg"], (args, result.get("msg"))
    parent_gone = run_module(ansible_env, inventory, "hv1", "openvif.vswitch.vswitch_bridge",
                             {"name": "xenbr0", "state": "absent"})
    assert parent_gone.get("failed") and "still carries the VLAN networks" in parent_gone["msg"]
    assert (link_witness(hv1), bridge_vlans(lab, hv1)) == before

    # Removing a VLAN network removes its bridge and link; the parent keeps everything else.
    removed = run_module(ansible_env, inventory, "hv1", "openvif.vswitch.vswitch_vlan",
                         {"name": "xapi6", "state": "absent"})
    assert removed["changed"], removed
    names = {link["ifname"] for link in json.loads(lab.run(hv1, "ip", "-j", "link").stdout)}
    assert not names & {"xapi6", "xapi6-vp", "xapi6-vn"} and {"xapi5", "xapi5-vp", "vif5.0"} <= names
    assert lab.ping_until(ns["vm1"], "10.9.0.3")


def test_a_kernel_refusal_mid_way_leaves_the_host_as_it_was(netlab, ansible_env, tmp_path):
    """The VLAN network's link name is taken: the kernel refuses after filtering was switched on and
    the network's bridge made; all of it is undone."""
    hv = netlab.ns("hv1")
    netlab.link(hv, "peth1", netlab.ns("wire"), "eth0")
    netlab.link(hv, "xapi7-vp", netlab.ns("squatter"), "eth0")  # the name vswitch_vlan wants for its link
    inventory = write_inventory(tmp_path, {"hv1": hv}, sys.executable)
    made = run_module(ansible_env, inventory, "hv1", "openvif.vswitch.vswitch_bridge",
                      {"name": "xenbr1", "uplink": "peth1"})
    assert made["changed"], made
    before = link_witness(hv), bridge_vlans(netlab, hv)
    result = run_module(ansible_env, inventory, "hv1", "openvif.vswitch.vswitch_vlan",
                        {"name": "xapi7", "parent": "xenbr1", "tag": 7})
    assert result.get("failed") and "nothing was changed" in result["msg"], result
    assert (link_witness(hv), bridge_vlans(netlab, hv)) == before


def test_a_deleted_filtering_bridge_comes_back_whole_when_a_later_step_fails(netlab):
    """Rollback of del_bridge: the bridge is recreated with vlan_filtering, its uplink range and port VLANs."""
    from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import VswitchError
    from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.kernel import KernelBackend
    from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import Change

    hv = netlab.ns("hv1")
    for name in ("peth2", "vif1.0", "vif2.0"):
        netlab.link(hv, name, netlab.ns(f"far-{name.replace('.', '')}"), "eth0")
    backend = KernelBackend(netns=hv)
    try:
        backend.apply([Change("add_bridge", "xenbr2", "kernel", {"mac": "02:00:00:00:00:22"}),
                       Change("add_port", "peth2", "kernel", {"bridge": "xenbr2", "uplink": True}),
                       Change("add_port", "vif1.0", "kernel", {"bridge": "xenbr2", "vlan": 5}),
                       Change("add_port", "vif2.0", "kernel", {"bridge": "xenbr2", "trunks": [7, 8],
                                                               "native_vlan": 3})])
        backend.read()

        def view() -> tuple:
            links = link_witness(hv)
            return (links["xenbr2"]["address"], links["xenbr2"]["linkinfo"]["info_data"]["vlan_filtering"],
                    {name: links[name].get("master") for name in ("peth2", "vif1.0", "vif2.0")},
                    links["peth2"].get("ifalias"), bridge_vlans(netlab, hv))

        before = view()
        assert before[1] == 1 and before[2] == dict.fromkeys(("peth2", "vif1.0", "vif2.0"), "xenbr2")
        with pytest.raises(VswitchError):
            backend.apply([Change("del_bridge", "xenbr2", "kernel", {"ports": ["peth2", "vif1.0", "vif2.0"]}),
                           Change("add_port", "vif1.0", "kernel", {"bridge": "no-such-br"})])
        assert view() == before
    finally:
        backend.close()
