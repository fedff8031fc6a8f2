"""The switch programs and their maps as one object: what the daemon's fast path drives."""
from __future__ import annotations

import os
import struct
from typing import Iterable, Optional

from . import gsoprog, switchprog, syscall

MAX_PORTS = 4096
MAX_FDB = 65536
MAX_FLOODS = 4096          # (bridge, VLAN) groups flooded in the kernel
MAX_FLOOD_MEMBERS = 1024   # ports in one such group
_IFINDEX = struct.Struct("=I")
_U64 = struct.Struct("=Q")


class SwitchProgram:
    """Maps (ports, fdb, tx devmap, flood devmaps, per-CPU stats) and the verified programs that read them."""

    def __init__(self, max_ports: int = MAX_PORTS, max_fdb: int = MAX_FDB, name: str = "vswitchd") -> None:
        made: list = []
        self.floods: dict[bytes, tuple[syscall.Map, set[int]]] = {}   # flood key -> (devmap, its ifindexes)
        self.taps: set[int] = set()     # ifindexes of TAP members: their devmap entries run ``egress_tap``
        self.echo = os.urandom(switchprog.ECHO_LEN)
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
            self.egress = syscall.Prog(syscall.PROG_XDP, switchprog.build_egress(self.ports.fd, self.stats.fd),
                                       "vswitchd_out", flags=switchprog.PROG_FLAG_HAS_FRAGS,
                                       attach_type=syscall.ATTACH_XDP_DEVMAP)
            made.append(self.egress)
            self.egress_tap = syscall.Prog(syscall.PROG_XDP, switchprog.build_egress(
                self.ports.fd, self.stats.fd, int.from_bytes(self.echo, "little")), "vswitchd_tap",
                flags=switchprog.PROG_FLAG_HAS_FRAGS, attach_type=syscall.ATTACH_XDP_DEVMAP)
            made.append(self.egress_tap)
            template = self._flood_devmap("vsw_flood_tmpl")
            try:
                self.flood = syscall.Map(syscall.MAP_HASH_OF_MAPS, switchprog.FLOOD_KEY.size, 4, MAX_FLOODS,
                                         "vsw_flood", inner=template)
            finally:
                template.close()
            made.append(self.flood)
            code = switchprog.build(self.ports.fd, self.fdb.fd, self.tx.fd, self.stats.fd, self.flood.fd)
            self.prog = syscall.Prog(syscall.PROG_XDP, code, name, flags=switchprog.PROG_FLAG_HAS_FRAGS)
        except Exception:
            for table in made:
                table.close()
            raise
        self.max_fdb = max_fdb
        self.gso: Optional[tuple[syscall.Map, syscall.Prog, syscall.Prog]] = None   # hand-off, filter, tc
        self.gso_reason = ""
        self._load_gso(name)

    def _load_gso(self, name: str) -> None:
        """The GSO path's programs (gsoprog.py); without them super-frames keep going up to Python."""
        made: list = []
        try:
            handoff = syscall.Map(syscall.MAP_PERCPU_ARRAY, 4, gsoprog.HANDOFF.size, 1, "vsw_handoff")
            made.append(handoff)
            sockfilter = syscall.Prog(syscall.PROG_SOCKET_FILTER, gsoprog.build_filter(
                self.ports.fd, self.fdb.fd, self.stats.fd, handoff.fd), name[:12] + "_sf")
            made.append(sockfilter)
            tc = syscall.Prog(syscall.PROG_SCHED_CLS, gsoprog.build_tc(handoff.fd), name[:12] + "_tc")
        except OSError as err:
            for obj in made:
                obj.close()
            self.gso_reason = f"the skb path's programs did not load: {err}"
            return
        self.gso = (handoff, sockfilter, tc)

    # -- ports ---------------------------------------------------------------------------------------
    def set_port(self, ifindex: int, *, bridge: int, mode: int, access: int = 0, native: int = switchprog.NO_VLAN,
                 untag: int = switchprog.NO_VLAN, mac: Optional[bytes] = None, limit: int = 1518,
                 trunks: Iterable[int] = (), enabled: bool = True, skb: bool = False) -> None:
        self.set_port_value(ifindex, switchprog.port_value(bridge, mode, access, native, untag, enabled, mac, limit,
                                                           trunks, skb))

    def set_port_value(self, ifindex: int, value: bytes) -> None:
        """The port's config (``switchprog.port_value``), its devmap slot and zeroed counters if it has none."""
        key = _IFINDEX.pack(ifindex)
        self.tx.update(key, key)
        if self.stats.lookup(key) is None:
            self.stats.update(key, bytes(self.stats.stored_value_size))
        self.ports.update(key, value)

    def set_tap_value(self, ifindex: int, value: bytes) -> None:
        """A TAP member's config, for the egress program only (no devmap slot: no unicast to it in the kernel)."""
        self.ports.update(_IFINDEX.pack(ifindex), value)
        self.taps.add(ifindex)

    def drop_port(self, ifindex: int) -> None:
        self.taps.discard(ifindex)
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

    # -- flooding --------------------------------------------------------------------------------------
    @staticmethod
    def _flood_devmap(name: str) -> syscall.Map:
        return syscall.Map(syscall.MAP_DEVMAP_HASH, 4, switchprog.FLOOD_VALUE.size, MAX_FLOOD_MEMBERS, name)

    def set_flood(self, bridge: int, vlan: int, ifindexes: Iterable[int]) -> None:
        """Flood (bridge, VLAN) in the kernel to exactly ``ifindexes`` (each but the ingress one)."""
        key = switchprog.flood_key(bridge, vlan)
        want = set(ifindexes)
        row = self.floods.get(key)
        if row is None:
            devmap = self._flood_devmap(f"vsw_fl{bridge}_{vlan}")
            try:
                self._fill(devmap, set(), want)
                self.flood.update(key, _IFINDEX.pack(devmap.fd))
            except Exception:
                devmap.close()
                raise
            self.floods[key] = (devmap, want)
            return
        devmap, have = row
        self._fill(devmap, have, want)

    def _fill(self, devmap: syscall.Map, have: set[int], want: set[int]) -> None:
        """Bring ``devmap`` from ``have`` to ``want`` in place (``have`` follows): added first, then removed."""
        for ifindex in sorted(want - have):
            egress = self.egress_tap if ifindex in self.taps else self.egress
            devmap.update(_IFINDEX.pack(ifindex), switchprog.FLOOD_VALUE.pack(ifindex, egress.fd))
            have.add(ifindex)
        for ifindex in sorted(have - want):
            devmap.delete(_IFINDEX.pack(ifindex))
            have.discard(ifindex)

    def drop_flood(self, key: bytes) -> None:
        row = self.floods.pop(key, None)
        if row is not None:
            self.flood.delete(key)
            row[0].close()

    def close(self) -> None:
        for key in list(self.floods):
            self.drop_flood(key)
        for obj in (self.prog, self.flood, self.egress, self.egress_tap, self.ports, self.fdb, self.tx, self.stats,
                    *(self.gso or ())):
            obj.close()
