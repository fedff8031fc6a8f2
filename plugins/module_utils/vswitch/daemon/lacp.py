"""IEEE 802.1AX (802.3ad) LACP for vswitchd's bonds: LACPDUs and the per-member machines.

Each member runs the receive machine (CURRENT while the partner's LACPDUs keep arriving,
EXPIRED after one timeout, DEFAULTED after a second: no partner), the periodic transmit
machine (every second when the partner asked for the short timeout, every 30 s otherwise,
and at once when our state changed: "need to transmit", at most three a second), and the
selection logic: members whose partner is the same system with the same key are aggregated
(attached); collecting and distributing are coupled to synchronization (802.1AX's coupled
control). A member carries traffic once it is attached and the partner reports it in sync
and collecting: "members join only when the partner agrees".

LACPDU (after the 14-byte Ethernet header, ethertype 0x8809 slow protocols):
  subtype 1, version 1,
  TLV 1 actor / TLV 2 partner, 20 bytes each: system priority, system MAC, key,
    port priority, port number, state, 3 reserved,
  TLV 3 collector, 16 bytes: max delay, 12 reserved; TLV 0 terminator; padding to 110 bytes.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Optional

SLOW_PROTOCOLS = 0x8809
LACP_SUBTYPE = 1
LACP_MAC = bytes.fromhex("0180c2000002")
FAST_PERIOD, SLOW_PERIOD = 1.0, 30.0
SHORT_TIMEOUT, LONG_TIMEOUT = 3.0, 90.0
NTT_MIN_GAP = 1.0 / 3          # 802.1AX: at most three LACPDUs in any second

ACTIVITY, TIMEOUT, AGGREGATION, SYNC, COLLECTING, DISTRIBUTING, DEFAULTED, EXPIRED = (1 << i for i in range(8))
STATE_NAMES = ("activity", "timeout", "aggregation", "synchronized", "collecting", "distributing", "defaulted",
               "expired")

_INFO = struct.Struct("!BBH6sHHHB3x")   # TLV type, length, then the 18 bytes of actor/partner information
_HEAD = struct.Struct("!6s6sHBB")       # dst, src, ethertype, subtype, version
PDU_LEN = 110                           # from the subtype to the end of the padding
CURRENT, EXPIRED_STATE, DEFAULTED_STATE = "current", "expired", "defaulted"


@dataclass(frozen=True)
class Info:
    """One side's identity as a LACPDU carries it."""

    sys_priority: int = 0
    sys_mac: bytes = b"\0" * 6
    key: int = 0
    port_priority: int = 0
    port: int = 0
    state: int = 0

    def system(self) -> tuple[int, bytes, int]:
        """What makes two members aggregable: the same partner system and key."""
        return self.sys_priority, self.sys_mac, self.key

    def to_dict(self) -> dict[str, Any]:
        return {"sys_id": ":".join(f"{b:02x}" for b in self.sys_mac), "sys_priority": self.sys_priority,
                "key": self.key, "port_priority": self.port_priority, "port_id": self.port,
                "state": state_names(self.state)}


def state_names(state: int) -> list[str]:
    return [name for bit, name in enumerate(STATE_NAMES) if state & (1 << bit)]


def encode(src: bytes, actor: Info, partner: Info) -> bytes:
    """A whole LACPDU frame (without the vnet header), 124 bytes."""
    body = bytearray(_HEAD.pack(LACP_MAC, src, SLOW_PROTOCOLS, LACP_SUBTYPE, 1))
    for tlv, info in ((1, actor), (2, partner)):
        body += _INFO.pack(tlv, 20, info.sys_priority, info.sys_mac, info.key, info.port_priority, info.port,
                           info.state)
    body += struct.pack("!BBH12x", 3, 16, 0)           # collector: max delay 0
    body += b"\0\0"                                    # terminator
    return bytes(body.ljust(14 + PDU_LEN, b"\0"))


def decode(frame: Any, offset: int = 0) -> Optional[tuple[Info, Info]]:
    """(actor, partner) from a LACPDU at ``frame[offset:]``, or None if it is not a valid one."""
    if len(frame) - offset < 14 + 2 + 40:
        return None
    _dst, _src, etype, subtype, _version = _HEAD.unpack_from(frame, offset)
    if etype != SLOW_PROTOCOLS or subtype != LACP_SUBTYPE:
        return None
    infos = []
    for index, tlv in enumerate((1, 2)):
        kind, length, *fields = _INFO.unpack_from(frame, offset + 16 + 20 * index)
        if kind != tlv or length != 20:
            return None
        infos.append(Info(*fields))
    return infos[0], infos[1]


class LacpMember:
    """One member's receive and transmit machines and what it knows of its partner."""

    def __init__(self, port_number: int) -> None:
        self.port_number = port_number
        self.rx = DEFAULTED_STATE
        self.partner = Info()
        self.deadline = 0.0
        self.attached = False
        self.ntt = True
        self.last_tx = -1e9
        self.rx_pdus = self.tx_pdus = self.rx_errors = 0
        self.sent_state = -1

    def received(self, actor: Info, partner_view: Info, ours: Info, timeout: float, now: float) -> None:
        self.rx_pdus += 1
        self.partner = actor
        self.rx = CURRENT
        self.deadline = now + timeout
        # The partner's picture of us is out of date: tell it (802.1AX's "update needed").
        if _fields(partner_view) != _fields(ours):
            self.ntt = True

    def expire(self, now: float, carrier: bool) -> bool:
        """Run the receive machine's timers; True when its state changed."""
        if not carrier and self.rx != DEFAULTED_STATE:
            self.rx, self.partner = DEFAULTED_STATE, Info()
            return True
        if self.rx == DEFAULTED_STATE or now < self.deadline:
            return False
        if self.rx == CURRENT:
            # One timeout without a LACPDU: expired; the partner is asked for fast LACPDUs and is out of sync.
            self.rx = EXPIRED_STATE
            self.partner = Info(*[*_fields(self.partner)[:5], (self.partner.state | TIMEOUT) & ~SYNC])
            self.deadline = now + SHORT_TIMEOUT
        else:
            self.rx, self.partner = DEFAULTED_STATE, Info()
        self.ntt = True
        return True

    def may_enable(self) -> bool:
        """Carry traffic: aggregated, and the partner says it is in sync and collecting."""
        return self.attached and self.rx == CURRENT and bool(self.partner.state & SYNC) and \
            bool(self.partner.state & COLLECTING)

    def due(self, now: float, active: bool) -> bool:
        """Whether a LACPDU is to go out now (periodic, or need-to-transmit)."""
        if not active and not self.partner.state & ACTIVITY:
            return False      # passive, and the partner is passive or absent: both stay silent
        period = FAST_PERIOD if self.partner.state & TIMEOUT or self.rx != CURRENT else SLOW_PERIOD
        if self.ntt and now - self.last_tx >= NTT_MIN_GAP:
            return True
        return now - self.last_tx >= period


def _fields(info: Info) -> list[Any]:
    return [info.sys_priority, info.sys_mac, info.key, info.port_priority, info.port, info.state]


def select(members: list[LacpMember], carriers: list[bool]) -> bool:
    """Aggregate the members whose partner matches the lead's; True if any member's attachment changed.

    The lead is the member with a current partner and the lowest port number: its partner's
    (system, key) is the aggregator's, so one bond never aggregates links to two switches.
    """
    lead = None
    for member, up in zip(members, carriers):
        if up and member.rx != DEFAULTED_STATE and member.partner.state & AGGREGATION:
            if lead is None or member.port_number < lead.port_number:
                lead = member
    changed = False
    for member, up in zip(members, carriers):
        attached = bool(lead is not None and up and member.rx != DEFAULTED_STATE
                        and member.partner.state & AGGREGATION and member.partner.system() == lead.partner.system())
        if attached != member.attached:
            member.attached = attached
            member.ntt = True
            changed = True
    return changed


def actor_state(member: LacpMember, active: bool, fast: bool) -> int:
    state = AGGREGATION
    if active:
        state |= ACTIVITY
    if fast:
        state |= TIMEOUT
    if member.attached:
        state |= SYNC | COLLECTING | DISTRIBUTING
    if member.rx == DEFAULTED_STATE:
        state |= DEFAULTED
    elif member.rx == EXPIRED_STATE:
        state |= EXPIRED
    return state
