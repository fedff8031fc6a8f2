from __future__ import annotations

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import validate as v
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import ValidationError


@pytest.mark.parametrize("name", ["xenbr0", "xapi1", "vif1.0", "peth0", "a" * 15, "tap-x_y"])
def test_ifname_accepts_linux_names(name):
    assert v.ifname("name", name) == name


@pytest.mark.parametrize("name, why", [
    ("a" * 16, "at most 15"), ("xen br0", "whitespace"), ("br/0", "'/'"), ("br:0", "':'"),
    ("", "non-empty"), (".", "not a valid"), ("brü", "ASCII"), (None, "non-empty"),
])
def test_ifname_rejects_with_field_value_and_reason(name, why):
    with pytest.raises(ValidationError) as err:
        v.ifname("name", name)
    assert err.value.field == "name"
    assert why in err.value.message
    assert repr(name) in err.value.message


@pytest.mark.parametrize("text, normal", [
    ("00:16:3E:AA:00:11", "00:16:3e:aa:00:11"), ("00-16-3e-aa-00-11", "00:16:3e:aa:00:11"),
    ("00163eaa0011", "00:16:3e:aa:00:11"), ("fe:ff:ff:ff:ff:ff", "fe:ff:ff:ff:ff:ff"),
])
def test_mac_normalises(text, normal):
    assert v.mac("mac", text) == normal


@pytest.mark.parametrize("text, why", [
    ("01:16:3e:00:00:01", "multicast"), ("ff:ff:ff:ff:ff:ff", "multicast"), ("00:00:00:00:00:00", "all-zero"),
    ("00:16:3e:00:00", "not a MAC"), ("00:16:3e:00:00:0g", "not a MAC"), ("00:16-3e:00:00:01", "not a MAC"),
    (12, "must be a MAC"),
])
def test_mac_rejects(text, why):
    with pytest.raises(ValidationError, match=why):
        v.mac("ports[3].mac", text)


def test_multicast_error_message_names_path_and_value():
    with pytest.raises(ValidationError) as err:
        v.mac("ports[3].mac", "01:16:3e:00:00:01")
    assert err.value.message.startswith("ports[3].mac: '01:16:3e:00:00:01' is a multicast address")


@pytest.mark.parametrize("value", [67, 65536, -1, "x", True])
def test_mtu_out_of_range(value):
    with pytest.raises(ValidationError):
        v.mtu("mtu", value)


def test_mtu_bounds_and_numeric_strings():
    assert v.mtu("mtu", 68) == 68 and v.mtu("mtu", "9000") == 9000 and v.mtu("mtu", 65535) == 65535


@pytest.mark.parametrize("tag, why", [(0, "no VLAN"), (4095, "reserved"), (4096, "out of range"), (-1, "out of range")])
def test_vlan_id_rejects(tag, why):
    with pytest.raises(ValidationError, match=why):
        v.vlan_id("vlan", tag)


def test_seconds_keeps_centisecond_resolution():
    assert v.seconds("forward_delay", "2.345", 0, 30) == 2.35
    with pytest.raises(ValidationError, match="between 0 and 30"):
        v.seconds("forward_delay", 31, 0, 30)
