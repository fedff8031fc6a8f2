"""vswitchd's XDP fast path with real traffic: who carries what, show, counters, and the program's lifetime.

The rest of tests/integration/daemon/ runs with the default ``--datapath auto``, so every
behaviour there is checked with the fast path on; this file checks the fast path itself.
"""
from __future__ import annotations

import json
import re
import signal
import time

import pytest
from netlab import NetLab
from vswitch.daemon.bpf import tc
from vswitch.daemon.fastpath import XDP_ON_VETH_ENV
from vswitchd_lab import Capture, Daemon, ch, mac_of, send_raw, star, tcp_stream

NETLAB_PREFIX = "xp"   # this area's namespaces (tests/conftest.py)
pytestmark = pytest.mark.integration


def xdp_prog(lab: NetLab, ns: str, dev: str):
    """The id of the XDP program on ``dev`` (any mode), or None."""
    links = json.loads(lab.run(ns, "ip", "-j", "-d", "link", "show", dev).stdout)
    xdp = links[0].get("xdp")
    return xdp["prog"]["id"] if xdp and "prog" in xdp else None


def gso_filters(lab: NetLab, ns: str, dev: str) -> list:
    """The program ids of vswitchd's clsact filters on ``dev`` (the GSO path on kernels without tcx links)."""
    shown = lab.run(ns, "tc", "filter", "show", "dev", dev, "ingress", check=False).stdout
    return re.findall(rf"pref {tc.PRIORITY} bpf .* id (\d+)", shown)


def gso_attachment(daemon, port: str) -> str:
    """How the port's GSO tc program is attached, as show says: tcx, clsact, or "" (super-frames on the rings)."""
    shown = daemon.ctl("show").stdout
    found = re.search(rf"Port {port}\n(?:        .*\n)*?        forwarding: .*GSO super-frames by tc \((\w+)\)", shown)
    return found.group(1) if found else ""


def start(lab, daemons, ns, tmp_path, datapath="auto", hosts=2):
    daemon = Daemon(ns, tmp_path, env={"VSWITCHD_DATAPATH": datapath, XDP_ON_VETH_ENV: "1"})
    daemons.append(daemon)
    daemon.start()
    return daemon


def test_known_unicast_is_forwarded_by_the_kernel_and_show_says_so(netlab, daemons, tmp_path):
    sw = netlab.ns("sw")
    h1, h2, h3 = star(netlab, sw, 3)
    d = start(netlab, daemons, sw, tmp_path)
    d.transact(ch("add_bridge", "br0"), ch("add_port", "p1", bridge="br0"), ch("add_port", "p2", bridge="br0", vlan=5),
               ch("add_port", "p3", bridge="br0", vlan=5))
    shown = d.ctl("show").stdout
    # tcx links on Linux 6.6 and later, a clsact filter before (the Debian-kernel guest runs that case)
    assert re.search(r"forwarding: xdp \(generic; GSO super-frames by tc \((tcx|clsact)\)\)", shown), shown
    assert "forwarding: rings (a TAP port" in shown, shown
    assert xdp_prog(netlab, sw, "p2") is not None and xdp_prog(netlab, sw, "p2") == xdp_prog(netlab, sw, "p3")
    # h2 and h3 share VLAN 5: after learning (ARP, the first ping), their unicast stays in the kernel.
    netlab.run(h3, "ip", "addr", "add", "10.0.0.22/24", "dev", "eth0")
    assert netlab.ping_until(h2, "10.0.0.22")
    # The mirror follows learning within SYNC_INTERVAL (later on a loaded machine): wait until it has.
    for _attempt in range(20):
        before = d.stats("p2")
        netlab.ping(h2, "10.0.0.22", count=1, wait=1.0)
        if d.stats("p2")["fast_rx_packets"] > before["fast_rx_packets"]:
            break
        time.sleep(0.2)
    before = d.stats("p2")
    assert netlab.ping(h2, "10.0.0.22", count=5, wait=1.0)
    after = d.stats("p2")
    assert after["fast_rx_packets"] - before["fast_rx_packets"] >= 5
    assert after["rx_packets"] - before["rx_packets"] >= after["fast_rx_packets"] - before["fast_rx_packets"]
    # Known unicast reaches its one port only, and exactly once (no second copy from the slow path).
    probe = (bytes.fromhex(mac_of(netlab, h3, "eth0").replace(":", "")) +
             bytes.fromhex(mac_of(netlab, h2, "eth0").replace(":", "")) + b"\x88\xb5" + b"fast" * 12)
    cap3, cap1 = Capture(netlab, h3, "eth0", 1.5), Capture(netlab, h1, "eth0", 1.5)
    send_raw(netlab, h2, "eth0", probe, 4)
    assert sum(f == probe for f in cap3.frames()) == 4
    assert not any(f == probe for f in cap1.frames())
    # fdb-show keeps showing the kernel-forwarded hosts with fresh ages.
    rows = {(r["port"], r["mac"]): r for r in d.call("fdb_show", {"bridge": "br0"})}
    assert ("p3", mac_of(netlab, h3, "eth0")) in rows


def test_port_security_drops_in_the_kernel_are_counted(netlab, daemons, tmp_path):
    sw = netlab.ns("sw")
    h1, h2 = star(netlab, sw, 2)
    d = start(netlab, daemons, sw, tmp_path)
    d.transact(ch("add_bridge", "br0"), ch("add_port", "p1", bridge="br0", mac=mac_of(netlab, h1, "eth0")),
               ch("add_port", "p2", bridge="br0"))
    spoofed = b"\xff" * 6 + b"\x02\x66\x66\x66\x66\x66" + b"\x88\xb5" + b"spoof" * 10
    cap = Capture(netlab, h2, "eth0", 1.5)
    send_raw(netlab, h1, "eth0", spoofed, 3)
    assert not any(f == spoofed for f in cap.frames())
    stats = d.stats("p1")
    assert stats["drop_security"] == 3 and stats["fast_dropped"] == 3, stats


def test_rings_only_when_asked(netlab, daemons, tmp_path):
    sw = netlab.ns("sw")
    h1, h2 = star(netlab, sw, 2)
    d = start(netlab, daemons, sw, tmp_path, datapath="rings")
    d.transact(ch("add_bridge", "br0"), ch("add_port", "p1", bridge="br0"), ch("add_port", "p2", bridge="br0"))
    assert "forwarding: rings (--datapath rings)" in d.ctl("show").stdout
    assert xdp_prog(netlab, sw, "p1") is None
    assert netlab.ping_until(h1, "10.0.0.2")


def test_programs_go_with_their_ports_and_daemon_and_a_restart_after_kill_replaces_them(netlab, daemons, tmp_path):
    sw = netlab.ns("sw")
    h1, h2, h3 = star(netlab, sw, 3)
    d = start(netlab, daemons, sw, tmp_path)
    d.transact(ch("add_bridge", "br0"), *[ch("add_port", f"p{i}", bridge="br0") for i in (1, 2, 3)])
    assert xdp_prog(netlab, sw, "p3") is not None
    # The GSO path's tc program: a tcx link (Linux 6.6 and later) goes with its fd, a clsact filter must be removed.
    kind = gso_attachment(d, "p3")
    assert kind in ("tcx", "clsact"), d.ctl("show").stdout
    clsact = kind == "clsact"
    assert len(gso_filters(netlab, sw, "p3")) == (1 if clsact else 0)
    d.transact(ch("del_port", "p3"))
    assert xdp_prog(netlab, sw, "p3") is None
    assert gso_filters(netlab, sw, "p3") == []
    d.stop()
    assert xdp_prog(netlab, sw, "p1") is None and xdp_prog(netlab, sw, "p2") is None
    assert gso_filters(netlab, sw, "p1") == [] and gso_filters(netlab, sw, "p2") == []
    assert "clsact" not in netlab.run(sw, "tc", "qdisc", "show", "dev", "p1").stdout, "the qdisc made for it goes too"
    d.start()
    left, left_tc = xdp_prog(netlab, sw, "p1"), gso_filters(netlab, sw, "p1")
    assert left is not None
    d.stop(signal.SIGKILL)
    assert xdp_prog(netlab, sw, "p1") == left   # a crash leaves it; the next start takes the port back
    assert gso_filters(netlab, sw, "p1") == left_tc   # a clsact filter too (a tcx link died with the process)
    d.start()
    assert xdp_prog(netlab, sw, "p1") not in (None, left)
    now_tc = gso_filters(netlab, sw, "p1")
    assert len(now_tc) == (1 if clsact else 0) and (not clsact or now_tc != left_tc), (left_tc, now_tc)
    assert gso_attachment(d, "p1") == kind
    assert netlab.ping_until(h1, "10.0.0.2")


def test_gso_tcp_between_xdp_ports_is_forwarded_whole_by_tc(netlab, daemons, tmp_path):
    sw = netlab.ns("sw")
    h1, h2 = star(netlab, sw, 2)
    d = start(netlab, daemons, sw, tmp_path)
    d.transact(ch("add_bridge", "br0"), ch("add_port", "p1", bridge="br0"), ch("add_port", "p2", bridge="br0"))
    assert netlab.ping_until(h1, "10.0.0.2")
    size = 50 * 2**20
    tcp_stream(netlab, h1, h2, "10.0.0.2", size)
    stats, out = d.stats("p1"), d.stats("p2")
    # Super-frames stayed whole (far fewer frames than bytes/1500) and the kernel carried them: the tc path
    # most of the bytes, Python almost nothing (its share: the first frames, before the FDB mirror had both).
    assert stats["rx_packets"] < 50_000_000 // 1500, stats
    assert stats["tc_rx_bytes"] >= 0.8 * size, stats
    assert out["tc_tx_packets"] == stats["tc_rx_packets"], (stats, out)
    assert stats["slow_rx_packets"] < 0.05 * stats["tc_rx_packets"], stats
