"""The skb path: a socket filter decides, tc redirects. For GSO super-frames, which XDP cannot forward, and
for every frame of a port XDP does not serve (``FLAG_SKB``: a veth, whose 802.1Q tags can arrive in the skb's
metadata where XDP cannot see them; fastpath.py says which ports).

A TCP sender on a veth or TAP hands the switch super-frames of up to 64 KiB (GSO). Generic XDP
refuses to redirect them (a redirect checks the length against the egress MTU; the kernel's
``xdp_ok_fwd_dev``), so the port program passes them up and, without this path, every one of them
crossed Python. A tc program (``sched_cls``, attached with a tcx link on the port's ingress) can
redirect an skb of any size and keeps its GSO state for the egress device to segment or offload.

tc ingress runs *after* the device's AF_PACKET taps, so vswitchd's own ring socket would get a copy
of every frame tc forwards. The decision is therefore made once, by a socket filter on that ring
socket, which runs first and on the same CPU in the same pass: for a super-frame it would forward,
the filter writes the decision into a per-CPU hand-off slot (the skb's ingress ifindex, GSO
segment count and size and hash, its length and Ethernet header, then the egress ifindex and the
tag to push or pop) and keeps the frame from the socket; the tc program that runs next finds the
slot matching its skb, clears it and redirects. (The length is checked up to the MAC header: tc sees
some skbs with it and, after generic XDP copied a super-frame, others without it, which tc then
gives back the header the filter saw; the GSO fields live in the skb's shared info and do not
move.) Any other frame is kept for Python and the slot is left empty, so tc lets it through
untouched: no frame is forwarded twice or lost between them. On an ``FLAG_SKB`` port the same
decision is made for frames of any size up to the port's limit; its floods are Python's.

What the filter takes is what the XDP program forwards: a super-frame in a VLAN the port carries
(untagged on an access port, the native VLAN or an all-VLAN port; 802.1Q-tagged with a VID the
port trunks, the tag already in the skb's metadata where the kernel moved it before the taps), from
a source Python learned on this very port, to a unicast destination learned on another XDP-served
port. tc pushes the egress tag (``bpf_skb_vlan_push``) where an untagged frame leaves tagged and
pops it (``bpf_skb_vlan_pop``) where a tagged one leaves untagged. Everything else (priority-tagged
and 802.1ad super-frames, floods, unknown or moved sources, port security failures) goes to Python
as before. The filter refreshes the source's ``seen`` time as the port program does.
"""
from __future__ import annotations

import struct

from . import asm
from .asm import (
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
    alu64,
    alu64_reg,
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
from .switchprog import (
    FLAG_ENABLED,
    FLAG_SECURE,
    FLAG_SKB,
    S_EGRESS,
    S_FDB,
    S_INGRESS,
    S_LEN,
    C,
    classify_untagged,
    classify_vid,
    count,
)
from .syscall import (
    SKB_GSO_SEGS,
    SKB_GSO_SIZE,
    SKB_HASH,
    SKB_IFINDEX,
    SKB_LEN,
    SKB_PKT_TYPE,
    SKB_VLAN_PRESENT,
    SKB_VLAN_PROTO,
    SKB_VLAN_TCI,
)

PACKET_OUTGOING = 4
HDR_START_MAC = 0            # bpf_skb_load_bytes_relative: offsets from the MAC header
TCX_NEXT, TC_ACT_SHOT = -1, 2
PUSH = 0x10000               # in the slot's tag word: push an 802.1Q tag with the low 12 bits as VID
POP = 0x20000                # in the slot's tag word: remove the skb's 802.1Q tag
ETH_P_8021Q_BE = 0x0081      # __sk_buff.vlan_proto holds the protocol in network order

# handoff: per-CPU array of one slot: ingress u32, GSO segs | size << 16 u32, hash u32, egress u32, tag u32,
# the length the filter saw (with the MAC header) u32, and that Ethernet header (14 bytes, padded to 16).
HANDOFF = struct.Struct("=IIIIII14s2x")
ETH_HLEN = 14
S_SLOT_KEY = -56             # u32 key 0 of the hand-off array
KEEP = 0x40000               # the filter's "keep the frame": bytes to keep, more than any frame has


def build_filter(ports_fd: int, fdb_fd: int, stats_fd: int, handoff_fd: int) -> bytes:
    """The socket filter on an XDP-served port's ring socket (returns 0: tc forwards it; KEEP: Python)."""
    p = asm.Program()
    # R6 = ctx, R9 = this CPU's hand-off slot (emptied first, for every frame), R7 = port configs.
    p.emit(mov_reg(R6, R1),
           load(4, R1, R6, SKB_PKT_TYPE), jump_if("jeq", R1, PACKET_OUTGOING, "keep"),
           store_imm(4, R10, S_SLOT_KEY, 0),
           ld_map_fd(R1, handoff_fd), mov_reg(R2, R10), alu64("add", R2, S_SLOT_KEY), call(asm.MAP_LOOKUP_ELEM),
           jump_if("jeq", R0, 0, "keep"), mov_reg(R9, R0), store_imm(4, R9, 0, 0),
           load(4, R2, R6, SKB_IFINDEX), store(4, R10, S_INGRESS, R2),
           load(4, R2, R6, SKB_LEN), store(8, R10, S_LEN, R2),
           ld_map_fd(R1, ports_fd), mov_reg(R2, R10), alu64("add", R2, S_INGRESS), call(asm.MAP_LOOKUP_ELEM),
           jump_if("jeq", R0, 0, "keep"), mov_reg(R7, R0),
           load(2, R1, R7, 12), jump_if("jset", R1, FLAG_ENABLED, "enabled"), jump("keep"))
    p.label("enabled")
    # Which frames: on an XDP-served port only the super-frames XDP passed up; on an skb-path port (no XDP)
    # every frame, up to the port's size limit as the port program checks it (a larger one is Python's).
    p.emit(load(4, R2, R6, SKB_GSO_SIZE), jump_if("jne", R2, 0, "chosen"),
           jump_if("jset", R1, FLAG_SKB, "sized"), jump("keep"))
    p.label("sized")
    p.emit(load(4, R1, R7, 24), load(8, R2, R10, S_LEN), jump_if_reg("jgt", R2, R1, "keep"))
    p.label("chosen")
    # The frame's VLAN, as the port program classifies it (R5 for now; the FDB key keeps it); R8 = 1 if it came
    # tagged. The kernel has moved an 802.1Q tag into the skb's metadata before the taps run, so it is there.
    # A priority tag (VID 0) goes to Python, which makes it untagged or rewrites its VID as the egress needs.
    p.emit(mov(R8, 0), load(4, R1, R6, SKB_VLAN_PRESENT), jump_if("jeq", R1, 0, "untagged"),
           load(4, R1, R6, SKB_VLAN_PROTO), jump_if("jne", R1, ETH_P_8021Q_BE, "keep"),
           load(4, R4, R6, SKB_VLAN_TCI), alu64("and", R4, 0xFFF),
           jump_if("jeq", R4, 0, "keep"), jump_if("jeq", R4, 0xFFF, "keep"))
    classify_vid(p, R4, "vid_ok", "keep")
    p.label("vid_ok")
    p.emit(mov(R8, 1), mov_reg(R5, R4), jump("classified"))
    p.label("untagged")
    classify_untagged(p, R5, "keep")
    p.label("classified")
    p.emit(load(4, R1, R7, 0), store(4, R10, S_FDB, R1), store(2, R10, S_FDB + 4, R5))
    _load_mac(p, 6)
    # The source: not multicast, the port's own MAC where port security is on, learned on this port.
    p.emit(load(1, R1, R10, S_FDB + 6), jump_if("jset", R1, 1, "keep"),
           load(2, R1, R7, 12), jump_if("jset", R1, FLAG_SECURE, "secure"), jump("source_ok"))
    p.label("secure")
    p.emit(load(2, R1, R10, S_FDB + 6), load(2, R3, R7, 16), jump_if_reg("jne", R1, R3, "keep"),
           load(4, R1, R10, S_FDB + 8), load(4, R3, R7, 18), jump_if_reg("jne", R1, R3, "keep"))
    p.label("source_ok")
    p.emit(ld_map_fd(R1, fdb_fd), mov_reg(R2, R10), alu64("add", R2, S_FDB), call(asm.MAP_LOOKUP_ELEM),
           jump_if("jeq", R0, 0, "keep"), load(4, R1, R0, 0), load(4, R2, R10, S_INGRESS),
           jump_if_reg("jne", R1, R2, "keep"),
           mov_reg(R7, R0), call(asm.KTIME_GET_NS), store(8, R7, 8, R0))
    # The destination: unicast, learned on another port that XDP serves (its config enabled).
    _load_mac(p, 0)
    p.emit(load(1, R1, R10, S_FDB + 6), jump_if("jset", R1, 1, "keep"),
           ld_map_fd(R1, fdb_fd), mov_reg(R2, R10), alu64("add", R2, S_FDB), call(asm.MAP_LOOKUP_ELEM),
           jump_if("jeq", R0, 0, "keep"), load(4, R1, R0, 0), store(4, R10, S_EGRESS, R1),
           load(4, R2, R10, S_INGRESS), jump_if_reg("jeq", R1, R2, "keep"),
           ld_map_fd(R1, ports_fd), mov_reg(R2, R10), alu64("add", R2, S_EGRESS), call(asm.MAP_LOOKUP_ELEM),
           jump_if("jeq", R0, 0, "keep"), mov_reg(R7, R0),
           load(2, R1, R7, 12), jump_if("jset", R1, FLAG_ENABLED, "egress_ok"), jump("keep"))
    p.label("egress_ok")
    # The egress tag: none where that port sends this VLAN untagged (popped by tc if it came tagged), else the
    # VLAN's (kept if it came tagged, pushed by tc if not).
    p.emit(load(2, R1, R7, 10), load(2, R3, R10, S_FDB + 4), mov(R4, 0), jump_if_reg("jeq", R1, R3, "untag_out"),
           jump_if("jne", R8, 0, "decided"), mov_reg(R4, R3), alu64("or", R4, PUSH), jump("decided"))
    p.label("untag_out")
    p.emit(jump_if("jeq", R8, 0, "decided"), mov(R4, POP))
    p.label("decided")
    p.emit(store(4, R9, 16, R4), load(4, R1, R10, S_EGRESS), store(4, R9, 12, R1),
           load(8, R1, R10, S_LEN), store(4, R9, 20, R1),
           mov_reg(R1, R6), mov(R2, 0), mov_reg(R3, R9), alu64("add", R3, 24), mov(R4, ETH_HLEN),
           mov(R5, HDR_START_MAC), call(asm.SKB_LOAD_BYTES_RELATIVE), jump_if("jne", R0, 0, "keep"))
    _skb_identity(p, R9)
    count(p, stats_fd, S_INGRESS, C["tc_rx_packets"])
    count(p, stats_fd, S_INGRESS, C["tc_rx_bytes"], S_LEN)
    count(p, stats_fd, S_EGRESS, C["tc_tx_packets"])
    count(p, stats_fd, S_EGRESS, C["tc_tx_bytes"], S_LEN)
    # Last, so a slot is only ever complete: the ingress ifindex is what tc matches on.
    p.emit(load(4, R1, R10, S_INGRESS), store(4, R9, 0, R1), mov(R0, 0), exit_())
    p.label("keep")
    p.emit(mov(R0, KEEP), exit_())
    return p.assemble()


def _gso_word(p: asm.Program) -> None:
    """R1 = the skb's (in R6) GSO segment count | segment size << 16; clobbers R2."""
    p.emit(load(4, R1, R6, SKB_GSO_SIZE), alu64("lsh", R1, 16), load(4, R2, R6, SKB_GSO_SEGS),
           alu64_reg("or", R1, R2))


def _skb_identity(p: asm.Program, slot: int) -> None:
    """What tc matches the skb by, stored in the slot (in register ``slot``): GSO word at 4, hash at 8."""
    _gso_word(p)
    p.emit(load(4, R2, R6, SKB_HASH), store(4, slot, 4, R1), store(4, slot, 8, R2))


def _load_mac(p: asm.Program, offset: int) -> None:
    """The 6 bytes at ``offset`` from the MAC header into the FDB key's address (else ``keep``)."""
    p.emit(mov_reg(R1, R6), mov(R2, offset), mov_reg(R3, R10), alu64("add", R3, S_FDB + 6), mov(R4, 6),
           mov(R5, HDR_START_MAC), call(asm.SKB_LOAD_BYTES_RELATIVE), jump_if("jne", R0, 0, "keep"))


def build_tc(handoff_fd: int) -> bytes:
    """The tc ingress program: carry out this CPU's hand-off for the skb it names, else let the skb go on."""
    p = asm.Program()
    p.emit(mov_reg(R6, R1), store_imm(4, R10, S_SLOT_KEY, 0),
           ld_map_fd(R1, handoff_fd), mov_reg(R2, R10), alu64("add", R2, S_SLOT_KEY), call(asm.MAP_LOOKUP_ELEM),
           jump_if("jeq", R0, 0, "next"), mov_reg(R7, R0),
           load(4, R1, R7, 0), load(4, R2, R6, SKB_IFINDEX), jump_if_reg("jne", R1, R2, "next"))
    _gso_word(p)
    p.emit(load(4, R2, R7, 4), jump_if_reg("jne", R1, R2, "next"),
           load(4, R1, R6, SKB_HASH), load(4, R2, R7, 8), jump_if_reg("jne", R1, R2, "next"),
           load(4, R1, R6, SKB_LEN), load(4, R2, R7, 20), jump_if_reg("jeq", R1, R2, "whole"),
           alu64("add", R1, ETH_HLEN), jump_if_reg("jne", R1, R2, "next"),
           # The skb has no MAC header in front: generic XDP's copy of a super-frame left its mac_len 0, and a
           # redirect would send it from the IP header on. Put the header the filter saw back in front.
           store_imm(4, R7, 0, 0),
           mov_reg(R1, R6), mov(R2, ETH_HLEN), mov(R3, 0), call(asm.SKB_CHANGE_HEAD), jump_if("jne", R0, 0, "shot"),
           mov_reg(R1, R6), mov(R2, 0), mov_reg(R3, R7), alu64("add", R3, 24), mov(R4, ETH_HLEN), mov(R5, 0),
           call(asm.SKB_STORE_BYTES), jump_if("jne", R0, 0, "shot"), jump("framed"))
    p.label("whole")
    p.emit(store_imm(4, R7, 0, 0))
    p.label("framed")
    p.emit(load(4, R3, R7, 16), jump_if("jeq", R3, 0, "send"), jump_if("jset", R3, POP, "pop"),
           alu64("and", R3, 0xFFF), mov_reg(R1, R6), mov(R2, 0x8100), asm.be16(R2), call(asm.SKB_VLAN_PUSH),
           jump_if("jne", R0, 0, "shot"), jump("send"))
    p.label("pop")
    p.emit(mov_reg(R1, R6), call(asm.SKB_VLAN_POP), jump_if("jne", R0, 0, "shot"))
    p.label("send")
    p.emit(load(4, R1, R7, 12), mov(R2, 0), call(asm.REDIRECT), exit_())
    p.label("next")
    p.emit(mov(R0, TCX_NEXT), exit_())
    p.label("shot")   # kept from Python already, and not sendable: dropped (as a full queue would)
    p.emit(mov(R0, TC_ACT_SHOT), exit_())
    return p.assemble()
