"""The receive ring's bookkeeping on a ring built in memory: holes the kernel leaves, budget backlog."""
from __future__ import annotations

import mmap

from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.daemon import ports
from ansible_collections.openvif.vswitch.plugins.module_utils.vswitch.daemon.datapath import Port

FRAME = bytes.fromhex("ffffffffffff 00163e000001 0800") + bytes(50)


class Recorder:
    """Stands in for a bridge: records the frames the port hands it."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def input(self, port, buf, n, tci, now) -> None:
        self.frames.append(bytes(buf[ports.VNET:n]))


def ring_port(slots_with_frames: dict[int, int]) -> tuple[ports.PacketIO, Recorder]:
    """A PacketIO over an anonymous ring; ``slots_with_frames`` maps slot -> frame marker byte."""
    io = ports.PacketIO.__new__(ports.PacketIO)
    io.ring = mmap.mmap(-1, ports.RING_FRAME * ports.RING_FRAMES)
    io.mv = memoryview(io.ring)
    io.slot = 0
    io.name = "test0"
    io.backlog = set()   # the event loop's, which a real PacketIO gets from it
    bridge = Recorder()
    io.port = Port("test0")
    io.port.bridge = bridge
    mac_offset = 64
    for slot, marker in slots_with_frames.items():
        off = slot * ports.RING_FRAME
        frame = FRAME[:-1] + bytes([marker])
        ports._TPACKET2_HDR.pack_into(io.ring, off, ports.TP_STATUS_USER, len(frame), len(frame), mac_offset,
                                      mac_offset, 0, 0, 0, 0)
        io.ring[off + mac_offset:off + mac_offset + len(frame)] = frame
    return io, bridge


def test_frames_behind_a_slot_the_kernel_kept_are_not_stranded():
    # Slot 0 was claimed and dropped by the kernel (still its own); frames wait in slots 1-3.
    io, bridge = ring_port({1: 1, 2: 2, 3: 3})
    io.receive(0.0)
    assert [f[-1] for f in bridge.frames] == [1, 2, 3]
    assert io.slot == 4 and io.port.ring_resyncs == 1
    assert all(io.ring[s * ports.RING_FRAME] == ports.TP_STATUS_KERNEL for s in (1, 2, 3))


def test_resync_wraps_around_the_end_of_the_ring():
    last = ports.RING_FRAMES - 1
    io, bridge = ring_port({last: 9, 0: 10})
    io.slot = 5
    io.receive(0.0)
    assert [f[-1] for f in bridge.frames] == [9, 10]


def test_nothing_waiting_is_a_cheap_no_op():
    io, bridge = ring_port({})
    io.receive(0.0)
    assert bridge.frames == [] and io.slot == 0 and io.port.ring_resyncs == 0


def test_a_spent_budget_puts_the_port_on_the_backlog():
    io, bridge = ring_port({slot: slot % 256 for slot in range(ports.RX_BUDGET + 3)})
    io.backlog.clear()
    io.receive(0.0)
    assert len(bridge.frames) == ports.RX_BUDGET and io in io.backlog
    io.backlog.clear()
    io.receive(0.0)
    assert len(bridge.frames) == ports.RX_BUDGET + 3 and io not in io.backlog
