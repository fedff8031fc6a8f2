"""vswitchd's tc paths with real 802.1Q devices (run inside tests/vmkernel/vm.py).

Not collected by a plain ``pytest tests`` run (the name does not match ``test_*.py``): a tagged TCP
flow needs an 802.1Q device at one end, which this machine's kernel lacks. Debian's kernel in the
guest has them, and no tcx links (6.1), so the tc program is a clsact filter there.
tests/integration/test_kernel_vlan_filtering.py boots it and runs this file; by hand::

    python3 tests/vmkernel/vm.py -- .venv/bin/python -m pytest -p no:cacheprovider \
        tests/integration/daemon/kernel_fastpath_checks.py

h1 sits on a trunk port and talks through its VLAN device eth0.10; h2 on an access port of VLAN
10. A stream each way: h1 -> h2 arrives tagged and leaves untagged (tc pops), h2 -> h1 arrives
untagged and leaves tagged (tc pushes). The proof is the streams' bytes and the tc counters. First
with XDP on the veths and the tag inline (h1's tx VLAN offload off), the GSO path; then as a
container's veth is by default, tx VLAN offload on, so the tag reaches the port in the skb's
metadata, on vswitchd's default skb path for veths, with h1 also on the trunk's native VLAN.
"""
from __future__ import annotations

import time

import pytest
from test_fastpath import gso_attachment
from vswitch.daemon.fastpath import XDP_ON_VETH_ENV
from vswitchd_lab import Capture, Daemon, ch, mac_of, tcp_stream

NETLAB_PREFIX = "xq"   # this area's namespaces (tests/conftest.py)
pytestmark = pytest.mark.integration
SIZE = 20 * 2**20


def test_tagged_super_frames_are_popped_and_pushed_by_tc(netlab, daemons, tmp_path):
    sw, h1, h2 = netlab.ns("sw"), netlab.ns("h1"), netlab.ns("h2")
    netlab.link(sw, "p1", h1, "eth0")
    netlab.link(sw, "p2", h2, "eth0")
    # The tag inline in the frames h1 sends (as a VM's netback VIF or TAP delivers them), not in the skb's
    # metadata: generic XDP cannot see a tag there (docs/vswitchd_fastpath.md, Limits).
    netlab.run(h1, "ethtool", "-K", "eth0", "txvlan", "off")
    netlab.run(h1, "ip", "link", "add", "link", "eth0", "name", "eth0.10", "type", "vlan", "id", "10")
    netlab.run(h1, "ip", "addr", "add", "10.0.10.1/24", "dev", "eth0.10")
    netlab.run(h1, "ip", "link", "set", "eth0.10", "up")
    netlab.run(h2, "ip", "addr", "add", "10.0.10.2/24", "dev", "eth0")
    d = Daemon(sw, tmp_path, env={"VSWITCHD_DATAPATH": "auto", XDP_ON_VETH_ENV: "1"})
    daemons.append(d)
    d.start()
    d.transact(ch("add_bridge", "br0"), ch("add_port", "p1", bridge="br0", trunks=[10]),
               ch("add_port", "p2", bridge="br0", vlan=10))
    assert gso_attachment(d, "p1") in ("tcx", "clsact"), d.ctl("show").stdout
    assert netlab.ping_until(h1, "10.0.10.2"), (d.stats("p1"), d.stats("p2"))
    streams_by_tc(netlab, d, h1, h2)


def test_tags_in_metadata_from_a_vlan_device_go_by_tc_into_their_vlan_only(netlab, daemons, tmp_path):
    sw, h1, h2, h3 = netlab.ns("sw"), netlab.ns("h1"), netlab.ns("h2"), netlab.ns("h3")
    for port, host in (("p1", h1), ("p2", h2), ("p3", h3)):
        netlab.link(sw, port, host, "eth0")
    assert "tx-vlan-offload: on" in netlab.run(h1, "ethtool", "-k", "eth0").stdout
    netlab.run(h1, "ip", "link", "add", "link", "eth0", "name", "eth0.10", "type", "vlan", "id", "10")
    netlab.run(h1, "ip", "addr", "add", "10.0.10.1/24", "dev", "eth0.10")
    netlab.run(h1, "ip", "link", "set", "eth0.10", "up")
    netlab.run(h1, "ip", "addr", "add", "10.0.20.1/24", "dev", "eth0")   # untagged: the trunk's native VLAN 20
    netlab.run(h2, "ip", "addr", "add", "10.0.10.2/24", "dev", "eth0")
    netlab.run(h3, "ip", "addr", "add", "10.0.20.3/24", "dev", "eth0")
    d = Daemon(sw, tmp_path, env={"VSWITCHD_DATAPATH": "auto"})
    daemons.append(d)
    d.start()
    d.transact(ch("add_bridge", "br0"), ch("add_port", "p1", bridge="br0", trunks=[10], native_vlan=20),
               ch("add_port", "p2", bridge="br0", vlan=10), ch("add_port", "p3", bridge="br0", vlan=20))
    shown = d.ctl("show").stdout
    assert "forwarding: tc (XDP not used: a veth device" in shown, shown
    assert netlab.ping_until(h1, "10.0.20.3"), "the native VLAN, untagged"   # h1 known in VLAN 20 now
    h1_mac = bytes.fromhex(mac_of(netlab, h1, "eth0").replace(":", ""))
    cap = Capture(netlab, h3, "eth0", seconds=8)
    assert netlab.ping_until(h1, "10.0.10.2"), (d.stats("p1"), d.stats("p2"))
    streams_by_tc(netlab, d, h1, h2)
    leaked = [f for f in cap.frames() if f[6:12] == h1_mac and from_vlan_10(f)]
    assert not leaked, f"{len(leaked)} of h1's VLAN 10 frames reached VLAN 20"


def from_vlan_10(frame: bytes) -> bool:
    """A frame of h1's VLAN 10 interface: still tagged, or an IPv4 packet or ARP from 10.0.10.1."""
    ethertype = frame[12:14]
    return (ethertype == b"\x81\x00" or (ethertype == b"\x08\x00" and frame[26:30] == bytes([10, 0, 10, 1]))
            or (ethertype == b"\x08\x06" and frame[28:32] == bytes([10, 0, 10, 1])))


def settled_stats(d, *ports: str) -> list:
    """The ports' counters once no frame is in flight: the stream's last FIN/ACK may still be crossing
    when tcp_stream returns, and an ingress count read before it with an egress count read after would
    differ by that frame. Read together, repeated until two reads agree (at most 3 s)."""
    def read() -> list:
        rows = {r["port"]: r for r in d.call("port_stats")}
        return [rows[p] for p in ports]
    last, deadline = read(), time.monotonic() + 3
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = read()
        if now == last:
            break
        last = now
    return last


def streams_by_tc(netlab, d, h1, h2) -> None:
    """A TCP stream each way between h1 (p1) and h2 (p2), most of its bytes forwarded by tc."""
    for src, dst, address, ingress, egress in ((h1, h2, "10.0.10.2", "p1", "p2"), (h2, h1, "10.0.10.1", "p2", "p1")):
        before_in, before_out = settled_stats(d, ingress, egress)
        tcp_stream(netlab, src, dst, address, SIZE)
        got_in, got_out = settled_stats(d, ingress, egress)
        carried = got_in["tc_rx_bytes"] - before_in["tc_rx_bytes"]
        print(f"{ingress} -> {egress}: {carried} of {SIZE} bytes by tc, "
              f"{got_in['slow_rx_packets'] - before_in['slow_rx_packets']} frames by Python")
        assert carried >= 0.8 * SIZE, (got_in, before_in)
        # What tc took in on one port it sent out the other, to within a frame or two: the guest showed the
        # egress count one above the ingress one in 2 of 3 runs, with both read after the stream had settled
        # (why is not known: both are counted in the same program run); a frame lost or sent twice per GSO
        # segment would show hundreds apart.
        sent, took = (got_out["tc_tx_packets"] - before_out["tc_tx_packets"],
                      got_in["tc_rx_packets"] - before_in["tc_rx_packets"])
        assert abs(sent - took) <= max(2, took // 100), (sent, took)
