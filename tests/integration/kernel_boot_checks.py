"""The boot restore's VLAN-filtering part, on a kernel that has vlan_filtering (run inside tests/vmkernel/vm.py).

Not collected by a plain ``pytest tests`` run (the name does not match ``test_*.py``): this
machine's kernel lacks vlan_filtering, so tests/integration/test_boot_restore.py covers the rest
of the restore here and this file the VLANs, in the guest test_kernel_vlan_filtering.py boots; by hand::

    python3 tests/vmkernel/vm.py -- .venv/bin/python -m pytest -p no:cacheprovider \
        tests/integration/kernel_boot_checks.py

The host is declared with the modules (one playbook, as an operator would), then rebooted as the
kernel sees a reboot: every link gone, the NICs back bare. ``python3 -m vswitch.boot`` must bring
back the VLAN-filtering bridge with its uplink trunk and the ports' access and trunk entries, the
VLAN network with its veth pair, the bridges' settings, and must not bring back the bridge that
was removed with ``state: absent``; the same playbook then changes nothing.
"""
from __future__ import annotations

import json

import pytest
import yaml
from ansible_runner import run_playbook
from netlab import sh
from test_boot_restore import run_boot

pytestmark = pytest.mark.integration
NETLAB_PREFIX = "bt"
NICS = ("peth0", "eth1", "eth2", "eth3", "eth9")   # what the hardware has at power-on
PLAY = [{
    "hosts": "hv", "gather_facts": False,
    "tasks": [
        {"name": "bridges", "openvif.vswitch.vswitch_bridge": {"bridges": [
            {"name": "xenbr0", "uplink": "peth0", "stp": False, "forward_delay": 0},
            {"name": "xapi3", "stp": True, "forward_delay": 4, "ageing_time": 0, "mtu": 9000,
             "mac": "02:16:3e:0b:00:03"}]}},
        {"name": "a VLAN network", "openvif.vswitch.vswitch_vlan": {"name": "xapi5", "parent": "xenbr0", "tag": 5}},
        {"name": "ports with VLANs", "openvif.vswitch.vswitch_port": {"ports": [
            {"name": "eth1", "bridge": "xenbr0", "vlan": 7},
            {"name": "eth2", "bridge": "xenbr0", "trunks": "5,7", "native_vlan": 3},
            {"name": "eth3", "bridge": "xapi5"}]}},
        {"name": "a bridge removed", "openvif.vswitch.vswitch_bridge": {"name": "xapi9", "state": "absent"}},
    ],
}]


def links(hv) -> dict:
    return {link["ifname"]: link for link in json.loads(sh("ip", "-n", hv.ns, "-d", "-j", "link", "show").stdout)}


def configuration(hv) -> dict:
    """Each bridge's settings and MAC, who is whose port, the uplink's marks."""
    out = {}
    for name, link in links(hv).items():
        info = link.get("linkinfo", {})
        if info.get("info_kind") == "bridge":
            data = info["info_data"]
            out[name] = {"mtu": link["mtu"], "mac": link["address"], "up": "UP" in link["flags"],
                         **{k: data[k] for k in ("stp_state", "forward_delay", "ageing_time", "vlan_filtering")}}
        elif link.get("master"):
            out[name] = {"master": link["master"], "promisc": "PROMISC" in link["flags"], "alias": link.get("ifalias")}
    return out


def vlan_table(hv) -> dict:
    """``bridge vlan show``: every port's (and bridge's own) VLAN entries, by name."""
    return {entry["ifname"]: entry["vlans"] for entry in json.loads(sh("ip", "netns", "exec", hv.ns, "bridge", "-j",
                                                                       "vlan", "show").stdout)}


def reboot(hv) -> None:
    """What the kernel has after a reboot: no bridge, no veth the collection made; the NICs bare."""
    for name in links(hv):
        if name != "lo":
            sh("ip", "-n", hv.ns, "link", "del", name, check=False)   # a veth's peer goes with it
    assert set(links(hv)) == {"lo"}
    for nic in NICS:
        hv.veth(nic)


def test_vlan_filtering_bridges_ports_and_vlan_networks_come_back_after_a_reboot(hv, tmp_path):
    for nic in NICS:
        hv.veth(nic)
    made = hv.module("vswitch_bridge", name="xapi9", uplink="eth9")   # declared, then removed below
    assert made["changed"] and not made.get("failed"), made
    play = tmp_path / "site.yml"
    play.write_text(yaml.safe_dump(PLAY))
    rc, out, stats = run_playbook(hv.env, hv.inventory, play)
    assert rc == 0 and stats["hv"]["changed"] >= 4, out

    declared, vlans = configuration(hv), vlan_table(hv)
    assert declared["xenbr0"]["vlan_filtering"] == 1 and "xapi9" not in declared
    assert vlans["eth1"] == [{"vlan": 7, "flags": ["PVID", "Egress Untagged"]}]
    assert vlans["xapi5-vp"] == [{"vlan": 5, "flags": ["PVID", "Egress Untagged"]}]
    stored = json.loads((hv.state_dir / "declared.json").read_text())
    assert "xapi9" not in stored["bridges"] and set(stored["vlans"]) == {"xapi5"}

    reboot(hv)
    restored = run_boot(hv)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "xapi9" not in restored.stdout, restored.stdout

    after = links(hv)
    assert "xapi9" not in after and after["eth9"].get("master") is None   # removed stays removed
    assert {"xapi5", "xapi5-vp", "xapi5-vn"} <= set(after)                     # the VLAN network and its veths
    assert configuration(hv) == declared
    assert vlan_table(hv) == vlans
    assert [(v["vlan"], v.get("flags", [])) for v in vlans["eth2"]] == [(3, ["PVID", "Egress Untagged"]),
                                                                        (5, []), (7, [])]
    assert after["eth3"]["master"] == "xapi5" and after["xapi5-vn"]["master"] == "xapi5"

    rc, out, stats = run_playbook(hv.env, hv.inventory, play)
    assert rc == 0 and stats["hv"]["changed"] == 0, out
