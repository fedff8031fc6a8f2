"""The modules on `datapath: userspace`, through Ansible, against a real vswitchd in the host's namespace."""
from __future__ import annotations

import pytest
from vswitchd_lab import Daemon

pytestmark = pytest.mark.integration


@pytest.fixture
def userspace_hv(hv, ansible_env, tmp_path):
    daemon = Daemon(hv.ns, tmp_path).start()
    hv.env = dict(ansible_env, VSWITCHD_SOCKET=str(daemon.socket))
    try:
        yield hv, daemon
    finally:
        daemon.stop()


@pytest.mark.quick
def test_bridge_and_ports_check_mode_first_then_idempotent(userspace_hv):
    hv, daemon = userspace_hv
    bridge = {"name": "xenbr0", "datapath": "userspace", "ageing_time": 0, "mtu": 1500}
    checked = hv.module("vswitch_bridge", check=True, **bridge)
    assert checked["changed"] is True and not checked.get("failed"), checked
    assert daemon.call("get_state")["bridges"] == {}, "check mode changed the daemon"
    first = hv.module("vswitch_bridge", **bridge)
    assert first["changed"] is True, first
    assert daemon.call("get_state")["bridges"]["xenbr0"]["ageing_time"] == 0
    assert hv.module("vswitch_bridge", **bridge)["changed"] is False

    ports = {"bridge": "xenbr0", "ports": [
        {"name": "vif1.0", "type": "tap", "vlan": 10, "mac": "00:16:3e:00:00:01"},
        {"name": "vif2.0", "type": "tap", "trunks": "10-20", "native_vlan": 10, "promiscuous": True}]}
    assert hv.module("vswitch_port", check=True, **ports)["changed"] is True
    assert daemon.call("get_state")["ports"] == {}
    result = hv.module("vswitch_port", **ports)
    assert result["changed"] is True, result
    state = daemon.call("get_state")["ports"]
    assert state["vif1.0"]["vlan"] == 10 and state["vif1.0"]["mac"] == "00:16:3e:00:00:01"
    assert state["vif2.0"]["trunks"] == list(range(10, 21)) and state["vif2.0"]["promiscuous"] is True
    again = hv.module("vswitch_port", **ports)
    assert again["changed"] is False, again

    bad = hv.module("vswitch_port", bridge="xenbr0", name="vif3.0", type="tap", vlan=4095)
    assert bad.get("failed") and "vlan" in bad["msg"]
    assert "vif3.0" not in daemon.call("get_state")["ports"]

    gone = hv.module("vswitch_bridge", name="xenbr0", datapath="userspace", state="absent")
    assert gone["changed"] is True
    assert daemon.call("get_state")["bridges"] == {} and daemon.call("get_state")["ports"] == {}
