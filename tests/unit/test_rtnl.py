"""The lean link-dump decoder on hand-built messages: wanted attributes, nesting, malformed lengths."""
from __future__ import annotations

import struct

from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch import rtnl


def nla(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def link_message(index=7, name=b"xenbr0", flags=0x1, extra=b"") -> bytes:
    data = nla(rtnl.IFLA_BR_STP_STATE, struct.pack("=I", 1)) + nla(rtnl.IFLA_BR_AGEING_TIME, struct.pack("=I", 0))
    data += nla(rtnl.IFLA_BR_FORWARD_DELAY, struct.pack("=I", 400))
    info = nla(rtnl.IFLA_INFO_KIND, b"bridge\0") + nla(rtnl.IFLA_INFO_DATA | 0x8000, data)  # NLA_F_NESTED
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0)
    body += nla(rtnl.IFLA_IFNAME, name + b"\0") + nla(rtnl.IFLA_MTU, struct.pack("=I", 9000))
    body += nla(rtnl.IFLA_ADDRESS, bytes([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]))
    body += nla(rtnl.IFLA_MASTER, struct.pack("=I", 3)) + nla(rtnl.IFLA_IFALIAS, b"openvif:uplink\0")
    body += nla(26, b"\x01" * 40)  # an attribute the model does not use (IFLA_AF_SPEC-like)
    body += nla(rtnl.IFLA_LINKINFO, info) + extra
    return body


def test_decodes_the_attributes_the_model_uses():
    body = link_message()
    link = rtnl._link(body, 0, len(body))
    assert (link.index, link.name, link.flags, link.mtu) == (7, "xenbr0", 1, 9000)
    assert link.mac == "fe:ff:ff:ff:ff:ff" and link.master == 3 and link.alias == "openvif:uplink"
    assert link.kind == "bridge"
    assert link.bridge == {rtnl.IFLA_BR_STP_STATE: 1, rtnl.IFLA_BR_AGEING_TIME: 0, rtnl.IFLA_BR_FORWARD_DELAY: 400}


def test_stops_at_a_malformed_attribute_length_instead_of_looping():
    body = link_message(extra=struct.pack("=HH", 2, 99))  # length 2 < header size
    assert rtnl._link(body, 0, len(body)).name == "xenbr0"


def test_truncated_attribute_does_not_read_past_the_message():
    body = link_message()
    truncated = body[:-3]
    link = rtnl._link(truncated, 0, len(truncated))
    assert link.name == "xenbr0" and link.kind == ""  # the cut LINKINFO is dropped, not half-read


def test_dump_of_this_namespace_lists_loopback():
    names = {link.name for link in rtnl.dump_links()}
    assert "lo" in names


def test_dellink_asks_for_an_ack_and_no_create_or_excl_flag():
    # NLM_F_EXCL on a delete is NLM_F_BULK since Linux 5.19 (refused by RTM_DELLINK): only REQUEST | ACK.
    message = rtnl.dellink(42)
    length, kind, flags, _seq, _pid = struct.unpack_from("=IHHII", message)
    family, _type, index, ifi_flags, change = struct.unpack_from("=BxHiII", message, 16)
    assert (length, kind, flags) == (len(message), 17, 0x1 | 0x4)
    assert (family, index, ifi_flags, change) == (0, 42, 0, 0)


def test_request_raises_the_kernels_errno():
    # Deleting an ifindex that does not exist: ENODEV from the kernel, no namespace needed.
    try:
        rtnl.request(rtnl.dellink(0x7FFFFFF0))
    except OSError as err:
        assert err.errno in (19, 1)   # ENODEV as root, EPERM without CAP_NET_ADMIN
    else:
        raise AssertionError("deleting a link that does not exist succeeded")


def test_get_link_reads_one_link_and_none_for_a_missing_name():
    link = rtnl.get_link("lo")
    assert link is not None and link.name == "lo" and link.index == 1
    assert rtnl.get_link("no-such-link0") is None   # ENODEV is an answer, not an error


def test_the_bond_attributes_pyroute2_lacks_are_decoded_and_a_bridge_is_not_a_bond():
    data = nla(29, b"\x00") + nla(3, struct.pack("=I", 100))   # IFLA_BOND_AD_LACP_ACTIVE off, IFLA_BOND_MIIMON
    info = nla(rtnl.IFLA_INFO_KIND, b"bond\0") + nla(rtnl.IFLA_INFO_DATA | 0x8000, data)
    body = struct.pack("=BxHiII", 0, 1, 9, 0, 0) + nla(rtnl.IFLA_IFNAME, b"bond0\0") + nla(rtnl.IFLA_LINKINFO, info)
    link = rtnl._link(body, 0, len(body))
    assert link.kind == "bond" and link.bond == {29: 0, 3: 100} and link.bridge is None
    bridge = link_message()
    assert rtnl._link(bridge, 0, len(bridge)).bond is None
