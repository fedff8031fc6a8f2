"""A bond port: one bridge port over two or more system ports (its members), in userspace.

The bridge sees one ``Port`` (the bond); ``BondIO`` is its I/O. Each member is an AF_PACKET
``PacketIO`` whose ``Port`` is not attached to the bridge: its "bridge" is the bond's
``_MemberInput``, which takes LACPDUs, admits or drops each frame by the mode's rules and hands
the rest to the real bridge as received on the bond. Frames the bridge sends to the bond go out
on the member the mode picks:

- active-backup: the active member (the primary when it has link, else the one that had
  traffic last, else the first with link); frames received on others are dropped.
- balance-slb: 256 buckets by source MAC, each on one member; every ``rebalance_interval`` the
  busiest member's buckets move to the least busy. Broadcast/multicast is accepted only on the
  active member, and a frame whose source MAC was learned on another port of the bridge is a
  reflection of our own flood and is dropped (no loop without switch support).
- balance-tcp: buckets by an L2-L4 hash, over the members LACP lets distribute.

With LACP a member carries traffic only when the partner agrees (``lacp.py``); when no partner
answers at all and ``lacp_fallback`` is on, the bond runs active-backup over its members with link.

Link state comes from netlink events (``linkmon.py``) at once, and from a carrier poll every
``miimon`` ms; ``updelay``/``downdelay`` hold a change back. When traffic moves to another member
the MACs learned behind the bridge's other ports are announced on it with gratuitous RARP frames,
so the physical switches relearn them at once.
"""
from __future__ import annotations

import logging
import struct
import zlib
from typing import Any, Optional

from ..errors import NotFoundError
from ..identity import stable_mac
from . import lacp
from . import ports as netdev
from .datapath import VNET, Port
from .fdb import mac_bytes, mac_text
from .linkmon import carrier, monitor_for
from .loop import HANGUP

log = logging.getLogger("vswitchd.bond")

BUCKETS = 256
TICK = 0.01            # seconds between runs of the bond's timers
RETRY = 5.0            # seconds between attempts to open a member whose device is missing
ETH_P_RARP = 0x8035
_RARP = struct.Struct("!6s6sHHHBBH6s4s6s4s")
_TAG = struct.Struct("!HH")
_ETH = struct.Struct("!6s6sH")
_BROADCAST = b"\xff" * 6
_VNET_ZERO = bytes(VNET)


def rarp(mac: bytes, vlan: Optional[int]) -> bytes:
    """A gratuitous RARP from ``mac`` (what Open vSwitch and QEMU send so switches relearn a MAC)."""
    frame = _RARP.pack(_BROADCAST, mac, ETH_P_RARP, 1, 0x0800, 6, 4, 3, mac, bytes(4), mac, bytes(4))
    if vlan:
        frame = frame[:12] + _TAG.pack(0x8100, vlan) + frame[12:]
    return _VNET_ZERO + frame.ljust(60, b"\0")


class Member:
    """One NIC of the bond: its I/O, link state, LACP machines and counters."""

    def __init__(self, name: str, number: int) -> None:
        self.name = name
        self.port = Port(name, "system")
        self.io: Optional[netdev.PacketIO] = None
        self.carrier = False          # the link as last reported
        self.enabled = False          # the link, after updelay/downdelay
        self.changed_at = 0.0         # when ``carrier`` last changed
        self.lacp = lacp.LacpMember(number)
        self.may_enable = False       # enabled and (without LACP or LACP agrees): may carry traffic
        self.status = "ok"
        self.last_open = -1e9
        self.dropped_inactive = 0
        self.tx_load = 0              # bytes sent since the last rebalance (balance-slb/tcp)


class _MemberInput:
    """What a member's receive ring delivers to: the bond's admission, then the bridge."""

    def __init__(self, bond: BondIO, member: Member) -> None:
        self.bond = bond
        self.member = member

    def input(self, port: Port, buf: memoryview, n: int, aux: int, now: float) -> None:
        self.bond.member_input(self.member, buf, n, aux, now)


class BondIO:
    kind = "bond"

    def __init__(self, name: str, port: Port, loop: Any, record: dict[str, Any]) -> None:
        self.name = name
        self.port = port
        self.loop = loop
        self.record: dict[str, Any] = {}
        self.members: dict[str, Member] = {}
        self.active: Optional[str] = None
        self.buckets: list[Optional[str]] = [None] * BUCKETS
        self.bucket_load = [0] * BUCKETS
        self.system_mac = mac_bytes(stable_mac(f"lacp:{name}"))
        self.key = (zlib.crc32(name.encode()) & 0x3FFF) + 1
        self.last_miimon = self.last_rebalance = self.last_retry = 0.0
        self.failovers = 0
        self.announced = 0
        self.monitor = monitor_for(loop)
        for member in record["members"]:
            if not netdev.ifindex(member):
                raise NotFoundError("bond.members", member, "does not exist on this host; a bond's members must be "
                                                            "existing interfaces (NICs)")
        self.reconfigure(record, loop.clock())
        self.timer = loop.every(TICK, self.tick)
        port.send = self.send

    # -- configuration ------------------------------------------------------------------------------
    def reconfigure(self, record: dict[str, Any], now: float) -> None:
        """Take a new bond record: open new members, close removed ones, re-select."""
        self.record = dict(record)
        wanted = list(record["members"])
        for name in [m for m in self.members if m not in wanted]:
            self._close_member(self.members.pop(name))
        for number, name in enumerate(wanted, start=1):
            if name not in self.members:
                member = self.members[name] = Member(name, number)
                self.monitor.subscribe(name, self._link_event)
                self._open_member(member, now)
            self.members[name].lacp.port_number = number
        self.members = {name: self.members[name] for name in wanted}
        self.update(now, force=True)

    def _open_member(self, member: Member, now: float) -> None:
        member.last_open = now
        try:
            member.io = netdev.PacketIO(member.name, member.port, self.loop)
        except Exception as err:  # noqa: BLE001 - a missing member is retried; the bond carries on without it
            member.status = getattr(err, "message", str(err))
            log.warning("bond %s: member %s not attached: %s", self.name, member.name, member.status)
            return
        member.status = "ok"
        member.port.bridge = _MemberInput(self, member)   # type: ignore[assignment] - duck-typed input
        io = member.io
        self.loop.register(io.fileno(), lambda events, when, io=io, m=member: self._member_ready(m, io, events, when))
        member.carrier = self._poll_carrier(member)
        member.enabled = member.carrier and not self.record["updelay"]
        member.changed_at = now

    def _member_ready(self, member: Member, io: netdev.PacketIO, events: int, now: float) -> None:
        if events & HANGUP and not io.healthy():   # the device went away
            self._close_member(member)
            member.status = "device removed"
            member.carrier = False
            self.update(now)
            return
        io.receive(now)

    def _close_member(self, member: Member) -> None:
        self.monitor.unsubscribe(member.name, self._link_event)
        if member.io is not None:
            try:
                self.loop.unregister(member.io.fileno())
            except (OSError, ValueError):
                pass
            member.io.close()
            member.io = None
        member.port.bridge = None
        member.may_enable = member.enabled = False

    def close(self, keep: bool = False) -> None:
        if self.timer in self.loop.timers:
            self.loop.timers.remove(self.timer)
        for member in self.members.values():
            self._close_member(member)

    def fileno(self) -> int:
        return -1

    def healthy(self) -> bool:
        return True

    def receive(self, now: float) -> None:
        for member in self.members.values():
            if member.io is not None:
                member.io.receive(now)

    # -- link state ---------------------------------------------------------------------------------
    def _poll_carrier(self, member: Member) -> bool:
        try:
            return carrier(netdev.get_flags(member.name))
        except OSError:
            return False

    def _link_event(self, name: str, up: bool, now: float) -> None:
        member = self.members.get(name)
        if member is None:
            return
        if member.io is None and up and member.status != "ok":
            self._open_member(member, now)
        self._set_carrier(member, up, now)
        self.update(now)

    def _set_carrier(self, member: Member, up: bool, now: float) -> None:
        if up != member.carrier:
            member.carrier = up
            member.changed_at = now
            log.info("bond %s: member %s link %s", self.name, member.name, "up" if up else "down")

    def _apply_delays(self, now: float) -> bool:
        changed = False
        for member in self.members.values():
            up = member.carrier and member.io is not None
            if up == member.enabled:
                continue
            delay = (self.record["updelay"] if up else self.record["downdelay"]) / 1000.0
            if now - member.changed_at >= delay:
                member.enabled = up
                changed = True
        return changed

    # -- the timers ---------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        miimon = self.record["miimon"] / 1000.0
        if miimon and now - self.last_miimon >= miimon:
            self.last_miimon = now
            for member in self.members.values():
                if member.io is not None:
                    self._set_carrier(member, self._poll_carrier(member), now)
        if now - self.last_retry >= RETRY:
            self.last_retry = now
            for member in self.members.values():
                if member.io is None:
                    self._open_member(member, now)
                else:
                    member.io.receive(now)   # frames stranded behind a dropped slot, as the switch does
        self.update(now)
        if self.record["lacp"] != "off":
            self._lacp_transmit(now)
        interval = self.record["rebalance_interval"] / 1000.0
        if interval and self.record["mode"] != "active-backup" and now - self.last_rebalance >= interval:
            self.last_rebalance = now
            self.rebalance()

    def update(self, now: float, force: bool = False) -> None:
        """Re-derive which members may carry traffic and which is active; announce MACs if it moved."""
        changed = self._apply_delays(now) or force
        if self.record["lacp"] != "off":
            members = list(self.members.values())
            carriers = [m.enabled for m in members]
            for member in members:
                changed |= member.lacp.expire(now, member.enabled)
            changed |= lacp.select([m.lacp for m in members], carriers)
        if not changed:
            return
        for member in self.members.values():
            member.may_enable = member.enabled and self._lacp_agrees(member)
        self._choose_active(now)
        self._fill_buckets()

    def negotiated(self) -> bool:
        """LACP is on and some member has a partner (not every member defaulted)."""
        return self.record["lacp"] != "off" and any(m.lacp.rx != lacp.DEFAULTED_STATE for m in self.members.values())

    def _lacp_agrees(self, member: Member) -> bool:
        if self.record["lacp"] == "off":
            return True
        if not self.negotiated():
            return bool(self.record["lacp_fallback"])   # no partner at all: active-backup, if allowed
        return member.lacp.may_enable()

    def _active_backup(self) -> bool:
        return self.record["mode"] == "active-backup" or (self.record["lacp"] != "off" and not self.negotiated())

    def _choose_active(self, now: float) -> None:
        usable = [name for name, m in self.members.items() if m.may_enable]
        primary = self.record.get("primary")
        if primary in usable and (self.active != primary):
            new = primary
        elif self.active in usable:
            return
        else:
            new = usable[0] if usable else None
        old, self.active = self.active, new
        if new is None:
            log.warning("bond %s: no member may carry traffic", self.name)
            return
        log.info("bond %s: active member %s (was %s)", self.name, new, old)
        if old is not None:
            self.failovers += 1
        if self._active_backup() or self.record["mode"] == "balance-slb":
            self._announce(self.members[new], None)

    def _fill_buckets(self) -> None:
        """Move buckets off members that may no longer carry traffic (onto the least loaded ones)."""
        usable = [name for name, m in self.members.items() if m.may_enable]
        if not usable:
            self.buckets = [None] * BUCKETS
            return
        load = {name: 0 for name in usable}
        for owner in self.buckets:
            if owner in load:
                load[owner] += 1
        moved: dict[str, list[int]] = {}
        for index, owner in enumerate(self.buckets):
            if owner not in load:
                target = min(usable, key=lambda name: load[name])
                self.buckets[index] = target
                load[target] += 1
                moved.setdefault(target, []).append(index)
        if self.record["mode"] == "balance-slb" and not self._active_backup():
            for target, indexes in moved.items():
                self._announce(self.members[target], set(indexes))

    def rebalance(self) -> None:
        """balance-slb/tcp: move the busiest member's lightest buckets to the least busy member."""
        usable = [name for name, m in self.members.items() if m.may_enable]
        if len(usable) < 2:
            return
        load = {name: 0 for name in usable}
        for index, owner in enumerate(self.buckets):
            if owner in load:
                load[owner] += self.bucket_load[index]
        busiest = max(usable, key=lambda name: load[name])
        idlest = min(usable, key=lambda name: load[name])
        gap = load[busiest] - load[idlest]
        moved = set()
        candidates = sorted((self.bucket_load[i], i) for i, owner in enumerate(self.buckets)
                            if owner == busiest and self.bucket_load[i])
        for bytes_sent, index in candidates:
            if 2 * bytes_sent >= gap:   # moving it would not narrow the gap
                break
            self.buckets[index] = idlest
            gap -= 2 * bytes_sent
            moved.add(index)
        self.bucket_load = [0] * BUCKETS
        if moved:
            log.info("bond %s: rebalanced %d buckets from %s to %s", self.name, len(moved), busiest, idlest)
            if self.record["mode"] == "balance-slb":
                self._announce(self.members[idlest], moved)

    # -- gratuitous frames --------------------------------------------------------------------------
    def _announce(self, member: Member, buckets: Optional[set[int]]) -> None:
        """RARP for each MAC learned behind the bridge's other ports (of ``buckets`` only, if given)."""
        bridge = self.port.bridge
        if bridge is None or member.io is None:
            return
        sent = 0
        for port, vlan, mac, _age, _static in bridge.fdb.entries(self.loop.clock()):
            if port is self.port or (buckets is not None and self._bucket(mac) not in buckets):
                continue
            if not self.port.member(vlan):
                continue
            member.io.send(memoryview(rarp(mac, None if vlan == self.port.untag else vlan)))
            sent += 1
        self.announced += sent
        if sent:
            log.info("bond %s: announced %d MACs on %s", self.name, sent, member.name)

    # -- the per-frame path -------------------------------------------------------------------------
    @staticmethod
    def _bucket(src: Any) -> int:
        return (src[3] ^ src[4] * 7 ^ src[5] * 31) & (BUCKETS - 1)

    def _l4_bucket(self, frame: memoryview) -> int:
        """balance-tcp: MACs, and for IPv4 the addresses and ports."""
        head = bytes(frame[VNET:VNET + 14])
        value = zlib.crc32(head[:12])
        if head[12:14] == b"\x08\x00" and len(frame) >= VNET + 34:
            ip = bytes(frame[VNET + 14:VNET + 38])
            value = zlib.crc32(ip[12:20] + (ip[20:24] if ip[9] in (6, 17) else b""), value)
        return value & (BUCKETS - 1)

    def send(self, frame: memoryview) -> None:
        mode = self.record["mode"]
        if self._active_backup():
            name = self.active
        elif mode == "balance-slb":
            index = self._bucket(frame[VNET + 6:VNET + 12])
            name = self.buckets[index]
            self.bucket_load[index] += len(frame)
        else:
            index = self._l4_bucket(frame)
            name = self.buckets[index]
            self.bucket_load[index] += len(frame)
        member = self.members.get(name) if name is not None else None
        if member is None or member.io is None:
            self.port.tx_errors += 1
            return
        self.port.tx_packets += 1
        self.port.tx_bytes += len(frame) - VNET
        member.io.send(frame)

    def member_input(self, member: Member, buf: memoryview, n: int, aux: int, now: float) -> None:
        mport = member.port
        mport.rx_packets += 1
        mport.rx_bytes += n - VNET
        if n >= VNET + 16 and buf[VNET + 12] == 0x88 and buf[VNET + 13] == 0x09:
            self._slow_protocol(member, buf[VNET:n], now)
            return
        if not member.may_enable or (self._active_backup() and member.name != self.active):
            member.dropped_inactive += 1
            return
        if self.record["mode"] == "balance-slb" and not self._active_backup() and n >= VNET + 14:
            dst0 = buf[VNET]
            if dst0 & 1 and member.name != self.active:
                member.dropped_inactive += 1
                return
            if self._learned_elsewhere(buf[VNET + 6:VNET + 12].tobytes()):
                member.dropped_inactive += 1    # our own flood, reflected by the physical switch
                return
        bridge = self.port.bridge
        if bridge is not None:
            bridge.input(self.port, buf, n, aux, now)

    def _learned_elsewhere(self, src: bytes) -> bool:
        bridge = self.port.bridge
        if bridge is None:
            return False
        for table in bridge.fdb.vlans.values():
            entry = table.get(src)
            if entry is not None and entry[0] is not self.port:
                return True
        return False

    # -- LACP ---------------------------------------------------------------------------------------
    def _actor(self, member: Member) -> lacp.Info:
        state = lacp.actor_state(member.lacp, self.record["lacp"] == "active", self.record["lacp_rate"] == "fast")
        return lacp.Info(65535, self.system_mac, self.key, 65535, member.lacp.port_number, state)

    def _slow_protocol(self, member: Member, frame: memoryview, now: float) -> None:
        if self.record["lacp"] == "off":
            return
        decoded = lacp.decode(frame)
        if decoded is None:
            member.lacp.rx_errors += 1
            return
        actor, partner_view = decoded
        timeout = lacp.SHORT_TIMEOUT if self.record["lacp_rate"] == "fast" else lacp.LONG_TIMEOUT
        before = (member.lacp.rx, member.lacp.partner)
        member.lacp.received(actor, partner_view, self._actor(member), timeout, now)
        if (member.lacp.rx, member.lacp.partner) != before:
            self.update(now, force=True)
            self._lacp_transmit(now)

    def _lacp_transmit(self, now: float) -> None:
        active = self.record["lacp"] == "active"
        for member in self.members.values():
            if member.io is None or not member.carrier:
                continue
            actor = self._actor(member)
            if actor.state != member.lacp.sent_state:
                member.lacp.ntt = True
            if not member.lacp.due(now, active):
                continue
            partner = member.lacp.partner if member.lacp.rx != lacp.DEFAULTED_STATE else lacp.Info()
            frame = lacp.encode(mac_bytes(netdev.get_mac(member.name)), actor, partner)
            member.io.send(memoryview(_VNET_ZERO + frame))
            member.lacp.tx_pdus += 1
            member.lacp.last_tx = now
            member.lacp.ntt = False
            member.lacp.sent_state = actor.state

    # -- reporting ----------------------------------------------------------------------------------
    def show(self) -> dict[str, Any]:
        rows = []
        for name, member in self.members.items():
            buckets = sum(1 for owner in self.buckets if owner == name)
            rows.append({"name": name, "status": member.status, "link": "up" if member.carrier else "down",
                         "enabled": member.may_enable, "active": name == self.active,
                         "lacp": member.lacp.rx if self.record["lacp"] != "off" else None,
                         "buckets": buckets if not self._active_backup() else None,
                         "dropped_inactive": member.dropped_inactive, **member.port.counters()})
        return {"bond": self.name, "mode": self.record["mode"], "lacp": self.record["lacp"],
                "lacp_status": ("negotiated" if self.negotiated() else "off" if self.record["lacp"] == "off"
                                else "fallback active-backup" if self.record["lacp_fallback"] else "no partner"),
                "active_member": self.active, "primary": self.record.get("primary"),
                "failovers": self.failovers, "announced": self.announced,
                "settings": dict(self.record), "members": rows}

    def lacp_show(self) -> dict[str, Any]:
        rows = []
        for name, member in self.members.items():
            rows.append({"name": name, "rx_state": member.lacp.rx, "attached": member.lacp.attached,
                         "may_enable": member.may_enable, "port_id": member.lacp.port_number,
                         "actor": self._actor(member).to_dict(), "partner": member.lacp.partner.to_dict(),
                         "rx_pdus": member.lacp.rx_pdus, "tx_pdus": member.lacp.tx_pdus,
                         "rx_errors": member.lacp.rx_errors})
        return {"bond": self.name, "lacp": self.record["lacp"], "negotiated": self.negotiated(),
                "sys_id": mac_text(self.system_mac), "sys_priority": 65535, "key": self.key,
                "lacp_rate": self.record["lacp_rate"], "fallback": self.record["lacp_fallback"], "members": rows}
