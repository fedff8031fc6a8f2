"""vswitch_port's profile form through Ansible, against a real vswitchd: check mode, diff, idempotence,
bad input, vswitch_info's view, a running VIF updated in place, and the profile outliving the daemon."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from vswitchd_lab import ENV, Daemon

NETLAB_PREFIX = "pp"   # this area's namespaces (tests/conftest.py)
pytestmark = pytest.mark.integration
PROFILE = {"vm": "web01", "device": 0, "bridge": "xenbr1", "vlan": 10, "mac": "attached"}
MAC = "00:16:3e:5a:00:01"


@pytest.fixture
def userspace_hv(hv, ansible_env, tmp_path):
    daemon = Daemon(hv.ns, tmp_path).start()
    hv.env = dict(hv.env, VSWITCHD_SOCKET=str(daemon.socket))
    try:
        yield hv, daemon
    finally:
        daemon.stop()


def libvirt_plug(hv, daemon, tap: str) -> subprocess.CompletedProcess:
    """libvirt's own ovs-vsctl line for a tap of domain web01 (no VLAN in its XML: the profile has it)."""
    return subprocess.run(["ip", "netns", "exec", hv.ns, sys.executable, "-m", "vswitch.vsctl", "--timeout=5",
                           "--", "--may-exist", "add-port", "xenbr1", tap,
                           "--", "set", "Interface", tap, f'external-ids:attached-mac="{MAC}"',
                           "--", "set", "Interface", tap, 'external-ids:vm-id="web01"'],
                          env={**ENV, "VSWITCHD_SOCKET": str(daemon.socket),
                               "OPENVIF_STATE_DIR": str(hv.state_dir)},
                          capture_output=True, text=True, timeout=60, check=False)


def declared(hv) -> dict:
    path = hv.state_dir / "declared.json"
    return json.loads(path.read_text()).get("profiles", {}) if path.exists() else {}


def test_profile_form_check_diff_idempotence_info_and_restart(userspace_hv):
    hv, daemon = userspace_hv
    assert hv.module("vswitch_bridge", name="xenbr1", datapath="userspace")["changed"] is True
    assert hv.module("vswitch_bridge", name="xenbr0")["changed"] is True   # kernel datapath

    checked = hv.module("vswitch_port", check=True, **PROFILE)
    assert checked["changed"] is True and not checked.get("failed"), checked
    assert checked["diff"]["before"] == {"profiles": {"web01/0": {"state": "absent"}}}
    assert declared(hv) == {}, "check mode wrote the declaration"
    first = hv.module("vswitch_port", **PROFILE)
    assert first["changed"] is True and first["profile"] == PROFILE, first
    assert declared(hv) == {"web01/0": PROFILE}
    again = hv.module("vswitch_port", **PROFILE)
    assert again["changed"] is False and again["changes"] == [], again

    info = hv.module("vswitch_info")
    assert info["vswitch"]["profiles"] == {"web01/0": {**PROFILE, "interfaces": []}}
    hv.veth("vnet0")
    plugged = libvirt_plug(hv, daemon, "vnet0")
    assert plugged.returncode == 0, plugged.stderr
    port = daemon.call("get_state")["ports"]["vnet0"]
    assert port["vlan"] == 10 and port["mac"] == MAC
    info = hv.module("vswitch_info")
    assert info["vswitch"]["profiles"]["web01/0"]["interfaces"] == ["vnet0"]

    # Redeclared while web01 runs: its VIF follows in the same run (check mode first changes nothing).
    moved = dict(PROFILE, vlan=20)
    checked = hv.module("vswitch_port", check=True, **moved)
    assert checked["changed"] is True and checked["changes"]
    assert daemon.call("get_state")["ports"]["vnet0"]["vlan"] == 10
    done = hv.module("vswitch_port", **moved)
    assert done["changed"] is True and done["interfaces"] == ["vnet0"], done
    assert daemon.call("get_state")["ports"]["vnet0"]["vlan"] == 20
    assert done["diff"]["before"]["profiles"]["web01/0"]["vlan"] == 10
    assert done["diff"]["after"]["profiles"]["web01/0"]["vlan"] == 20

    # Bad input: a clear error naming the field, nothing changed.
    before = (declared(hv), daemon.call("get_state"))
    for args, expected in (
            (dict(PROFILE, bridge="xenbr0", vlan=None), "(port security) is not available on the kernel datapath"),
            (dict(PROFILE, bridge="xenbr0", mac=None), "needs bridge VLAN filtering"),
            (dict(PROFILE, bridge="nosuch"), "'nosuch' does not exist"),
            (dict(PROFILE, mac="01:00:5e:00:00:01"), "multicast"),
            (dict(PROFILE, name="vif1.0"), "cannot be combined with 'vm'"),
            (dict(PROFILE, vlan=10, trunks="10-20"), "cannot be combined with trunks"),
            ({"vm": "db01", "device": 0, "bridge": "xenbr1", "mac": "00:16:3e:5a:00:09"}, None)):
        result = hv.module("vswitch_port", **args)
        if expected is None:   # a second profile is fine; locking the same MAC twice below is not
            assert result["changed"] is True, result
            clash = hv.module("vswitch_port", vm="db01", device=1, bridge="xenbr1", mac="00:16:3e:5a:00:09")
            assert clash.get("failed") and "is the port-security MAC of profile db01/0 already" in clash["msg"]
            assert hv.module("vswitch_port", vm="db01", device=0, bridge="xenbr1", state="absent")["changed"]
            continue
        assert result.get("failed") and expected in result["msg"], (args, result.get("msg"))
    assert (declared(hv), daemon.call("get_state")) == before

    # The profile is the host's, not the daemon's: a restarted vswitchd's new VIFs still get it.
    daemon.stop()
    daemon.start()
    hv.veth("vnet1")
    assert libvirt_plug(hv, daemon, "vnet1").returncode == 0
    assert daemon.call("get_state")["ports"]["vnet1"]["vlan"] == 20

    gone = hv.module("vswitch_port", vm="web01", device=0, state="absent")
    assert gone["changed"] is True and declared(hv) == {}
    assert hv.module("vswitch_port", vm="web01", device=0, state="absent")["changed"] is False
