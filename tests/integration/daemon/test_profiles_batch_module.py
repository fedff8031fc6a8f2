"""vswitch_port's batch form with VM port profiles through Ansible, against a real vswitchd: ports and
profiles in one task and one transaction, check mode, diff, idempotence, a running VIF following its
profile, and a bad entry named by its index and field with nothing changed."""
from __future__ import annotations

import pytest
from test_profiles_module import declared, libvirt_plug, userspace_hv  # noqa: F401  pylint: disable=unused-import

# (userspace_hv is a fixture: used by name, so ruff and pylint take it for unused.)

NETLAB_PREFIX = "pg"   # this area's namespaces (tests/conftest.py)
pytestmark = pytest.mark.integration
WEB01 = {"vm": "web01", "vlan": 10, "mac": "attached"}
DB01 = {"vm": "db01", "device": 1, "trunks": "10,20"}


def test_ports_and_profiles_in_one_batch(userspace_hv):  # noqa: F811
    hv, daemon = userspace_hv
    assert hv.module("vswitch_bridge", name="xenbr1", datapath="userspace")["changed"] is True
    hv.veth("vif1.0")
    task = {"bridge": "xenbr1", "ports": ["vif1.0", WEB01, DB01]}

    checked = hv.module("vswitch_port", check=True, **task)
    assert checked["changed"] is True and not checked.get("failed"), checked
    assert checked["diff"]["before"]["profiles"] == {"web01/0": {"state": "absent"}, "db01/1": {"state": "absent"}}
    assert declared(hv) == {} and "vif1.0" not in daemon.call("get_state")["ports"], "check mode changed the host"

    done = hv.module("vswitch_port", **task)
    assert done["changed"] is True and not done.get("failed"), done
    assert declared(hv) == {"web01/0": {"vm": "web01", "device": 0, "bridge": "xenbr1", "vlan": 10, "mac": "attached"},
                            "db01/1": {"vm": "db01", "device": 1, "bridge": "xenbr1", "trunks": "10,20"}}
    assert daemon.call("get_state")["ports"]["vif1.0"]["bridge"] == "xenbr1"
    assert done["profiles"]["db01/1"]["interfaces"] == [] and done["ports"]["vif1.0"]["bridge"] == "xenbr1"
    again = hv.module("vswitch_port", **task)
    assert again["changed"] is False and again["changes"] == [], again

    # web01 runs (libvirt plugs its tap): redeclared in a batch, its VIF follows in the same run.
    hv.veth("vnet0")
    assert libvirt_plug(hv, daemon, "vnet0").returncode == 0
    assert daemon.call("get_state")["ports"]["vnet0"]["vlan"] == 10
    moved = {"bridge": "xenbr1", "ports": ["vif1.0", dict(WEB01, vlan=20), DB01]}
    checked = hv.module("vswitch_port", check=True, **moved)
    assert checked["changed"] is True and daemon.call("get_state")["ports"]["vnet0"]["vlan"] == 10
    done = hv.module("vswitch_port", **moved)
    assert done["changed"] is True and done["profiles"]["web01/0"]["interfaces"] == ["vnet0"], done
    assert done["diff"]["before"]["profiles"]["web01/0"]["vlan"] == 10
    assert done["diff"]["after"]["profiles"]["web01/0"]["vlan"] == 20
    assert daemon.call("get_state")["ports"]["vnet0"]["vlan"] == 20

    # A bad entry: named by its index and field, and nothing changes (the good entries neither).
    hv.veth("vif2.0")
    before = (declared(hv), daemon.call("get_state"))
    for ports, expected in (
            (["vif2.0", WEB01, dict(DB01, mac="01:00:5e:00:00:01")], "ports[2].mac: '01:00:5e:00:00:01'"),
            (["vif2.0", {"vm": "web01", "vlan": 10, "name": "vif3.0"}], "ports[1].name"),
            (["vif2.0", WEB01, dict(WEB01, vlan=11)], "ports[2].vm: 'web01'"),
            ([WEB01, {"name": "vif2.0", "vlan": 4095}], "ports[1].vlan: 4095")):
        result = hv.module("vswitch_port", bridge="xenbr1", ports=ports)
        assert result.get("failed") and expected in result["msg"], (ports, result.get("msg"))
    assert (declared(hv), daemon.call("get_state")) == before

    gone = hv.module("vswitch_port", bridge="xenbr1", ports=[WEB01, DB01], state="absent")
    assert gone["changed"] is True and declared(hv) == {}, gone
    assert hv.module("vswitch_port", bridge="xenbr1", ports=[WEB01, DB01], state="absent")["changed"] is False
