"""The daemon's side of the kernel fast path: which ports XDP serves, and its maps kept in step.

``--datapath`` chooses: ``rings`` never loads BPF; ``auto`` (the default) loads the switch program
once and attaches it to every system port that takes it, leaving the others on the PACKET_MMAP
rings with the kernel's reason; ``xdp`` is ``auto`` that refuses to start without BPF.

The program is attached in generic (skb) mode unless ``VSWITCHD_XDP_MODE=native``: a native
redirect to a veth is dropped by the kernel unless the veth's peer (the VM's or container's end,
which is not vswitchd's to configure) runs XDP or GRO itself, and a Xen netback VIF cannot be a
native redirect target at all; generic mode transmits through the egress device's own xmit, so
every egress works. TAP ports (internal, tap) stay on the slow path: vswitchd itself holds their
file descriptor, so XDP on the device would only see what vswitchd writes.

Python stays the control plane. The FDB mirror holds, for every bridge whose ageing is not 0,
the entries (learned or static) whose port is XDP-served, except in VLANs with a promiscuous
member (those frames must also reach that port: Python floods them). It is recomputed when the
slow path has handled frames (only then can learning have changed the FDB), after transactions,
and every second; before ageing, each mirrored entry's ``seen`` time from the program refreshes
Python's entry, so hosts whose traffic only the kernel forwards do not age out.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Optional

from .bpf import switchprog, xdp
from .bpf.maps import SwitchProgram
from .datapath import MODE_ACCESS, MODE_ALL, MODE_TRUNK, Bridge, Port

log = logging.getLogger("vswitchd.fastpath")

CHOICES = ("auto", "xdp", "rings")
SYNC_INTERVAL = 0.1
_MODES = {MODE_ALL: switchprog.MODE_ALL, MODE_ACCESS: switchprog.MODE_ACCESS, MODE_TRUNK: switchprog.MODE_TRUNK}
TAP_REASON = "a TAP port: vswitchd holds its file descriptor, so its frames reach vswitchd, not XDP"
# LACP, member selection and failover are vswitchd's bond logic: a program on a member would forward around it.
BOND_REASON = "a bond: its members' frames go through vswitchd's bond logic (modes, LACP, failover)"


def _timens_monotonic_offset() -> float:
    """CLOCK_MONOTONIC of this process minus the kernel's (nonzero only inside a time namespace)."""
    try:
        with open("/proc/self/timens_offsets", encoding="ascii") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) == 3 and parts[0] in ("monotonic", "1"):
                    return int(parts[1]) + int(parts[2]) / 1e9
    except OSError:
        pass
    return 0.0


class FastPath:
    def __init__(self, choice: str = "auto") -> None:
        self.choice = choice
        self.native = os.environ.get("VSWITCHD_XDP_MODE", "generic") == "native"
        self.prog: Optional[SwitchProgram] = None
        self.reason = ""
        self.attached: dict[str, int] = {}          # port name -> ifindex
        self.paths: dict[str, tuple[str, str]] = {}  # port name -> (path, why)
        self.bridge_ids: dict[int, int] = {}         # id(Bridge) -> small number in the maps' keys
        self.port_values: dict[int, bytes] = {}      # ifindex -> config written
        self.mirror: dict[bytes, tuple[int, Any, bytes, Port]] = {}   # fdb key -> (ifindex, table, mac, port)
        self.clock_offset = _timens_monotonic_offset()
        self._last_sync = -1.0
        self._slow_seen = -1
        if choice == "rings":
            self.reason = "--datapath rings"
            return
        try:
            self.prog = SwitchProgram()
        except OSError as err:
            self.reason = f"BPF unavailable: {err}"
            if choice == "xdp":
                raise
            log.warning("fast path off, every port on the rings: %s", self.reason)
            return
        log.info("XDP switch program loaded (verified, %s mode)", "native" if self.native else "generic")

    # -- ports ---------------------------------------------------------------------------------------
    def port_ready(self, port: Port, io: Any) -> None:
        """``port`` has its io open (again): attach the program where it can serve it."""
        if getattr(io, "kind", "") != "system":
            self.paths[port.name] = ("rings", TAP_REASON)
            return
        if self.prog is None:
            self.paths[port.name] = ("rings", self.reason)
            return
        if port.name in self.attached:
            return
        errno, text = xdp.attach(io.ifindex, self.prog.prog.fd, native=self.native)
        if errno:
            why = f"XDP refused: {os.strerror(errno)}" + (f" ({text})" if text else "")
            self.paths[port.name] = ("rings", why)
            log.warning("port %s stays on the rings: %s", port.name, why)
            return
        self.attached[port.name] = io.ifindex
        self.paths[port.name] = ("xdp", "native" if self.native else "generic")
        self._last_sync = -1.0

    def bond_ready(self, name: str) -> None:
        """A bond port: served by the rings, said so in ``show``."""
        self.paths[name] = ("rings", BOND_REASON)

    def port_gone(self, name: str) -> None:
        """The port's io is closing (deleted, lost, or the daemon stops): take the program off it."""
        ifindex = self.attached.pop(name, None)
        self.paths.pop(name, None)
        if ifindex is None or self.prog is None:
            return
        for key in [k for k, row in self.mirror.items() if row[0] == ifindex]:
            self.prog.drop_fdb(key)
            del self.mirror[key]
        self.prog.drop_port(ifindex)
        self.port_values.pop(ifindex, None)
        errno = xdp.detach(ifindex)
        if errno and errno != 19:   # ENODEV: the device went first
            log.warning("port %s: XDP program not removed: %s", name, os.strerror(errno))
        self._last_sync = -1.0

    def path_of(self, name: str) -> dict[str, str]:
        path, why = self.paths.get(name, ("rings", "no device open"))
        return {"path": path, "why": why}

    def counters(self, name: str) -> dict[str, int]:
        ifindex = self.attached.get(name)
        if ifindex is None or self.prog is None:
            return {}
        return self.prog.counters(ifindex)

    # -- keeping the maps in step ----------------------------------------------------------------------
    def _bridge_id(self, bridge: Bridge) -> int:
        number = self.bridge_ids.get(id(bridge))
        if number is None:
            number = self.bridge_ids[id(bridge)] = len(self.bridge_ids) + 1
        return number

    def sync(self, now: float, bridges: dict[str, Bridge], slow_frames: int, force: bool = False) -> None:
        """Write port configs and the FDB mirror when anything they depend on may have changed."""
        if self.prog is None or not self.attached:
            return
        if not force and slow_frames == self._slow_seen and self._last_sync >= 0:
            return
        self._slow_seen = slow_frames
        self._last_sync = now
        served = {ifindex: name for name, ifindex in self.attached.items()}
        want: dict[bytes, tuple[int, Any, bytes, Port]] = {}
        for bridge in bridges.values():
            number = self._bridge_id(bridge)
            ports = {port.name: port for port in bridge.ports.values()}
            for name, port in ports.items():
                ifindex = self.attached.get(name)
                if ifindex is not None:
                    self._write_port(ifindex, number, port, bridge.mtu)
            if bridge.ageing <= 0:
                continue
            for vlan, table in bridge.fdb.vlans.items():
                if any(p.promisc and p.member(vlan) for p in ports.values()):
                    continue
                for mac, entry in table.items():
                    port = entry[0]
                    ifindex = self.attached.get(port.name)
                    if ifindex is None or served.get(ifindex) != port.name:
                        continue
                    if entry[2] or now - entry[1] <= bridge.ageing:
                        want[switchprog.fdb_key(number, vlan, mac)] = (ifindex, table, mac, port)
        for key in [k for k in self.mirror if k not in want]:
            self.prog.drop_fdb(key)
            del self.mirror[key]
        for key, row in want.items():
            old = self.mirror.get(key)
            if old is None or old[0] != row[0]:
                try:
                    self.prog.set_fdb(key, row[0])
                except OSError as err:   # the map is full (E2BIG): the rest stays on the slow path
                    log.debug("fdb mirror: %s", err)
                    continue
            self.mirror[key] = row

    def _write_port(self, ifindex: int, bridge: int, port: Port, mtu: int) -> None:
        untag = port.untag if port.untag >= 0 else switchprog.NO_VLAN
        native = port.native if port.native >= 0 else switchprog.NO_VLAN
        value = switchprog.port_value(bridge, _MODES[port.mode], port.access, native, untag, True, port.mac,
                                      mtu + 14, port.trunks)
        if self.prog is not None and self.port_values.get(ifindex) != value:
            self.prog.set_port_value(ifindex, value)
            self.port_values[ifindex] = value

    def refresh(self) -> None:
        """Carry the kernel's last-seen times into Python's FDB (before it ages)."""
        if self.prog is None:
            return
        for key, (_ifindex, table, mac, port) in list(self.mirror.items()):
            seen_ns = self.prog.fdb_seen(key)
            if not seen_ns:
                continue
            seen = seen_ns / 1e9 + self.clock_offset
            entry = table.get(mac)
            if entry is not None and entry[0] is port and not entry[2] and seen > entry[1]:
                entry[1] = seen

    def close(self) -> None:
        for name in list(self.attached):
            self.port_gone(name)
        if self.prog is not None:
            self.prog.close()
            self.prog = None
