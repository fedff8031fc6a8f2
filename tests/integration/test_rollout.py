"""Canary-first rollout of playbooks/site.yml with the health gate, on a fleet of four namespace
hypervisors cabled to one physical switch. Each hypervisor already has xenbr0 with its uplink and
its own address (as the bridge role leaves it); the run adds a VIF. hv3, in the second batch, gets
a declaration that breaks its reach: its bridge MAC pinned to the gateway's own (a copy-paste from
the router's page), so the gateway never answers it.

Expected: batches hv1 | hv2,hv3 | hv4. hv1 and hv2 are changed and reach the gateway; hv3 is put
back exactly as it was (ports, MAC, STP, forward delay); hv4 is never touched; the run fails naming
hv3, xenbr0 and the target.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from ansible_runner import run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = "192.0.2.254"


def bridge_view(lab, ns: str) -> dict:
    """The world's view of xenbr0: its ports, STP and forward delay, read with iproute2."""
    links = json.loads(lab.run(ns, "ip", "-j", "-d", "link", "show").stdout)
    bridge = next(link for link in links if link["ifname"] == "xenbr0")
    info = bridge["linkinfo"]["info_data"]
    ports = sorted(link["ifname"] for link in links if link.get("master") == "xenbr0")
    return {"ports": ports, "mac": bridge["address"], "stp": info["stp_state"],
            "forward_delay": info["forward_delay"]}


@pytest.fixture
def fleet(netlab, tmp_path):
    phys = netlab.ns("phys")
    netlab.run(phys, "ip", "link", "add", "sw0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
    netlab.run(phys, "ip", "addr", "add", f"{GATEWAY}/24", "dev", "sw0")
    netlab.run(phys, "ip", "link", "set", "sw0", "up")
    hosts = {}
    for i in range(1, 5):
        hv = netlab.ns(f"hv{i}")
        netlab.link(hv, "peth0", phys, f"p{i}")
        netlab.run(phys, "ip", "link", "set", f"p{i}", "master", "sw0")
        netlab.run(hv, "ip", "link", "add", "xenbr0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        netlab.run(hv, "ip", "link", "set", "peth0", "master", "xenbr0")
        netlab.run(hv, "ip", "addr", "add", f"192.0.2.{10 + i}/24", "dev", "xenbr0")
        netlab.run(hv, "ip", "link", "set", "xenbr0", "up")
        netlab.vm(hv, 1, 0, vm_ns=netlab.ns(f"hv{i}vm1"))
        hosts[f"hv{i}"] = hv
    for hv in hosts.values():
        assert netlab.ping_until(hv, GATEWAY), "the fleet's own wiring does not reach the gateway"
    good = [{"name": "xenbr0", "uplink": "peth0", "stp": False, "forward_delay": 0}]
    gateway_mac = json.loads(netlab.run(phys, "ip", "-j", "link", "show", "sw0").stdout)[0]["address"]
    broken = [dict(good[0], mac=gateway_mac)]
    members = {name: {"ansible_netns_name": ns, "vswitch_bridges": broken if name == "hv3" else good,
                      "vswitch_ports": [{"name": "vif1.0", "bridge": "xenbr0"}],
                      "health_gate_targets": {"xenbr0": [GATEWAY]}}
               for name, ns in hosts.items()}
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "openvif.vswitch.netns", "ansible_python_interpreter": sys.executable,
                 "lab_prefix": netlab.prefix},
        "children": {"hypervisors": {"hosts": members}}}}))
    # site.yml keeps the lab's MAC registry under .cache/lab, named by lab_prefix (this lab's own).
    registry = ROOT / ".cache" / "lab" / f"{netlab.prefix}-vif_mac_registry.yml"
    registry.parent.mkdir(parents=True, exist_ok=True)
    yield netlab, hosts, inventory
    for leftover in registry.parent.glob(f"{registry.name}*"):
        leftover.unlink()


def test_failure_in_second_batch_puts_that_host_back_and_stops(fleet, ansible_env):
    lab, hosts, inventory = fleet
    before = {name: bridge_view(lab, ns) for name, ns in hosts.items()}
    assert all(view["ports"] == ["peth0"] for view in before.values())

    rc, out, stats = run_playbook(ansible_env, inventory, ROOT / "playbooks" / "site.yml",
                                  "-e", '{"vswitch_rollout_batches": [1, 2, "100%"]}', timeout=600)
    assert rc != 0, out
    assert "health gate: hv3 lost xenbr0 -> 192.0.2.254" in out and "hv3 was put back" in out, out[-4000:]

    after = {name: bridge_view(lab, ns) for name, ns in hosts.items()}
    for name in ("hv1", "hv2"):  # the canary and the first batch: changed and healthy
        assert after[name]["ports"] == ["peth0", "vif1.0"], (name, after[name])
        assert lab.ping_until(hosts[name], GATEWAY), f"{name} lost the gateway"
    assert after["hv3"] == before["hv3"], "hv3 was not put back as it was"
    assert lab.ping_until(hosts["hv3"], GATEWAY), "hv3 still cannot reach the gateway after being put back"
    assert after["hv4"] == before["hv4"] and "hv4" not in stats or stats["hv4"]["ok"] == 0, \
        "hv4 (a later batch) was touched"
    assert stats["hv3"]["failed"] == 1 and stats["hv1"]["failed"] == stats["hv2"]["failed"] == 0
