"""Module logic end to end against a fake datapath: check mode, diff, changed, errors, rollback."""
from __future__ import annotations

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import actions
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import (
    BackendError,
    ConflictError,
    MissingFeatureError,
    ValidationError,
)
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.host import Host
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import BridgeState, PortState
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.plan import Features
from fakes import FakeBackend


def kernel(**kw) -> FakeBackend:
    return FakeBackend(links=["peth0", "peth1", "vif1.0", "vif2.0", "vif3.0"], **kw)


def test_bridge_check_mode_predicts_and_changes_nothing():
    backend = kernel()
    result = actions.bridge({"name": "xenbr0", "uplink": "peth0", "state": "present"}, Host([backend]), True)
    assert result.changed and backend.applied == []
    assert result.before == {"name": "xenbr0", "state": "absent"}
    assert result.after["uplink"] == "peth0" and result.after["ports"] == ["peth0"]
    real = actions.bridge({"name": "xenbr0", "uplink": "peth0", "state": "present"}, Host([backend]), False)
    assert real.changed and real.after == result.after
    again = actions.bridge({"name": "xenbr0", "uplink": "peth0", "state": "present"}, Host([backend]), False)
    assert not again.changed and again.before == again.after and len(backend.applied) == 1


def test_bridge_absent_is_idempotent():
    backend = kernel(bridges=[BridgeState(name="xapi1")])
    assert actions.bridge({"name": "xapi1", "state": "absent"}, Host([backend]), False).changed
    assert not actions.bridge({"name": "xapi1", "state": "absent"}, Host([backend]), False).changed


def test_port_single_and_batch_forms():
    backend = kernel(bridges=[BridgeState(name="xenbr0")])
    one = actions.port({"bridge": "xenbr0", "name": "vif1.0"}, Host([backend]), False)
    assert one.changed and one.after["ports"]["vif1.0"]["bridge"] == "xenbr0"
    batch = actions.port({"bridge": "xenbr0", "ports": ["vif1.0", {"name": "vif2.0"}], "purge": True},
                         Host([backend]), False)
    assert batch.changed and batch.values["changes"] == ["add_port vif2.0 (bridge=xenbr0, type=system)"]
    assert not actions.port({"bridge": "xenbr0", "ports": ["vif1.0", "vif2.0"], "purge": True},
                            Host([backend]), False).changed


def test_move_shows_both_bridges_in_the_diff():
    backend = kernel(bridges=[BridgeState(name="xenbr0"), BridgeState(name="xapi1", ports=("vif1.0",))],
                     ports=[PortState("vif1.0", "xapi1")])
    with pytest.raises(ConflictError):
        actions.port({"bridge": "xenbr0", "name": "vif1.0"}, Host([backend]), False)
    result = actions.port({"bridge": "xenbr0", "name": "vif1.0", "move": True}, Host([backend]), True)
    assert result.before["ports"]["vif1.0"]["bridge"] == "xapi1"
    assert result.after["ports"]["vif1.0"]["bridge"] == "xenbr0"
    assert backend.applied == []


def test_single_form_errors_name_the_plain_field():
    backend = kernel(bridges=[BridgeState(name="xenbr0")])
    with pytest.raises(Exception) as err:
        actions.port({"bridge": "xenbr0", "name": "vif9.0"}, Host([backend]), False)
    assert err.value.field == "name"
    with pytest.raises(ValidationError) as err:
        actions.port({"bridge": "xenbr0", "ports": ["vif1.0", {"name": "vif2.0", "mac": "01:00:00:00:00:01"}]},
                     Host([backend]), False)
    assert err.value.message.startswith("ports[1].mac: '01:00:00:00:00:01' is a multicast address")
    with pytest.raises(ValidationError, match="cannot be combined"):
        actions.port({"bridge": "xenbr0", "name": "vif1.0", "ports": ["vif2.0"]}, Host([backend]), False)


def test_failure_in_a_later_datapath_rolls_back_the_earlier_one():
    kern = kernel(bridges=[BridgeState(name="xapi1", ports=("vif1.0",))], ports=[PortState("vif1.0", "xapi1")])
    user = FakeBackend(datapath="userspace", bridges=[BridgeState(name="ubr0", datapath="userspace")],
                       features=Features(vlan_filtering=True, port_promiscuous=True, port_security=True,
                                         create_ports=True))
    user.state = user.state.__class__(bridges=user.state.bridges, ports={}, links=kern.state.links,
                                      datapaths=("userspace",))
    user.fail_on = "add_port"
    host = Host([kern, user])
    before_kernel = kern.state
    with pytest.raises(BackendError):
        actions.port({"bridge": "ubr0", "name": "vif1.0", "move": True}, host, False)
    # the kernel detached vif1.0, then userspace refused: the kernel must have it back
    assert kern.state.ports == before_kernel.ports and kern.state.bridges == before_kernel.bridges
    assert len(kern.applied) == 2  # the detach, then its undo


def test_info_filters_bridges():
    backend = kernel(bridges=[BridgeState(name="xenbr0", ports=("vif1.0",)), BridgeState(name="xapi1")],
                     ports=[PortState("vif1.0", "xenbr0")])
    result = actions.info({"bridges": ["xenbr0"], "fdb": True}, Host([backend]))
    facts = result.values["ansible_facts"]["vswitch"]
    assert list(facts["bridges"]) == ["xenbr0"] and list(facts["ports"]) == ["vif1.0"]
    assert not result.changed


def test_bridge_batch_form_plans_all_in_one_transaction():
    backend = kernel()
    host = Host([backend])
    params = {"state": "present", "bridges": [{"name": "xenbr0", "uplink": "peth0", "stp": False},
                                              {"name": "xapi1", "ageing_time": 0}]}
    checked = actions.bridge(params, host, True)
    assert checked.changed and backend.applied == []
    assert set(checked.after["bridges"]) == {"xenbr0", "xapi1"}
    real = actions.bridge(params, host, False)
    assert real.changed and len(backend.applied) == 1 and real.after == checked.after
    assert backend.state.bridges["xenbr0"].uplink == "peth0" and backend.state.bridges["xapi1"].ageing_time == 0
    assert not actions.bridge(params, host, False).changed
    gone = actions.bridge({"state": "absent", "bridges": [{"name": "xapi1"}, {"name": "nosuch"}]}, host, False)
    assert gone.changed and "xapi1" not in backend.state.bridges


def test_bridge_batch_errors_name_the_entry_and_change_nothing():
    backend = kernel()
    host = Host([backend])
    with pytest.raises(ValidationError) as err:
        actions.bridge({"bridges": [{"name": "xenbr0"}, {"name": "xapi1", "mtu": 10}]}, host, False)
    assert err.value.message.startswith("bridges[1].mtu: 10 is out of range")
    with pytest.raises(ValidationError, match=r"bridges\[1\].name: 'xenbr0' is listed twice"):
        actions.bridge({"bridges": [{"name": "xenbr0"}, {"name": "xenbr0"}]}, host, False)
    with pytest.raises(ValidationError, match="stp: True cannot be combined with 'bridges'"):
        actions.bridge({"bridges": [{"name": "xenbr0"}], "stp": True}, host, False)
    with pytest.raises(ValidationError, match="bridges\\[0\\]: 'xenbr0' must be a mapping"):
        actions.bridge({"bridges": ["xenbr0"]}, host, False)
    assert backend.applied == [] and backend.state.bridges == {}


@pytest.mark.parametrize("params, field", [
    ({"bridge": "xenbr0", "ports": [{"name": "vif1.0", "state": "absent"}]}, "ports[0].state"),
    ({"bridge": "xenbr0", "ports": ["vif2.0", {"name": "vif1.0", "vlna": 5}]}, "ports[1].vlna"),
    ({"bridges": [{"name": "xapi1"}, {"name": "xapi2", "ageing": 0}]}, "bridges[1].ageing"),
    ({"bridges": [{"name": "xapi1", "state": "absent"}]}, "bridges[0].state"),
])
def test_unknown_keys_in_list_entries_are_errors_that_change_nothing(params, field):
    backend = kernel(bridges=[BridgeState(name="xenbr0")])
    act = actions.port if "ports" in params else actions.bridge
    with pytest.raises(ValidationError) as err:
        act(params, Host([backend]), False)
    assert err.value.field == field and "accepted: name" in err.value.message, err.value.message
    if field.endswith("state"):
        assert "set once for the whole task" in err.value.message
    assert backend.applied == []


def test_external_ids_are_kept_on_vswitchd_and_refused_by_name_on_the_kernel():
    from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.userspace import FEATURES

    ids = {"attached-mac": "00:16:3e:00:00:01", "xs-vif-id": 0}
    kernel_backend = kernel(bridges=[BridgeState(name="xenbr0")])
    with pytest.raises(MissingFeatureError, match="external_ids: .* cannot be kept on the kernel datapath"):
        actions.port({"bridge": "xenbr0", "name": "vif1.0", "external_ids": ids}, Host([kernel_backend]), False)
    assert kernel_backend.applied == []
    backend = FakeBackend(datapath="userspace", links=["vif1.0"], features=FEATURES,
                          bridges=[BridgeState(name="xenbr1", datapath="userspace")])
    first = actions.port({"bridge": "xenbr1", "name": "vif1.0", "external_ids": ids}, Host([backend]), False)
    assert first.changed and first.values["ports"]["vif1.0"]["external_ids"] == \
        {"attached-mac": "00:16:3e:00:00:01", "xs-vif-id": "0"}
    again = actions.port({"bridge": "xenbr1", "name": "vif1.0", "external_ids": ids}, Host([backend]), False)
    assert not again.changed
    with pytest.raises(ValidationError, match=r"external_ids.vm: \['a'\] must be a string"):
        actions.port({"bridge": "xenbr1", "name": "vif1.0", "external_ids": {"vm": ["a"]}}, Host([backend]), False)
