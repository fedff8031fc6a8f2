"""The switch program and its four maps as one object: what the daemon's fast path drives."""
from __future__ import annotations

import struct
from typing import Iterable, Optional

from . import switchprog, syscall

MAX_PORTS = 4096
MAX_FDB = 65536
_IFINDEX = struct.Struct("=I")
_U64 = struct.Struct("=Q")


class SwitchProgram:
    """Maps (ports, fdb, tx devmap, per-CPU stats) and the verified program that reads them."""

    def __init__(self, max_ports: int = MAX_PORTS, max_fdb: int = MAX_FDB) -> None:
        made = []
        try:
            self.ports = syscall.Map(syscall.MAP_HASH, 4, switchprog.PORT_VALUE_SIZE, max_ports, "vsw_ports")
            made.append(self.ports)
            self.fdb = syscall.Map(syscall.MAP_HASH, switchprog.FDB_KEY.size, switchprog.FDB_VALUE.size, max_fdb,
                                   "vsw_fdb")
            made.append(self.fdb)
            self.tx = syscall.Map(syscall.MAP_DEVMAP_HASH, 4, 4, max_ports, "vsw_tx")
            made.append(self.tx)
            self.stats = syscall.Map(syscall.MAP_PERCPU_HASH, 4, switchprog.STATS_VALUE_SIZE, max_ports, "vsw_stats")
            made.append(self.stats)
            code = switchprog.build(self.ports.fd, self.fdb.fd, self.tx.fd, self.stats.fd)
            self.prog = syscall.Prog(syscall.PROG_XDP, code, "vswitchd", flags=switchprog.PROG_FLAG_HAS_FRAGS)
        except Exception:
            for table in made:
                table.close()
            raise
        self.max_fdb = max_fdb

    # -- ports ---------------------------------------------------------------------------------------
    def set_port(self, ifindex: int, *, bridge: int, mode: int, access: int = 0, native: int = switchprog.NO_VLAN,
                 untag: int = switchprog.NO_VLAN, mac: Optional[bytes] = None, limit: int = 1518,
                 trunks: Iterable[int] = (), enabled: bool = True) -> None:
        self.set_port_value(ifindex, switchprog.port_value(bridge, mode, access, native, untag, enabled, mac, limit,
                                                           trunks))

    def set_port_value(self, ifindex: int, value: bytes) -> None:
        """The port's config (``switchprog.port_value``), its devmap slot and zeroed counters if it has none."""
        key = _IFINDEX.pack(ifindex)
        self.tx.update(key, key)
        if self.stats.lookup(key) is None:
            self.stats.update(key, bytes(self.stats.stored_value_size))
        self.ports.update(key, value)

    def drop_port(self, ifindex: int) -> None:
        key = _IFINDEX.pack(ifindex)
        self.ports.delete(key)
        self.tx.delete(key)
        self.stats.delete(key)

    def counters(self, ifindex: int) -> dict[str, int]:
        per_cpu = self.stats.lookup_percpu(_IFINDEX.pack(ifindex))
        totals = dict.fromkeys(switchprog.COUNTERS, 0)
        for value in per_cpu:
            for index, name in enumerate(switchprog.COUNTERS):
                totals[name] += _U64.unpack_from(value, index * 8)[0]
        return totals

    # -- forwarding entries --------------------------------------------------------------------------
    def set_fdb(self, key: bytes, ifindex: int, seen_ns: int = 0) -> None:
        self.fdb.update(key, switchprog.FDB_VALUE.pack(ifindex, seen_ns))

    def drop_fdb(self, key: bytes) -> None:
        self.fdb.delete(key)

    def fdb_seen(self, key: bytes) -> int:
        """When the program last saw this entry's address send (ns of CLOCK_MONOTONIC; 0: never)."""
        raw = self.fdb.lookup(key)
        return switchprog.FDB_VALUE.unpack(raw)[1] if raw is not None else 0

    def close(self) -> None:
        for obj in (self.prog, self.ports, self.fdb, self.tx, self.stats):
            obj.close()
