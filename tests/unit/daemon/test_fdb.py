from __future__ import annotations

from vswitch.daemon.fdb import Fdb

A, B, C = object(), object(), object()


def m(i: int) -> bytes:
    return bytes([0x02, 0, 0, 0, i >> 8 & 0xFF, i & 0xFF])


def test_learn_lookup_and_move():
    fdb = Fdb(limit=10, ageing=300)
    fdb.learn(10, m(1), A, now=0)
    assert fdb.lookup(10, m(1), now=1) is A
    assert fdb.lookup(20, m(1), now=1) is None, "entries are per VLAN"
    fdb.learn(10, m(1), B, now=2)
    assert fdb.lookup(10, m(1), now=2) is B
    assert len(fdb) == 1


def test_entries_age_out_and_expire_frees_them():
    fdb = Fdb(limit=10, ageing=5)
    fdb.learn(1, m(1), A, now=0)
    fdb.learn(1, m(2), A, now=4)
    assert fdb.lookup(1, m(1), now=6) is None
    assert fdb.lookup(1, m(2), now=6) is A
    assert fdb.expire(now=6) == 1
    assert len(fdb) == 1
    assert [e[2] for e in fdb.entries(now=6)] == [m(2)]


def test_mac_flood_stays_bounded_and_keeps_other_ports_entries():
    fdb = Fdb(limit=100, ageing=300)
    fdb.learn(1, m(1), A, now=0)          # a known host
    fdb.add_static(1, m(2), B)             # a port-security VIF
    for i in range(10, 50_000):           # a flood of random sources from C
        fdb.learn(1, m(i), C, now=1)
    assert len(fdb) == 100
    assert sum(len(t) for t in fdb.vlans.values()) == 101   # 100 learned + 1 static
    assert fdb.lookup(1, m(1), now=2) is A, "a flood on one port must not evict hosts learned elsewhere"
    assert fdb.lookup(1, m(2), now=2) is B, "static entries are never evicted"
    assert fdb.evictions == 50_000 - 10 - 99


def test_full_table_makes_room_for_a_new_port_from_the_biggest():
    fdb = Fdb(limit=3, ageing=300)
    for i in range(3):
        fdb.learn(1, m(i), C, now=0)
    fdb.learn(1, m(100), A, now=1)
    assert fdb.lookup(1, m(100), now=1) is A
    assert fdb.lookup(1, m(0), now=1) is None, "the oldest entry of the fullest port went"
    assert len(fdb) == 3


def test_limit_zero_learns_nothing():
    fdb = Fdb(limit=0)
    fdb.learn(1, m(1), A, now=0)
    assert fdb.lookup(1, m(1), now=0) is None
    assert fdb.refused == 1


def test_static_entries_are_not_moved_by_learning_nor_aged():
    fdb = Fdb(limit=10, ageing=1)
    fdb.add_static(1, m(1), A)
    fdb.learn(1, m(1), B, now=100)
    assert fdb.lookup(1, m(1), now=1000) is A
    fdb.expire(now=1000)
    assert fdb.lookup(1, m(1), now=1000) is A


def test_flush_port_and_flush():
    fdb = Fdb(limit=10, ageing=300)
    fdb.learn(1, m(1), A, now=0)
    fdb.learn(1, m(2), B, now=0)
    fdb.add_static(1, m(3), A)
    assert fdb.flush_port(A) == 2
    assert fdb.lookup(1, m(1), now=0) is None and fdb.lookup(1, m(3), now=0) is None
    assert fdb.lookup(1, m(2), now=0) is B
    fdb.flush()
    assert len(fdb) == 0


def test_ageing_zero_expire_flushes_everything_learned():
    fdb = Fdb(limit=10, ageing=300)
    fdb.learn(1, m(1), A, now=0)
    fdb.ageing = 0
    fdb.expire(now=0)
    assert len(fdb) == 0


def test_flush_of_one_vlan_keeps_the_others_and_static_entries():
    fdb = Fdb(limit=10, ageing=300)
    fdb.learn(5, m(1), A, now=0)
    fdb.learn(5, m(2), B, now=0)
    fdb.learn(6, m(1), A, now=0)
    fdb.add_static(5, m(3), B)
    assert fdb.flush(vlan=5) == 2
    assert fdb.lookup(5, m(1), now=0) is None and fdb.lookup(5, m(2), now=0) is None
    assert fdb.lookup(5, m(3), now=0) is B, "static entries survive a flush"
    assert fdb.lookup(6, m(1), now=0) is A
    assert len(fdb) == 1 and fdb.by_port == {A: {(6, m(1)): None}}, "the per-port index follows"
    assert fdb.flush(vlan=7) == 0, "a VLAN with no table has nothing to flush"
    assert fdb.flush() == 1 and len(fdb) == 0
