"""LACPDU codec, the receive machine's timers, selection, and the link-event parser."""
from __future__ import annotations

import struct

from vswitch.daemon import lacp
from vswitch.daemon.linkmon import IFF_RUNNING, IFF_UP, RTM_DELLINK, RTM_NEWLINK, parse_link_events

A = bytes.fromhex("020000000001")
B = bytes.fromhex("020000000002")


def info(mac: bytes, port: int, state: int, key: int = 7) -> lacp.Info:
    return lacp.Info(65535, mac, key, 255, port, state)


def test_lacpdu_round_trips_and_has_the_standard_shape():
    actor = info(A, 1, lacp.ACTIVITY | lacp.AGGREGATION | lacp.SYNC)
    partner = info(B, 3, lacp.AGGREGATION)
    frame = lacp.encode(A, actor, partner)
    assert len(frame) == 124 and frame[:6] == lacp.LACP_MAC and frame[12:16] == b"\x88\x09\x01\x01"
    assert frame[16:18] == b"\x01\x14" and frame[36:38] == b"\x02\x14" and frame[56:58] == b"\x03\x10"
    assert lacp.decode(frame) == (actor, partner)
    assert lacp.decode(frame[:40]) is None
    broken = bytearray(frame)
    broken[17] = 19   # a TLV of the wrong length
    assert lacp.decode(bytes(broken)) is None


def test_receive_machine_current_expired_defaulted():
    member = lacp.LacpMember(1)
    ours = info(A, 1, lacp.ACTIVITY | lacp.AGGREGATION)
    member.received(info(B, 1, lacp.ACTIVITY | lacp.AGGREGATION | lacp.SYNC | lacp.COLLECTING), ours, ours, 3.0, 0.0)
    assert member.rx == lacp.CURRENT and member.deadline == 3.0
    assert not member.expire(2.9, True)
    assert member.expire(3.1, True) and member.rx == lacp.EXPIRED_STATE
    assert member.partner.state & lacp.TIMEOUT and not member.partner.state & lacp.SYNC
    assert member.expire(3.1 + lacp.SHORT_TIMEOUT, True) and member.rx == lacp.DEFAULTED_STATE
    member.received(info(B, 1, lacp.AGGREGATION), ours, ours, 3.0, 10.0)
    assert member.expire(10.0, False) and member.rx == lacp.DEFAULTED_STATE   # link lost: partner forgotten


def test_out_of_date_partner_view_asks_for_a_transmission():
    member = lacp.LacpMember(1)
    member.ntt = False
    ours = info(A, 1, lacp.ACTIVITY | lacp.AGGREGATION)
    member.received(info(B, 1, lacp.AGGREGATION), ours, ours, 3.0, 0.0)
    assert not member.ntt
    member.received(info(B, 1, lacp.AGGREGATION), info(A, 1, lacp.ACTIVITY), ours, 3.0, 0.1)
    assert member.ntt


def test_selection_aggregates_only_links_to_the_same_partner_and_key():
    one, two, three = lacp.LacpMember(1), lacp.LacpMember(2), lacp.LacpMember(3)
    ours = info(A, 1, 0)
    agreed = lacp.ACTIVITY | lacp.AGGREGATION | lacp.SYNC | lacp.COLLECTING | lacp.DISTRIBUTING
    one.received(info(B, 1, agreed), ours, ours, 3.0, 0.0)
    two.received(info(B, 2, agreed), ours, ours, 3.0, 0.0)
    three.received(info(bytes.fromhex("020000000009"), 1, agreed), ours, ours, 3.0, 0.0)   # another switch
    assert lacp.select([one, two, three], [True, True, True])
    assert one.attached and two.attached and not three.attached
    assert one.may_enable() and two.may_enable() and not three.may_enable()
    state = lacp.actor_state(one, active=True, fast=True)
    assert lacp.state_names(state) == ["activity", "timeout", "aggregation", "synchronized", "collecting",
                                       "distributing"]
    assert lacp.select([one, two, three], [False, True, True]) and not one.attached and two.attached


def test_passive_stays_silent_until_the_partner_is_active():
    member = lacp.LacpMember(1)
    assert not member.due(100.0, active=False)
    assert member.due(100.0, active=True)
    ours = info(A, 1, 0)
    member.received(info(B, 1, lacp.ACTIVITY | lacp.AGGREGATION), ours, ours, 90.0, 100.0)
    assert member.due(100.0, active=False)


def _newlink(kind: int, name: str, flags: int) -> bytes:
    attr = struct.pack("=HH", 4 + len(name) + 1, 3) + name.encode() + b"\0"
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BxHiII", 0, 1, 5, flags, 0) + attr
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_link_events_say_which_link_and_whether_it_has_carrier():
    data = _newlink(RTM_NEWLINK, "eth1", IFF_UP | IFF_RUNNING) + _newlink(RTM_NEWLINK, "eth2", IFF_UP) + \
        _newlink(RTM_DELLINK, "eth3", IFF_UP | IFF_RUNNING)
    assert parse_link_events(data) == [("eth1", True), ("eth2", False), ("eth3", False)]
