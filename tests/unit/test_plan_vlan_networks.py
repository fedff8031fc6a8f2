"""VLAN networks (fake bridges): planning, errors the issue names, and the module action."""
from __future__ import annotations

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import actions
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import (
    ConflictError,
    MissingFeatureError,
    NotFoundError,
    ValidationError,
)
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.host import Host
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import (
    BridgeState,
    HostState,
    PortSpec,
    VlanSpec,
)
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.plan import (
    Features,
    invert,
    plan_bridge_absent,
    plan_ports,
    plan_vlan,
    simulate,
)
from fakes import FakeBackend

USERSPACE = {"userspace": Features(vlan_filtering=True, port_promiscuous=True, port_security=True,
                                   create_ports=True), "kernel": Features()}


def state(*bridges: BridgeState) -> HostState:
    return HostState(bridges={b.name: b for b in bridges}, datapaths=("kernel", "userspace"))


XENBR0 = BridgeState(name="xenbr0", datapath="userspace")
XAPI3 = BridgeState(name="xapi3", datapath="userspace", parent="xenbr0", tag=5)


def vlan(name="xapi3", parent="xenbr0", tag=5) -> VlanSpec:
    return VlanSpec.from_params({"name": name, "parent": parent, "tag": tag})


def test_declare_then_nothing_to_do():
    changes = plan_vlan(vlan(), state(XENBR0), USERSPACE)
    assert [(c.op, c.datapath, dict(c.args)) for c in changes] == [
        ("add_bridge", "userspace", {"parent": "xenbr0", "tag": 5})]
    after = simulate(state(XENBR0), changes)
    assert after.bridges["xapi3"].parent == "xenbr0" and after.bridges["xapi3"].tag == 5
    assert plan_vlan(vlan(), after, USERSPACE) == []


@pytest.mark.parametrize("tag, why", [(0, "no VLAN"), (4095, "reserved"), (4096, "out of range"), ("x", "integer")])
def test_bad_tags(tag, why):
    with pytest.raises(ValidationError, match=why) as err:
        vlan(tag=tag)
    assert err.value.field == "tag"


def test_tag_used_twice_on_one_parent():
    with pytest.raises(ConflictError, match="already used on 'xenbr0' by VLAN network 'xapi3'") as err:
        plan_vlan(vlan(name="xapi4"), state(XENBR0, XAPI3), USERSPACE)
    assert (err.value.field, err.value.value) == ("tag", 5)


def test_same_tag_on_another_parent_is_fine():
    other = BridgeState(name="xenbr1", datapath="userspace")
    assert plan_vlan(vlan(name="xapi4", parent="xenbr1"), state(XENBR0, XAPI3, other), USERSPACE)


def test_parent_must_exist_and_not_be_a_vlan_network():
    with pytest.raises(NotFoundError, match="'xenbr9' does not exist"):
        plan_vlan(vlan(parent="xenbr9"), state(XENBR0), USERSPACE)
    with pytest.raises(ConflictError, match="do not nest"):
        plan_vlan(vlan(name="xapi4", parent="xapi3", tag=6), state(XENBR0, XAPI3), USERSPACE)


def test_redeclaring_with_another_tag_is_refused():
    with pytest.raises(ConflictError, match="already exists as a VLAN network VLAN 5 on 'xenbr0'"):
        plan_vlan(vlan(tag=6), state(XENBR0, XAPI3), USERSPACE)


def test_kernel_parent_without_vlan_filtering_points_to_userspace():
    kernel_parent = BridgeState(name="xenbr0")
    with pytest.raises(MissingFeatureError, match="vlan_filtering.*datapath: userspace") as err:
        plan_vlan(vlan(), state(kernel_parent), USERSPACE)
    assert err.value.field == "parent"


def test_parent_with_vlan_networks_cannot_be_removed():
    with pytest.raises(ConflictError, match=r"still carries the VLAN networks 'xapi3' \(VLAN 5\)"):
        plan_bridge_absent("xenbr0", state(XENBR0, XAPI3))
    assert plan_bridge_absent("xapi3", state(XENBR0, XAPI3))[0].op == "del_bridge"


def test_ports_of_a_vlan_network_cannot_carry_their_own_vlan():
    spec = PortSpec.from_params({"name": "vif1.0", "type": "tap", "vlan": 6}, "xapi3")
    with pytest.raises(ConflictError, match="carry VLAN 5 untagged") as err:
        plan_ports([spec], state(XENBR0, XAPI3), USERSPACE)
    assert err.value.field == "ports[0].vlan"
    plain = PortSpec.from_params({"name": "vif1.0", "type": "tap"}, "xapi3")
    assert [c.op for c in plan_ports([plain], state(XENBR0, XAPI3), USERSPACE)] == ["add_port"]


def test_invert_recreates_a_removed_vlan_network():
    before = state(XENBR0, XAPI3)
    changes = plan_bridge_absent("xapi3", before)
    restored = simulate(simulate(before, changes), invert(changes, before))
    assert restored.bridges == before.bridges


def test_module_action_check_mode_diff_and_absent():
    backend = FakeBackend(datapath="userspace", bridges=[XENBR0], features=USERSPACE["userspace"])
    host = Host([backend])
    checked = actions.vlan({"name": "xapi3", "parent": "xenbr0", "tag": 5, "state": "present"}, host, True)
    assert checked.changed and backend.applied == []
    assert checked.before == {"name": "xapi3", "state": "absent"}
    assert checked.after["tag"] == 5 and checked.after["parent"] == "xenbr0"
    assert actions.vlan({"name": "xapi3", "parent": "xenbr0", "tag": 5}, host, False).changed
    assert not actions.vlan({"name": "xapi3", "parent": "xenbr0", "tag": 5}, host, False).changed
    facts = actions.info({}, host).values["vswitch"]
    assert facts["vlans"] == {"xapi3": {"parent": "xenbr0", "tag": 5}}
    with pytest.raises(ConflictError, match="not a VLAN network"):
        actions.vlan({"name": "xenbr0", "state": "absent"}, host, False)
    assert actions.vlan({"name": "xapi3", "state": "absent"}, host, False).changed
    assert not actions.vlan({"name": "xapi3", "state": "absent"}, host, False).changed


def test_kernel_features_follow_the_kernels_vlan_filtering(monkeypatch):
    """A kernel with vlan_filtering gets VLAN networks planned on it; one without is refused, named."""
    from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import kernel

    for has_it in (True, False):
        backend = kernel.KernelBackend.__new__(kernel.KernelBackend)
        backend._features = None
        monkeypatch.setattr(backend, "_probe_vlan_filtering", lambda has_it=has_it: has_it)
        features = {"kernel": backend.features}
        assert features["kernel"].vlan_filtering is has_it
        if has_it:
            changes = plan_vlan(vlan(), state(BridgeState(name="xenbr0")), features)
            assert [(c.op, c.datapath, dict(c.args)) for c in changes] == [
                ("add_bridge", "kernel", {"parent": "xenbr0", "tag": 5})]
        else:
            with pytest.raises(MissingFeatureError, match="vlan_filtering.*which this host's kernel lacks"):
                plan_vlan(vlan(), state(BridgeState(name="xenbr0")), features)
