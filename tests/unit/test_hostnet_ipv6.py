"""hostnet's IPv6 pure parts: the declaration's validation, the neighbour-discovery wire format, what a
move carries and what the persistent formats are told."""
from __future__ import annotations

import ipaddress
import struct

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import ValidationError
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.hostnet import move6, netops, probe, snapshot
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.hostnet.spec import HostIpSpec

BASE = {"bridge": "xenbr0", "uplink": "eth0"}


def test_one_address_or_a_list_with_gateway_and_autoconf():
    one = HostIpSpec.from_params({**BASE, "address6": "2001:DB8::0010/64", "gateway6": "2001:db8::1"})
    assert one.address6 == ("2001:db8::10/64",) and one.gateway6 == "2001:db8::1"
    many = HostIpSpec.from_params({**BASE, "address6": ["2001:db8::10/64", "fd00:77::10/48"],
                                   "gateway6": "fe80::1%xenbr0", "ipv6_autoconf": False})
    assert many.address6 == ("2001:db8::10/64", "fd00:77::10/48") and many.gateway6 == "fe80::1%xenbr0"
    assert many.ipv6_autoconf is False and many.ipv6_declared
    assert many.addressing()["gateway6"] == "fe80::1" and many.addressing()["address6"] == list(many.address6)
    assert HostIpSpec.from_dict(many.to_dict()) == many
    assert not HostIpSpec.from_params(BASE).ipv6_declared


@pytest.mark.parametrize(("params", "field", "words"), [
    ({"address6": "2001:db8::10"}, "address6", "no prefix length"),
    ({"address6": ["2001:db8::10/64", "2001:db8::11"]}, "address6[1]", "no prefix length"),
    ({"address6": "2001:db8::10/129"}, "address6", "at most 128"),
    ({"address6": "2001:db8::10/200"}, "address6", "at most 128"),
    ({"address6": "fe80::10/64"}, "address6", "link-local"),
    ({"address6": "ff02::1/64"}, "address6", "not a unicast"),
    ({"address6": "10.0.0.1/24"}, "address6", "not a valid IPv6"),
    ({"address6": ["2001:db8::10/64", "2001:db8::10/64"]}, "address6[1]", "twice"),
    ({"address6": "2001:db8::10/64", "gateway6": "fe80::1"}, "gateway6", "names no interface"),
    ({"address6": "2001:db8::10/64", "gateway6": "fe80::1%eth0"}, "gateway6", "reached on the bridge"),
    ({"address6": "2001:db8::10/64", "gateway6": "2001:db9::1"}, "gateway6", "on-link"),
    ({"address6": "2001:db8::10/64", "gateway6": "2001:db8::10"}, "gateway6", "own address"),
    ({"address6": "2001:db8::10/64", "gateway6": "2001:db8::1%xenbr0"}, "gateway6", "only a link-local"),
    ({"gateway6": "not-an-address"}, "gateway6", "not an IPv6"),
    ({"verify_targets": ["2001:db8::1", "host.example"]}, "verify_targets[1]", "IPv4 or IPv6"),
])
def test_bad_ipv6_input_names_field_value_and_reason(params, field, words):
    with pytest.raises(ValidationError) as err:
        HostIpSpec.from_params({**BASE, **params})
    assert err.value.field == field and words in err.value.message, err.value.message


def test_ipv6_declared_on_a_kernel_without_ipv6_is_refused(monkeypatch):
    spec = HostIpSpec.from_params({**BASE, "address6": "2001:db8::10/64"})
    monkeypatch.setattr(netops, "ipv6_available", lambda: False)
    with pytest.raises(ValidationError) as err:
        move6.check_kernel(spec, {"ipv6": None})
    assert err.value.field == "address6" and "no IPv6" in err.value.message
    monkeypatch.setattr(netops, "ipv6_available", lambda: True)
    monkeypatch.setattr(netops, "read_sysctls6", lambda name: {"disable_ipv6": 0})
    with pytest.raises(ValidationError) as err:
        move6.check_kernel(spec, {"ipv6": {"disable_ipv6": 1, "accept_ra": 1, "autoconf": 1}})
    assert "net.ipv6.conf.eth0.disable_ipv6 is 1" in err.value.message
    move6.check_kernel(HostIpSpec.from_params(BASE), {"ipv6": None})  # nothing declared: nothing to refuse


def test_neighbour_solicitation_goes_to_the_solicited_node_group_with_our_mac():
    assert probe.solicited_node("2001:db8::12:3456") == "ff02::1:ff12:3456"
    message = probe.neighbor_solicitation("2001:db8::1", "02:00:00:77:00:50")
    kind, code, _sum, _reserved = struct.unpack("!BBHI", message[:8])
    assert (kind, code) == (135, 0) and message[8:24] == ipaddress.IPv6Address("2001:db8::1").packed
    assert message[24:26] == b"\x01\x01" and message[26:32] == bytes.fromhex("020000770050")
    advert = struct.pack("!BBHI", 136, 0, 0, 0x60000000) + ipaddress.IPv6Address("2001:db8::1").packed
    assert probe.is_advert_for(advert, "2001:db8::1") and not probe.is_advert_for(advert, "2001:db8::2")
    assert not probe.is_advert_for(message, "2001:db8::1")  # a solicitation is no answer
    assert probe.router_solicitation("02:00:00:77:00:50")[:2] == b"\x85\x00"


def _snap(addresses6, routes6, sysctls=None):
    switches = sysctls or {"disable_ipv6": 0, "accept_ra": 1, "autoconf": 1}
    return {"taken": 0, "uplink": {"addresses6": addresses6, "ipv6": switches}, "routes6": routes6}


def test_slaac_is_recognised_from_lifetimes_or_learnt_routes_and_wants_a_router():
    static = {"address": "2001:db8::10", "prefixlen": 64, "flags": 0, "valid_lft": netops.FOREVER,
              "preferred_lft": netops.FOREVER}
    slaac = dict(static, valid_lft=3000, preferred_lft=2000, flags=0x100)
    ra_default = {"dst": "::", "dst_len": 0, "gateway": "fe80::1", "dev": "eth0", "proto": 9, "learnt": True}
    assert not move6.uses_ra(_snap([static], []))
    assert move6.uses_ra(_snap([slaac], [])) and move6.uses_ra(_snap([], [ra_default]))
    assert not move6.uses_ra(_snap([slaac], [], {"disable_ipv6": 0, "accept_ra": 0, "autoconf": 0}))
    spec = HostIpSpec.from_params({**BASE, "ipv6_autoconf": False})
    assert move6.wanted_sysctls(spec, _snap([], []))["accept_ra"] == 0
    assert move6.wanted_sysctls(HostIpSpec.from_params(BASE), _snap([], [], {}) | {"uplink": {}}) is None


def test_persisted_ipv6_is_what_the_bridge_carries_when_nothing_was_declared():
    spec = HostIpSpec.from_params(BASE)
    state = {"bridge": {"addresses6": [
        {"address": "2001:db8::11", "prefixlen": 64, "valid_lft": netops.FOREVER},
        {"address": "2001:db8::10", "prefixlen": 64, "valid_lft": netops.FOREVER},
        {"address": "2001:db8::ff:fe77:50", "prefixlen": 64, "valid_lft": 3000}], "ipv6": {}},
        "routes6": [{"dst": "::", "dst_len": 0, "gateway": "2001:db8::1", "dev": "xenbr0", "proto": 3,
                     "learnt": False}]}
    # the kernel lists the newest first: the files list them in the order they were added
    assert move6.addressing6(spec, state) == {"address6": ["2001:db8::10/64", "2001:db8::11/64"],
                                              "gateway6": "2001:db8::1", "ipv6_autoconf": True, "dhcp6": False}
    assert move6.addressing6(spec, {"bridge": {"addresses6": []}, "routes6": []})["ipv6_autoconf"] is None
    declared = HostIpSpec.from_params({**BASE, "address6": "2001:db8::20/64", "ipv6_autoconf": False})
    assert move6.addressing6(declared, state) == {"address6": ["2001:db8::20/64"], "gateway6": None,
                                                  "ipv6_autoconf": False, "dhcp6": False}


def test_rollback_comparison_and_description_cover_ipv6():
    link = {"name": "eth0", "master": None, "mac": "02:00:00:77:00:50", "addresses": [],
            "addresses6": [{"address": "2001:db8::10", "prefixlen": 64}]}
    before = {"uplink": link, "bridge": None, "routes": [],
              "routes6": [{"dst": "::", "dst_len": 0, "gateway": "2001:db8::1", "dev": "eth0"}]}
    assert snapshot.addresses_match(before, before)
    assert not snapshot.addresses_match(before, {**before, "uplink": {**link, "addresses6": []}})
    assert not snapshot.addresses_match(before, {**before, "routes6": []})
    assert snapshot.describe(before) == ("eth0 has 2001:db8::10/64; IPv6 default via 2001:db8::1 dev eth0; "
                                         "no bridge")
