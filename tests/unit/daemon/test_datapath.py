from __future__ import annotations

import struct

import pytest
from vswitch.daemon.datapath import Bridge, Port
from vswitchd_frames import VNET, Wire, frame, mac, parse

BCAST = "ff:ff:ff:ff:ff:ff"
H1, H2, H3, H4 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03", "02:00:00:00:00:04"


class Switch:
    """A bridge with ports wired to ``Wire`` recorders."""

    def __init__(self, ageing: float = 300, mtu: int = 1500, fdb_limit: int = 1000) -> None:
        self.bridge = Bridge("br0", fdb_limit=fdb_limit, ageing=ageing, mtu=mtu)
        self.wires: dict[str, Wire] = {}
        self.ports: dict[str, Port] = {}
        self.now = 0.0

    def add(self, name: str, **cfg) -> Port:
        port = Port(name)
        if "mac" in cfg and cfg["mac"] is not None:
            cfg["mac"] = mac(cfg["mac"])
        port.configure(**cfg)
        wire = Wire()
        port.send = wire.send
        self.wires[name], self.ports[name] = wire, port
        self.bridge.attach(port)
        return port

    def rx(self, name: str, data: bytearray, aux: int = -1) -> dict[str, list[dict]]:
        """Feed a frame in on ``name``; return what each port sent, parsed."""
        self.bridge.input(self.ports[name], memoryview(data), len(data), aux, self.now)
        return {p: [parse(f) for f in w.take()] for p, w in self.wires.items()}


def sent_to(out: dict[str, list]) -> set[str]:
    return {p for p, frames in out.items() if frames}


def test_unknown_unicast_and_broadcast_flood_but_never_back_out_of_the_ingress_port():
    sw = Switch()
    for name in ("a", "b", "c"):
        sw.add(name)
    assert sent_to(sw.rx("a", frame(BCAST, H1))) == {"b", "c"}
    assert sent_to(sw.rx("a", frame(H2, H1))) == {"b", "c"}      # H2 unknown yet
    assert sent_to(sw.rx("a", frame("01:00:5e:00:00:01", H1))) == {"b", "c"}


def test_learning_turns_flooding_into_unicast():
    sw = Switch()
    for name in ("a", "b", "c"):
        sw.add(name)
    sw.rx("a", frame(BCAST, H1))
    out = sw.rx("b", frame(H1, H2))
    assert sent_to(out) == {"a"}
    assert out["a"][0]["src"] == mac(H2)
    assert sent_to(sw.rx("a", frame(H2, H1))) == {"b"}
    rows = sw.bridge.fdb_rows(now=0)
    assert {(r["port"], r["mac"]) for r in rows} == {("a", H1), ("b", H2)}


def test_destination_on_the_ingress_port_is_filtered_not_reflected():
    sw = Switch()
    a = sw.add("a")
    sw.add("b")
    sw.rx("a", frame(BCAST, H1))
    sw.rx("a", frame(BCAST, H2))
    assert sent_to(sw.rx("a", frame(H2, H1))) == set()
    assert a.filtered == 1


def test_station_move_is_learned():
    sw = Switch()
    for name in ("a", "b", "c"):
        sw.add(name)
    sw.rx("a", frame(BCAST, H1))
    sw.rx("c", frame(BCAST, H1))
    assert sent_to(sw.rx("b", frame(H1, H2))) == {"c"}


def test_learned_entries_age_out():
    sw = Switch(ageing=10)
    for name in ("a", "b", "c"):
        sw.add(name)
    sw.rx("a", frame(BCAST, H1))
    sw.now = 11
    assert sent_to(sw.rx("b", frame(H1, H2))) == {"a", "c"}


def test_ageing_zero_learns_nothing_and_floods_everything():
    sw = Switch(ageing=0)
    for name in ("a", "b", "c"):
        sw.add(name)
    sw.rx("a", frame(BCAST, H1))
    assert sent_to(sw.rx("b", frame(H1, H2))) == {"a", "c"}
    assert len(sw.bridge.fdb) == 0


def test_access_vlans_are_isolated():
    sw = Switch()
    sw.add("a10", vlan=10)
    sw.add("b10", vlan=10)
    sw.add("c20", vlan=20)
    out = sw.rx("a10", frame(BCAST, H1))
    assert sent_to(out) == {"b10"}
    assert out["b10"][0]["vlan"] is None, "access ports send untagged"
    assert sent_to(sw.rx("c20", frame(BCAST, H3))) == set()
    # The same MAC on two VLANs is two entries.
    sw.rx("c20", frame(BCAST, H1))
    assert sent_to(sw.rx("b10", frame(H1, H2))) == {"a10"}


def test_trunk_egress_carries_the_vlan_tag_and_native_goes_untagged():
    sw = Switch()
    sw.add("a10", vlan=10)
    sw.add("a30", vlan=30)
    sw.add("trunk", trunks=(10, 20))
    sw.add("native", trunks=(10, 20), native_vlan=10)
    out = sw.rx("a10", frame(BCAST, H1, payload=b"hello" * 10))
    assert sent_to(out) == {"trunk", "native"}
    assert out["trunk"][0]["vlan"] == 10
    assert out["trunk"][0]["payload"] == b"hello" * 10
    assert out["trunk"][0]["ethertype"] == 0x0800
    assert out["native"][0]["vlan"] is None
    assert sent_to(sw.rx("a30", frame(BCAST, H2))) == set(), "VLAN 30 is on no trunk"


def test_tagged_trunk_ingress_reaches_its_vlan_only_and_is_popped_on_access_ports():
    sw = Switch()
    sw.add("a10", vlan=10)
    sw.add("a20", vlan=20)
    sw.add("trunk", trunks=(10, 20))
    sw.add("all")                      # no VLAN config: a trunk of every VLAN
    out = sw.rx("trunk", frame(BCAST, H1, vlan=20, pcp=5))
    assert sent_to(out) == {"a20", "all"}
    assert out["a20"][0]["vlan"] is None and out["a20"][0]["ethertype"] == 0x0800
    assert out["all"][0]["vlan"] == 20 and out["all"][0]["pcp"] == 5, "PCP survives"


def test_tag_stripped_by_the_kernel_into_ring_metadata_is_honoured():
    sw = Switch()
    sw.add("a10", vlan=10)
    sw.add("a20", vlan=20)
    sw.add("trunk", trunks=(10, 20))
    sw.add("trunk2", trunks=(10, 20))
    out = sw.rx("trunk", frame(BCAST, H1), aux=(3 << 13) | 20)
    assert sent_to(out) == {"a20", "trunk2"}
    assert out["trunk2"][0]["vlan"] == 20 and out["trunk2"][0]["pcp"] == 3


@pytest.mark.parametrize("port_cfg, data, reason", [
    ({"vlan": 10}, frame(BCAST, H1, vlan=10), "bad_vlan"),            # tagged frame on an access port
    ({"trunks": (10, 20)}, frame(BCAST, H1, vlan=30), "bad_vlan"),    # VLAN not on the trunk
    ({"trunks": (10, 20)}, frame(BCAST, H1), "bad_vlan"),              # untagged, trunk has no native VLAN
    ({}, frame(BCAST, H1, vlan=4095), "bad_vlan"),                     # reserved VID
    ({}, frame(BCAST, H1, vlan=10, tpid=0x88A8), "bad_vlan"),          # 802.1ad outer tag
    ({}, bytearray(b"\0" * VNET + b"\xff" * 13), "runt"),              # shorter than an Ethernet header
    ({}, bytearray(b"\0" * VNET + b"\xff" * 12 + b"\x81\x00\x00"), "runt"),   # tag cut short
    ({}, frame(BCAST, H1, payload=b"x" * 1501), "oversize"),
    ({}, frame(BCAST, "03:00:00:00:00:01"), "bad_src"),                # multicast source
], ids=["tag-on-access", "vlan-not-trunked", "untagged-no-native", "vid-4095", "qinq", "runt", "short-tag",
        "oversize", "multicast-source"])
def test_bad_frames_are_dropped_and_counted(port_cfg, data, reason):
    sw = Switch()
    bad = sw.add("in", **port_cfg)
    sw.add("other")
    sw.add("other10", vlan=10)
    assert sent_to(sw.rx("in", data)) == set()
    assert bad.drops[reason] == 1
    assert bad.counters()["rx_dropped"] == 1


def test_priority_tagged_frames_count_as_untagged():
    sw = Switch()
    sw.add("a10", vlan=10)
    sw.add("b10", vlan=10)
    out = sw.rx("a10", frame(BCAST, H1, vlan=0, pcp=4))
    assert sent_to(out) == {"b10"}
    assert out["b10"][0]["vlan"] is None


def test_tagged_frame_may_be_mtu_plus_tag_and_gso_frames_may_exceed_mtu():
    sw = Switch(mtu=1500)
    sw.add("t", trunks=(10,))
    sw.add("u", trunks=(10,))
    assert sent_to(sw.rx("t", frame(BCAST, H1, vlan=10, payload=b"x" * 1500))) == {"u"}
    gso = struct.pack("<BBHHHH", 1, 1, 54, 1448, 34, 16)
    assert sent_to(sw.rx("t", frame(BCAST, H1, vlan=10, payload=b"x" * 30000, vnet=gso))) == {"u"}


def test_port_security_drops_spoofed_sources_and_counts_them():
    sw = Switch()
    vif = sw.add("vif", mac=H1)
    sw.add("b")
    assert sent_to(sw.rx("vif", frame(BCAST, H1))) == {"b"}
    assert sent_to(sw.rx("vif", frame(BCAST, H3))) == set()
    assert vif.drops["security"] == 1
    # The declared MAC is a static entry: a spoofer elsewhere cannot steal it.
    sw.rx("b", frame(BCAST, H1))
    assert sent_to(sw.rx("b", frame(H1, H2))) == {"vif"}
    assert any(r["static"] and r["mac"] == H1 for r in sw.bridge.fdb_rows(0))


def test_promiscuous_port_sees_unicast_between_others_in_its_vlan_only():
    sw = Switch()
    sw.add("a", vlan=10)
    sw.add("b", vlan=10)
    sw.add("mirror", vlan=10, promiscuous=True)
    sw.add("other", vlan=20, promiscuous=True)
    sw.rx("a", frame(BCAST, H1))
    sw.rx("b", frame(BCAST, H2))
    out = sw.rx("a", frame(H2, H1))
    assert sent_to(out) == {"b", "mirror"}


def test_push_and_pop_keep_vnet_checksum_offsets_right():
    sw = Switch()
    sw.add("a", vlan=10)
    sw.add("t", trunks=(10,))
    partial = struct.pack("<BBHHHH", 1, 0, 0, 0, 34, 16)     # NEEDS_CSUM, csum_start after Ethernet+IP
    out = sw.rx("a", frame(BCAST, H1, vnet=partial))
    start = struct.unpack_from("<H", out["t"][0]["vnet"], 6)[0]
    assert start == 38
    out = sw.rx("t", frame(BCAST, H2, vlan=10, vnet=struct.pack("<BBHHHH", 1, 0, 0, 0, 38, 16)))
    assert struct.unpack_from("<H", out["a"][0]["vnet"], 6)[0] == 34


def test_reconfiguring_a_port_forgets_what_it_learned():
    sw = Switch()
    a = sw.add("a", vlan=10)
    sw.add("b", vlan=10)
    sw.rx("a", frame(BCAST, H1))
    a.configure(vlan=20)
    sw.bridge.reconfigured(a)
    assert sent_to(sw.rx("b", frame(H1, H2))) == set()


def test_counters():
    sw = Switch()
    a = sw.add("a")
    b = sw.add("b")
    sw.rx("a", frame(BCAST, H1, payload=b"x" * 100))
    assert (a.rx_packets, a.rx_bytes) == (1, 114)
    assert b.rx_packets == 0


def test_mac_flood_keeps_fdb_bounded_and_known_hosts_unicast():
    sw = Switch(fdb_limit=64)
    for name in ("a", "b", "attacker"):
        sw.add(name)
    sw.rx("a", frame(BCAST, H1))
    for i in range(5000):
        sw.rx("attacker", frame(BCAST, f"02:aa:00:00:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"))
    assert len(sw.bridge.fdb) == 64
    assert sent_to(sw.rx("b", frame(H1, H2))) == {"a"}


def test_the_largest_frame_a_port_can_deliver_still_gets_its_tag():
    from vswitch.daemon.datapath import MAX_FRAME
    sw = Switch(mtu=1500)
    sw.add("a", vlan=10)
    sw.add("t", trunks=(10,))
    gso = struct.pack("<BBHHHH", 1, 4, 54, 1448, 34, 16)
    data = frame(BCAST, H1, payload=b"g" * (MAX_FRAME - 14), vnet=gso)
    out = sw.rx("a", data)
    assert out["t"][0]["vlan"] == 10 and len(out["t"][0]["payload"]) == MAX_FRAME - 14
