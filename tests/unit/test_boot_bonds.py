"""Kernel bonds in the boot-time declaration: recorded by vswitch_bridge runs in the module's own form,
restored by ``vswitch.boot`` (the bonding device before its bridge takes it as the uplink), from golden
declarations against a fake kernel datapath that has bonding. The real kernel's side is
tests/integration/kernel_bond_boot_checks.py, in the Debian-kernel guest."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import actions, boot
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.declared import DeclarationStore, drift, parse
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.host import Host
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.kernel_bonds import (
    KERNEL_BOND_MODES,
    NO_SLB,
)
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.plan import Features
from fakes import FakeBackend

GOLDEN = Path(__file__).parent / "golden" / "boot"
LINKS = ["peth0", "peth1", "veth5", "veth7"]
BONDING = Features(bond_modes=KERNEL_BOND_MODES, bond_missing=NO_SLB)
NO_BONDING = Features(bond_missing="it needs the Linux bonding driver (kernel module 'bonding'), which kernel "
                                   "6.1.0 lacks (CONFIG_BONDING is not set)")


def _decl():
    return parse((GOLDEN / "bonds.json").read_text(), "bonds")


def test_boot_plan_makes_each_bond_with_its_bridge():
    backend = FakeBackend(links=LINKS, features=BONDING)
    plan = boot.plan_boot(_decl(), backend.read(), {"kernel": backend.features})
    assert [c.describe() for c in plan.changes] == (GOLDEN / "bonds.plan").read_text().splitlines()
    assert plan.failures == [] and plan.notes == ["port vif1.0 of xenbr0 is absent (a VIF whose VM is not running); "
                                                  "skipped"]


def test_restored_bonds_match_and_a_second_boot_does_nothing(tmp_path, capsys):
    backend = FakeBackend(links=LINKS, features=BONDING)
    shutil.copy(GOLDEN / "bonds.json", tmp_path / "declared.json")
    assert boot.main(["--state-dir", str(tmp_path)], host=Host([backend])) == 0
    bond = backend.state.ports["bond0"]
    assert bond.uplink and bond.bridge == "xenbr0" and backend.state.bridges["xenbr0"].uplink == "bond0"
    assert bond.bond["members"] == ["peth0", "peth1"] and bond.bond["primary"] == "peth1"
    assert backend.state.ports["bond1"].bond["mode"] == "balance-tcp"
    assert drift(_decl(), backend.state) == []
    capsys.readouterr()
    assert boot.main(["--state-dir", str(tmp_path)], host=Host([backend])) == 0
    assert "the host already matches its declaration" in capsys.readouterr().out


def test_a_kernel_without_bonding_fails_the_bridge_by_name():
    backend = FakeBackend(links=LINKS, features=NO_BONDING)
    plan = boot.plan_boot(_decl(), backend.read(), {"kernel": backend.features})
    assert len(plan.failures) == 2 and all("kernel module 'bonding'" in f for f in plan.failures), plan.failures
    assert plan.failures[0].startswith("bridge xenbr0: uplink.bond: 'bond0' cannot be made on the kernel datapath")


def test_an_absent_member_restores_the_bridge_without_its_bond():
    backend = FakeBackend(links=["peth0", "veth5", "veth7"], features=BONDING)
    plan = boot.plan_boot(_decl(), backend.read(), {"kernel": backend.features})
    assert "bridge xenbr0: bond bond0's member(s) peth1 are absent; the bridge is restored without it" in plan.notes
    assert [c.describe() for c in plan.changes if c.target in ("xenbr0", "bond0")] == [
        "add_bridge xenbr0 (mac=02:16:3e:00:00:01)"]
    assert plan.failures == []


def test_module_runs_record_the_bond_as_the_module_takes_it(tmp_path):
    backend = FakeBackend(links=LINKS, features=BONDING)
    store = DeclarationStore(str(tmp_path))
    bond = {"bond": "bond0", "members": ["peth0", "peth1"], "mode": "active-backup", "primary": "peth1"}
    actions.bridge({"name": "xenbr0", "uplink": bond}, Host([backend], declarations=store), False)
    entry = store.load()[0].bridges["xenbr0"]
    assert entry == {"mac": backend.state.bridges["xenbr0"].mac, "uplink": bond}
    # Naming the bond only keeps its declaration; a later run adds what it declares.
    actions.bridge({"name": "xenbr0", "uplink": "bond0"}, Host([backend], declarations=store), False)
    assert store.load()[0].bridges["xenbr0"]["uplink"] == bond
    actions.bridge({"name": "xenbr0", "uplink": {"bond": "bond0", "members": ["peth0", "peth1"], "miimon": 200}},
                   Host([backend], declarations=store), False)
    assert store.load()[0].bridges["xenbr0"]["uplink"] == {**bond, "miimon": 200}
    assert backend.state.ports["bond0"].bond["miimon"] == 200 and drift(store.load()[0], backend.state) == []


def test_bond_settings_changed_by_hand_are_drift():
    backend = FakeBackend(links=LINKS, features=BONDING)
    backend.apply(boot.plan_boot(_decl(), backend.read(), {"kernel": backend.features}).changes)
    port = backend.state.ports["bond0"]
    changed = replace(port, bond={**port.bond, "miimon": 50})
    backend.state = replace(backend.state, ports={**backend.state.ports, "bond0": changed})
    assert drift(_decl(), backend.state) == [{"kind": "bond", "name": "bond0", "field": "miimon", "declared": 100,
                                              "actual": 50}]
