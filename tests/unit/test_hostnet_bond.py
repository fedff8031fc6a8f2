"""vswitch_host_ip with a bond as the uplink: the spec as the module takes it, and what the journal keeps."""
from __future__ import annotations

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import ValidationError
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.hostnet.spec import HostIpSpec

BOND = {"bond": "bond0", "members": ["eth0", "eth1"], "mode": "active-backup", "primary": "eth1"}


def spec(**params) -> HostIpSpec:
    return HostIpSpec.from_params({"bridge": "xenbr0", "uplink": dict(BOND), **params})


def test_bond_uplink_is_the_bridges_port_and_the_first_member_the_address_source():
    made = spec()
    assert made.port == "bond0" and made.members == ("eth0", "eth1") and made.uplink == "eth0"
    assert made.bond.settings() == {"members": ["eth0", "eth1"], "mode": "active-backup", "primary": "eth1"}


def test_the_journal_keeps_the_member_that_held_the_ip():
    moved = spec().with_address_source("eth1")
    again = HostIpSpec.from_dict(moved.to_dict())
    assert again == moved and again.uplink == "eth1" and again.port == "bond0"
    plain = HostIpSpec.from_params({"bridge": "xenbr0", "uplink": "eth0"})
    assert HostIpSpec.from_dict(plain.to_dict()) == plain and plain.port == "eth0" and plain.members == ("eth0",)


@pytest.mark.parametrize(("uplink", "field", "words"), [
    ({**BOND, "members": ["eth0"]}, "uplink.members", "at least two"),
    ({**BOND, "primary": "eth3"}, "uplink.primary", "not a member"),
    ({**BOND, "mode": "balance-tcp"}, "uplink.mode", "lacp"),
    ({**BOND, "bond": "xenbr0"}, "uplink.bond", "bridge itself"),
    ({**BOND, "members": ["eth0", "xenbr0"], "primary": None}, "uplink.members", "bridge 'xenbr0' itself"),
    ({**BOND, "colour": "red"}, "uplink.colour", ""),
])
def test_bad_bond_input_names_the_field(uplink, field, words):
    with pytest.raises(ValidationError) as err:
        HostIpSpec.from_params({"bridge": "xenbr0", "uplink": uplink})
    assert err.value.field == field and words in err.value.message, err.value.message


def test_address_source_must_be_a_member():
    with pytest.raises(ValidationError) as err:
        spec(address_source="eth5")
    assert err.value.field == "address_source" and "not a member" in err.value.message


def test_on_the_kernel_datapath_the_member_holding_the_ip_is_enslaved_first():
    """The bonding driver gives every member the first member's MAC: that must be the one the bridge takes."""
    moved = spec(datapath="kernel").with_address_source("eth1")
    assert moved.uplink == "eth1" and moved.bond.members == ("eth1", "eth0")
    assert HostIpSpec.from_dict(moved.to_dict()) == moved
    assert spec(datapath="userspace").with_address_source("eth1").bond.members == ("eth0", "eth1")
