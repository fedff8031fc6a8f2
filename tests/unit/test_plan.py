from __future__ import annotations

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import (
    ConflictError,
    MissingFeatureError,
    NotFoundError,
    ValidationError,
)
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import (
    BridgeSpec,
    BridgeState,
    HostState,
    Link,
    PortSpec,
    PortState,
)
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.plan import (
    Features,
    invert,
    plan_bridge,
    plan_bridge_absent,
    plan_ports,
    simulate,
)
from hypothesis import given, settings
from hypothesis import strategies as st

KERNEL = {"kernel": Features()}


def host(bridges=(), ports=(), links=("peth0", "peth1", "vif1.0", "vif2.0", "vif3.0")) -> HostState:
    bridge_names = [b.name for b in bridges]
    return HostState(bridges={b.name: b for b in bridges}, ports={p.name: p for p in ports},
                     links={n: Link(name=n, kind="bridge" if n in bridge_names else "veth")
                            for n in [*links, *bridge_names]})


def xenbr0(**kw) -> BridgeState:
    return BridgeState(name="xenbr0", **kw)


def test_create_then_nothing_to_do():
    spec = BridgeSpec.from_params({"name": "xenbr0", "stp": False, "ageing_time": 0, "uplink": "peth0"})
    changes = plan_bridge(spec, host())
    assert [c.op for c in changes] == ["add_bridge", "add_port"]
    assert changes[1].args == {"bridge": "xenbr0", "uplink": True, "type": "system"}
    after = simulate(host(), changes)
    assert after.bridges["xenbr0"].uplink == "peth0" and after.bridges["xenbr0"].ageing_time == 0
    assert plan_bridge(spec, after) == []


def test_only_differing_settings_change():
    state = host([xenbr0(stp=False, ageing_time=300, mtu=1500)])
    changes = plan_bridge(BridgeSpec.from_params({"name": "xenbr0", "stp": False, "ageing_time": 0}), state)
    assert len(changes) == 1 and dict(changes[0].args) == {"ageing_time": 0}


def test_second_uplink_is_refused():
    state = host([xenbr0(uplink="peth0", ports=("peth0",))], [PortState("peth0", "xenbr0", uplink=True)])
    with pytest.raises(ConflictError, match="second uplink.*already has uplink 'peth0'") as err:
        plan_bridge(BridgeSpec.from_params({"name": "xenbr0", "uplink": "peth1"}), state)
    assert err.value.field == "uplink" and err.value.value == "peth1"


def test_uplink_must_exist_and_not_be_elsewhere():
    with pytest.raises(NotFoundError, match="'peth9' does not exist"):
        plan_bridge(BridgeSpec.from_params({"name": "xenbr0", "uplink": "peth9"}), host())
    state = host([BridgeState(name="xapi1", ports=("peth0",))], [PortState("peth0", "xapi1")])
    with pytest.raises(ConflictError, match="already a port of 'xapi1'"):
        plan_bridge(BridgeSpec.from_params({"name": "xenbr0", "uplink": "peth0"}), state)


def test_existing_non_bridge_name_and_other_datapath():
    with pytest.raises(ConflictError, match="kind 'veth', not a bridge"):
        plan_bridge(BridgeSpec.from_params({"name": "vif1.0"}), host())
    state = HostState(bridges={"xenbr0": BridgeState(name="xenbr0", datapath="userspace")},
                      datapaths=("kernel", "userspace"))
    with pytest.raises(ConflictError, match="userspace datapath"):
        plan_bridge(BridgeSpec.from_params({"name": "xenbr0"}), state)


def test_userspace_without_daemon_is_missing_feature():
    with pytest.raises(MissingFeatureError, match="vswitchd is not running"):
        plan_bridge(BridgeSpec.from_params({"name": "xenbr0", "datapath": "userspace"}), host())


def test_absent():
    assert plan_bridge_absent("xenbr0", host()) == []
    changes = plan_bridge_absent("xenbr0", host([xenbr0(ports=("vif1.0",))], [PortState("vif1.0", "xenbr0")]))
    assert [c.op for c in changes] == ["del_bridge"]


@pytest.mark.parametrize("params, field, why", [
    ({"name": "x" * 16}, "name", "at most 15"),
    ({"name": "xenbr0", "mtu": 70000}, "mtu", "out of range"),
    ({"name": "xenbr0", "mac": "01:00:5e:00:00:01"}, "mac", "multicast"),
    ({"name": "xenbr0", "ageing_time": -1}, "ageing_time", "out of range"),
    ({"name": "xenbr0", "stp": True, "forward_delay": 1}, "forward_delay", "802.1D"),
    ({"name": "xenbr0", "datapath": "ovs"}, "datapath", "one of kernel, userspace"),
    ({"name": "xenbr0", "uplink": "xenbr0"}, "uplink", "the bridge itself"),
])
def test_bridge_spec_errors(params, field, why):
    with pytest.raises(ValidationError, match=why) as err:
        BridgeSpec.from_params(params)
    assert err.value.field == field


def test_ageing_zero_is_valid():
    assert BridgeSpec.from_params({"name": "xapi1", "ageing_time": 0}).ageing_time == 0


def test_attach_batch_and_idempotence():
    state = host([xenbr0()])
    specs = [PortSpec.from_params({"name": n}, "xenbr0") for n in ("vif1.0", "vif2.0")]
    changes = plan_ports(specs, state, KERNEL)
    assert [c.op for c in changes] == ["add_port", "add_port"]
    assert plan_ports(specs, simulate(state, changes), KERNEL) == []


def test_port_that_does_not_exist():
    with pytest.raises(NotFoundError, match="does not exist on this host") as err:
        plan_ports([PortSpec.from_params({"name": "vif9.0"}, "xenbr0")], host([xenbr0()]), KERNEL)
    assert err.value.field == "ports[0].name"


def test_bridge_that_does_not_exist():
    with pytest.raises(NotFoundError, match="vswitch_bridge first"):
        plan_ports([PortSpec.from_params({"name": "vif1.0"}, "xenbr9")], host([xenbr0()]), KERNEL)


def test_port_on_another_bridge_needs_move():
    state = host([xenbr0(), BridgeState(name="xapi1", ports=("vif1.0",))], [PortState("vif1.0", "xapi1")])
    spec = [PortSpec.from_params({"name": "vif1.0"}, "xenbr0")]
    with pytest.raises(ConflictError, match="already a port of 'xapi1'.*move: true"):
        plan_ports(spec, state, KERNEL)
    changes = plan_ports(spec, state, KERNEL, move=True)
    assert [(c.op, c.args["bridge"]) for c in changes] == [("del_port", "xapi1"), ("add_port", "xenbr0")]
    assert simulate(state, changes).ports["vif1.0"].bridge == "xenbr0"


def test_purge_keeps_listed_ports_and_uplink():
    state = host([xenbr0(uplink="peth0", ports=("peth0", "vif1.0", "vif2.0"))],
                 [PortState("peth0", "xenbr0", uplink=True), PortState("vif1.0", "xenbr0"),
                  PortState("vif2.0", "xenbr0")])
    changes = plan_ports([PortSpec.from_params({"name": "vif1.0"}, "xenbr0")], state, KERNEL, purge=["xenbr0"])
    assert [(c.op, c.target) for c in changes] == [("del_port", "vif2.0")]


def test_duplicate_ports_in_a_batch():
    specs = [PortSpec.from_params({"name": "vif1.0"}, "xenbr0")] * 2
    with pytest.raises(ValidationError, match=r"listed twice \(also ports\[0\]\)") as err:
        plan_ports(specs, host([xenbr0()]), KERNEL)
    assert err.value.field == "ports[1].name"


@pytest.mark.parametrize("params, field, hint", [
    ({"vlan": 5}, "ports[0].vlan", "vlan_filtering"),
    ({"trunks": "5-6"}, "ports[0].trunks", "vlan_filtering"),
    ({"promiscuous": True}, "ports[0].promiscuous", "ageing_time: 0"),
    ({"mac": "00:16:3e:00:00:01"}, "ports[0].mac", "port security"),
    ({"type": "internal"}, "ports[0].type", "internal"),
])
def test_kernel_lacks_features_and_points_to_userspace(params, field, hint):
    spec = PortSpec.from_params({"name": "vif1.0", **params}, "xenbr0")
    with pytest.raises(MissingFeatureError, match=hint) as err:
        plan_ports([spec], host([xenbr0()]), KERNEL)
    assert err.value.field == field
    assert "userspace" in err.value.message


def test_absent_detaches_only_from_the_named_bridge():
    state = host([xenbr0(ports=("vif1.0",))], [PortState("vif1.0", "xenbr0")])
    spec = [PortSpec.from_params({"name": "vif1.0"}, "xenbr0")]
    assert [c.op for c in plan_ports(spec, state, KERNEL, present=False)] == ["del_port"]
    other = [PortSpec.from_params({"name": "vif1.0"}, "xapi1")]
    state2 = host([xenbr0(ports=("vif1.0",)), BridgeState(name="xapi1")], [PortState("vif1.0", "xenbr0")])
    assert plan_ports(other, state2, KERNEL, present=False) == []


@pytest.mark.parametrize("params, why", [
    ({"name": "vif1.0", "vlan": 5, "trunks": "6"}, "either an access port"),
    ({"name": "vif1.0", "native_vlan": 5}, "needs trunks"),
    ({"name": "vif1.0", "bridge": None}, "is required"),
    ({"name": "xenbr0"}, "its own port"),
])
def test_port_spec_errors(params, why):
    with pytest.raises(ValidationError, match=why):
        PortSpec.from_params(params, default_bridge=None if params.get("bridge", 1) is None else "xenbr0")


# --- invert: what rollback relies on -------------------------------------------------------------
NAMES = ["vif1.0", "vif2.0", "vif3.0", "peth0"]


@st.composite
def states_and_requests(draw):
    owners = {n: draw(st.sampled_from([None, "xenbr0", "xapi1"])) for n in NAMES}
    bridges = []
    for b in ("xenbr0", "xapi1"):
        members = tuple(sorted(n for n, o in owners.items() if o == b))
        bridges.append(BridgeState(name=b, ageing_time=draw(st.sampled_from([0, 300])), ports=members))
    ports = [PortState(n, o) for n, o in owners.items() if o]
    state = host(bridges, ports, links=NAMES)
    wanted = draw(st.lists(st.sampled_from(NAMES), unique=True))
    target = draw(st.sampled_from(["xenbr0", "xapi1"]))
    return state, [PortSpec.from_params({"name": n}, target) for n in wanted], target


@settings(max_examples=200, deadline=None)
@given(states_and_requests(), st.booleans(), st.booleans())
def test_invert_restores_the_state(case, purge, present):
    state, specs, target = case
    changes = plan_ports(specs, state, KERNEL, move=True, purge=[target] if purge else [], present=present)
    changes += plan_bridge(BridgeSpec.from_params({"name": target, "ageing_time": 42}), state)
    after = simulate(state, changes)
    restored = simulate(after, invert(changes, state))
    assert restored.bridges == state.bridges
    assert restored.ports == state.ports
