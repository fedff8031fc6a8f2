"""A system port's own IPv4 stack stays out of the way: only the bridge's internal port answers ARP
for the address it holds.

vswitchd reads system ports through AF_PACKET, which leaves each frame to the kernel's stack as well.
With Linux's default arp_ignore 0, the stack of the namespace holding the port answered "who has
10.0.0.254" (an address on the bridge's internal port) on the port too, with the port's own MAC: the
asker then sent its traffic to a MAC nothing forwards to the internal port (the Debian-kernel guest's
LACP check lost every ping that way, the answer coming from a bond member). On the rings the stack sees
every frame, so that is where it is checked; the port gets its arp_ignore back when it leaves the bridge.
"""
from __future__ import annotations

import struct

import pytest
from vswitchd_lab import Capture, Daemon, ch, mac_of, star

NETLAB_PREFIX = "sa"   # this area's namespaces (tests/conftest.py)
pytestmark = pytest.mark.integration


def arp_replies(frames: list[bytes]) -> list[str]:
    """The sender MAC of each ARP reply among ``frames``."""
    return [":".join(f"{b:02x}" for b in frame[22:28]) for frame in frames
            if len(frame) >= 42 and struct.unpack_from("!HH", frame, 12) == (0x0806, 1)
            and struct.unpack_from("!H", frame, 20)[0] == 2]


def arp_ignore(lab, ns: str, dev: str) -> int:
    return int(lab.run(ns, "cat", f"/proc/sys/net/ipv4/conf/{dev}/arp_ignore").stdout)


def test_only_the_internal_port_answers_arp_for_its_address(netlab, daemons, tmp_path):
    sw = netlab.ns("sw")
    (h1,) = star(netlab, sw, 1)
    daemon = Daemon(sw, tmp_path, env={"VSWITCHD_DATAPATH": "rings"})
    daemons.append(daemon)
    daemon.start()
    assert arp_ignore(netlab, sw, "p1") == 0
    daemon.transact(ch("add_bridge", "br0"), ch("add_port", "p1", bridge="br0"))
    netlab.run(sw, "ip", "addr", "add", "10.0.0.254/24", "dev", "br0")
    netlab.run(sw, "ip", "link", "set", "br0", "up")
    assert arp_ignore(netlab, sw, "p1") == 1
    at_host = Capture(netlab, h1, "eth0", 3.0)
    assert netlab.ping_until(h1, "10.0.0.254")
    internal = mac_of(netlab, sw, "br0")
    replies = arp_replies(at_host.frames())
    assert replies and set(replies) == {internal}, f"ARP replies from {replies}; br0 is {internal}, " \
                                                   f"p1 is {mac_of(netlab, sw, 'p1')}"
    neigh = netlab.run(h1, "ip", "neigh", "show", "10.0.0.254").stdout
    assert internal in neigh, neigh
    daemon.transact(ch("del_port", "p1"))
    assert arp_ignore(netlab, sw, "p1") == 0   # out of the switch: its stack answers as before
