"""vswitchd's configuration of VLAN networks (fake bridges): transactions, constraints, state file order."""
from __future__ import annotations

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.daemon.config import Config, apply_changes
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import (
    ConflictError,
    NotFoundError,
    ValidationError,
)


def ch(op, target, **args):
    return {"op": op, "target": target, "datapath": "userspace", "args": args}


BASE = [ch("add_bridge", "xenbr0"), ch("add_bridge", "xapi5", parent="xenbr0", tag=5)]


def test_a_vlan_network_rides_on_its_parent():
    config = apply_changes(Config(), BASE + [ch("add_port", "vif1.0", bridge="xapi5", type="tap")])
    assert config.bridges["xapi5"]["parent"] == "xenbr0" and config.bridges["xapi5"]["tag"] == 5
    assert config.vlans_of("xenbr0") == ["xapi5"] and config.ports_of("xapi5") == ["vif1.0"]


def test_state_file_order_does_not_matter():
    """The state file sorts bridges by name: 'xapi5' comes back before its parent 'xenbr0'."""
    config = apply_changes(Config(), BASE)
    assert list(config.to_json()["bridges"]) == ["xapi5", "xenbr0"]
    assert Config.from_json(config.to_json()) == config


@pytest.mark.parametrize("changes, error, match", [
    ([ch("add_bridge", "xapi6", parent="xenbr0", tag=5)], ConflictError, "already used on 'xenbr0'"),
    ([ch("add_bridge", "xapi6", parent="xenbr9", tag=6)], NotFoundError, "'xenbr9'"),
    ([ch("add_bridge", "xapi6", parent="xapi5", tag=6)], ConflictError, "do not nest"),
    ([ch("add_bridge", "xapi6", parent="xenbr0")], ValidationError, "both a parent bridge and a tag"),
    ([ch("add_bridge", "xapi6", parent="xenbr0", tag=4095)], ValidationError, "not a usable VLAN tag"),
    ([ch("del_bridge", "xenbr0")], NotFoundError, "cannot be removed while it carries"),
    ([ch("set_bridge", "xapi5", tag=6)], ConflictError, "cannot change"),
    ([ch("add_port", "vif1.0", bridge="xapi5", type="tap", vlan=7)], ConflictError, "carry VLAN 5 untagged"),
])
def test_constraints(changes, error, match):
    config = apply_changes(Config(), BASE)
    with pytest.raises(error, match=match):
        apply_changes(config, changes)


def test_removing_children_then_parent_in_one_transaction():
    config = apply_changes(Config(), BASE)
    assert apply_changes(config, [ch("del_bridge", "xapi5"), ch("del_bridge", "xenbr0")]).bridges == {}
