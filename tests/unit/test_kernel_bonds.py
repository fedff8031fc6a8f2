"""The kernel datapath's bonds without a bonding driver: the exact netlink attributes planned and
sent, what reads back as the same record, and what the driver cannot hold, refused by name.

The real devices are proven in the Debian-kernel guest (tests/integration/kernel_bond_checks.py).
"""
from __future__ import annotations

import copy
from typing import Any

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import actions, rtnl, settings
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import MissingFeatureError
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.host import Host
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.kernel import KernelBackend, kernel_config_has
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.kernel_bonds import (
    IFLA_BOND_AD_LACP_ACTIVE,
    NO_SLB,
    bond_attrs,
    bond_status,
    check_kernel_bond,
    driver_options,
    kernel_bond_features,
    lacp_active_attr,
    lacp_passive_missing,
    module_state,
    record_of,
)
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import Features
from fakes import FakeBackend

INDEX = {"eth1": 11, "eth2": 12}
NAMES = {index: name for name, index in INDEX.items()}


def record(**declared: Any) -> dict[str, Any]:
    return settings.bond_record({"members": ["eth1", "eth2"], **declared})


def test_active_backup_attributes():
    attrs = bond_attrs(record(mode="active-backup", primary="eth2", miimon=50, updelay=100, downdelay=150),
                       INDEX.__getitem__)
    assert attrs == {"bond_mode": 1, "bond_miimon": 50, "bond_updelay": 100, "bond_downdelay": 150,
                     "bond_primary": 12}


def test_active_backup_without_primary_clears_it():
    assert bond_attrs(record(), INDEX.__getitem__)["bond_primary"] == 0


def test_balance_tcp_is_802_3ad_with_layer3_4_hashing_and_no_primary():
    attrs = bond_attrs(record(mode="balance-tcp", lacp="active", lacp_rate="fast"), INDEX.__getitem__)
    assert attrs == {"bond_mode": 4, "bond_xmit_hash_policy": 1, "bond_ad_lacp_rate": 1, "bond_miimon": 100,
                     "bond_updelay": 0, "bond_downdelay": 0}


@pytest.mark.parametrize("declared", [
    {}, {"primary": "eth1", "miimon": 200, "updelay": 400, "downdelay": 200},
    {"mode": "balance-tcp", "lacp": "active"}, {"mode": "balance-tcp", "lacp": "active", "lacp_rate": "fast"},
    {"mode": "balance-tcp", "lacp": "passive"},
])
def test_what_is_sent_reads_back_as_the_same_record(declared):
    wanted = record(**declared)
    check_kernel_bond(wanted)
    sent = bond_attrs(wanted, INDEX.__getitem__)
    # The kernel answers with the IFLA_BOND_* names pyroute2's keywords stand for (primary 0: none).
    answer = {"IFLA_" + key.upper(): value for key, value in sent.items() if not (key == "bond_primary" and not value)}
    # lacp_active goes out in rtnl.changelink and comes back in the dump, decoded by rtnl.py.
    for number, value in lacp_active_attr(wanted).items():
        answer["IFLA_BOND_AD_LACP_ACTIVE"] = decoded_bond_data(number, value)[number]
    assert record_of(answer, ["eth1", "eth2"], NAMES) == wanted


def decoded_bond_data(number: int, value: bytes) -> dict[int, int]:
    """What rtnl.py's dump decoder reads from a bond link whose IFLA_INFO_DATA holds ``number``: the
    request changelink encodes, with the link's own attributes, read back as the kernel sends a link."""
    request = rtnl.changelink(20, "bond", {number: value})
    link_attrs = rtnl._nla(rtnl.IFLA_IFNAME, b"bond0\0") + request[rtnl._NLMSGHDR.size + rtnl._IFINFOMSG.size:]
    body = request[rtnl._NLMSGHDR.size:rtnl._NLMSGHDR.size + rtnl._IFINFOMSG.size] + link_attrs
    link = rtnl._link(body, 0, len(body))
    assert link.kind == "bond" and link.bridge is None and link.index == 20
    return link.bond


def test_lacp_active_is_attribute_29_a_u8_sent_for_802_3ad_only():
    assert IFLA_BOND_AD_LACP_ACTIVE == 29
    assert lacp_active_attr(record(mode="balance-tcp", lacp="passive")) == {29: b"\x00"}
    assert lacp_active_attr(record(mode="balance-tcp", lacp="active")) == {29: b"\x01"}
    assert lacp_active_attr(record()) == {}
    message = rtnl.changelink(20, "bond", {29: b"\x00"})
    # RTM_NEWLINK of an existing index (no NLM_F_CREATE): a change of the bond, not a new link
    length, kind, flags = rtnl._NLMSGHDR.unpack_from(message)[:3]
    assert length == len(message) and kind == rtnl.RTM_NEWLINK and not flags & rtnl.NLM_F_CREATE
    assert decoded_bond_data(29, b"\x00") == {29: 0}


def test_passive_is_refused_on_a_kernel_before_5_15_and_said_in_the_driver_options():
    assert lacp_passive_missing("6.1.0-57-amd64") == "" and lacp_passive_missing("5.15.0") == ""
    why = lacp_passive_missing("5.10.0-30-amd64")
    assert "5.10.0-30-amd64" in why and "lacp_active" in why and "5.15" in why
    with pytest.raises(MissingFeatureError) as err:
        check_kernel_bond(record(mode="balance-tcp", lacp="passive"), passive_missing=why)
    assert err.value.field == "uplink.lacp" and why in err.value.message and "datapath: userspace" in err.value.message
    assert driver_options(record(mode="balance-tcp", lacp="passive"))["lacp_active"] == "off"
    assert "lacp_active" not in driver_options(record(mode="balance-tcp", lacp="active"))


def test_a_bond_mode_this_collection_does_not_make_is_not_read_as_a_bond():
    assert record_of({"IFLA_BOND_MODE": 0}, ["eth1", "eth2"], NAMES) is None        # balance-rr
    assert record_of({"IFLA_BOND_MODE": 4, "IFLA_BOND_XMIT_HASH_POLICY": 0}, [], NAMES) is None   # layer2


@pytest.mark.parametrize(("declared", "field", "words"), [
    ({"lacp": "active"}, "uplink.lacp", "mode 802.3ad"),
    ({"mode": "balance-tcp", "lacp": "active", "primary": "eth1"}, "uplink.primary", "802.3ad has no primary"),
    ({"lacp_rate": "fast"}, "uplink.lacp_rate", "active-backup has no LACP"),
    ({"mode": "balance-tcp", "lacp": "active", "lacp_fallback": False}, "uplink.lacp_fallback", "always"),
    ({"rebalance_interval": 5000}, "uplink.rebalance_interval", "does not rebalance"),
    ({"miimon": 100, "updelay": 150}, "uplink.updelay", "miimon intervals"),
    ({"miimon": 0, "downdelay": 100}, "uplink.downdelay", "miimon intervals"),
])
def test_what_the_driver_cannot_hold_is_refused(declared, field, words):
    with pytest.raises(MissingFeatureError) as err:
        check_kernel_bond(record(**declared))
    assert err.value.field == field and words in err.value.message, err.value.message
    assert "datapath: userspace" in err.value.message or "lacp: active" in err.value.message


def test_with_the_driver_the_kernel_has_active_backup_and_balance_tcp_but_no_slb():
    assert kernel_bond_features(lambda option: True) == (("active-backup", "balance-tcp"), NO_SLB)


def test_this_machines_kernel_without_bonding_is_still_refused():
    present, why = module_state(kernel_config_has)   # the running kernel, as the backend asks it
    if present:
        pytest.skip("this kernel has the bonding driver (loaded, built in or as a module); the refusal is for "
                    "kernels without it")
    assert kernel_bond_features(kernel_config_has) == ((), why) and "module 'bonding'" in why


def kernel_with_bonding(**kw) -> FakeBackend:
    modes, missing = kernel_bond_features(lambda option: True)
    return FakeBackend("kernel", links=["eth1", "eth2"], features=Features(bond_modes=modes, bond_missing=missing),
                       **kw)


def declare(backend: FakeBackend, uplink: dict[str, Any]):
    return actions.bridge({"name": "xenbr0", "datapath": "kernel", "uplink": uplink, "state": "present"},
                          Host([backend]), False)


def test_balance_slb_is_refused_on_the_kernel_by_name_and_nothing_changes():
    backend = kernel_with_bonding()
    before = copy.deepcopy(backend.state)
    with pytest.raises(MissingFeatureError) as err:
        declare(backend, {"bond": "bond0", "members": ["eth1", "eth2"], "mode": "balance-slb"})
    assert err.value.field == "uplink.mode" and "has no balance-slb" in err.value.message
    assert "datapath: userspace" in err.value.message
    assert backend.applied == [] and backend.state == before


def test_kernel_bond_plan_and_the_same_members_in_another_order_are_no_change():
    backend = kernel_with_bonding()
    bond = {"bond": "bond0", "members": ["eth1", "eth2"], "mode": "balance-tcp", "lacp": "active"}
    made = declare(backend, bond)
    assert made.changed and made.after["bond"]["mode"] == "balance-tcp"
    assert not declare(backend, {**bond, "members": ["eth2", "eth1"]}).changed


class RecordingIPRoute:
    """Records link requests; links are down and unenslaved."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.index = {"eth1": 11, "eth2": 12, "bond0": 20}

    def link(self, command: str, **kw: Any) -> None:
        self.calls.append((command, kw))

    def link_lookup(self, ifname: str) -> list[int]:
        return [self.index[ifname]]

    def get_links(self, index: int) -> list[dict[str, int]]:
        return [{"flags": 0, "index": index}]


def test_create_sends_lacp_active_before_the_members_join(monkeypatch):
    backend = KernelBackend.__new__(KernelBackend)
    backend._ipr_socket, backend._index, backend._raw, backend._netns = RecordingIPRoute(), {}, {}, None
    backend._features = Features(bond_modes=("active-backup", "balance-tcp"))
    sent: list[bytes] = []
    monkeypatch.setattr("ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.kernel.request",
                        lambda message, netns=None: sent.append(message) or backend._ipr.calls.append(("raw", {})))
    backend._create_bond("bond0", record(mode="balance-tcp", lacp="passive"), [])
    assert sent == [rtnl.changelink(20, "bond", {29: b"\x00"})]
    assert [call[0] for call in backend._ipr.calls][:2] == ["add", "raw"]
    backend._features = Features(bond_modes=("active-backup", "balance-tcp"), lacp_passive_missing="old kernel")
    sent.clear()
    backend._create_bond("bond0", record(mode="balance-tcp", lacp="active"), [])
    assert sent == []   # a kernel without lacp_active is always active: nothing to send


def test_create_sends_the_bond_then_enslaves_each_member_while_down():
    backend = KernelBackend.__new__(KernelBackend)
    backend._ipr_socket, backend._index, backend._raw = RecordingIPRoute(), {}, {}
    # Links are deleted by a request of the backend's own (rtnl.dellink), recorded here the same way.
    backend._delete = lambda index: backend._ipr.calls.append(("del", {"index": index}))
    journal: list[Any] = []
    backend._create_bond("bond0", record(primary="eth1"), journal)
    assert backend._ipr.calls == [
        ("add", {"ifname": "bond0", "kind": "bond", "bond_mode": 1, "bond_miimon": 100, "bond_updelay": 0,
                 "bond_downdelay": 0, "bond_primary": 11}),
        ("set", {"index": 11, "state": "down"}), ("set", {"index": 11, "master": 20}),
        ("set", {"index": 11, "state": "up"}),
        ("set", {"index": 12, "state": "down"}), ("set", {"index": 12, "master": 20}),
        ("set", {"index": 12, "state": "up"}),
    ]
    backend._ipr.calls.clear()
    for undo in reversed(journal):   # a failed run: members released as they were (down), then the bond deleted
        undo()
    assert backend._ipr.calls == [
        ("set", {"index": 12, "master": 0}), ("set", {"index": 12, "state": "down"}),
        ("set", {"index": 11, "master": 0}), ("set", {"index": 11, "state": "down"}),
        ("del", {"index": 20}),
    ]


def test_status_of_an_802_3ad_bond_from_its_attributes():
    data = {"IFLA_BOND_MODE": 4, "IFLA_BOND_AD_INFO": {"IFLA_BOND_AD_INFO_AGGREGATOR": 3,
                                                       "IFLA_BOND_AD_INFO_NUM_PORTS": 2,
                                                       "IFLA_BOND_AD_INFO_PARTNER_MAC": "02:00:00:00:00:09"}}
    members = [("eth1", True, {"IFLA_BOND_SLAVE_STATE": 0, "IFLA_BOND_SLAVE_MII_STATUS": 0,
                               "IFLA_BOND_SLAVE_AD_AGGREGATOR_ID": 3}),
               ("eth2", False, {"IFLA_BOND_SLAVE_STATE": 1, "IFLA_BOND_SLAVE_MII_STATUS": 2,
                                "IFLA_BOND_SLAVE_AD_AGGREGATOR_ID": 4})]
    shown = bond_status("bond0", data, members, NAMES)
    assert shown["lacp_status"] == "negotiated" and shown["aggregator"]["ports"] == 2
    assert [(m["name"], m["link"], m["enabled"], m["active"]) for m in shown["members"]] == [
        ("eth1", "up", True, True), ("eth2", "down", False, False)]


def test_status_of_an_active_backup_bond_names_its_active_member():
    shown = bond_status("bond0", {"IFLA_BOND_MODE": 1, "IFLA_BOND_ACTIVE_SLAVE": 12}, [], NAMES)
    assert shown["active_member"] == "eth2" and shown["lacp_status"] == "off" and shown["aggregator"] is None
    no_partner = bond_status("bond0", {"IFLA_BOND_MODE": 4, "IFLA_BOND_AD_INFO": {
        "IFLA_BOND_AD_INFO_PARTNER_MAC": "00:00:00:00:00:00"}}, [], NAMES)
    assert no_partner["lacp_status"] == "no partner"
