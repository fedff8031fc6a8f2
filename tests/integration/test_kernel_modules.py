"""vswitch_bridge / vswitch_port / vswitch_info on the real kernel, through Ansible, in a namespace."""
from __future__ import annotations

import json

import pytest
from netlab import sh

pytestmark = pytest.mark.integration


def bridge_info(hv, name):
    link = json.loads(sh("ip", "-n", hv.ns, "-d", "-j", "link", "show", name).stdout)[0]
    return link, link["linkinfo"]["info_data"]


def master_of(hv, port):
    return json.loads(sh("ip", "-n", hv.ns, "-j", "link", "show", port).stdout)[0].get("master")


@pytest.mark.quick
def test_bridge_lifecycle_check_first_then_idempotent(hv):
    args = {"name": "xapi1", "stp": False, "forward_delay": 0, "ageing_time": 0, "mtu": 1400}
    checked = hv.module("vswitch_bridge", check=True, **args)
    assert checked["changed"] is True and not checked.get("failed")
    assert sh("ip", "-n", hv.ns, "link", "show", "xapi1", check=False).returncode != 0, "check mode created it"

    first = hv.module("vswitch_bridge", **args)
    assert first["changed"] is True
    assert first["diff"]["before"] == {"name": "xapi1", "state": "absent"}
    assert first["diff"]["after"]["state"] == "present"
    link, data = bridge_info(hv, "xapi1")
    assert data["ageing_time"] == 0 and data["stp_state"] == 0 and data["forward_delay"] == 0
    assert link["mtu"] == 1400 and "UP" in link["flags"]
    # The planner chose the MAC: check mode predicted exactly what the kernel now has.
    assert checked["diff"]["after"]["mac"] == first["diff"]["after"]["mac"] == link["address"]

    second = hv.module("vswitch_bridge", **args)
    assert second["changed"] is False and second["diff"]["before"] == second["diff"]["after"]
    assert hv.module("vswitch_bridge", check=True, **args)["changed"] is False

    changed = hv.module("vswitch_bridge", name="xapi1", ageing_time=300, stp=True, forward_delay=4)
    assert changed["changed"] and changed["diff"]["before"]["ageing_time"] == 0
    assert changed["diff"]["after"]["ageing_time"] == 300
    _link, data = bridge_info(hv, "xapi1")
    assert data["ageing_time"] == 30000 and data["stp_state"] == 1 and data["forward_delay"] == 400

    gone = hv.module("vswitch_bridge", name="xapi1", state="absent")
    assert gone["changed"] and gone["diff"]["after"] == {"name": "xapi1", "state": "absent"}
    assert hv.module("vswitch_bridge", name="xapi1", state="absent")["changed"] is False


@pytest.mark.quick
def test_uplink_is_attached_promiscuous_and_mac_stays_pinned(hv):
    hv.veth("peth0", "phys")
    result = hv.module("vswitch_bridge", name="xenbr0", uplink="peth0", mac="fe:ff:ff:ff:ff:fe")
    assert result["changed"] and result["bridge"]["uplink"] == "peth0"
    assert master_of(hv, "peth0") == "xenbr0"
    peth0 = json.loads(sh("ip", "-n", hv.ns, "-j", "link", "show", "peth0").stdout)[0]
    assert "PROMISC" in peth0["flags"]
    # a VIF with a lower MAC must not change the bridge's MAC (it is pinned)
    hv.veth("vif1.0", "vm1")
    sh("ip", "-n", hv.ns, "link", "set", "vif1.0", "address", "00:00:00:00:00:01")
    assert hv.module("vswitch_port", bridge="xenbr0", name="vif1.0")["changed"]
    link, _data = bridge_info(hv, "xenbr0")
    assert link["address"] == "fe:ff:ff:ff:ff:fe"
    facts = hv.module("vswitch_info")["vswitch"]
    assert facts["bridges"]["xenbr0"]["uplink"] == "peth0"
    assert facts["bridges"]["xenbr0"]["ports"] == ["peth0", "vif1.0"]
    assert hv.module("vswitch_bridge", name="xenbr0", uplink="peth0", mac="fe:ff:ff:ff:ff:fe")["changed"] is False


def test_mac_pinned_without_asking(hv):
    hv.module("vswitch_bridge", name="xapi2")
    mac = bridge_info(hv, "xapi2")[0]["address"]
    hv.veth("vif2.0", "vm2")
    sh("ip", "-n", hv.ns, "link", "set", "vif2.0", "address", "00:00:00:00:00:02")
    hv.module("vswitch_port", bridge="xapi2", name="vif2.0")
    assert bridge_info(hv, "xapi2")[0]["address"] == mac


def test_ports_batch_purge_move_and_detach(hv):
    for vif in ("vif1.0", "vif2.0", "vif3.0"):
        hv.veth(vif, vif.replace(".", "-"))
    hv.module("vswitch_bridge", name="xenbr0")
    hv.module("vswitch_bridge", name="xapi1")
    checked = hv.module("vswitch_port", check=True, bridge="xenbr0", ports=["vif1.0", "vif2.0"])
    assert checked["changed"] and master_of(hv, "vif1.0") is None
    first = hv.module("vswitch_port", bridge="xenbr0", ports=["vif1.0", "vif2.0", "vif3.0"])
    assert first["changed"] and [master_of(hv, v) for v in ("vif1.0", "vif2.0", "vif3.0")] == ["xenbr0"] * 3
    assert hv.module("vswitch_port", bridge="xenbr0", ports=["vif1.0", "vif2.0", "vif3.0"])["changed"] is False

    purged = hv.module("vswitch_port", bridge="xenbr0", ports=["vif1.0", "vif2.0"], purge=True)
    assert purged["changed"] and purged["changes"] == ["del_port vif3.0 (bridge=xenbr0)"]
    assert master_of(hv, "vif3.0") is None

    refused = hv.module("vswitch_port", bridge="xapi1", name="vif2.0")
    assert refused.get("failed") and "already a port of 'xenbr0'" in refused["msg"]
    assert master_of(hv, "vif2.0") == "xenbr0"
    moved = hv.module("vswitch_port", bridge="xapi1", name="vif2.0", move=True)
    assert moved["changed"] and master_of(hv, "vif2.0") == "xapi1"
    assert moved["diff"]["before"]["ports"]["vif2.0"]["bridge"] == "xenbr0"
    assert moved["diff"]["after"]["ports"]["vif2.0"]["bridge"] == "xapi1"

    detached = hv.module("vswitch_port", bridge="xapi1", name="vif2.0", state="absent")
    assert detached["changed"] and master_of(hv, "vif2.0") is None
    assert hv.module("vswitch_port", bridge="xapi1", name="vif2.0", state="absent")["changed"] is False


BAD_INPUTS = [
    ("vswitch_bridge", {"name": "xenbr0-much-too-long"}, "name: 'xenbr0-much-too-long' is 20 characters"),
    ("vswitch_bridge", {"name": "xen br0"}, "whitespace"),
    ("vswitch_bridge", {"name": "xenbr0", "mac": "01:16:3e:00:00:01"}, "mac: '01:16:3e:00:00:01' is a multicast"),
    ("vswitch_bridge", {"name": "xenbr0", "mac": "00:16:3e:zz:00:01"}, "is not a MAC address"),
    ("vswitch_bridge", {"name": "xenbr0", "mtu": 65536}, "mtu: 65536 is out of range"),
    ("vswitch_bridge", {"name": "xenbr0", "mtu": 10}, "mtu: 10 is out of range"),
    ("vswitch_bridge", {"name": "xenbr0", "uplink": "peth7"}, "uplink: 'peth7' does not exist"),
    ("vswitch_bridge", {"name": "xenbr0", "uplink": "peth1"}, "second uplink"),
    ("vswitch_bridge", {"name": "xenbr1", "uplink": "vif1.0"}, "already a port of 'xapi1'"),
    ("vswitch_bridge", {"name": "xenbr1", "datapath": "userspace"}, "vswitchd is not running"),
    ("vswitch_port", {"bridge": "xenbr0", "name": "vif9.0"}, "name: 'vif9.0' does not exist"),
    ("vswitch_port", {"bridge": "xenbr0", "name": "vif1.0"}, "already a port of 'xapi1'"),
    ("vswitch_port", {"bridge": "xenbr0", "name": "vif2.0", "vlan": 5}, "vlan_filtering"),
    ("vswitch_port", {"bridge": "xenbr0", "name": "vif2.0", "trunks": "5-7"}, "vlan_filtering"),
    ("vswitch_port", {"bridge": "xenbr0", "name": "vif2.0", "promiscuous": True}, "ageing_time: 0"),
    ("vswitch_port", {"bridge": "xenbr0", "ports": ["vif2.0", {"name": "vif3.0", "mac": "ff:ff:ff:ff:ff:ff"}]},
     "ports[1].mac: 'ff:ff:ff:ff:ff:ff' is a multicast"),
    ("vswitch_port", {"bridge": "xenbr0", "ports": ["vif2.0", "vif9.9"]}, "ports[1].name: 'vif9.9' does not exist"),
    ("vswitch_port", {"bridge": "nosuch", "name": "vif2.0"}, "bridge: 'nosuch' does not exist"),
    # ansible-core's own int check crashed on these (OverflowError, no option named)
    ("vswitch_bridge", {"name": "xenbr0", "mtu": "inf"}, "mtu: 'inf' is not a finite number"),
    ("vswitch_bridge", {"name": "xenbr0", "ageing_time": "-Infinity"}, "ageing_time: '-Infinity' is not a finite"),
    ("vswitch_bridge", {"name": "xenbr0", "forward_delay": "nan"}, "forward_delay: 'nan' is not a finite"),
    ("vswitch_port", {"bridge": "xenbr0", "name": "vif2.0", "vlan": "-inf"}, "vlan: '-inf' is not a finite"),
    ("vswitch_port", {"bridge": "xenbr0", "name": "vif2.0", "native_vlan": "Infinity"}, "native_vlan: 'Infinity'"),
    ("vswitch_vlan", {"name": "xapi9", "parent": "xenbr0", "tag": "inf"}, "tag: 'inf' is not a finite number"),
    ("vswitch_port", {"bridge": "xenbr0", "ports": [{"name": "vif2.0", "state": "absent"}]},
     "ports[0].state: 'absent' is not a port option"),
    ("vswitch_bridge", {"bridges": [{"name": "xapi2", "ageing": 0}]}, "bridges[0].ageing: 0 is not a bridge option"),
]


def test_bad_input_fails_cleanly_and_leaves_the_host_unchanged(hv):
    for name in ("peth0", "peth1", "vif1.0", "vif2.0", "vif3.0"):
        hv.veth(name, name.replace(".", "-"))
    hv.module("vswitch_bridge", name="xenbr0", uplink="peth0")
    hv.module("vswitch_bridge", name="xapi1")
    hv.module("vswitch_port", bridge="xapi1", name="vif1.0")
    before = hv.links()
    for module, args, expected in BAD_INPUTS:
        result = hv.module(module, **args)
        assert result.get("failed"), (module, args, result)
        assert expected in result["msg"], (module, args, result["msg"])
        assert result["changed"] is False
        assert hv.links() == before, f"{module} {args} changed the host"


def test_backend_rolls_back_a_failed_transaction(hv):
    """A step the kernel refuses after earlier steps succeeded: the earlier ones are undone."""
    from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import BackendError
    from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.kernel import KernelBackend
    from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import Change

    hv.veth("peth0", "phys")
    hv.veth("vif1.0", "vm1")
    sh("ip", "-n", hv.ns, "link", "set", "vif1.0", "down")
    hv.module("vswitch_bridge", name="xapi1", ageing_time=0)
    before = hv.links()
    backend = KernelBackend(netns=hv.ns)
    try:
        changes = [
            Change("add_bridge", "xenbr0", "kernel", {"stp": False, "ageing_time": 10}),
            Change("add_port", "peth0", "kernel", {"bridge": "xenbr0", "uplink": True}),
            Change("set_bridge", "xapi1", "kernel", {"ageing_time": 50, "mtu": 1400}),
            Change("add_port", "vif1.0", "kernel", {"bridge": "xapi1"}),
            Change("set_bridge", "xapi1", "kernel", {"mtu": 99999}),  # the kernel refuses this
        ]
        with pytest.raises(BackendError, match="nothing was changed"):
            backend.apply(changes)
    finally:
        backend.close()
    assert hv.links() == before


def test_info_reports_learned_macs_with_age(hv):
    vm1 = hv.lab.ns("vm1")
    vm2 = hv.lab.ns("vm2")
    hv.lab.link(hv.ns, "vif1.0", vm1, "eth0")
    hv.lab.link(hv.ns, "vif2.0", vm2, "eth0")
    hv.lab.run(vm1, "ip", "addr", "add", "192.0.2.1/24", "dev", "eth0")
    hv.lab.run(vm2, "ip", "addr", "add", "192.0.2.2/24", "dev", "eth0")
    hv.module("vswitch_bridge", name="xenbr0", forward_delay=0)
    hv.module("vswitch_port", bridge="xenbr0", ports=["vif1.0", "vif2.0"])
    assert hv.lab.ping_until(vm1, "192.0.2.2")
    vm1_mac = json.loads(hv.lab.run(vm1, "ip", "-j", "link", "show", "eth0").stdout)[0]["address"]
    facts = hv.module("vswitch_info", bridges=["xenbr0"])["vswitch"]
    learned = [e for e in facts["fdb"] if e["mac"] == vm1_mac]
    assert learned and learned[0]["port"] == "vif1.0" and not learned[0]["local"]
    assert learned[0]["age"] is not None and 0 <= learned[0]["age"] < 300


def test_pipelined_attaches_roll_back_when_the_kernel_refuses_one(hv):
    """Many attaches go out pipelined; one refused (a bridge can't be a port) undoes the others."""
    from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import BackendError
    from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.kernel import KernelBackend
    from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import Change

    for vif in ("vif1.0", "vif2.0", "vif3.0"):
        hv.veth(vif, vif.replace(".", "-"))
    sh("ip", "-n", hv.ns, "link", "set", "vif2.0", "down")
    hv.module("vswitch_bridge", name="xapi1")
    hv.module("vswitch_bridge", name="xenbr9")
    before = hv.links()
    backend = KernelBackend(netns=hv.ns)
    try:
        attach = [Change("add_port", name, "kernel", {"bridge": "xapi1"})
                  for name in ("vif1.0", "vif2.0", "xenbr9", "vif3.0")]
        with pytest.raises(BackendError, match="xenbr9.*nothing was changed"):
            backend.apply(attach)
        assert hv.links() == before
        backend.apply([attach[0], attach[1], attach[3]])   # the same batch without the bad one goes through
        assert [master_of(hv, v) for v in ("vif1.0", "vif2.0", "vif3.0")] == ["xapi1"] * 3
    finally:
        backend.close()


def test_bridge_batch_form_through_ansible(hv):
    hv.veth("peth0", "phys")
    bridges = [{"name": "xenbr0", "uplink": "peth0", "forward_delay": 0}, {"name": "xapi1", "ageing_time": 0}]
    checked = hv.module("vswitch_bridge", check=True, bridges=bridges)
    assert checked["changed"] and set(checked["diff"]["after"]["bridges"]) == {"xenbr0", "xapi1"}
    assert sh("ip", "-n", hv.ns, "link", "show", "xapi1", check=False).returncode != 0
    first = hv.module("vswitch_bridge", bridges=bridges)
    assert first["changed"] and master_of(hv, "peth0") == "xenbr0"
    assert bridge_info(hv, "xapi1")[1]["ageing_time"] == 0
    assert first["bridges"]["xenbr0"]["mac"] == bridge_info(hv, "xenbr0")[0]["address"]
    assert hv.module("vswitch_bridge", bridges=bridges)["changed"] is False
    before = hv.links()
    bad = hv.module("vswitch_bridge", bridges=[{"name": "xapi2"}, {"name": "xapi3", "mac": "01:00:00:00:00:01"}])
    assert bad.get("failed") and bad["msg"].startswith("bridges[1].mac: '01:00:00:00:00:01' is a multicast")
    assert hv.links() == before
