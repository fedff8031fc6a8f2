"""The daemon's side of the kernel fast path: which ports XDP serves, and its maps kept in step.

``--datapath`` chooses: ``rings`` never loads BPF; ``auto`` (the default) loads the switch program
once and attaches it to every system port that takes it, leaving the others on the PACKET_MMAP
rings with the kernel's reason; ``xdp`` is ``auto`` that refuses to start without BPF.

The program is attached in generic (skb) mode unless ``VSWITCHD_XDP_MODE=native``: a native
redirect to a veth is dropped by the kernel unless the veth's peer (the VM's or container's end,
which is not vswitchd's to configure) runs XDP or GRO itself, and a Xen netback VIF cannot be a
native redirect target at all; generic mode transmits through the egress device's own xmit, so
every egress works.

XDP cannot see an 802.1Q tag the kernel carries in the skb's metadata instead of the frame, and in
generic mode the redirected skb keeps that tag: such a frame would be classified untagged and could
leave into another VLAN still carrying its tag. So XDP serves a port only where tags arrive inside
the frame: a NIC whose rx VLAN offload is off (vswitchd turns it off while it serves the port and
back on after, recorded so a restart after a crash still restores it), TAPs, Xen netback VIFs.
Devices that receive skbs another device built (a veth, whose peer's tx VLAN offload is on by
default; macvlan, ipvlan, bonds) and NICs whose offload cannot be turned off take the skb path
instead (``path`` "tc"): no XDP, the socket filter and tc program of bpf/gsoprog.py forward every
known unicast frame of theirs, with the tag read from the skb, and floods from them go through
Python. ``--xdp-on-veth`` (``VSWITCHD_XDP_ON_VETH=1``) puts XDP on veths too, for hosts whose veth
peers send tags inside the frame (tx VLAN offload off) or none at all.

TAP ports (internal, tap) stay on the slow path: vswitchd itself holds their file descriptor, so
XDP on the device would only see what vswitchd writes. They can still be flood members: the
kernel's copy for a TAP reaches vswitchd's read side with the program's cookie in front, and
vswitchd writes it back (``TapIO`` ``echo``), which delivers it to the host.

Python stays the control plane. The FDB mirror holds, for every bridge whose ageing is not 0,
the entries (learned or static) whose port is XDP-served or a TAP, except in VLANs with a
promiscuous member (those frames must also reach that port: Python floods them). A (bridge, VLAN)
is flooded in the kernel (a devmap of its members) only where every member is XDP-served or a TAP,
none is promiscuous or a bond, and the mirror holds all its entries: then the kernel's "unknown" is
Python's, and the flood reaches every port Python's would. Anything else (a bond, a promiscuous
member, ageing 0) floods in Python as before. The kernel floods only frames whose source is
already learned on their port, so learning stays Python's. All of it is recomputed when the slow
path has handled frames (only then can learning have changed the FDB), after transactions, and
every second; before ageing, each mirrored entry's ``seen`` time from the program refreshes
Python's entry, so hosts whose traffic only the kernel forwards do not age out.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from errno import EINVAL
from typing import Any, Optional

from .. import atomic
from . import ethtool
from .bpf import switchprog, syscall, tc, xdp
from .bpf.maps import SwitchProgram
from .datapath import MODE_ACCESS, MODE_ALL, MODE_TRUNK, Bridge, Port

log = logging.getLogger("vswitchd.fastpath")

CHOICES = ("auto", "xdp", "rings")
SYNC_INTERVAL = 0.1
_MODES = {MODE_ALL: switchprog.MODE_ALL, MODE_ACCESS: switchprog.MODE_ACCESS, MODE_TRUNK: switchprog.MODE_TRUNK}
TAP_REASON = "a TAP port: vswitchd holds its file descriptor, so its frames reach vswitchd, not XDP"
# LACP, member selection and failover are vswitchd's bond logic: a program on a member would forward around it.
BOND_REASON = "a bond: its members' frames go through vswitchd's bond logic (modes, LACP, failover)"
# Drivers whose received skbs another device built, tag metadata included (a veth peer's tx VLAN offload, a
# macvlan's or bond's lower NIC stripping tags): their own rx VLAN offload setting does not change that.
BORROWED_SKB_DRIVERS = frozenset({"veth", "netkit", "macvlan", "macvtap", "ipvlan", "ipvtap", "bonding", "team"})
PEER_DRIVERS = frozenset({"veth", "netkit"})   # of those, the pairs: --xdp-on-veth vouches for their peers
XDP_ON_VETH_ENV = "VSWITCHD_XDP_ON_VETH"   # the default of vswitchd's --xdp-on-veth


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


class GsoLink:
    """How a port's GSO tc program is attached: a tcx link (its fd) or a clsact filter (by the device)."""

    def __init__(self, kind: str, fd: int, ifindex: int, sock: socket.socket, own_qdisc: bool = False) -> None:
        self.kind, self.fd, self.ifindex, self.sock, self.own_qdisc = kind, fd, ifindex, sock, own_qdisc

    def close(self) -> None:
        if self.kind == "tcx":
            os.close(self.fd)
            return
        errno = tc.detach(self.ifindex, self.own_qdisc)
        if errno and errno != 19:   # ENODEV: the device went first
            log.warning("ifindex %d: tc filter not removed: %s", self.ifindex, os.strerror(errno))


def program_name(owner: str) -> str:
    """The port program's name, one per daemon (by its state file's owner mark): how a start finds its own
    program left on devices by a crash (bpf_prog_info.name holds 15 characters)."""
    return "vsw_" + hashlib.sha256(owner.encode()).hexdigest()[:11] if owner else "vswitchd"


class FastPath:
    def __init__(self, choice: str = "auto", owner: str = "", offload_record: str = "",
                 xdp_on_veth: bool = False) -> None:
        self.choice = choice
        self.name = program_name(owner)
        self.native = os.environ.get("VSWITCHD_XDP_MODE", "generic") == "native"
        self.xdp_on_veth = xdp_on_veth
        self.offload_record = offload_record        # devices whose rx VLAN offload this daemon turned off
        self.rxvlan_off: set[str] = set()
        self.skb_ports: set[str] = set()            # attached ports served by the skb path, not XDP
        self.prog: Optional[SwitchProgram] = None
        self.reason = ""
        self.attached: dict[str, int] = {}          # port name -> ifindex
        self.taps: dict[str, int] = {}              # TAP port name -> ifindex (flood members by echo)
        self.paths: dict[str, tuple[str, str]] = {}  # port name -> (path, why)
        self.bridge_ids: dict[int, int] = {}         # id(Bridge) -> small number in the maps' keys
        self.port_values: dict[int, bytes] = {}      # ifindex -> config written
        self.gso_links: dict[str, GsoLink] = {}      # port name -> its GSO path's tc attachment
        self.mirror: dict[bytes, tuple[int, Any, bytes, Port]] = {}   # fdb key -> (ifindex, table, mac, port)
        self.floods: dict[bytes, tuple[int, int, frozenset[int]]] = {}  # flood key -> (bridge, VLAN, members)
        self.clock_offset = _timens_monotonic_offset()
        self._last_sync = -1.0
        self._slow_seen = -1
        if choice == "rings":
            self.reason = "--datapath rings"
            return
        try:
            self.prog = SwitchProgram(name=self.name)
        except OSError as err:
            self.reason = f"BPF unavailable: {err}"
            if choice == "xdp":
                raise
            log.warning("fast path off, every port on the rings: %s", self.reason)
            return
        log.info("XDP switch program loaded (verified, %s mode)", "native" if self.native else "generic")

    # -- ports ---------------------------------------------------------------------------------------
    def remove_stale(self) -> list[str]:
        """At start, before any port opens: take this daemon's old program (a crash left it) off every device.

        From every one, not only those the state no longer holds: until a port is attached again the
        old program would flood into the TAPs with the old run's echo cookie, and this run would take
        those frames for the host's. Returns the devices it was taken off.
        """
        self._restore_offloads(self._read_offload_record())
        removed = []
        for index, name in socket.if_nameindex():
            if self.name in tc.names(index):   # a clsact filter of the GSO path (tcx links die with the process)
                errno = tc.detach(index, delete_qdisc=False)
                if errno:
                    log.warning("%s: the old tc filter is still attached: %s", name, os.strerror(errno))
            found = xdp.query(index)
            if found is None or syscall.prog_name(found[1]) != self.name:
                continue
            errno = xdp.detach(index)
            if errno:
                log.warning("%s: the old XDP program is still attached: %s", name, os.strerror(errno))
                continue
            log.info("%s: removed the XDP program a previous run left", name)
            removed.append(name)
        return removed

    def port_ready(self, port: Port, io: Any) -> None:
        """``port`` has its io open (again): attach the program where it can serve it."""
        if getattr(io, "kind", "") != "system":
            self.paths[port.name] = ("rings", TAP_REASON)
            if self.prog is not None and hasattr(io, "echo"):
                try:
                    self.taps[port.name] = socket.if_nametoindex(port.name)
                except OSError:
                    return
                io.echo = self.prog.echo
                self._last_sync = -1.0
            return
        if self.prog is None:
            self.paths[port.name] = ("rings", self.reason)
            return
        if port.name in self.attached:
            return
        why = self._tags_inline(port.name)
        if not why:
            errno, text = xdp.attach(io.ifindex, self.prog.prog.fd, native=self.native)
            if not errno:
                self.attached[port.name] = io.ifindex
                ok, gso = self._attach_gso(port.name, io)
                gso = f"GSO super-frames by tc ({gso})" if ok else f"GSO super-frames on the rings: {gso}"
                self.paths[port.name] = ("xdp", f"{'native' if self.native else 'generic'}; {gso}")
                self._last_sync = -1.0
                return
            self._restore_offloads({port.name} & self.rxvlan_off)
            why = f"XDP refused: {os.strerror(errno)}" + (f" ({text})" if text else "")
        ok, skb = self._attach_gso(port.name, io)
        if not ok:
            self.paths[port.name] = ("rings", f"{why}; {skb}")
            log.warning("port %s stays on the rings: %s; %s", port.name, why, skb)
            return
        self.attached[port.name] = io.ifindex
        self.skb_ports.add(port.name)
        self.paths[port.name] = ("tc", f"{why}; known unicast by tc ({skb}), floods by vswitchd")
        self._last_sync = -1.0

    def _tags_inline(self, name: str) -> str:
        """'' where every 802.1Q tag the device receives is inside the frame, as XDP needs (turning the
        device's rx VLAN offload off for that); else why not."""
        driver = ethtool.driver(name)
        if driver in BORROWED_SKB_DRIVERS and not (self.xdp_on_veth and driver in PEER_DRIVERS):
            return (f"XDP not used: a {driver} device, whose 802.1Q tags can arrive outside the frame"
                    " (VLAN offload of the device that built the skb), where XDP cannot see them")
        if not ethtool.rx_vlan_offload(name):
            return ""
        errno = ethtool.set_rx_vlan_offload(name, False)
        if errno:
            return f"XDP not used: rx VLAN offload is on and could not be turned off ({os.strerror(errno)})"
        log.info("port %s: rx VLAN offload turned off while XDP serves it", name)
        self.rxvlan_off.add(name)
        self._write_offload_record()
        return ""

    def _read_offload_record(self) -> set[str]:
        try:
            with open(self.offload_record, encoding="utf-8") as handle:
                names = json.load(handle)
        except (OSError, ValueError):
            return set()
        return {name for name in names if isinstance(name, str)} if isinstance(names, list) else set()

    def _write_offload_record(self) -> None:
        """Durably (a crash must not lose it), so the next start turns each offload back on."""
        if not self.offload_record:
            return
        try:
            atomic.write(self.offload_record, json.dumps(sorted(self.rxvlan_off)), mode=0o600)
        except OSError as err:
            log.warning("%s: not written (%s): a crash would leave rx VLAN offload off on %s",
                        self.offload_record, err.strerror, ", ".join(sorted(self.rxvlan_off)))

    def _restore_offloads(self, names: set[str]) -> None:
        """Turn rx VLAN offload back on where this daemon (or a run before it) turned it off."""
        for name in sorted(names):
            errno = ethtool.set_rx_vlan_offload(name, True)
            if errno and errno != 19:   # ENODEV: the device is gone, and its setting with it
                log.warning("port %s: rx VLAN offload not turned back on: %s", name, os.strerror(errno))
            self.rxvlan_off.discard(name)
        if names:
            self._write_offload_record()

    def _attach_gso(self, name: str, io: Any) -> tuple[bool, str]:
        """The skb path for the port (bpf/gsoprog.py): the tc program on its ingress first (a tcx link; a
        clsact filter on kernels before 6.6), then the filter on its ring socket (the other order would keep
        frames from Python with nothing to send them). Whether it is attached, and what to show."""
        if self.prog is None or self.prog.gso is None:
            return False, self.prog.gso_reason if self.prog is not None else self.reason
        _handoff, sockfilter, prog = self.prog.gso
        try:
            link = GsoLink("tcx", syscall.tcx_attach(prog.fd, io.ifindex), io.ifindex, io.sock)
        except OSError as err:
            if err.errno != EINVAL:   # EINVAL: this kernel has no tcx attach type
                return False, f"tc refused ({os.strerror(err.errno)})"
            errno, text, created = tc.attach(io.ifindex, prog.fd, self.name)
            if errno:
                return False, f"tc refused ({os.strerror(errno)}" + (f": {text})" if text else ")")
            link = GsoLink("clsact", -1, io.ifindex, io.sock, created)
        try:
            io.sock.setsockopt(socket.SOL_SOCKET, syscall.SO_ATTACH_BPF, sockfilter.fd)
        except OSError as err:
            link.close()
            return False, f"the socket filter was refused ({os.strerror(err.errno)})"
        self.gso_links[name] = link
        return True, link.kind

    def _detach_gso(self, name: str) -> None:
        """Filter off first (while tc is still there every frame it keeps from Python is sent), then tc."""
        link = self.gso_links.pop(name, None)
        if link is None:
            return
        if link.sock.fileno() >= 0:
            try:
                link.sock.setsockopt(socket.SOL_SOCKET, syscall.SO_DETACH_BPF, 0)
            except OSError as err:
                log.debug("port %s: socket filter: %s", name, err)
        link.close()

    def bond_ready(self, name: str) -> None:
        """A bond port: served by the rings, said so in ``show``."""
        self.paths[name] = ("rings", BOND_REASON)

    def port_gone(self, name: str) -> None:
        """The port's io is closing (deleted, lost, or the daemon stops): take the program off it."""
        self.paths.pop(name, None)
        tap = self.taps.pop(name, None)
        ifindex = self.attached.pop(name, None)
        if self.prog is None:
            return
        if tap is not None:
            self._forget(tap)
        if ifindex is None:
            return
        self._detach_gso(name)
        self._forget(ifindex)
        if name in self.skb_ports:
            self.skb_ports.discard(name)
            return
        errno = xdp.detach(ifindex)
        if errno and errno != 19:   # ENODEV: the device went first
            log.warning("port %s: XDP program not removed: %s", name, os.strerror(errno))
        self._restore_offloads({name} & self.rxvlan_off)

    def _forget(self, ifindex: int) -> None:
        """No entry, flood group or config left for ``ifindex`` in the maps."""
        if self.prog is None:
            return
        for key in [k for k, row in self.mirror.items() if row[0] == ifindex]:
            self.prog.drop_fdb(key)
            del self.mirror[key]
        # Out of every flood group at once; the next sync decides whether the VLAN still floods in the kernel.
        for key, (number, vlan, members) in list(self.floods.items()):
            if ifindex in members:
                self.floods[key] = (number, vlan, members - {ifindex})
                self.prog.set_flood(number, vlan, members - {ifindex})
        self.prog.drop_port(ifindex)
        self.port_values.pop(ifindex, None)
        self._last_sync = -1.0

    def path_of(self, name: str) -> dict[str, str]:
        path, why = self.paths.get(name, ("rings", "no device open"))
        return {"path": path, "why": why}

    def counters(self, name: str) -> dict[str, int]:
        ifindex = self.attached.get(name)
        if ifindex is None or self.prog is None:
            return {}
        return {**self.prog.counters(ifindex), "skb_path": int(name in self.skb_ports)}

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
        # Where an entry's frames go in the kernel: XDP-served ports (unicast and floods), TAPs (floods only:
        # their config says disabled, so unicast to them goes up), so a VLAN's "unknown" is Python's.
        served = {ifindex: name for name, ifindex in [*self.attached.items(), *self.taps.items()]}
        members_of = {**self.taps, **self.attached}
        want: dict[bytes, tuple[int, Any, bytes, Port]] = {}
        floods: dict[bytes, tuple[int, int, frozenset[int]]] = {}
        for bridge in bridges.values():
            number = self._bridge_id(bridge)
            ports = {port.name: port for port in bridge.ports.values()}
            for name, port in ports.items():
                ifindex = self.attached.get(name)
                if ifindex is not None:
                    self._write_port(ifindex, number, port, bridge.mtu)
                elif name in self.taps:
                    self._write_port(self.taps[name], number, port, bridge.mtu, tap=True)
            if bridge.ageing <= 0:
                continue
            # A VLAN the kernel can flood has a table: it floods only frames whose source the mirror holds.
            for vlan, table in bridge.fdb.vlans.items():
                members = [p for p in ports.values() if p.member(vlan)]
                if any(p.promisc for p in members):
                    continue
                complete = True
                for mac, entry in table.items():
                    port = entry[0]
                    if not entry[2] and now - entry[1] > bridge.ageing:
                        continue
                    ifindex = members_of.get(port.name)
                    if ifindex is None or served.get(ifindex) != port.name:
                        complete = False
                        continue
                    want[switchprog.fdb_key(number, vlan, mac)] = (ifindex, table, mac, port)
                if complete and len(members) > 1 and all(p.name in members_of for p in members):
                    floods[switchprog.flood_key(number, vlan)] = (
                        number, vlan, frozenset(members_of[p.name] for p in members))
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
                    number, vlan = switchprog.FDB_KEY.unpack(key)[:2]
                    floods.pop(switchprog.flood_key(number, vlan), None)   # its "unknown" would not be Python's
                    continue
            self.mirror[key] = row
        self._sync_floods(floods)

    def _sync_floods(self, floods: dict[bytes, tuple[int, int, frozenset[int]]]) -> None:
        """Kernel flood groups as computed: gone ones first, then changed or new ones (in place)."""
        if self.prog is None:
            return
        for key in [k for k in self.floods if k not in floods]:
            self.prog.drop_flood(key)
            del self.floods[key]
        for key, row in floods.items():
            if self.floods.get(key) != row:
                try:
                    self.prog.set_flood(row[0], row[1], row[2])
                except OSError as err:   # out of room: this VLAN floods in Python
                    log.debug("flood group: %s", err)
                    self.prog.drop_flood(key)
                    self.floods.pop(key, None)
                    continue
                self.floods[key] = row

    def _write_port(self, ifindex: int, bridge: int, port: Port, mtu: int, tap: bool = False) -> None:
        untag = port.untag if port.untag >= 0 else switchprog.NO_VLAN
        native = port.native if port.native >= 0 else switchprog.NO_VLAN
        value = switchprog.port_value(bridge, _MODES[port.mode], port.access, native, untag, not tap, port.mac,
                                      mtu + 14, port.trunks, skb=port.name in self.skb_ports)
        if self.prog is not None and self.port_values.get(ifindex) != value:
            if tap:
                self.prog.set_tap_value(ifindex, value)
            else:
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
