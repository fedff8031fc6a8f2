"""vif_mac against the real kernel: the module on one lab host, the role over a fleet of three.

Hosts are network namespaces reached through the netns connection; VMs are namespaces wired
to the hosts by veth pairs whose host ends are named vif<domid>.<devid>. Every MAC the tests
check is read back from the kernel with iproute2 (the world's view, not the module's).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from ansible_runner import run_playbook
from netlab import sh

pytestmark = [pytest.mark.integration]

ROLE_PLAY = """
- hosts: all
  gather_facts: false
  roles:
    - role: openvif.vswitch.vif_mac
      vif_mac_registry: {registry}
"""


def link_macs(ns: str) -> dict[str, str]:
    links = json.loads(sh("ip", "-n", ns, "-j", "link", "show").stdout)
    return {link["ifname"]: link.get("address") for link in links}


# ---------------------------------------------------------------- the module on one host


def test_module_check_change_idempotent_and_real_interface(hv):
    hv.lab.vm(hv.ns, 3, 0)
    hv.lab.vm(hv.ns, 3, 1, vm_ns=hv.lab.ns("vm3"))
    before = hv.links()
    args = {"vm": "web01", "device": 0, "interface": "vif3.0", "bridge": "xenbr0"}

    checked = hv.module("vif_mac", check=True, **args)
    assert checked["changed"] is True and checked["mac"] == "00:16:3e:2d:97:77"
    assert checked["diff"]["after"] == {"vif3.0": "00:16:3e:2d:97:77"}
    assert hv.links() == before, "check mode changed the host"

    done = hv.module("vif_mac", **args)
    assert done["changed"] is True and done["xen_vif"] == "mac=00:16:3e:2d:97:77,bridge=xenbr0"
    assert link_macs(hv.ns)["vif3.0"] == "00:16:3e:2d:97:77"
    assert done["diff"]["before"] == {"vif3.0": before["vif3.0"]["address"]}

    again = hv.module("vif_mac", **args)
    assert again["changed"] is False and again["mac"] == "00:16:3e:2d:97:77"

    # Batch form: the second NIC avoids the first's address and whatever in_use lists.
    gathered = hv.module("vif_mac", gather=True)
    assert {"interface": "vif3.0", "mac": "00:16:3e:2d:97:77", "kind": "veth"} in gathered["in_use"]
    batch = hv.module("vif_mac", vifs=[{"vm": "web01", "device": 0, "interface": "vif3.0"},
                                       {"vm": "web01", "device": 1, "interface": "vif3.1"}],
                      in_use=gathered["in_use"], bridge="xenbr0")
    assert batch["changed"] is True  # vif3.1 only
    assert [v["changed"] for v in batch["vifs"]] == [False, True]
    macs = link_macs(hv.ns)
    assert macs["vif3.0"] == "00:16:3e:2d:97:77" and macs["vif3.1"] == batch["vifs"][1]["mac"]
    assert batch["xen_vif_config"] == ("vif = ['mac=00:16:3e:2d:97:77,bridge=xenbr0', "
                                       f"'mac={macs['vif3.1']},bridge=xenbr0']")


@pytest.mark.parametrize("args, field, reason", [
    ({"vm": "web01", "interface": "vif3.0", "mac": "01:16:3e:00:00:01"}, "mac", "multicast"),
    ({"vm": "web01", "interface": "vif3.0", "mac": "52:54:00:00:00:01"}, "mac", "outside the requested range"),
    ({"vm": "web01", "interface": "vif3.0", "mac": "00:16:3e:00:01"}, "mac", "is not a MAC address"),
    ({"vm": "web01", "interface": "vif3.0", "prefix": "00:50:56"}, "prefix", "globally administered"),
    ({"vm": "web01", "interface": "vif3.0", "prefix": "0x:00"}, "prefix", "is not a MAC prefix"),
    ({"vifs": [{"vm": "a", "interface": "vif3.0"}, {"vm": "b", "interface": "vif3.0"}]}, "vifs[1].interface",
     "already the interface of"),
])
def test_module_bad_input_fails_cleanly_host_unchanged(hv, args, field, reason):
    hv.lab.vm(hv.ns, 3, 0)
    before = hv.links()
    result = hv.module("vif_mac", **args)
    assert result.get("failed") is True and result["changed"] is False
    assert result["error"]["field"] == field and reason in result["error"]["reason"]
    assert result["msg"].startswith(f"{field}: ")
    assert hv.links() == before


# ---------------------------------------------------------------- the role over a fleet


class Fleet:
    """Three hypervisor namespaces with VMs, an inventory declaring their VIFs, the role's play."""

    def __init__(self, lab, env, tmp: Path) -> None:
        self.lab, self.env, self.tmp = lab, env, tmp
        self.hosts = {name: lab.ns(name) for name in ("h1", "h2", "h3")}
        self.registry = tmp / "vif_mac_registry.yml"
        self.play = tmp / "play.yml"
        self.play.write_text(ROLE_PLAY.format(registry=self.registry))
        # domids are per host in Xen: h1 and h2 both have a vif1.0.
        self.vifs = {
            "h1": [{"vm": "web01", "interface": "vif1.0", "bridge": "xenbr0"},
                   {"vm": "web01", "device": 1, "interface": "vif1.1", "bridge": "xapi1"},
                   {"vm": "web02", "interface": "vif2.0", "bridge": "xenbr0"}],
            "h2": [{"vm": "db01", "interface": "vif1.0", "bridge": "xenbr0"},
                   {"vm": "8C1E2A3F-0D4B-4E0E-9A55-3B0C6F1F9A10", "interface": "vif2.0"}],
            "h3": [{"interface": "vif5.0"}],  # named by interface only: key h3:vif5.0
        }
        for host, vifs in self.vifs.items():
            for vif in vifs:
                domid, devid = (int(x) for x in vif["interface"][3:].split("."))
                lab.vm(self.hosts[host], domid, devid, vm_ns=lab.ns(f"{host}vm{domid}"))
        lab.link(self.hosts["h3"], "eth7", lab.ns("lan"), "eth0")  # an unmanaged NIC, for duplicates

    def write_inventory(self, vifs=None) -> Path:
        vifs = self.vifs if vifs is None else vifs
        hosts = {name: {"ansible_connection": "openvif.vswitch.netns", "ansible_netns_name": ns,
                        "ansible_python_interpreter": sys.executable, "vif_mac_vifs": vifs.get(name, [])}
                 for name, ns in self.hosts.items()}
        path = self.tmp / "inventory.yml"
        path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
        return path

    def run(self, *extra: str, vifs=None):
        return run_playbook(self.env, self.write_inventory(vifs), self.play, *extra, cwd=self.tmp)

    def macs(self) -> dict[str, dict[str, str]]:
        return {host: link_macs(ns) for host, ns in self.hosts.items()}

    def assigned(self) -> dict[str, str]:
        return yaml.safe_load(self.registry.read_text())["assignments"]


@pytest.fixture
def fleet(netlab, ansible_env, tmp_path):
    return Fleet(netlab, ansible_env, tmp_path)


def _changed(stats) -> int:
    return sum(s["changed"] for s in stats.values())


@pytest.mark.slow
def test_role_assigns_fleet_unique_sets_persists_and_is_idempotent(fleet):
    before = fleet.macs()
    rc, out, stats = fleet.run("--check", "--diff")
    assert rc == 0, out
    assert not fleet.registry.exists() and fleet.macs() == before, "check mode changed something"
    assert _changed(stats) > 0

    rc, out, stats = fleet.run()
    assert rc == 0, out
    registry = fleet.assigned()
    assert set(registry) == {"web01/0", "web01/1", "web02/0", "db01/0",
                             "8c1e2a3f-0d4b-4e0e-9a55-3b0c6f1f9a10/0", "h3:vif5.0"}
    assert len(set(registry.values())) == len(registry)
    assert all(m.startswith("00:16:3e:") for m in registry.values())
    text = fleet.registry.read_text()
    entries = [line for line in text.splitlines() if line.startswith("  ")]
    assert entries == sorted(entries), "registry is not sorted"
    macs = fleet.macs()
    assert macs["h1"]["vif1.0"] == registry["web01/0"] and macs["h1"]["vif1.1"] == registry["web01/1"]
    assert macs["h1"]["vif2.0"] == registry["web02/0"] and macs["h2"]["vif1.0"] == registry["db01/0"]
    assert macs["h2"]["vif2.0"] == registry["8c1e2a3f-0d4b-4e0e-9a55-3b0c6f1f9a10/0"]
    assert macs["h3"]["vif5.0"] == registry["h3:vif5.0"]
    assert "6 VIFs in 00:16:3e:xx:xx:xx: 6 new" in out

    rc, out, stats = fleet.run()
    assert rc == 0, out
    assert _changed(stats) == 0, f"second run changed something:\n{out}"
    assert fleet.registry.read_text() == text and fleet.macs() == macs
    assert "DUPLICATE" not in out

    # VMs come and go: web02 leaves h1, app01 arrives on h3. Nobody else moves.
    vifs = dict(fleet.vifs, h1=fleet.vifs["h1"][:2],
                h3=fleet.vifs["h3"] + [{"vm": "app01", "interface": "vif6.0"}])
    fleet.lab.vm(fleet.hosts["h3"], 6, 0, vm_ns=fleet.lab.ns("h3vm6"))
    rc, out, stats = fleet.run(vifs=vifs)
    assert rc == 0, out
    after = fleet.assigned()
    assert {k: after[k] for k in registry} == registry, "an existing assignment changed"
    assert "web02/0" in after, "a removed VM's entry must stay reserved (vif_mac_prune is false)"
    assert fleet.macs()["h3"]["vif6.0"] == after["app01/0"] and len(set(after.values())) == len(after)

    # Part of the fleet (--limit): the other hosts' entries stay; pruning is refused, not done partially.
    rc, out, _err = fleet.run("--limit", "h1,h2", vifs=vifs)
    assert rc == 0, out
    assert fleet.assigned() == after
    rc, out, _err = fleet.run("--limit", "h1,h2", "-e", "vif_mac_prune=true", vifs=vifs)
    assert rc != 0 and "vif_mac_prune would drop the registry entries of h3" in out
    assert fleet.assigned() == after
    rc, out, _err = fleet.run("-e", "vif_mac_prune=true", vifs=vifs)
    assert rc == 0, out
    assert "web02/0" not in fleet.assigned() and {k: v for k, v in after.items() if k != "web02/0"} == fleet.assigned()


@pytest.mark.slow
def test_role_reports_deliberate_duplicate_and_fails_when_asked(fleet):
    rc, out, _err = fleet.run()
    assert rc == 0, out
    web01 = fleet.assigned()["web01/0"]
    # Someone hand-configures an unmanaged NIC on another host with web01's address.
    fleet.lab.run(fleet.hosts["h3"], "ip", "link", "set", "eth7", "address", web01)
    registry_text = fleet.registry.read_text()

    rc, out, stats = fleet.run()
    assert rc == 0, out
    assert (f"vif_mac DUPLICATE {web01} held by h3:eth7, web01/0 (seen on h1:vif1.0, h3:eth7) "
            "- NOT resolved") in out
    assert _changed(stats) == 0 and fleet.registry.read_text() == registry_text  # the registry wins

    rc, out, _err = fleet.run("-e", "vif_mac_fail_on_duplicates=true")
    assert rc != 0 and f"vif_mac: {web01} held by more than one NIC" in out


@pytest.mark.slow
def test_role_bad_input_fails_cleanly_hosts_and_registry_unchanged(fleet):
    rc, out, _err = fleet.run()
    assert rc == 0, out
    macs, text = fleet.macs(), fleet.registry.read_text()

    bad = dict(fleet.vifs, h2=fleet.vifs["h2"] + [{"vm": "x", "interface": "vif9.0", "mac": "01:16:3e:00:00:01"}])
    rc, out, _err = fleet.run(vifs=bad)
    assert rc != 0 and "vifs[h2][2].mac: '01:16:3e:00:00:01' is a multicast address" in out
    taken = dict(fleet.vifs, h2=fleet.vifs["h2"] + [{"vm": "x", "mac": fleet.assigned()["db01/0"]}])
    rc, out, _err = fleet.run(vifs=taken)
    assert rc != 0 and "is already held by 'db01/0'" in out
    twice = dict(fleet.vifs, h3=fleet.vifs["h3"] + [{"vm": "web01", "device": 1}])
    rc, out, _err = fleet.run(vifs=twice)
    assert rc != 0 and "is declared twice" in out
    assert fleet.macs() == macs and fleet.registry.read_text() == text

    # A merge gave two VMs one MAC in the registry: refuse, say which entries, change nothing.
    merged = text.replace(fleet.assigned()["web02/0"], fleet.assigned()["web01/0"])
    fleet.registry.write_text(merged)
    rc, out, _err = fleet.run()
    assert rc != 0 and "a merge or a hand edit gave two VIFs one MAC" in out
    assert fleet.macs() == macs and fleet.registry.read_text() == merged
