"""Floods in the kernel: broadcast and unknown unicast reach exactly the VLAN's other members, each in
its own encapsulation, through the flood devmap (the counters say so), and the bridge's internal port
(a TAP) gets its copy through vswitchd's echo of the kernel's."""
from __future__ import annotations

import json
import signal
import sys
import time

import pytest
from vswitch.daemon.fastpath import XDP_ON_VETH_ENV
from vswitchd_lab import MODULE_UTILS, Capture, Daemon, ch, mac_of, send_raw, star

NETLAB_PREFIX = "xf"   # this module's namespaces (tests/conftest.py)
pytestmark = pytest.mark.integration


def raw(dst: str, src: str, tag: str) -> bytes:
    return bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + b"\x88\xb5" + tag.encode() * 8


def test_floods_reach_the_vlans_other_members_through_the_kernel(netlab, daemons, tmp_path):
    sw = netlab.ns("sw")
    h1, h2, h3, h4, h5, h6 = star(netlab, sw, 6)
    d = Daemon(sw, tmp_path, env={"VSWITCHD_DATAPATH": "auto", XDP_ON_VETH_ENV: "1"})
    daemons.append(d)
    d.start()
    d.transact(ch("add_bridge", "br0"), ch("add_port", "p1", bridge="br0", vlan=5),
               ch("add_port", "p2", bridge="br0", vlan=5), ch("add_port", "p3", bridge="br0", trunks=[5]),
               ch("add_port", "p4", bridge="br0", vlan=7), ch("add_port", "p5", bridge="br0", vlan=5),
               ch("add_port", "p6", bridge="br0", trunks=[5, 7]))
    netlab.run(sw, "ip", "link", "set", "br0", "up")
    src = mac_of(netlab, h1, "eth0")
    # h1's first frame goes up (its source is new: Python learns it); once the mirror holds h1 and the
    # VLAN's flood devmap is written, its floods stay in the kernel. Wait until they do.
    for _attempt in range(30):
        before = d.stats("p1")
        send_raw(netlab, h1, "eth0", raw("ff:ff:ff:ff:ff:ff", src, "warm"), 1)
        time.sleep(0.2)
        if d.stats("p1")["fast_rx_packets"] > before["fast_rx_packets"]:
            break
    else:
        raise AssertionError(f"floods never took the kernel path: {d.stats('p1')}")
    for dst, tag in (("ff:ff:ff:ff:ff:ff", "bcast"), ("02:99:99:99:99:99", "unkwn")):
        probe = raw(dst, src, tag)
        caps = {host: Capture(netlab, host, "eth0", 5) for host in (h1, h2, h3, h4, h5, h6)}
        internal = Capture(netlab, sw, "br0", 5)
        before = {port: d.stats(port) for port in ("p1", "p2", "p3", "p4", "p5", "p6")}
        send_raw(netlab, h1, "eth0", probe, 3)
        got = {host: [f for f in cap.frames() if f[6:] == probe[6:] or f[6:12] + f[16:] == probe[6:]]
               for host, cap in caps.items()}
        on_internal = [f for f in internal.frames() if f[16:] == probe[12:] or f[12:] == probe[12:]]
        after = {port: d.stats(port) for port in ("p1", "p2", "p3", "p4", "p5", "p6")}
        tagged = probe[:12] + b"\x81\x00\x00\x05" + probe[12:]
        # Two of each encapsulation: each copy is popped or kept on its own (copies share no bytes).
        assert got[h2] == [probe] * 3 and got[h5] == [probe] * 3, (tag, got)     # access VLAN 5: untagged
        assert got[h3] == [tagged] * 3 and got[h6] == [tagged] * 3, (tag, got)   # trunks carrying 5: tagged
        assert got[h1] == [] and got[h4] == [], (tag, got)   # not back to the sender, not into VLAN 7
        assert on_internal == [tagged] * 3, (tag, on_internal)   # the internal port (every VLAN; 5 tagged)
        fast = {port: {k: after[port][k] - before[port][k] for k in ("fast_rx_packets", "fast_tx_packets")}
                for port in after}
        # At least the probes (the hosts' own IPv6 chatter may add to these); none into VLAN 7.
        assert fast["p1"]["fast_rx_packets"] >= 3, fast
        assert all(fast[port]["fast_tx_packets"] >= 3 for port in ("p2", "p3", "p5", "p6")), fast
        assert fast["p4"]["fast_tx_packets"] == 0, fast


def xdp_prog(lab, ns: str, dev: str):
    links = json.loads(lab.run(ns, "ip", "-j", "-d", "link", "show", dev).stdout)
    xdp = links[0].get("xdp")
    return xdp["prog"]["id"] if xdp and "prog" in xdp else None


def test_a_start_takes_its_old_program_off_a_port_deleted_while_it_was_down(netlab, daemons, tmp_path):
    sw = netlab.ns("sw")
    star(netlab, sw, 3)
    d = Daemon(sw, tmp_path, env={"VSWITCHD_DATAPATH": "auto", XDP_ON_VETH_ENV: "1"})
    daemons.append(d)
    d.start()
    d.transact(ch("add_bridge", "br0"), *[ch("add_port", f"p{i}", bridge="br0") for i in (1, 2, 3)])
    left = xdp_prog(netlab, sw, "p3")
    assert left is not None
    d.stop(signal.SIGKILL)
    assert xdp_prog(netlab, sw, "p3") == left   # a crash leaves the program on every port
    # p3 leaves the state while no daemon runs (as an edit of the state file would do it).
    state = json.loads(d.state_file.read_text())
    del state["ports"]["p3"]
    d.state_file.write_text(json.dumps(state))
    # Another program on a device that is no port of the state is not vswitchd's to remove.
    netlab.run(sw, "ip", "link", "add", "xfforeign0", "type", "veth", "peer", "name", "xfforeign1")
    netlab.run(sw, sys.executable, "-c", FOREIGN_XDP, "xfforeign0", str(MODULE_UTILS))
    other = xdp_prog(netlab, sw, "xfforeign0")
    assert other is not None
    d.start()
    assert xdp_prog(netlab, sw, "p3") is None
    assert xdp_prog(netlab, sw, "p1") not in (None, left)
    assert xdp_prog(netlab, sw, "xfforeign0") == other
    assert "removed the XDP program a previous run left" in d.log.read_text()


# Attaches an XDP_PASS program called "xf_foreign" to a device, through vswitchd's own loader.
FOREIGN_XDP = """
import sys
sys.path.insert(0, sys.argv[2])
from vswitch.daemon.bpf import asm, syscall, xdp
import socket
prog = syscall.Prog(syscall.PROG_XDP, asm.Program().emit(asm.mov(asm.R0, 2), asm.exit_()).assemble(), "xf_foreign")
errno, text = xdp.attach(socket.if_nametoindex(sys.argv[1]), prog.fd, native=False)
sys.exit(errno)
"""
