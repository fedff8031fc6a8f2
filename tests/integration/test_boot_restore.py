"""Boot restore on the real kernel: declare with the modules, lose every bridge, run vswitch.boot."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from netlab import sh

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BRIDGES = [{"name": "xenbr0", "uplink": "peth0", "stp": False, "forward_delay": 0},
           {"name": "xapi1", "ageing_time": 0},
           {"name": "xapi2", "mtu": 9000, "mac": "02:aa:bb:cc:dd:01", "stp": True, "forward_delay": 4}]


def links(hv) -> dict:
    return {link["ifname"]: link for link in json.loads(sh("ip", "-n", hv.ns, "-d", "-j", "link", "show").stdout)}


def configuration(hv) -> dict:
    """What boot must bring back: each bridge's settings and MAC, and who is whose port."""
    out = {}
    for name, link in links(hv).items():
        data = link.get("linkinfo", {}).get("info_data", {})
        if link.get("linkinfo", {}).get("info_kind") == "bridge":
            out[name] = {"mtu": link["mtu"], "mac": link["address"], "up": "UP" in link["flags"],
                         **{k: data[k] for k in ("stp_state", "forward_delay", "ageing_time")}}
        elif link.get("master"):
            out[name] = {"master": link["master"], "promisc": "PROMISC" in link["flags"],
                         "alias": link.get("ifalias")}
    return out


def run_boot(hv, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "plugins" / "module_utils"), OPENVIF_STATE_DIR=str(hv.state_dir))
    return subprocess.run(["ip", "netns", "exec", hv.ns, sys.executable, "-m", "vswitch.boot", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_declared_networks_come_back_after_every_link_is_gone(hv):
    for name in ("peth0", "vif1.0", "veth7"):
        hv.veth(name)
    first = hv.module("vswitch_bridge", bridges=BRIDGES)
    assert first["changed"] and not first.get("failed"), first
    assert any("will not survive a reboot" in w for w in first.get("warnings", [])), first.get("warnings")
    ports = hv.module("vswitch_port", ports=[{"name": "vif1.0", "bridge": "xenbr0"},
                                             {"name": "veth7", "bridge": "xapi1"}])
    assert ports["changed"] and not ports.get("warnings"), ports   # said once per host
    declared = configuration(hv)
    assert declared["peth0"] == {"master": "xenbr0", "promisc": True, "alias": "openvif:uplink"}
    stored = json.loads((hv.state_dir / "declared.json").read_text())
    assert set(stored["bridges"]) == {"xenbr0", "xapi1", "xapi2"} and set(stored["ports"]) == {"vif1.0", "veth7"}

    assert hv.module("vswitch_info", fdb=False)["vswitch"]["declaration"]["drift"] == []
    sh("ip", "-n", hv.ns, "link", "set", "veth7", "nomaster")          # brctl delif, by hand
    sh("ip", "-n", hv.ns, "link", "set", "xapi1", "type", "bridge", "ageing_time", "30000")
    drift = hv.module("vswitch_info", fdb=False)["vswitch"]["declaration"]["drift"]
    assert drift == [{"kind": "bridge", "name": "xapi1", "field": "ageing_time", "declared": 0, "actual": 300},
                     {"kind": "port", "name": "veth7", "field": "bridge", "declared": "xapi1", "actual": None}]

    # The reboot: every bridge is gone, the VM's VIF with it, and the NIC comes back bare.
    for name in ("xenbr0", "xapi1", "xapi2", "peth0", "vif1.0"):
        sh("ip", "-n", hv.ns, "link", "del", name)
    hv.veth("peth0")
    assert "xenbr0" not in links(hv) and links(hv)["peth0"].get("ifalias") is None
    drift = hv.module("vswitch_info", fdb=False)["vswitch"]["declaration"]["drift"]
    expected = {("xenbr0", "state"), ("xapi1", "state"), ("xapi2", "state"), ("veth7", "bridge")}
    assert {(e["name"], e["field"]) for e in drift} == expected

    checked = run_boot(hv, "--check")
    assert checked.returncode == 0 and "would add_bridge xenbr0" in checked.stdout, checked
    assert "xenbr0" not in links(hv)
    restored = run_boot(hv)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "add_port peth0 (bridge=xenbr0, type=system, uplink=True)" in restored.stdout
    assert "port vif1.0 of xenbr0 is absent (a VIF whose VM is not running); skipped" in restored.stdout
    after = configuration(hv)
    expected = {k: v for k, v in declared.items() if k != "vif1.0"}
    assert after == expected
    assert hv.module("vswitch_info", fdb=False)["vswitch"]["declaration"]["drift"] == []

    assert run_boot(hv).stdout.strip().endswith("s)") and "already matches" in run_boot(hv).stdout
    again = hv.module("vswitch_bridge", bridges=BRIDGES)
    assert again["changed"] is False, again["changes"]
    assert hv.module("vswitch_port", ports=[{"name": "veth7", "bridge": "xapi1"}])["changed"] is False


def test_damaged_declaration_restores_the_good_copy_and_fails_naming_the_file(hv):
    hv.veth("veth7")
    hv.module("vswitch_bridge", name="xapi1", ageing_time=0)
    hv.module("vswitch_bridge", name="xapi2")
    path = hv.state_dir / "declared.json"
    path.write_text(path.read_text()[:40])
    sh("ip", "-n", hv.ns, "link", "del", "xapi1")
    result = run_boot(hv)
    assert result.returncode == 1
    assert f"declaration {path}: is truncated" in result.stderr and "restoring the last good copy" in result.stderr
    assert "xapi1" in links(hv)   # the good copy held xapi1 (written before xapi2 was declared)
    path.write_text('{"format": "openvif.vswitch.declared", "version": 3}')
    refused = run_boot(hv)
    assert refused.returncode == 2 and "3 is the version of a newer openvif.vswitch" in refused.stderr
