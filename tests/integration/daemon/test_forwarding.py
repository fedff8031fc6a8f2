"""Real traffic through vswitchd: learning, flooding, VLANs, tags on the wire, security, bad frames."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import time

import pytest
from vswitchd_lab import RAWFRAME, Capture, ch, mac_of, send_raw, star

pytestmark = pytest.mark.integration
BCAST = b"\xff" * 6


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def test_learning_flooding_and_fdb_show(netlab, vswitchd):
    sw = netlab.ns("sw")
    h1, h2, h3 = star(netlab, sw, 3)
    d = vswitchd(sw)
    d.transact(ch("add_bridge", "br0"), *[ch("add_port", f"p{i}", bridge="br0") for i in (1, 2, 3)])
    assert netlab.ping_until(h1, "10.0.0.2")
    rows = d.call("fdb_show", {"bridge": "br0"})
    learned = {(r["port"], r["mac"]) for r in rows}
    assert ("p1", mac_of(netlab, h1, "eth0")) in learned and ("p2", mac_of(netlab, h2, "eth0")) in learned
    # Known unicast goes to one port only: h3 must not see h1 -> h2 frames ...
    probe = mac(mac_of(netlab, h2, "eth0")) + mac(mac_of(netlab, h1, "eth0")) + b"\x88\xb5" + b"known" * 10
    cap3 = Capture(netlab, h3, "eth0", 1.5)
    cap2 = Capture(netlab, h2, "eth0", 1.5)
    send_raw(netlab, h1, "eth0", probe, 3)
    assert sum(f == probe for f in cap2.frames()) == 3
    assert not any(f == probe for f in cap3.frames())
    # ... while unknown unicast is flooded to every other port, never back to the sender.
    unknown = b"\x02\x99\x99\x99\x99\x99" + mac(mac_of(netlab, h1, "eth0")) + b"\x88\xb5" + b"unknown" * 8
    caps = [Capture(netlab, h, "eth0", 1.5) for h in (h1, h2, h3)]
    send_raw(netlab, h1, "eth0", unknown, 2)
    got = [sum(f == unknown for f in c.frames()) for c in caps]
    assert got == [0, 2, 2]
    stats = d.stats("p1")
    assert stats["rx_packets"] > 0 and stats["tx_packets"] > 0
    text = d.ctl("fdb-show", "br0", check=True).stdout
    assert text.splitlines()[0].split() == ["port", "VLAN", "MAC", "Age"]
    assert mac_of(netlab, h1, "eth0") in text


def test_ageing_zero_floods_everything(netlab, vswitchd):
    sw = netlab.ns("sw")
    h1, h2, h3 = star(netlab, sw, 3)
    d = vswitchd(sw)
    d.transact(ch("add_bridge", "br0", ageing_time=0), *[ch("add_port", f"p{i}", bridge="br0") for i in (1, 2, 3)])
    assert netlab.ping_until(h1, "10.0.0.2")
    assert d.call("fdb_show", {"bridge": "br0"}) == []
    cap3 = Capture(netlab, h3, "eth0", 2)
    assert netlab.ping(h1, "10.0.0.2", count=3)
    icmp = [f for f in cap3.frames() if f[12:14] == b"\x08\x00" and f[23] == 1]
    assert len(icmp) >= 3, "with ageing 0 every port sees unicast between others"


def test_vlan_isolation_and_trunk_tags_on_the_wire(netlab, vswitchd):
    sw = netlab.ns("sw")
    h1, h2, h3 = star(netlab, sw, 3)          # all in one IP subnet: only VLANs separate them
    trunk = netlab.ns("trunk")
    netlab.link(sw, "t1", trunk, "eth0")
    native = netlab.ns("native")
    netlab.link(sw, "t2", native, "eth0")
    d = vswitchd(sw)
    d.transact(ch("add_bridge", "br0"), ch("add_port", "p1", bridge="br0", vlan=10),
               ch("add_port", "p2", bridge="br0", vlan=10), ch("add_port", "p3", bridge="br0", vlan=20),
               ch("add_port", "t1", bridge="br0", trunks=[10, 20]),
               ch("add_port", "t2", bridge="br0", trunks=[10, 20], native_vlan=10))
    assert netlab.ping_until(h1, "10.0.0.2")
    assert not netlab.ping(h1, "10.0.0.3", count=2), "VLAN 10 reached VLAN 20"
    m1, m3 = mac(mac_of(netlab, h1, "eth0")), mac(mac_of(netlab, h3, "eth0"))
    body = b"\x88\xb5" + b"tagcheck" * 8
    caps = {name: Capture(netlab, ns, "eth0", 1.5) for name, ns in
            (("trunk", trunk), ("native", native), ("h1", h1), ("h2", h2), ("h3", h3))}
    send_raw(netlab, h1, "eth0", BCAST + m1 + body)
    send_raw(netlab, h3, "eth0", BCAST + m3 + body)
    got = {name: [f for f in cap.frames() if f.endswith(body)] for name, cap in caps.items()}
    tags = sorted(struct.unpack("!H", f[14:16])[0] & 0xFFF for f in got["trunk"] if f[12:14] == b"\x81\x00")
    assert tags == [10, 20], f"trunk frames must carry their VLAN tag: {got['trunk']}"
    assert all(f[12:14] == b"\x81\x00" for f in got["trunk"])
    native_frames = {f[6:12]: f for f in got["native"]}
    assert native_frames[m1][12:14] == b"\x88\xb5", "the native VLAN goes untagged"
    assert struct.unpack("!H", native_frames[m3][14:16])[0] & 0xFFF == 20
    assert [f[6:12] for f in got["h2"]] == [m1]
    assert got["h1"] == [] and got["h3"] == []
    # A tagged frame from the trunk reaches its VLAN's access port untagged, and no other.
    tagged = BCAST + b"\x02\x00\x00\x00\x00\x77" + b"\x81\x00" + struct.pack("!H", 20) + body
    caps = {name: Capture(netlab, ns, "eth0", 1.5) for name, ns in (("h1", h1), ("h3", h3))}
    send_raw(netlab, trunk, "eth0", tagged)
    got = {name: [f for f in cap.frames() if f.endswith(body)] for name, cap in caps.items()}
    assert got["h1"] == []
    assert got["h3"] == [BCAST + b"\x02\x00\x00\x00\x00\x77" + body]


def test_port_security_drops_spoofed_sources_and_counts_them(netlab, vswitchd):
    sw = netlab.ns("sw")
    h1, h2 = star(netlab, sw, 2)
    d = vswitchd(sw)
    d.transact(ch("add_bridge", "br0"), ch("add_port", "p1", bridge="br0", mac=mac_of(netlab, h1, "eth0")),
               ch("add_port", "p2", bridge="br0"))
    assert netlab.ping_until(h1, "10.0.0.2")
    spoofed = BCAST + b"\x02\x66\x66\x66\x66\x66" + b"\x88\xb5" + b"spoof" * 10
    cap = Capture(netlab, h2, "eth0", 1.5)
    send_raw(netlab, h1, "eth0", spoofed, 5)
    assert not any(f == spoofed for f in cap.frames())
    assert d.stats("p1")["drop_security"] == 5
    assert netlab.ping(h1, "10.0.0.2"), "the VIF's own MAC still passes"


def test_mac_flood_keeps_the_fdb_bounded_and_known_hosts_reachable(netlab, vswitchd):
    sw = netlab.ns("sw")
    h1, h2, h3 = star(netlab, sw, 3)
    d = vswitchd(sw, fdb_limit=200)
    d.transact(ch("add_bridge", "br0"), *[ch("add_port", f"p{i}", bridge="br0") for i in (1, 2, 3)])
    assert netlab.ping_until(h1, "10.0.0.2")
    flood = subprocess.Popen(["ip", "netns", "exec", h3, sys.executable, str(RAWFRAME), "flood", "eth0", "20000",
                              "ffffffffffff"])
    try:
        time.sleep(0.3)
        assert netlab.ping(h1, "10.0.0.2", count=3), "known hosts stay reachable during a MAC flood"
    finally:
        flood.wait(60)
    assert d.call("fdb_summary")["br0"]["learned"] <= 200
    assert d.call("fdb_summary")["br0"]["evictions"] > 0
    macs = {r["mac"] for r in d.call("fdb_show", {"bridge": "br0"})}
    assert mac_of(netlab, h1, "eth0") in macs and mac_of(netlab, h2, "eth0") in macs
    assert netlab.ping(h2, "10.0.0.1", count=2)


def test_runt_oversized_and_badly_tagged_frames_are_dropped_and_counted(netlab, vswitchd):
    sw = netlab.ns("sw")
    h1, h2 = star(netlab, sw, 2)
    vm = netlab.ns("vm")
    d = vswitchd(sw)
    d.transact(ch("add_bridge", "br0", mtu=1500), ch("add_port", "p1", bridge="br0", vlan=10),
               ch("add_port", "p2", bridge="br0", vlan=10), ch("add_port", "vif9.0", bridge="br0", type="tap",
                                                               vlan=10))
    # The VM's end of a tap port is the tap device itself, moved into the VM's namespace.
    netlab.run(sw, "ip", "link", "set", "vif9.0", "netns", vm)
    netlab.run(vm, "ip", "link", "set", "vif9.0", "mtu", "9000", "up")
    netlab.run(vm, "ip", "addr", "add", "10.0.0.9/24", "dev", "vif9.0")
    assert netlab.ping_until(vm, "10.0.0.1")
    src = mac(mac_of(netlab, vm, "vif9.0"))
    bad = {
        "runt": BCAST + src + b"\x81\x00",                                             # tag cut short
        "oversize": BCAST + src + b"\x88\xb5" + b"o" * 3000,                           # > bridge MTU
        "bad_vlan": BCAST + src + b"\x81\x00" + struct.pack("!H", 4095) + b"\x88\xb5" + b"r" * 46,
    }
    tagged_on_access = BCAST + src + b"\x81\x00" + struct.pack("!H", 10) + b"\x88\xb5" + b"t" * 46
    before = d.stats("vif9.0")
    cap = Capture(netlab, h1, "eth0", 1.5)
    for frame in bad.values():
        send_raw(netlab, vm, "vif9.0", frame, 2)
    send_raw(netlab, vm, "vif9.0", tagged_on_access, 2)
    seen = cap.frames()
    assert not any(f in seen for f in [*bad.values(), tagged_on_access])
    after = d.stats("vif9.0")
    assert after["drop_runt"] - before["drop_runt"] == 2
    assert after["drop_oversize"] - before["drop_oversize"] == 2
    assert after["drop_bad_vlan"] - before["drop_bad_vlan"] == 4
    assert d.call("ping")["pong"] and netlab.ping(vm, "10.0.0.2"), "the switch forwards on, unharmed"


def test_internal_port_carries_the_hosts_ip_and_gso_tcp_flows(netlab, vswitchd):
    sw = netlab.ns("sw")
    h1, h2 = star(netlab, sw, 2)
    d = vswitchd(sw)
    d.transact(ch("add_bridge", "xenbr0", mac="00:16:3e:00:00:fe"), ch("add_port", "p1", bridge="xenbr0"),
               ch("add_port", "p2", bridge="xenbr0"))
    netlab.run(sw, "ip", "addr", "add", "10.0.0.254/24", "dev", "xenbr0")
    assert mac_of(netlab, sw, "xenbr0") == "00:16:3e:00:00:fe"
    assert netlab.ping_until(sw, "10.0.0.1")
    assert netlab.ping_until(h2, "10.0.0.254")
    # A bounded TCP transfer between hosts (GSO super-frames pass through whole).
    netlab.run(h2, "iperf3", "-s", "-1", "-D", "-p", "5299")
    time.sleep(0.3)
    out = netlab.run(h1, "iperf3", "-c", "10.0.0.2", "-p", "5299", "-t", "2", "-J", timeout=30).stdout
    result = json.loads(out)
    assert result["end"]["sum_received"]["bytes"] > 10_000_000
