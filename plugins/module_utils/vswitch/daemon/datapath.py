"""Per-bridge forwarding: VLAN classification, learning, unicast, flooding, port security.

Frames reach ``Bridge.input`` as a memoryview over ``[virtio_net_hdr (10 bytes) | Ethernet
frame]``: every port speaks the kernel's vnet header (PACKET_VNET_HDR on AF_PACKET,
IFF_VNET_HDR on TAPs), so checksum-offloaded and GSO super-frames pass through whole
and the kernel segments them on egress. The kernel's AF_PACKET receive path strips
the outer 802.1Q tag into ring metadata; it arrives as ``aux`` (the TCI, or -1).

The hot path allocates as little as Python allows: one ``unpack_from`` for the
addresses, two dict lookups in the FDB, and the input buffer is sent as-is unless
the egress port needs a tag pushed or popped, which is built in a preallocated
scratch buffer at most once per variant per frame.

VLAN semantics (Open vSwitch's):
- access port (``vlan``): untagged frames belong to ``vlan``; tagged ones (except
  priority tags, VID 0) are dropped as bad_vlan; egress is untagged.
- trunk (``trunks``, optional ``native_vlan``): tagged frames must carry a VID in
  ``trunks`` (or the native VLAN); untagged/priority-tagged frames belong to the native
  VLAN or are dropped without one; egress is tagged except on the native VLAN.
- neither: a trunk of every VLAN whose untagged traffic is VLAN 0.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any, Optional

from ..settings import BRIDGE
from .fdb import DEFAULT_LIMIT, Fdb

VNET = 10                      # sizeof(struct virtio_net_hdr)
MODE_ALL, MODE_ACCESS, MODE_TRUNK = 0, 1, 2
TPID_8021Q, TPID_8021AD = 0x8100, 0x88A8
VID_RESERVED = 0xFFF
NEEDS_CSUM = 1
MAX_FRAME = 65536 + 64         # GSO super-frames are at most 64 KiB, plus headers
_HDR = struct.Struct("!6s6sHH")     # dst, src, ethertype, TCI (when tagged)
_HDR14 = struct.Struct("!6s6sH")
_TAG = struct.Struct("!HH")
_VNET_FIX = struct.Struct("<H")

DROP_REASONS = ("runt", "oversize", "truncated", "bad_vlan", "bad_src", "security")


class Port:
    """A bridge port as the datapath sees it: VLAN role, security, counters, and ``send``."""

    __slots__ = ("name", "kind", "bridge", "mode", "access", "trunks", "native", "untag", "mac", "promisc",
                 "send", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "tx_errors", "ring_resyncs", "filtered",
                 "drops",
                 "uplink")

    def __init__(self, name: str, kind: str = "system") -> None:
        self.name = name
        self.kind = kind
        self.bridge: Optional[Bridge] = None
        self.mode = MODE_ALL
        self.access = 0
        self.trunks: frozenset[int] = frozenset()
        self.native = -1
        self.untag = 0          # the VLAN this port sends untagged (-1: none)
        self.mac: Optional[bytes] = None
        self.promisc = False
        self.uplink = False
        self.send: Callable[[Any], None] = self.no_io
        self.rx_packets = self.rx_bytes = self.tx_packets = self.tx_bytes = self.tx_errors = 0
        self.ring_resyncs = 0   # receive ring steps over slots the kernel claimed and dropped
        self.filtered = 0
        self.drops = dict.fromkeys(DROP_REASONS, 0)

    def no_io(self, frame: Any) -> None:
        self.tx_errors += 1

    def configure(self, vlan: Optional[int] = None, trunks: Optional[Iterable[int]] = None,
                  native_vlan: Optional[int] = None, mac: Optional[bytes] = None, promiscuous: bool = False,
                  uplink: bool = False) -> None:
        if vlan is not None:
            self.mode, self.access, self.trunks, self.native, self.untag = MODE_ACCESS, vlan, frozenset(), -1, vlan
        elif trunks:
            self.mode, self.access, self.trunks = MODE_TRUNK, 0, frozenset(trunks)
            self.native = native_vlan if native_vlan is not None else -1
            self.untag = self.native
        else:
            self.mode, self.access, self.trunks, self.native, self.untag = MODE_ALL, 0, frozenset(), -1, 0
        self.mac = mac
        self.promisc = promiscuous
        self.uplink = uplink

    def member(self, vlan: int) -> bool:
        if self.mode == MODE_ACCESS:
            return vlan == self.access
        if self.mode == MODE_TRUNK:
            return vlan in self.trunks or vlan == self.native
        return True

    def counters(self) -> dict[str, int]:
        return {"rx_packets": self.rx_packets, "rx_bytes": self.rx_bytes, "tx_packets": self.tx_packets,
                "tx_bytes": self.tx_bytes, "tx_errors": self.tx_errors, "ring_resyncs": self.ring_resyncs,
                "rx_dropped": sum(self.drops.values()),
                "filtered": self.filtered, **{f"drop_{k}": v for k, v in self.drops.items()}}


class Bridge:
    def __init__(self, name: str, fdb_limit: int = DEFAULT_LIMIT, ageing: float = BRIDGE["ageing_time"].default,
                 mtu: int = BRIDGE["mtu"].default) -> None:
        self.name = name
        self.ports: dict[str, Port] = {}
        self.fdb = Fdb(fdb_limit, ageing)
        self.ageing = ageing
        self.mtu = mtu
        self._flood: dict[int, tuple[Port, ...]] = {}
        self._promisc: dict[int, tuple[Port, ...]] = {}
        # Scratch buffers for frames that need a tag pushed or popped (preallocated, reused).
        self._tagged = bytearray(MAX_FRAME + VNET + 8)
        self._untagged = bytearray(MAX_FRAME + VNET + 8)
        self._tagged_mv = memoryview(self._tagged)
        self._untagged_mv = memoryview(self._untagged)

    # -- configuration --------------------------------------------------------------------------
    def set_ageing(self, seconds: float) -> None:
        self.ageing = seconds
        self.fdb.ageing = seconds
        if seconds <= 0:
            self.fdb.flush()

    def attach(self, port: Port) -> None:
        port.bridge = self
        self.ports[port.name] = port
        self.reconfigured(port)

    def detach(self, port: Port) -> None:
        self.ports.pop(port.name, None)
        self.fdb.flush_port(port)
        port.bridge = None
        self._flood.clear()
        self._promisc.clear()

    def reconfigured(self, port: Port) -> None:
        """A port's VLANs, MAC or promiscuity changed: forget what depended on them."""
        self.fdb.flush_port(port)
        if port.mac is not None and port.untag >= 0:
            self.fdb.add_static(port.untag, port.mac, port)
        self._flood.clear()
        self._promisc.clear()

    def _flood_ports(self, vlan: int) -> tuple[Port, ...]:
        ports = self._flood.get(vlan)
        if ports is None:
            ports = self._flood[vlan] = tuple(p for p in self.ports.values() if p.member(vlan))
            self._promisc[vlan] = tuple(p for p in ports if p.promisc)
        return ports

    # -- the per-frame path ---------------------------------------------------------------------
    def input(self, port: Port, buf: memoryview, n: int, aux: int, now: float) -> None:
        """Forward one frame received on ``port``; ``buf[:n]`` is vnet header + frame."""
        port.rx_packets += 1
        port.rx_bytes += n - VNET
        if n >= VNET + 16:
            dst, src, etype, tci = _HDR.unpack_from(buf, VNET)
        elif n >= VNET + 14:
            dst, src, etype = _HDR14.unpack_from(buf, VNET)
            tci = 0
        else:
            port.drops["runt"] += 1
            return
        inline = False
        if aux >= 0:
            tci = aux
            tagged = True
        elif etype == TPID_8021Q:
            if n < VNET + 18:
                port.drops["runt"] += 1
                return
            inline = tagged = True
        elif etype == TPID_8021AD:
            port.drops["bad_vlan"] += 1
            return
        else:
            tagged = False
            tci = 0
        mode = port.mode
        if tagged:
            vid = tci & 0xFFF
            if vid == VID_RESERVED:
                port.drops["bad_vlan"] += 1
                return
            if vid == 0:
                tagged = False      # a priority tag: the frame is untagged for VLAN purposes
        if mode == MODE_ACCESS:
            if tagged:
                port.drops["bad_vlan"] += 1
                return
            vlan = port.access
        elif mode == MODE_TRUNK:
            if tagged:
                if vid not in port.trunks and vid != port.native:
                    port.drops["bad_vlan"] += 1
                    return
                vlan = vid
            elif port.native < 0:
                port.drops["bad_vlan"] += 1
                return
            else:
                vlan = port.native
        else:
            vlan = vid if tagged else 0
        if n - VNET - (18 if inline else 14) > self.mtu and buf[1] == 0:
            port.drops["oversize"] += 1
            return
        if src[0] & 1:
            port.drops["bad_src"] += 1
            return
        if port.mac is not None and src != port.mac:
            port.drops["security"] += 1
            return

        out: Optional[Port] = None
        ageing = self.ageing
        if ageing > 0:
            fdb = self.fdb
            tbl = fdb.vlans.get(vlan)
            if tbl is None:
                tbl = fdb.table(vlan)
            entry = tbl.get(src)
            if entry is not None and entry[0] is port:
                entry[1] = now
            else:
                fdb.learn(vlan, src, port, now)
            if not dst[0] & 1:
                entry = tbl.get(dst)
                if entry is not None and (entry[2] or now - entry[1] <= ageing):
                    out = entry[0]
                    if out is port:
                        port.filtered += 1
                        return
        # Egress. ``untagged``/``tagged``: the frame as it leaves without/with a tag, built on first need.
        untagged = tagged_frame = None
        if out is not None:
            targets: tuple[Port, ...] = (out,)
            promisc = self._promisc.get(vlan)
            if promisc is None:
                self._flood_ports(vlan)
                promisc = self._promisc[vlan]
            if promisc:
                targets = (out, *[p for p in promisc if p is not out])
        else:
            targets = self._flood.get(vlan) or self._flood_ports(vlan)
        for p in targets:
            if p is port:
                continue
            if vlan == p.untag:
                if untagged is None:
                    untagged = self._strip(buf, n) if inline else buf[:n]
                p.send(untagged)
            else:
                if tagged_frame is None:
                    if inline and (tci & 0xFFF) == vlan:
                        tagged_frame = buf[:n]
                    else:
                        tagged_frame = self._push(buf, n, inline, (tci & 0xE000) | vlan)
                p.send(tagged_frame)

    def _strip(self, buf: memoryview, n: int) -> memoryview:
        out = self._untagged_mv
        out[:VNET + 12] = buf[:VNET + 12]
        out[VNET + 12:n - 4] = buf[VNET + 16:n]
        fix_vnet(out, -4)
        return out[:n - 4]

    def _push(self, buf: memoryview, n: int, inline: bool, tci: int) -> memoryview:
        out = self._tagged_mv
        if inline:
            out[:n] = buf[:n]
            _TAG.pack_into(out, VNET + 12, TPID_8021Q, tci)
            return out[:n]
        out[:VNET + 12] = buf[:VNET + 12]
        _TAG.pack_into(out, VNET + 12, TPID_8021Q, tci)
        out[VNET + 16:n + 4] = buf[VNET + 12:n]
        fix_vnet(out, 4)
        return out[:n + 4]

    # -- reporting ------------------------------------------------------------------------------
    def fdb_rows(self, now: float) -> list[dict[str, Any]]:
        from .fdb import mac_text
        rows = [{"port": port.name, "vlan": vlan, "mac": mac_text(mac), "age": None if age is None else int(age),
                 "static": static}
                for port, vlan, mac, age, static in self.fdb.entries(now)]
        return sorted(rows, key=lambda r: (r["port"], r["vlan"], r["mac"]))


def fix_vnet(out: memoryview, delta: int) -> None:
    """Keep the vnet header's offsets (csum_start, hdr_len) right after a tag push/pop."""
    if out[0] & NEEDS_CSUM:
        (start,) = _VNET_FIX.unpack_from(out, 6)
        _VNET_FIX.pack_into(out, 6, start + delta)
    if out[1] != 0:
        (hdr_len,) = _VNET_FIX.unpack_from(out, 2)
        if hdr_len:
            _VNET_FIX.pack_into(out, 2, hdr_len + delta)
