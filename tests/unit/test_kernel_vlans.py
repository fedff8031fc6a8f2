"""The kernel datapath's VLAN translation (model <-> bridge VLAN entries), without a kernel."""
from __future__ import annotations

import struct

from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import kernel_vlans as kv
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import PortSpec, PortState
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.plan import Features, plan_ports
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.rtnl import vlan_entries
from hypothesis import given
from hypothesis import strategies as st

vids = st.integers(min_value=1, max_value=4094)


@st.composite
def port_settings(draw):
    """Valid (vlan, trunks, native_vlan) of the model: access, trunk (+native) or neither."""
    mode = draw(st.sampled_from(["access", "trunk", "plain"]))
    if mode == "access":
        return draw(vids), None, None
    if mode == "trunk":
        trunks = tuple(sorted(draw(st.sets(vids, min_size=1, max_size=40))))
        native = draw(st.none() | vids.filter(lambda v: v not in trunks))
        return None, trunks, native
    return None, None, None


@given(port_settings(), st.booleans())
def test_entries_read_back_as_the_settings_they_came_from(settings, uplink):
    vlan, trunks, native = settings
    read = kv.settings_of(kv.entries_for(vlan, trunks, native, uplink), uplink)
    if settings == (None, None, None) and not uplink:
        assert read == (kv.DEFAULT_VLAN, None, None)  # a plain port is in the untagged VLAN 1
    else:
        assert read == settings


def test_the_uplink_carries_every_vlan_tagged_and_vlan_1_untagged():
    entries = kv.entries_for(None, None, None, uplink=True)
    assert entries[1] == kv.ACCESS and len(entries) == 4094
    assert all(entries[vid] == kv.TAGGED for vid in range(2, 4095))
    # Two requests program it, not 4,094.
    assert kv.ranges(entries) == [(1, 1, kv.ACCESS), (2, 4094, kv.TAGGED)]


@given(st.dictionaries(vids, st.sampled_from([kv.TAGGED, kv.BRIDGE_VLAN_INFO_UNTAGGED]), max_size=60),
       st.dictionaries(vids, st.sampled_from([kv.TAGGED, kv.BRIDGE_VLAN_INFO_UNTAGGED]), max_size=60))
def test_changes_between_turn_one_set_into_the_other(current, wanted):
    remove, add = kv.changes_between(current, wanted)
    after = {vid: flags for vid, flags in current.items() if vid not in remove}
    after.update(add)
    assert after == wanted
    for first, last, flags in kv.ranges(add):  # ranges cover exactly the entries, flags kept
        assert all(add[vid] == flags for vid in range(first, last + 1))
    assert sum(last - first + 1 for first, last, _f in kv.ranges(add)) == len(add)


def test_a_pvid_is_never_part_of_a_range():
    assert kv.ranges({5: kv.ACCESS, 6: kv.TAGGED, 7: kv.TAGGED}) == [(5, 5, kv.ACCESS), (6, 7, kv.TAGGED)]


def test_merging_a_change_into_a_ports_settings():
    assert kv.merged_settings((5, None, None), {"vlan": None, "trunks": [10, 11], "native_vlan": 3}) == \
        (None, (10, 11), 3)
    assert kv.merged_settings((None, (10,), 3), {"bridge": "xenbr0"}) == (None, (10,), 3)
    # A port that just joined reads as VLAN 1 untagged; trunks named by the change make it a trunk.
    assert kv.merged_settings((1, None, None), {"bridge": "xenbr0", "trunks": (5, 7)}) == (None, (5, 7), None)
    assert kv.merged_settings((None, (5, 7), 1), {"vlan": 9}) == (9, None, None)


def test_link_names_fit_interface_names_and_stay_stable():
    assert kv.link_names("xapi5") == ("xapi5-vp", "xapi5-vn")
    long_a, long_b = kv.link_names("averylongname15"), kv.link_names("averylongname16")
    assert all(len(n) <= 15 for n in long_a + long_b) and long_a != long_b
    assert kv.link_names("averylongname15") == long_a
    assert kv.network_of_alias(kv.VLAN_LINK_ALIAS + "xapi5") == "xapi5"
    assert kv.network_of_alias("openvif:uplink") is None and kv.network_of_alias(None) is None


def _vlan_info(flags: int, vid: int) -> bytes:
    return struct.pack("=HHHH", 8, 2, flags, vid)  # IFLA_BRIDGE_VLAN_INFO


def test_decoding_a_compressed_kernel_vlan_list():
    spec = (struct.pack("=HHH2x", 6, 0, 0)  # IFLA_BRIDGE_FLAGS, skipped
            + _vlan_info(kv.ACCESS, 1)
            + _vlan_info(0x8, 2) + _vlan_info(0x10, 4094)   # RANGE_BEGIN .. RANGE_END
            + b"\x08\x00")                                    # a truncated attribute at the end is ignored
    entries = vlan_entries(spec)
    assert entries == kv.entries_for(None, None, None, uplink=True)


def test_switching_an_access_port_to_a_trunk_clears_its_vlan_and_back():
    features = {"kernel": Features(vlan_filtering=True)}
    from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.model import BridgeState, HostState

    def plan(current: PortState, **declared):
        state = HostState(bridges={"xenbr0": BridgeState(name="xenbr0", ports=("vif1.0",))},
                          ports={"vif1.0": current})
        spec = PortSpec.from_params({"name": "vif1.0", "bridge": "xenbr0", **declared})
        return [dict(c.args) for c in plan_ports([spec], state, features)]

    access = PortState(name="vif1.0", bridge="xenbr0", vlan=5)
    assert plan(access, trunks="10-11") == [{"bridge": "xenbr0", "trunks": (10, 11), "vlan": None}]
    trunk = PortState(name="vif1.0", bridge="xenbr0", trunks=(10, 11), native_vlan=3)
    assert plan(trunk, vlan=5) == [{"bridge": "xenbr0", "vlan": 5, "trunks": None, "native_vlan": None}]
    assert plan(access, vlan=5) == []
