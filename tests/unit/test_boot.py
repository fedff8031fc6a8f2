"""Planning and running the boot restore from golden declarations, against a fake kernel datapath."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import actions, boot
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.declared import DeclarationStore, parse
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.host import Host
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import BridgeState, PortState
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.plan import Features
from fakes import FakeBackend

GOLDEN = Path(__file__).parent / "golden" / "boot"
# What is present after a reboot: the NICs and veths; no VIF (no VM runs yet), no bridge.
LINKS = ["peth0", "peth1", "veth5", "veth7"]


def _decl(case: str):
    return parse((GOLDEN / f"{case}.json").read_text(), case)


@pytest.mark.parametrize("case, vlan_filtering", [("hypervisor", False), ("vlans", True)])
def test_boot_plan_matches_golden(case, vlan_filtering):
    backend = FakeBackend(links=LINKS, features=Features(vlan_filtering=vlan_filtering))
    plan = boot.plan_boot(_decl(case), backend.read(), {"kernel": backend.features})
    assert [c.describe() for c in plan.changes] == (GOLDEN / f"{case}.plan").read_text().splitlines()
    assert plan.failures == []


def test_absent_vif_and_uplink_are_skipped_and_said():
    backend = FakeBackend(links=["veth7"])
    plan = boot.plan_boot(_decl("hypervisor"), backend.read(), {"kernel": backend.features})
    assert "bridge xenbr0: uplink peth0 is absent; the bridge is restored without it" in plan.notes
    assert "port vif1.0 of xenbr0 is absent (a VIF whose VM is not running); skipped" in plan.notes
    assert not [c for c in plan.changes if c.target in ("peth0", "vif1.0")] and plan.failures == []


def test_boot_on_a_host_that_matches_plans_nothing():
    backend = FakeBackend(links=LINKS)
    decl = _decl("hypervisor")
    backend.apply(boot.plan_boot(decl, backend.read(), {"kernel": backend.features}).changes)
    assert boot.plan_boot(decl, backend.read(), {"kernel": backend.features}).steps == []


def test_vlans_on_a_kernel_without_filtering_fail_one_by_one_and_the_rest_is_planned():
    backend = FakeBackend(links=LINKS)
    plan = boot.plan_boot(_decl("vlans"), backend.read(), {"kernel": backend.features})
    assert [s.what for s in plan.steps] == ["bridge xenbr0"]
    assert len(plan.failures) == 4 and all("vlan_filtering" in f or "does not exist" in f for f in plan.failures)


def test_a_port_on_another_bridge_at_boot_is_a_failure_not_a_move():
    backend = FakeBackend(links=LINKS, bridges=[BridgeState("other", ports=("veth7",))],
                          ports=[PortState("veth7", "other")])
    plan = boot.plan_boot(_decl("hypervisor"), backend.read(), {"kernel": backend.features})
    assert any(f.startswith("port veth7: bridge: 'xapi1' cannot take port 'veth7'") for f in plan.failures)


def _state(tmp_path: Path, case: str) -> Path:
    shutil.copy(GOLDEN / f"{case}.json", tmp_path / "declared.json")
    return tmp_path


def test_main_restores_prints_and_a_second_run_does_nothing(tmp_path, capsys):
    backend = FakeBackend(links=LINKS)
    host = Host([backend])
    assert boot.main(["--state-dir", str(_state(tmp_path, "hypervisor"))], host=host) == 0
    out = capsys.readouterr().out
    assert "declaration " + str(tmp_path / "declared.json") + ": 3 bridges, 0 VLAN networks, 2 ports" in out
    assert "add_bridge xapi2 (mac=02:16:3e:00:00:03, mtu=9000)" in out and "made 5 changes, 0 failures" in out
    assert backend.state.bridges["xapi2"].mtu == 9000 and backend.state.bridges["xenbr0"].uplink == "peth0"
    assert boot.main(["--state-dir", str(tmp_path)], host=host) == 0
    assert "the host already matches its declaration" in capsys.readouterr().out


def test_main_check_changes_nothing(tmp_path, capsys):
    backend = FakeBackend(links=LINKS)
    assert boot.main(["--check", "--state-dir", str(_state(tmp_path, "hypervisor"))], host=Host([backend])) == 0
    assert "would add_bridge xapi1" in capsys.readouterr().out and backend.applied == []


def test_main_damaged_declaration_uses_the_good_copy_and_exits_1(tmp_path, capsys):
    store = DeclarationStore(str(tmp_path))
    store.save(_decl("hypervisor"))
    store.save(parse(json.dumps({"format": "openvif.vswitch.declared", "version": 1}), "x"))
    (tmp_path / "declared.json").write_text('{"format": "openvif.vswitch.declared", "bridges": {"xen')
    backend = FakeBackend(links=LINKS)
    assert boot.main(["--state-dir", str(tmp_path)], host=Host([backend])) == 1
    err = capsys.readouterr().err
    assert f"declaration {tmp_path}/declared.json: is truncated" in err and "restoring the last good copy" in err
    assert set(backend.state.bridges) == {"xenbr0", "xapi1", "xapi2"}


@pytest.mark.parametrize("content, expected", [
    ("[]", "is not an openvif declaration"),
    ('{"format": "openvif.vswitch.declared", "version": 9}', "9 is the version of a newer openvif.vswitch"),
])
def test_main_unusable_declaration_exits_2_naming_the_file(tmp_path, capsys, content, expected):
    (tmp_path / "declared.json").write_text(content)
    backend = FakeBackend(links=LINKS)
    assert boot.main(["--state-dir", str(tmp_path)], host=Host([backend])) == 2
    err = capsys.readouterr().err
    assert f"declaration {tmp_path}/declared.json:" in err and expected in err and "nothing restored" in err
    assert backend.applied == []


def test_datapath_refusal_falls_back_to_object_by_object(tmp_path, capsys):
    backend = FakeBackend(links=LINKS)
    real_apply = backend.apply

    def refuse_mtu(changes):
        if any(c.args.get("mtu") == 9000 for c in changes):
            raise boot.VswitchError("mtu", 9000, "was refused by the fake datapath")
        real_apply(changes)
    backend.apply = refuse_mtu
    assert boot.main(["--state-dir", str(_state(tmp_path, "hypervisor"))], host=Host([backend])) == 1
    assert "cannot restore bridge xapi2: mtu: 9000 was refused" in capsys.readouterr().err
    assert set(backend.state.bridges) == {"xenbr0", "xapi1"}


def test_what_modules_record_boot_restores(tmp_path):
    """The round trip: modules declare, the host loses everything, boot brings back the same state."""
    store = DeclarationStore(str(tmp_path))
    backend = FakeBackend(links=LINKS)
    actions.bridge({"bridges": [{"name": "xenbr0", "uplink": "peth0", "forward_delay": 0},
                                {"name": "xapi1", "ageing_time": 0, "mtu": 9000}]},
                   Host([backend], declarations=store), False)
    actions.port({"bridge": "xapi1", "ports": ["veth7"]}, Host([backend], declarations=store), False)
    declared_state = backend.read()
    rebooted = FakeBackend(links=LINKS)
    assert boot.main(["--state-dir", str(tmp_path)], host=Host([rebooted])) == 0
    assert rebooted.read().bridges == declared_state.bridges and rebooted.read().ports == declared_state.ports
