from __future__ import annotations

import pytest
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.errors import ValidationError
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.vlans import format_vlans, parse_vlans
from hypothesis import given
from hypothesis import strategies as st


@pytest.mark.parametrize("text, tags", [
    ("100-102,200", (100, 101, 102, 200)), ("5", (5,)), (" 7 , 3-4 ", (3, 4, 7)),
    ([10, "20-21"], (10, 20, 21)), (4094, (4094,)), ("1-1", (1,)),
])
def test_parse(text, tags):
    assert parse_vlans("trunks", text) == tags


@pytest.mark.parametrize("text, why", [
    ("100-120,110", "overlap"), ("10,10", "twice"), ("10-", "malformed"), ("a-b", "malformed"),
    ("20-10", "below its start"), ("0-5", "not a usable VLAN"), ("4090-4095", "not a usable VLAN"),
    ("", "empty"), ([], "empty"), (True, "must be VLAN tags"), ("1,,2", "malformed"),
])
def test_parse_errors_name_field_and_value(text, why):
    with pytest.raises(ValidationError, match=why) as err:
        parse_vlans("trunks", text)
    assert err.value.field == "trunks"


def test_format_compresses_ranges():
    assert format_vlans([1, 2, 3, 7, 9, 10]) == "1-3,7,9-10"
    assert format_vlans([]) == ""


@given(st.sets(st.integers(min_value=1, max_value=4094), min_size=1, max_size=200))
def test_format_then_parse_round_trips(tags):
    assert parse_vlans("trunks", format_vlans(tags)) == tuple(sorted(tags))
