"""The forwarding database of one bridge: (VLAN, MAC) -> port, bounded and ageing.

Entries are small lists ``[port, last_seen, static]`` kept in one dict per VLAN keyed
by the 6-byte MAC, so the per-frame path does two dict lookups and no allocation when
a source is already known. The table is bounded: learned entries never exceed
``limit``. When it is full, a new address evicts the oldest entry learned on the same
port (a port flooding random sources only churns its own entries, so hosts learned
elsewhere stay known); a port with no entries evicts from the port holding the most.
Static entries (ports declared with a MAC) do not count towards the limit, are never
evicted, never aged and never moved by learning.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional

from ..settings import BRIDGE

DEFAULT_LIMIT = 8192
ENTRY_PORT, ENTRY_SEEN, ENTRY_STATIC = 0, 1, 2


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def mac_bytes(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


class Fdb:
    def __init__(self, limit: int = DEFAULT_LIMIT, ageing: float = BRIDGE["ageing_time"].default) -> None:
        if limit < 0:
            raise ValueError("fdb limit must be >= 0")
        self.limit = limit
        self.ageing = ageing
        self.vlans: dict[int, dict[bytes, list[Any]]] = {}
        # Learned keys per port, in insertion order: the eviction order and the flush index.
        self.by_port: dict[Any, dict[tuple[int, bytes], None]] = {}
        self.static_by_port: dict[Any, set[tuple[int, bytes]]] = {}
        self.learned = 0
        self.evictions = 0
        self.refused = 0

    def table(self, vlan: int) -> dict[bytes, list[Any]]:
        tbl = self.vlans.get(vlan)
        if tbl is None:
            tbl = self.vlans[vlan] = {}
        return tbl

    # -- learning (called from the datapath) -------------------------------------------------
    def learn(self, vlan: int, mac: bytes, port: Any, now: float) -> None:
        """Record that ``mac`` was seen on ``port`` in ``vlan`` (slow path of the datapath)."""
        tbl = self.table(vlan)
        entry = tbl.get(mac)
        if entry is not None:
            if entry[ENTRY_STATIC]:
                return
            if entry[ENTRY_PORT] is port:
                entry[ENTRY_SEEN] = now
                return
            self._unlink(vlan, mac, entry)
            del tbl[mac]
        if self.learned >= self.limit and not self._evict(port):
            self.refused += 1
            return
        tbl[mac] = [port, now, False]
        keys = self.by_port.get(port)
        if keys is None:
            keys = self.by_port[port] = {}
        keys[(vlan, mac)] = None
        self.learned += 1

    def _unlink(self, vlan: int, mac: bytes, entry: list[Any]) -> None:
        keys = self.by_port.get(entry[ENTRY_PORT])
        if keys is not None:
            keys.pop((vlan, mac), None)
            if not keys:
                del self.by_port[entry[ENTRY_PORT]]
        self.learned -= 1

    def _evict(self, port: Any) -> bool:
        victims = self.by_port.get(port)
        if not victims:
            if not self.by_port:
                return False
            victims = max(self.by_port.values(), key=len)
        vlan, mac = next(iter(victims))
        entry = self.vlans[vlan].pop(mac)
        self._unlink(vlan, mac, entry)
        self.evictions += 1
        return True

    def lookup(self, vlan: int, mac: bytes, now: float) -> Optional[Any]:
        tbl = self.vlans.get(vlan)
        entry = tbl.get(mac) if tbl is not None else None
        if entry is None:
            return None
        if entry[ENTRY_STATIC] or now - entry[ENTRY_SEEN] <= self.ageing:
            return entry[ENTRY_PORT]
        return None

    # -- static entries and housekeeping ---------------------------------------------------
    def add_static(self, vlan: int, mac: bytes, port: Any) -> None:
        tbl = self.table(vlan)
        old = tbl.get(mac)
        if old is not None:
            if old[ENTRY_STATIC]:
                self.static_by_port.get(old[ENTRY_PORT], set()).discard((vlan, mac))
            else:
                self._unlink(vlan, mac, old)
        tbl[mac] = [port, 0.0, True]
        self.static_by_port.setdefault(port, set()).add((vlan, mac))

    def flush_port(self, port: Any) -> int:
        """Forget everything learned on, or statically bound to, ``port``."""
        removed = 0
        for vlan, mac in list(self.by_port.get(port, ())):
            entry = self.vlans[vlan].pop(mac)
            self._unlink(vlan, mac, entry)
            removed += 1
        for vlan, mac in self.static_by_port.pop(port, set()):
            tbl = self.vlans.get(vlan)
            if tbl is not None and tbl.get(mac, [None])[ENTRY_PORT] is port:
                del tbl[mac]
                removed += 1
        return removed

    def flush(self, vlan: Optional[int] = None) -> int:
        """Forget every learned entry, or those of ``vlan`` only (static ones stay); returns how many went."""
        if vlan is not None:
            return self._flush_vlan(vlan)
        removed = 0
        for port in list(self.by_port):
            for key_vlan, mac in list(self.by_port.get(port, ())):
                entry = self.vlans[key_vlan].pop(mac)
                self._unlink(key_vlan, mac, entry)
                removed += 1
        return removed

    def _flush_vlan(self, vlan: int) -> int:
        # Walk that VLAN's table rather than the per-port index: a VLAN network's flush then costs
        # its own entries, not the whole shared table's.
        tbl = self.vlans.get(vlan)
        if tbl is None:
            return 0
        learned = [mac for mac, entry in tbl.items() if not entry[ENTRY_STATIC]]
        for mac in learned:
            self._unlink(vlan, mac, tbl.pop(mac))
        return len(learned)

    def expire(self, now: float) -> int:
        """Drop learned entries older than the ageing time; returns how many went."""
        if self.ageing <= 0:
            count = self.learned
            self.flush()
            return count
        gone = 0
        ageing = self.ageing
        for keys in list(self.by_port.values()):
            for vlan, mac in list(keys):
                entry = self.vlans[vlan][mac]
                if now - entry[ENTRY_SEEN] > ageing:
                    del self.vlans[vlan][mac]
                    self._unlink(vlan, mac, entry)
                    gone += 1
        for vlan in [v for v, tbl in self.vlans.items() if not tbl]:
            del self.vlans[vlan]
        return gone

    def entries(self, now: float) -> Iterator[tuple[Any, int, bytes, Optional[float], bool]]:
        """(port, vlan, mac, age, static) for every live entry."""
        for vlan, tbl in sorted(self.vlans.items()):
            for mac, (port, seen, static) in tbl.items():
                if static:
                    yield port, vlan, mac, None, True
                elif self.ageing > 0 and now - seen <= self.ageing:
                    yield port, vlan, mac, max(0.0, now - seen), False

    def __len__(self) -> int:
        return self.learned
