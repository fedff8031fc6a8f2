"""A bond as a bridge's uplink: the declaration, plan, check mode, diff, idempotence, and bad input."""
from __future__ import annotations

import copy

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import actions, settings
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.daemon import config
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import (
    ConflictError,
    MissingFeatureError,
    NotFoundError,
    ValidationError,
    VswitchError,
)
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.host import Host
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.kernel_bonds import kernel_bond_features
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import (
    BondSpec,
    BridgeSpec,
    BridgeState,
    Link,
    PortState,
)
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.plan import invert, simulate
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.userspace import FEATURES
from fakes import FakeBackend

NICS = ["eth1", "eth2", "eth3", "vif1.0"]


def userspace(**kw) -> FakeBackend:
    return FakeBackend("userspace", links=NICS, features=FEATURES, **kw)


def declare(backend: FakeBackend, uplink, check: bool = False, name: str = "xenbr0", datapath: str = "userspace"):
    return actions.bridge({"name": name, "datapath": datapath, "uplink": uplink, "state": "present"},
                          Host([backend]), check)


BOND = {"bond": "bond0", "members": ["eth1", "eth2"], "mode": "balance-slb", "lacp": "off"}


def test_bond_spec_has_one_field_per_row():
    assert set(settings.BOND) == set(BondSpec.__dataclass_fields__) - {"name"}
    assert settings.BOND["mode"].default in settings.BOND_MODES


def test_check_mode_then_create_then_nothing_to_do():
    backend = userspace()
    checked = declare(backend, BOND, check=True)
    assert checked.changed and backend.applied == []
    assert checked.before == {"name": "xenbr0", "state": "absent"}
    assert checked.after["uplink"] == "bond0" and checked.after["bond"]["members"] == ["eth1", "eth2"]
    assert checked.after["bond"]["miimon"] == settings.BOND["miimon"].default   # defaults filled from the table
    real = declare(backend, BOND)
    assert real.changed and real.after == checked.after
    assert real.values["changes"][1].startswith("add_port bond0")
    again = declare(backend, BOND)
    assert not again.changed and len(backend.applied) == 1
    # Named by its name alone afterwards, the bond is the uplink already: nothing to do.
    assert not declare(backend, "bond0").changed


def test_changing_a_setting_is_one_set_port_with_a_diff_and_an_undo():
    backend = userspace()
    declare(backend, BOND)
    before = backend.state
    result = declare(backend, {**BOND, "mode": "active-backup", "primary": "eth2"})
    assert result.changed and result.values["changes"] == [result.values["changes"][0]]
    assert result.values["changes"][0].startswith("set_port bond0")
    assert result.before["bond"]["mode"] == "balance-slb" and result.after["bond"]["mode"] == "active-backup"
    change = backend.applied[-1]
    assert simulate(simulate(before, change), invert(change, before)).ports["bond0"] == before.ports["bond0"]


def test_a_bond_is_removed_with_its_bridge_and_comes_back_by_undo():
    backend = userspace()
    declare(backend, BOND)
    state = backend.state
    changes = actions.plan_bridge_absent("xenbr0", state)
    assert simulate(simulate(state, changes), invert(changes, state)).ports["bond0"] == state.ports["bond0"]


def _refused(backend: FakeBackend, uplink, error, field: str, words: str, datapath: str = "userspace"):
    before = copy.deepcopy(backend.state)
    with pytest.raises(error) as err:
        declare(backend, uplink, datapath=datapath)
    assert err.value.field == field, err.value.message
    assert words in err.value.message, err.value.message
    assert backend.applied == [] and backend.state == before
    return err.value


def test_member_already_a_port_elsewhere():
    backend = userspace(bridges=[BridgeState(name="xapi1", datapath="userspace", ports=("eth2",))],
                        ports=[PortState("eth2", "xapi1")])
    _refused(backend, BOND, ConflictError, "uplink.members[1]", "already a port of bridge 'xapi1'")


def test_member_already_the_uplink_elsewhere():
    backend = userspace(bridges=[BridgeState(name="xenbr1", datapath="userspace", ports=("eth1",), uplink="eth1")],
                        ports=[PortState("eth1", "xenbr1", uplink=True)])
    _refused(backend, BOND, ConflictError, "uplink.members[0]", "the uplink of bridge 'xenbr1'")


def test_member_of_another_bond():
    backend = userspace()
    declare(backend, BOND, name="xenbr1")
    backend.applied.clear()
    _refused(backend, {"bond": "bond1", "members": ["eth2", "eth3"]}, ConflictError, "uplink.members[0]",
             "already a member of bond 'bond0'")


def test_a_single_member():
    _refused(userspace(), {"bond": "bond0", "members": ["eth1"]}, ValidationError, "uplink.members",
             "at least two members")


def test_a_member_twice_and_a_missing_one():
    _refused(userspace(), {"bond": "bond0", "members": ["eth1", "eth1"]}, ValidationError, "uplink.members[1]",
             "listed twice")
    _refused(userspace(), {"bond": "bond0", "members": ["eth1", "eth9"]}, NotFoundError, "uplink.members[1]",
             "does not exist")


def test_members_with_different_mtus():
    backend = userspace()
    backend.state = type(backend.state)(bridges={}, ports={}, datapaths=("userspace",),
                                        links={**backend.state.links, "eth2": Link(name="eth2", mtu=9000)})
    _refused(backend, BOND, ConflictError, "uplink.members", "different MTUs (eth1 1500, eth2 9000)")


def test_primary_not_a_member():
    _refused(userspace(), {**BOND, "primary": "eth3"}, ValidationError, "uplink.primary", "not a member")


def test_unknown_key_bad_mode_and_balance_tcp_without_lacp():
    _refused(userspace(), {**BOND, "speed": 10}, ValidationError, "uplink.speed", "not a bond option")
    _refused(userspace(), {**BOND, "mode": "round-robin"}, ValidationError, "uplink.mode", "must be one of")
    _refused(userspace(), {**BOND, "mode": "balance-tcp"}, ValidationError, "uplink.mode", "needs lacp")


def test_second_uplink_is_refused():
    backend = userspace(bridges=[BridgeState(name="xenbr0", datapath="userspace", ports=("eth3",), uplink="eth3")],
                        ports=[PortState("eth3", "xenbr0", uplink=True)])
    _refused(backend, BOND, ConflictError, "uplink.bond", "second uplink")


def test_mode_the_datapath_lacks():
    kernel = FakeBackend("kernel", links=NICS, features=FEATURES.__class__(
        bond_modes=("active-backup", "balance-tcp"), bond_missing="the Linux bonding driver has no balance-slb"))
    err = _refused(kernel, BOND, MissingFeatureError, "uplink.mode", "no balance-slb", datapath="kernel")
    assert "datapath: userspace" in err.message


def test_kernel_without_the_bonding_module_is_refused_by_name():
    modes, missing = kernel_bond_features(lambda option: False)
    kernel = FakeBackend("kernel", links=NICS, features=FEATURES.__class__(bond_modes=modes, bond_missing=missing))
    err = _refused(kernel, {**BOND, "mode": "active-backup"}, MissingFeatureError, "uplink.bond", "module 'bonding'",
                   datapath="kernel")
    assert "CONFIG_BONDING is not set" in err.message and "datapath: userspace" in err.message


def test_the_daemon_validates_bonds_with_the_same_rows():
    add_bridge = {"op": "add_bridge", "target": "xenbr0", "args": {}}
    bond = settings.bond_record({"members": ["eth1", "eth2"]})
    good = config.apply_changes(config.Config(), [add_bridge, {"op": "add_port", "target": "bond0", "args": {
        "bridge": "xenbr0", "uplink": True, "bond": bond}}])
    assert good.ports["bond0"]["bond"]["mode"] == "active-backup"
    assert config.Config.from_json(good.to_json()) == good   # the state file keeps bonds
    with pytest.raises(VswitchError) as err:
        config.apply_changes(good, [{"op": "add_port", "target": "eth1", "args": {"bridge": "xenbr0"}}])
    assert err.value.field == "ports.bond0.bond.members[0]"
    with pytest.raises(ValidationError) as err:
        config.apply_changes(config.Config(), [add_bridge, {"op": "add_port", "target": "bond0", "args": {
            "bridge": "xenbr0", "bond": {**bond, "primary": "eth7"}}}])
    assert err.value.field == "changes[1].args.bond.primary"


def test_model_refuses_bond_named_like_a_member_or_the_bridge():
    with pytest.raises(ValidationError) as err:
        BridgeSpec.from_params({"name": "xenbr0", "uplink": {"bond": "xenbr0", "members": ["eth1", "eth2"]}})
    assert err.value.field == "uplink.bond"
    with pytest.raises(ValidationError) as err:
        BridgeSpec.from_params({"name": "xenbr0", "uplink": {"bond": "eth1", "members": ["eth1", "eth2"]}})
    assert err.value.field == "uplink.members"


def test_add_bond_words_become_the_module_declaration():
    from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.bond_cli import bond_request

    spec = bond_request("xenbr0", "bond0", ["eth1", "eth2", "bond_mode=balance-tcp", "lacp=active",
                                            "other_config:lacp-time=fast", "other_config:lacp-fallback-ab=false",
                                            "bond_updelay=200", "other_config:bond-primary=eth2"])
    assert spec.bond == BondSpec(name="bond0", members=("eth1", "eth2"), mode="balance-tcp", lacp="active",
                                 lacp_rate="fast", lacp_fallback=False, updelay=200, primary="eth2")
    assert spec.uplink == "bond0" and spec.datapath == "userspace"
    with pytest.raises(ValidationError) as err:
        bond_request("xenbr0", "bond0", ["eth1", "eth2", "bond_fake=1"])
    assert err.value.field == "bond_fake"
    with pytest.raises(ValidationError) as err:
        bond_request("xenbr0", "bond0", ["eth1", "eth2", "bond_updelay=soon"])
    assert err.value.field == "uplink.updelay"
