"""Port I/O: TAP devices (``internal`` and ``tap`` ports) and AF_PACKET (``system`` ports).

Standard library only: TAPs come from /dev/net/tun ioctls, links are set up, sized and
addressed with SIOCSIF* ioctls, system ports are read through a PACKET_MMAP
(TPACKET_V2) receive ring, so a burst of frames costs one wake-up and no syscall per
frame. Every port speaks the virtio-net header so offloaded (partial checksum, GSO)
frames are forwarded whole and segmented by the kernel only where needed.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import socket
import struct
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from io import FileIO
from typing import TYPE_CHECKING, Any, Optional

from ..errors import BackendError, ConflictError, NotFoundError
from ..rtnl import (
    IFF_UP,
    IPV4_DEVCONF_ARP_IGNORE,
    Channel,
    dump_links,
    setlink_addr_gen_mode_none,
    setlink_alias,
    setlink_inet_conf,
)
from .datapath import MAX_FRAME, TPID_8021AD, VNET, Port, fix_vnet

if TYPE_CHECKING:   # for hints only: loop.py imports this module (the loop owns the queues and the closer)
    from .loop import EventLoop

log = logging.getLogger("vswitchd.ports")

SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
SIOCGIFMTU, SIOCSIFMTU = 0x8921, 0x8922
SIOCSIFHWADDR, SIOCGIFHWADDR = 0x8924, 0x8927
ARPHRD_ETHER = 1
TUNSETIFF, TUNSETOFFLOAD, TUNSETPERSIST = 0x400454CA, 0x400454D0, 0x400454CB
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN = 0x01, 0x02, 0x04, 0x08

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC = 1, 1
PACKET_RX_RING, PACKET_VERSION, PACKET_VNET_HDR, PACKET_TX_RING = 5, 10, 15, 13
PACKET_QDISC_BYPASS, PACKET_IGNORE_OUTGOING = 20, 23
TPACKET_V2 = 1
TP_STATUS_KERNEL, TP_STATUS_USER = 0, 1
TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID = 0x10, 0x40
ETH_P_ALL = 0x0003
_TPACKET2_HDR = struct.Struct("IIIHHIIHH")   # status len snaplen mac net sec nsec vlan_tci vlan_tpid
_STATUS = struct.Struct("I")
# One frame per block, big enough for a 64 KiB GSO frame plus the ring's headers.
# Receive ring: small slots, many of them, so bursts of small frames fit (512 frames in 1 MiB).
# A frame too big for a slot (a GSO super-frame) is copied whole to the socket's receive queue
# by the kernel (PACKET_COPY_THRESH) and its slot flagged TP_STATUS_COPY: it is read from there.
RING_FRAME = 2048
RING_BLOCK = 65536
RING_FRAMES = int(os.environ.get("VSWITCHD_RING_FRAMES", "512")) // (RING_BLOCK // RING_FRAME) * \
    (RING_BLOCK // RING_FRAME) or RING_BLOCK // RING_FRAME
PACKET_COPY_THRESH = 7
TP_STATUS_COPY = 0x2
COPY_RCVBUF = 8 * 1024 * 1024
SO_RCVBUFFORCE = 33
RX_BUDGET = 256   # frames handled per port per wake-up, so one busy port cannot starve the others
# Transmit ring: frames are queued in mmap'ed slots and handed to the kernel in batches by one
# send() (after each batch of the event loop, or every TX_KICK frames). Frames that do not fit
# a slot (GSO super-frames, jumbo frames) are sent directly, after flushing what is queued so
# the order on the wire is kept.
TX_FRAME = 2048
TX_BLOCK = 65536
TX_FRAMES = int(os.environ.get("VSWITCHD_TX_FRAMES", "256"))
TX_DATA = 32                       # TPACKET2_HDRLEN - sizeof(struct sockaddr_ll)
TX_MAX = TX_FRAME - TX_DATA
TX_KICK = 64
TP_STATUS_AVAILABLE, TP_STATUS_SEND_REQUEST, TP_STATUS_WRONG_FORMAT = 0, 1, 4
_LEN = struct.Struct("I")

# Byte -> 1 if it holds TP_STATUS_USER (bit 0 of a slot's little-endian status word), else 0.
_USER_BIT = bytes(b & 1 for b in range(256))

_ioctl_sock: Optional[socket.socket] = None
_netlink = Channel()   # like the ioctl socket: one per process, opened on first use


def _sock() -> socket.socket:
    global _ioctl_sock
    if _ioctl_sock is None:
        _ioctl_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    return _ioctl_sock


def _ifreq(name: str, fmt: str = "", *values: Any) -> bytes:
    head = struct.pack("16s", name.encode())
    body = struct.pack(fmt, *values) if fmt else b""
    return head + body + b"\0" * (24 - len(body))


def ifindex(name: str) -> int:
    """The interface's index in this namespace, 0 when there is none."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return 0


def get_flags(name: str) -> int:
    res = fcntl.ioctl(_sock(), SIOCGIFFLAGS, _ifreq(name, "H", 0))
    return struct.unpack_from("H", res, 16)[0]


def set_up(name: str, up: bool = True) -> None:
    flags = get_flags(name)
    new = flags | IFF_UP if up else flags & ~IFF_UP
    if new != flags:
        fcntl.ioctl(_sock(), SIOCSIFFLAGS, _ifreq(name, "H", new))


def get_mtu(name: str) -> int:
    res = fcntl.ioctl(_sock(), SIOCGIFMTU, _ifreq(name, "i", 0))
    return struct.unpack_from("i", res, 16)[0]


def set_mtu(name: str, mtu: int) -> None:
    fcntl.ioctl(_sock(), SIOCSIFMTU, _ifreq(name, "i", mtu))


def get_mac(name: str) -> str:
    res = fcntl.ioctl(_sock(), SIOCGIFHWADDR, _ifreq(name, "H6s", 0, b""))
    return ":".join(f"{b:02x}" for b in res[18:24])


def set_mac(name: str, mac: str) -> None:
    raw = bytes(int(part, 16) for part in mac.split(":"))
    fcntl.ioctl(_sock(), SIOCSIFHWADDR, _ifreq(name, "H6s", ARPHRD_ETHER, raw))


_frame_errors = 0


def _frame_error(port: Port) -> None:
    global _frame_errors
    _frame_errors += 1
    port.tx_errors += 1
    if _frame_errors <= 10 or _frame_errors % 100000 == 0:
        log.exception("port %s: error forwarding a frame (%d so far)", port.name, _frame_errors)


class TapCloser:
    """Closes TAP file descriptors on worker threads.

    Closing a TAP unregisters its netdev, and the kernel waits for an RCU grace period
    each time (~15 ms): 1,000 serial closes take 15 s. Closing in parallel lets those
    waits overlap (1,000 in well under a second) and keeps the event loop free. A TAP
    re-created under a name still being closed waits for that close first.
    """

    WORKERS = 32

    def __init__(self) -> None:
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pending: dict[str, Future] = {}
        self._lock = threading.Lock()

    def close(self, name: str, fd: int) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.WORKERS, thread_name_prefix="tap-close")
        future = self._pool.submit(os.close, fd)
        with self._lock:
            self._pending[name] = future
        future.add_done_callback(lambda f, name=name: self._done(name, f))

    def _done(self, name: str, future: Future) -> None:
        with self._lock:
            if self._pending.get(name) is future:
                del self._pending[name]

    def wait_for(self, name: str) -> None:
        with self._lock:
            future = self._pending.get(name)
        if future is not None:
            future.result()

    def drain(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _no_ipv6(name: str) -> None:
    """Keep the host's IPv6 stack quiet on a VM's TAP.

    The host does not talk on a VIF; left alone, every TAP brought up sends router
    solicitations, MLD reports and DAD probes that the switch must flood to every port
    of the VLAN: with 1,000 ports on one VLAN that is a million frames at start-up.
    Netlink (addr_gen_mode none: no link-local address, so nothing to announce) works
    under systemd's ProtectKernelTunables; /proc/sys is the fallback.
    """
    index = ifindex(name)
    if index and _addr_gen_mode_none(index):
        return
    try:
        with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w", encoding="ascii") as handle:
            handle.write("1")
    except OSError:
        pass   # no IPv6 on this host: nothing to silence


ARP_IGNORE_OTHER_LINKS = 1   # arp_ignore 1: answer only for addresses on the link the request came in on


def _arp_ignore(name: str) -> Optional[int]:
    try:
        with open(f"/proc/sys/net/ipv4/conf/{name}/arp_ignore", encoding="ascii") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return None   # no IPv4 on this link or host


def _quiet_arp(name: str, index: int) -> Optional[int]:
    """Keep a system port's own IPv4 stack from answering ARP for the host's other addresses.

    vswitchd reads a system port through AF_PACKET, which leaves the frames to the kernel's
    stack as well (a Linux bridge's port hands them to the bridge instead). With Linux's default
    arp_ignore 0 the port's stack answers "who has 10.0.0.2" for an address on the bridge's
    internal port with the port's own MAC: the asker's traffic then goes to a MAC nobody forwards
    to the internal port (a bond member's MAC, in the guest's LACP check). Returns the value it
    replaced, for close() to put back; None where nothing was changed.
    """
    before = _arp_ignore(name)
    if before != 0:
        return None   # no IPv4 here, or the operator chose a stricter value: theirs
    if _set_arp_ignore(index, ARP_IGNORE_OTHER_LINKS):
        return before
    log.warning("port %s: could not set arp_ignore %d; its own stack may answer ARP for the host's addresses",
                name, ARP_IGNORE_OTHER_LINKS)
    return None


def _set_arp_ignore(index: int, value: int) -> bool:
    """True if the kernel acknowledged arp_ignore ``value`` on link ``index``."""
    try:
        return _netlink.request(setlink_inet_conf(index, {IPV4_DEVCONF_ARP_IGNORE: value})) == 0
    except OSError:
        return False


def _addr_gen_mode_none(index: int) -> bool:
    """True if the kernel acknowledged addr_gen_mode none on link ``index``."""
    try:
        return _netlink.request(setlink_addr_gen_mode_none(index)) == 0
    except OSError:
        return False


def owner_mark(state_file: str) -> str:
    """The alias vswitchd puts on each TAP it creates: which daemon (by its state file) made it."""
    return f"openvif:vswitchd:{hashlib.sha256(state_file.encode()).hexdigest()[:12]}"


def _mark(name: str, owner: str) -> None:
    index = ifindex(name)
    if not index or _netlink.request(setlink_alias(index, owner)) != 0:
        raise OSError(0, "could not mark the TAP as vswitchd's (interface alias)")


def _open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
    except OSError:
        os.close(fd)
        raise
    return fd


def remove_orphans(owner: str, keep: set[str], closer: TapCloser) -> list[str]:
    """Delete every TAP marked ``owner`` that is not in ``keep``; returns their names.

    A crash after a transaction that deletes ports was committed, but before their TAPs were
    released, or while a transaction was creating TAPs, leaves persistent TAPs nothing else would
    ever remove. The mark is on the device itself, set before it is made persistent, so no crash
    can leave a persistent TAP of ours unmarked, and a device anyone else made is never touched.
    """
    orphans = sorted(link.name for link in dump_links() if link.alias == owner and link.name not in keep)
    removed = []
    for name in orphans:
        try:
            fd = _open_tap(name)
            fcntl.ioctl(fd, TUNSETPERSIST, 0)
        except OSError as err:
            log.error("orphan TAP %s (made by this vswitchd, not in its state) could not be removed: %s",
                      name, err.strerror or err)
            continue
        closer.close(name, fd)
        removed.append(name)
    for name in removed:
        closer.wait_for(name)
    if removed:
        log.warning("removed %d TAPs this vswitchd created that its state no longer holds (left by a crash): %s",
                    len(removed), ", ".join(removed[:20]) + (" ..." if len(removed) > 20 else ""))
    return removed


class TapIO:
    """A persistent TAP device this daemon creates, or takes over after a restart.

    TAPs are made persistent (TUNSETPERSIST) so they outlive the daemon: a restart or a
    crash leaves every VIF and the bridge's internal port (with the host's IP addresses on
    it) in place, and the next start re-attaches to them instead of re-creating them.
    Only deleting the port (or its bridge) removes the device. A TAP it creates carries
    ``owner`` as its alias (``owner_mark``), set before it is made persistent, so that a
    start after a crash finds and removes the ones its state no longer holds.
    """

    kind = "tap"
    # The fast path's cookie (``FastPath.port_ready`` sets it): a frame read with it in front is one the
    # kernel flooded into this TAP, for vswitchd to write back (deliver), never the host's own.
    echo: Optional[bytes] = None

    def __init__(self, name: str, port: Port, loop: EventLoop, *, mtu: Optional[int] = None,
                 mac: Optional[str] = None, host_stack: bool = True, owner: Optional[str] = None) -> None:
        self.closer = loop.closer
        self.closer.wait_for(name)
        self.adopted = bool(ifindex(name))
        self.name = name
        self.port = port
        try:
            fd = _open_tap(name)
        except OSError as err:
            if self.adopted:
                raise ConflictError("name", name, "already exists as a network device on this host and is not a "
                                                  "free TAP vswitchd can take over; a tap or internal port needs a "
                                                  f"free name ({err.strerror})") from err
            raise BackendError("name", name, f"could not be created as a TAP device: {err.strerror}") from err
        try:
            if owner and not self.adopted:
                _mark(name, owner)   # before TUNSETPERSIST: a crash until then takes the TAP with us
            fcntl.ioctl(fd, TUNSETPERSIST, 1)
            fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)
            if mac and get_mac(name) != mac:
                set_mac(name, mac)
            if mtu and get_mtu(name) != mtu:
                set_mtu(name, mtu)
            if not host_stack:
                _no_ipv6(name)
            set_up(name)
        except OSError as err:
            if not self.adopted:
                try:
                    fcntl.ioctl(fd, TUNSETPERSIST, 0)
                except OSError:
                    pass
            os.close(fd)
            raise BackendError("name", name, f"could not be set up as a TAP device: {err.strerror}") from err
        self.fd = fd
        self.file = FileIO(fd, "rb", closefd=False)
        self.buf = bytearray(MAX_FRAME + VNET)
        self.mv = memoryview(self.buf)
        port.send = self.send

    def fileno(self) -> int:
        return self.fd

    def send(self, frame: memoryview) -> None:
        port = self.port
        try:
            os.write(self.fd, frame)
        except OSError:
            port.tx_errors += 1
            return
        port.tx_packets += 1
        port.tx_bytes += len(frame) - VNET

    def receive(self, now: float) -> None:
        port = self.port
        bridge = port.bridge
        if bridge is None:
            return
        readinto = self.file.readinto
        mv = self.mv
        forward = bridge.input
        for _slot in range(RX_BUDGET):
            try:
                n = readinto(mv)
            except OSError:
                return
            if not n:
                return
            echo = self.echo
            if echo is not None and mv[VNET:VNET + len(echo)] == echo:
                self._deliver_echo(n, len(echo))
                continue
            try:
                forward(port, mv, n, -1, now)
            except Exception:  # noqa: BLE001 - a frame that trips a bug is lost, not the port
                _frame_error(port)

    def _deliver_echo(self, n: int, skip: int) -> None:
        """Write a kernel-flooded frame back without its cookie: the host receives it, as from ``send``."""
        mv = self.mv
        mv[skip:skip + VNET] = bytes(mv[:VNET])
        out = mv[skip:n]
        fix_vnet(out, -skip)
        self.send(out)

    def healthy(self) -> bool:
        return True

    def close(self, keep: bool = False) -> None:
        """Detach; ``keep`` leaves the device in place (daemon shutdown), otherwise it is deleted."""
        if self.fd >= 0:
            self.file.close()
            if keep:
                os.close(self.fd)
            else:
                try:
                    fcntl.ioctl(self.fd, TUNSETPERSIST, 0)
                except OSError as err:
                    log.warning("port %s: could not clear TUNSETPERSIST: %s", self.name, err)
                self.closer.close(self.name, self.fd)
            self.fd = -1


class PacketIO:
    """An existing netdev (uplink, veth, NIC) attached through AF_PACKET with an mmap'ed RX ring."""

    kind = "system"

    def __init__(self, name: str, port: Port, loop: EventLoop) -> None:
        index = ifindex(name)
        if not index:
            raise NotFoundError("name", name, "does not exist on this host; a system port must be an existing "
                                              "interface (a VIF, veth or NIC)")
        self.name = name
        self.port = port
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            try:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            except OSError:  # kernels before 4.20: outgoing copies are filtered in receive()
                pass
            sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING,
                            struct.pack("IIII", RING_BLOCK, RING_FRAMES * RING_FRAME // RING_BLOCK, RING_FRAME,
                                        RING_FRAMES))
            sock.setsockopt(SOL_PACKET, PACKET_COPY_THRESH, 1)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, COPY_RCVBUF)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, COPY_RCVBUF)
            tx_frames = max(TX_BLOCK // TX_FRAME, TX_FRAMES - TX_FRAMES % (TX_BLOCK // TX_FRAME))
            sock.setsockopt(SOL_PACKET, PACKET_TX_RING,
                            struct.pack("IIII", TX_BLOCK, tx_frames * TX_FRAME // TX_BLOCK, TX_FRAME, tx_frames))
            self.ring = mmap.mmap(sock.fileno(), RING_FRAME * RING_FRAMES + TX_FRAME * tx_frames, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
            set_up(name)   # before bind: binding to a down device leaves ENETDOWN pending on the socket
            sock.bind((name, ETH_P_ALL))
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                            struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b""))
            sock.setblocking(False)
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError as err:
            sock.close()
            raise BackendError("name", name, f"could not be attached: {err.strerror}") from err
        # Any send() on a socket with a TX ring transmits the ring, not its argument: frames too big
        # for a slot go out through a second socket that only sends (protocol 0: it receives nothing).
        direct = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            direct.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            direct.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
            direct.bind((name, 0))
            direct.setblocking(False)
        except OSError as err:
            direct.close()
            self.ring.close()
            sock.close()
            raise BackendError("name", name, f"could not be attached: {err.strerror}") from err
        self.direct = direct
        self.sock = sock
        self.mv = memoryview(self.ring)
        self.slot = 0
        self.big = memoryview(bytearray(MAX_FRAME + VNET))
        self.tx_base = RING_FRAME * RING_FRAMES
        self.tx_frames = tx_frames
        self.tx_slot = 0
        self.tx_queued = 0
        self.ifindex = index
        self.dirty = loop.dirty
        self.backlog = loop.backlog
        self.arp_ignore_before = _quiet_arp(name, index)
        port.send = self.send

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, frame: memoryview) -> None:
        port = self.port
        n = len(frame)
        if n > TX_MAX:
            if self.tx_queued:
                self.flush()
            try:
                self.direct.send(frame)
            except OSError:
                port.tx_errors += 1
                return
            port.tx_packets += 1
            port.tx_bytes += n - VNET
            return
        ring = self.ring
        off = self.tx_base + self.tx_slot * TX_FRAME
        status = _LEN.unpack_from(ring, off)[0]
        if status != TP_STATUS_AVAILABLE:
            if status & TP_STATUS_WRONG_FORMAT:      # the kernel refused the frame queued here earlier
                port.tx_errors += 1
            else:
                self.flush()
                if _LEN.unpack_from(ring, off)[0] & TP_STATUS_SEND_REQUEST:   # ring full: the link is slower
                    port.tx_errors += 1
                    return
        ring[off + TX_DATA:off + TX_DATA + n] = frame
        _LEN.pack_into(ring, off + 4, n)
        _LEN.pack_into(ring, off, TP_STATUS_SEND_REQUEST)
        self.tx_slot = self.tx_slot + 1 if self.tx_slot + 1 < self.tx_frames else 0
        port.tx_packets += 1
        port.tx_bytes += n - VNET
        self.tx_queued += 1
        if self.tx_queued == 1:
            self.dirty.append(self)
        elif self.tx_queued >= TX_KICK:
            self.flush()

    def flush(self) -> None:
        """Hand every queued frame of the transmit ring to the kernel (one syscall)."""
        if not self.tx_queued:
            return
        self.tx_queued = 0
        try:
            self.sock.send(b"", socket.MSG_DONTWAIT)
        except OSError as err:
            log.debug("port %s: transmit ring flush: %s", self.name, err)

    def receive(self, now: float) -> None:
        port = self.port
        bridge = port.bridge
        if bridge is None:
            return
        ring, mv = self.ring, self.mv
        forward = bridge.input
        if not ring[self.slot * RING_FRAME] & TP_STATUS_USER and not self.resync():
            return
        slot = self.slot
        unpack = _TPACKET2_HDR.unpack_from
        release = _STATUS.pack_into
        for _slot in range(RX_BUDGET):
            off = slot * RING_FRAME
            status, length, snap, mac, _net, _s, _ns, tci, tpid = unpack(ring, off)
            if not status & TP_STATUS_USER:
                break
            try:
                if snap < length:
                    self._receive_copy(status, tci, tpid, now)
                elif status & TP_STATUS_VLAN_VALID:
                    if status & TP_STATUS_VLAN_TPID_VALID and tpid == TPID_8021AD:
                        port.rx_packets += 1
                        port.drops["bad_vlan"] += 1
                    else:
                        start = off + mac - VNET
                        forward(port, mv[start:start + VNET + snap], VNET + snap, tci, now)
                else:
                    start = off + mac - VNET
                    forward(port, mv[start:start + VNET + snap], VNET + snap, -1, now)
            except Exception:  # noqa: BLE001 - a frame that trips a bug is lost; the ring must go on
                _frame_error(port)
            release(ring, off, TP_STATUS_KERNEL)
            slot = slot + 1 if slot + 1 < RING_FRAMES else 0
        else:
            self.backlog.add(self)   # budget spent with frames left: come back before the next poll
        self.slot = slot

    def resync(self) -> bool:
        """Our slot is the kernel's: move to the oldest frame waiting in the ring, if any.

        The kernel fills slots in order, so the first of ours after our position is the oldest;
        a slot it claimed and dropped stays the kernel's and must be stepped over.
        """
        firsts = self.ring[0:RING_FRAMES * RING_FRAME:RING_FRAME].translate(_USER_BIT)
        found = firsts.find(1, self.slot)
        if found < 0:
            found = firsts.find(1, 0, self.slot)
        if found < 0:
            return False
        log.debug("port %s: receive ring resynchronised from slot %d to %d", self.name, self.slot, found)
        self.port.ring_resyncs += 1
        self.slot = found
        return True

    def _receive_copy(self, status: int, tci: int, tpid: int, now: float) -> None:
        """A frame bigger than a ring slot: the whole of it waits on the socket's receive queue."""
        port = self.port
        n = 0
        if status & TP_STATUS_COPY:
            try:
                n = self.sock.recv_into(self.big)
            except OSError:
                n = 0
        if not n:
            port.rx_packets += 1
            port.drops["truncated"] += 1
            return
        if status & TP_STATUS_VLAN_VALID:
            if status & TP_STATUS_VLAN_TPID_VALID and tpid == TPID_8021AD:
                port.rx_packets += 1
                port.drops["bad_vlan"] += 1
                return
            port.bridge.input(port, self.big, n, tci, now)
        else:
            port.bridge.input(port, self.big, n, -1, now)

    def healthy(self) -> bool:
        """After an error event: clear it; the port is only lost if its device is gone.

        A link going down and up again is survivable: the kernel unhooks the socket on
        NETDEV_DOWN and hooks it back on NETDEV_UP by itself.
        """
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            log.debug("port %s: socket error %s", self.name, os.strerror(err))
        return ifindex(self.name) == self.ifindex

    def close(self, keep: bool = False) -> None:
        if self.sock.fileno() >= 0:
            if self in self.dirty:
                self.dirty.remove(self)
            self.mv.release()
            self.ring.close()
            self.sock.close()
            self.direct.close()
            # Kept (a restart): still a switch port. Released: its stack answers as before. A daemon
            # started again finds 1 and leaves it there when the port goes, which is harmless.
            if not keep and self.arp_ignore_before is not None and ifindex(self.name) == self.ifindex \
                    and not _set_arp_ignore(self.ifindex, self.arp_ignore_before):
                log.warning("port %s: could not put back arp_ignore %d", self.name, self.arp_ignore_before)


def open_io(name: str, kind: str, port: Port, loop: EventLoop, *, mtu: Optional[int] = None,
            mac: Optional[str] = None, owner: Optional[str] = None) -> TapIO | PacketIO:
    if kind == "system":
        return PacketIO(name, port, loop)
    return TapIO(name, port, loop, mtu=mtu, mac=mac, host_stack=kind == "internal", owner=owner)
