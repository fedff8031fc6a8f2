"""The XDP programs vswitchd puts on its system ports, and the layout of the maps they share with Python.

What the port program forwards by itself, for a frame whose source Python has learned on the port
it came in on (anything else goes up: Python learns or moves the source, then forwards):

- a destination Python has learned on another XDP-served port, in the same bridge and VLAN: the
  VLAN classification of ``datapath.py`` (access, trunk with native VLAN, all-VLAN ports, priority
  tags) is done here, the tag is pushed, rewritten or popped as the egress port needs, and the frame
  is redirected through the ``tx`` devmap;
- a broadcast, multicast or unknown destination in a (bridge, VLAN) that has a ``flood`` devmap
  (Python writes one only where every member is XDP-served): the frame is tagged with its VLAN and
  broadcast to the devmap's ports but the ingress one (``BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS``);
  each entry runs the egress program, which pops the tag where that port sends the VLAN untagged.
  One redirect sends the same bytes to every member, and members differ (an access port wants the
  frame untagged, a trunk tagged), so the per-port difference is made after the copy, per port.

It also drops what vswitchd would drop at ingress (a source that is not the port's declared MAC, a
multicast source, a VLAN the port does not carry), counting each reason. Everything else goes up
unchanged (``XDP_PASS``) to the AF_PACKET ring and Python's datapath: unknown sources (learning),
moved sources, floods where the VLAN has no devmap, frames larger than the port's size limit (GSO
super-frames), 802.1ad frames, runts. The program never forwards a frame it passes, and Python never
sees one it redirected, so no frame is forwarded twice. ``seen`` in an FDB entry is refreshed
(``bpf_ktime_get_ns``, CLOCK_MONOTONIC, the clock of ``time.monotonic``) each time the entry's source
sends, so Python can age it; a flooded frame's source is always one Python has learned already.
"""
from __future__ import annotations

import struct
from typing import Iterable, Optional

from . import asm
from .asm import (
    R0,
    R1,
    R2,
    R3,
    R4,
    R6,
    R7,
    R8,
    R9,
    R10,
    alu64,
    alu64_reg,
    be16,
    call,
    exit_,
    jump,
    jump_if,
    jump_if_reg,
    ld_map_fd,
    load,
    mov,
    mov_reg,
    store,
    store_imm,
)

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
MODE_ALL, MODE_ACCESS, MODE_TRUNK = 0, 1, 2
NO_VLAN = 0xFFFF
# ENABLED: the kernel may forward to and from the port; SKB: no XDP on it, the skb path (gsoprog.py) takes
# every frame it receives, not only GSO super-frames (a port where 802.1Q tags can arrive outside the frame).
FLAG_ENABLED, FLAG_SECURE, FLAG_SKB = 1, 2, 4
XDP_GET_BUFF_LEN = 188
PROG_FLAG_HAS_FRAGS = 1 << 5

# ports: ifindex (u32) -> PortConfig
PORT_KEY = struct.Struct("=I")
PORT_HEAD = struct.Struct("=IHHHHHH6s2xI4x")   # bridge mode access native untag flags pad mac limit
PORT_BITMAP = 32
PORT_VALUE_SIZE = PORT_BITMAP + 512
# fdb: (bridge u32, vlan u16, mac) -> (ifindex u32, pad, seen ns u64)
FDB_KEY = struct.Struct("=IH6s")
FDB_VALUE = struct.Struct("=I4xQ")
# flood: (bridge u32, vlan u16, pad) -> a devmap of (ifindex, egress program fd): the VLAN's members
FLOOD_KEY = struct.Struct("=IH2x")
FLOOD_VALUE = struct.Struct("=Ii")
BROADCAST, EXCLUDE_INGRESS = 1 << 3, 1 << 4
# stats: ifindex -> one u64 per counter, per CPU
COUNTERS = ("fast_rx_packets", "fast_rx_bytes", "fast_tx_packets", "fast_tx_bytes", "passed",
            "drop_security", "drop_bad_src", "drop_bad_vlan", "filtered",
            # What the skb path forwarded (gsoprog.py): an XDP port's GSO super-frames (the port program counted
            # them "passed" first), any frame of a port without XDP.
            "tc_rx_packets", "tc_rx_bytes", "tc_tx_packets", "tc_tx_bytes")
C = {name: index for index, name in enumerate(COUNTERS)}
STATS_VALUE_SIZE = 8 * len(COUNTERS)

# Stack slots (offsets from R10).
S_INGRESS = -8      # u32 ingress ifindex (ports and stats key)
S_EGRESS = -16      # u32 egress ifindex
S_FDB = -32         # 12-byte FDB key: bridge @-32, vlan @-28, mac @-26
S_LEN = -40         # u64 frame length as received
S_FLOOD = -48       # 8-byte flood key: bridge @-48, vlan @-44, pad @-42


def port_value(bridge: int, mode: int, access: int, native: int, untag: int, enabled: bool,
               mac: Optional[bytes], limit: int, trunks: Iterable[int] = (), skb: bool = False) -> bytes:
    flags = (FLAG_ENABLED if enabled else 0) | (FLAG_SECURE if mac else 0) | (FLAG_SKB if skb else 0)
    head = PORT_HEAD.pack(bridge, mode, access, native, untag, flags, 0, mac or b"\0" * 6, limit)
    bitmap = bytearray(512)
    for vid in trunks:
        bitmap[vid >> 3] |= 1 << (vid & 7)
    return head + bytes(bitmap)


def fdb_key(bridge: int, vlan: int, mac: bytes) -> bytes:
    return FDB_KEY.pack(bridge, vlan, mac)


def flood_key(bridge: int, vlan: int) -> bytes:
    return FLOOD_KEY.pack(bridge, vlan)


def count(p: asm.Program, stats_fd: int, key_slot: int, counter: int, amount_reg: Optional[int] = None) -> None:
    """stats[key][counter] += amount (1 if no register); clobbers R0-R5 (amount must be in R6-R9 or the stack)."""
    skip = f"count_skip_{len(p)}"
    p.emit(ld_map_fd(R1, stats_fd), mov_reg(R2, R10), alu64("add", R2, key_slot),
           call(asm.MAP_LOOKUP_ELEM), jump_if("jeq", R0, 0, skip),
           load(8, R1, R0, counter * 8))
    if amount_reg is None:
        p.emit(alu64("add", R1, 1))
    else:
        p.emit(load(8, R2, R10, amount_reg), alu64_reg("add", R1, R2))
    p.emit(store(8, R0, counter * 8, R1))
    p.label(skip)


def _reload(p: asm.Program, need: int, fail: str) -> None:
    """R2 = data, R3 = data_end, and at least ``need`` bytes (else jump to ``fail``)."""
    p.emit(load(4, R2, R6, 0), load(4, R3, R6, 4), mov_reg(R4, R2), alu64("add", R4, need),
           jump_if_reg("jgt", R4, R3, fail))


def classify_vid(p: asm.Program, vid: int, ok: str, fail: str) -> None:
    """A tagged frame's VID (1-4094, in register ``vid``) on the port whose config is in R7: ``ok`` where the port
    carries it (an all-VLAN port, its native VLAN, a trunked VID), ``fail`` where not; clobbers R1 and R3."""
    p.emit(load(2, R1, R7, 4), jump_if("jeq", R1, MODE_ACCESS, fail), jump_if("jeq", R1, MODE_ALL, ok),
           load(2, R1, R7, 8), jump_if_reg("jeq", R1, vid, ok),
           mov_reg(R1, vid), alu64("rsh", R1, 3), alu64_reg("add", R1, R7), load(1, R1, R1, PORT_BITMAP),
           mov_reg(R3, vid), alu64("and", R3, 7), alu64_reg("rsh", R1, R3),
           jump_if("jset", R1, 1, ok), jump(fail))


def classify_untagged(p: asm.Program, vlan: int, fail: str) -> None:
    """An untagged frame's VLAN into register ``vlan`` (port config in R7): 0 on an all-VLAN port, the access VLAN,
    a trunk's native VLAN; ``fail`` on a trunk without one; falls through when classified. Clobbers R1."""
    done = f"untagged_{len(p)}"
    p.emit(load(2, R1, R7, 4), mov(vlan, 0), jump_if("jeq", R1, MODE_ALL, done),
           load(2, vlan, R7, 6), jump_if("jeq", R1, MODE_ACCESS, done),
           load(2, vlan, R7, 8), jump_if("jeq", vlan, NO_VLAN, fail))
    p.label(done)


def _tag_with_vlan(p: asm.Program, done: str) -> None:
    """Make the frame carry an 802.1Q tag with VID R8 (pushed if untagged, PCP kept if tagged); then ``done``."""
    retag = f"retag_{len(p)}"
    p.emit(jump_if("jset", R9, 0x10000, retag))
    p.emit(mov_reg(R1, R6), mov(R2, -4), call(asm.XDP_ADJUST_HEAD), jump_if("jne", R0, 0, "pass_quiet"))
    _reload(p, 18, "aborted")
    for offset in (0, 4, 8):
        p.emit(load(4, R1, R2, offset + 4), store(4, R2, offset, R1))
    p.emit(mov(R1, 0x8100), be16(R1), store(2, R2, 12, R1), mov_reg(R1, R8), be16(R1), store(2, R2, 14, R1),
           jump(done))
    p.label(retag)
    _reload(p, 18, "aborted")
    p.emit(mov_reg(R1, R9), alu64("and", R1, 0xE000), alu64_reg("or", R1, R8), be16(R1), store(2, R2, 14, R1),
           jump(done))


def _pop_tag(p: asm.Program, fail: str) -> None:
    """Remove the frame's 802.1Q tag (the addresses moved down over it); ``fail`` if too short."""
    _reload(p, 18, fail)
    for offset in (8, 4, 0):
        p.emit(load(4, R1, R2, offset), store(4, R2, offset + 4, R1))
    p.emit(mov_reg(R1, R6), mov(R2, 4), call(asm.XDP_ADJUST_HEAD), jump_if("jne", R0, 0, fail))


def build(ports_fd: int, fdb_fd: int, tx_fd: int, stats_fd: int, flood_fd: int) -> bytes:
    p = asm.Program()
    # R6 = ctx throughout; R7 = the port's config (ingress, later egress); R8 = VLAN; R9 = inline tag.
    p.emit(mov_reg(R6, R1), load(4, R2, R6, 12), store(4, R10, S_INGRESS, R2),
           ld_map_fd(R1, ports_fd), mov_reg(R2, R10), alu64("add", R2, S_INGRESS), call(asm.MAP_LOOKUP_ELEM),
           jump_if("jeq", R0, 0, "pass_quiet"), mov_reg(R7, R0),
           load(2, R1, R7, 12), jump_if("jset", R1, FLAG_ENABLED, "enabled"), jump("pass_quiet"))
    p.label("enabled")
    # Whole length (all fragments): above the limit (a GSO super-frame) it is the slow path's.
    p.emit(mov_reg(R1, R6), call(XDP_GET_BUFF_LEN), store(8, R10, S_LEN, R0),
           load(4, R1, R7, 24), jump_if_reg("jgt", R0, R1, "pass"))
    _reload(p, 18, "pass")
    p.emit(mov(R9, 0), load(2, R1, R2, 12), be16(R1),
           jump_if("jeq", R1, 0x8100, "tagged"), jump_if("jeq", R1, 0x88A8, "drop_bad_vlan"),
           jump("untagged"))
    p.label("tagged")
    p.emit(load(2, R9, R2, 14), be16(R9), alu64("or", R9, 0x10000),
           mov_reg(R4, R9), alu64("and", R4, 0xFFF),
           jump_if("jeq", R4, 0xFFF, "drop_bad_vlan"), jump_if("jeq", R4, 0, "untagged"))
    classify_vid(p, R4, "vid_ok", "drop_bad_vlan")
    p.label("vid_ok")
    p.emit(mov_reg(R8, R4), jump("classified"))
    p.label("untagged")
    classify_untagged(p, R8, "drop_bad_vlan")
    p.label("classified")
    # Source checks: multicast source, port security.
    p.emit(load(1, R1, R2, 6), jump_if("jset", R1, 1, "drop_bad_src"),
           load(2, R1, R7, 12), jump_if("jset", R1, FLAG_SECURE, "secure"), jump("source_ok"))
    p.label("secure")
    p.emit(load(2, R1, R2, 6), load(2, R3, R7, 16), jump_if_reg("jne", R1, R3, "drop_security"),
           load(4, R1, R2, 8), load(4, R3, R7, 18), jump_if_reg("jne", R1, R3, "drop_security"))
    p.label("source_ok")
    # FDB key (bridge, vlan, source): the source must be known on this very port, else Python learns.
    p.emit(load(4, R1, R7, 0), store(4, R10, S_FDB, R1), store(2, R10, S_FDB + 4, R8),
           load(2, R1, R2, 6), store(2, R10, S_FDB + 6, R1), load(4, R1, R2, 8), store(4, R10, S_FDB + 8, R1),
           ld_map_fd(R1, fdb_fd), mov_reg(R2, R10), alu64("add", R2, S_FDB), call(asm.MAP_LOOKUP_ELEM),
           jump_if("jeq", R0, 0, "pass"), load(4, R1, R0, 0), load(4, R2, R10, S_INGRESS),
           jump_if_reg("jne", R1, R2, "pass"),
           mov_reg(R7, R0), call(asm.KTIME_GET_NS), store(8, R7, 8, R0))
    _reload(p, 18, "pass")
    # Destination broadcast/multicast, or one the mirror does not hold: flooded (below) where the VLAN can be.
    p.emit(load(1, R1, R2, 0), jump_if("jset", R1, 1, "flood"),
           load(2, R1, R2, 0), store(2, R10, S_FDB + 6, R1), load(4, R1, R2, 2), store(4, R10, S_FDB + 8, R1),
           ld_map_fd(R1, fdb_fd), mov_reg(R2, R10), alu64("add", R2, S_FDB), call(asm.MAP_LOOKUP_ELEM),
           jump_if("jeq", R0, 0, "flood"), load(4, R1, R0, 0), store(4, R10, S_EGRESS, R1),
           load(4, R2, R10, S_INGRESS), jump_if_reg("jeq", R1, R2, "filtered"),
           ld_map_fd(R1, ports_fd), mov_reg(R2, R10), alu64("add", R2, S_EGRESS), call(asm.MAP_LOOKUP_ELEM),
           jump_if("jeq", R0, 0, "pass"), mov_reg(R7, R0),
           load(2, R1, R7, 12), jump_if("jset", R1, FLAG_ENABLED, "egress_ok"), jump("pass"))
    p.label("egress_ok")
    count(p, stats_fd, S_INGRESS, C["fast_rx_packets"])
    count(p, stats_fd, S_INGRESS, C["fast_rx_bytes"], S_LEN)
    # Egress tagging: untagged if the VLAN is the one the egress port sends untagged.
    p.emit(load(2, R1, R7, 10), jump_if_reg("jeq", R1, R8, "want_untagged"))
    _tag_with_vlan(p, "send")
    p.label("want_untagged")
    p.emit(jump_if("jset", R9, 0x10000, "pop"), jump("send"))
    p.label("pop")
    _pop_tag(p, "aborted")
    p.label("send")
    # tx bytes: the frame as it leaves (data_end - data of the first buffer plus any fragments).
    p.emit(mov_reg(R1, R6), call(XDP_GET_BUFF_LEN), store(8, R10, S_LEN, R0))
    count(p, stats_fd, S_EGRESS, C["fast_tx_packets"])
    count(p, stats_fd, S_EGRESS, C["fast_tx_bytes"], S_LEN)
    p.emit(ld_map_fd(R1, tx_fd), load(4, R2, R10, S_EGRESS), mov(R3, XDP_ABORTED), call(asm.REDIRECT_MAP), exit_())
    # Flood: the (bridge, VLAN)'s devmap, if Python wrote one (else up: Python floods, as without XDP).
    p.label("flood")
    p.emit(load(4, R1, R10, S_FDB), store(4, R10, S_FLOOD, R1), store(2, R10, S_FLOOD + 4, R8),
           store_imm(2, R10, S_FLOOD + 6, 0),
           ld_map_fd(R1, flood_fd), mov_reg(R2, R10), alu64("add", R2, S_FLOOD), call(asm.MAP_LOOKUP_ELEM),
           jump_if("jeq", R0, 0, "pass"), mov_reg(R7, R0))
    count(p, stats_fd, S_INGRESS, C["fast_rx_packets"])
    count(p, stats_fd, S_INGRESS, C["fast_rx_bytes"], S_LEN)
    _tag_with_vlan(p, "flood_send")
    p.label("flood_send")
    p.emit(mov_reg(R1, R7), mov(R2, 0), mov(R3, BROADCAST | EXCLUDE_INGRESS | XDP_ABORTED), call(asm.REDIRECT_MAP),
           exit_())
    for reason in ("drop_security", "drop_bad_src", "drop_bad_vlan", "filtered"):
        p.label(reason)
        count(p, stats_fd, S_INGRESS, C[reason])
        p.emit(mov(R0, XDP_DROP), exit_())
    p.label("pass")
    count(p, stats_fd, S_INGRESS, C["passed"])
    p.label("pass_quiet")
    p.emit(mov(R0, XDP_PASS), exit_())
    p.label("aborted")
    p.emit(mov(R0, XDP_ABORTED), exit_())
    return p.assemble()


ECHO_LEN = 8   # the cookie in front of a flooded frame sent into a TAP, for vswitchd to deliver it


def build_egress(ports_fd: int, stats_fd: int, echo: Optional[int] = None) -> bytes:
    """The flood devmap's egress program: pop the VLAN tag where this port sends that VLAN untagged, count.

    Every flooded frame arrives tagged with its VLAN (the port program tagged it); XDP_PASS sends it.
    ``echo`` (a 64-bit cookie): the variant for TAP members. Sending into a TAP hands the frame to
    the TAP's reader, vswitchd, as if the host had sent it; with the cookie in front, vswitchd
    tells it from the host's frames and writes it back, which is what delivers it to the host.
    (Counted there, by Python, as the TAP's other frames are.)
    """
    p = asm.Program()
    p.emit(mov_reg(R6, R1), load(4, R2, R6, 20), store(4, R10, S_EGRESS, R2),
           ld_map_fd(R1, ports_fd), mov_reg(R2, R10), alu64("add", R2, S_EGRESS), call(asm.MAP_LOOKUP_ELEM),
           jump_if("jeq", R0, 0, "send"), mov_reg(R7, R0))
    _reload(p, 18, "send")
    p.emit(load(2, R1, R2, 12), be16(R1), jump_if("jne", R1, 0x8100, "send"),
           load(2, R8, R2, 14), be16(R8), alu64("and", R8, 0xFFF),
           load(2, R1, R7, 10), jump_if_reg("jne", R1, R8, "count"))
    _pop_tag(p, "send")
    p.label("count")
    if echo is None:
        p.emit(mov_reg(R1, R6), call(XDP_GET_BUFF_LEN), store(8, R10, S_LEN, R0))
        count(p, stats_fd, S_EGRESS, C["fast_tx_packets"])
        count(p, stats_fd, S_EGRESS, C["fast_tx_bytes"], S_LEN)
    p.label("send")
    if echo is not None:
        # Without its cookie the TAP's reader would take the frame for the host's: better not sent at all.
        p.emit(mov_reg(R1, R6), mov(R2, -ECHO_LEN), call(asm.XDP_ADJUST_HEAD), jump_if("jne", R0, 0, "drop"))
        _reload(p, ECHO_LEN, "drop")
        p.emit(asm.ld_imm64(R1, echo), store(8, R2, 0, R1))
    p.emit(mov(R0, XDP_PASS), exit_())
    if echo is not None:
        p.label("drop")
        p.emit(mov(R0, XDP_DROP), exit_())
    return p.assemble()
