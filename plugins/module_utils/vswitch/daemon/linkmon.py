"""Link state from the kernel as it changes: an rtnetlink socket subscribed to RTNLGRP_LINK.

Bond members need to know at once when a NIC loses its carrier (failover in well under
100 ms): the kernel sends RTM_NEWLINK to every socket in the link multicast group on each
change, so the event loop wakes on the socket and the bond switches members in the same
turn. One monitor per event loop serves every bond; a bond subscribes its members by name.
"""
from __future__ import annotations

import logging
import socket
import struct
from typing import TYPE_CHECKING, Any

log = logging.getLogger("vswitchd.bond")

RTMGRP_LINK = 0x1
RTM_NEWLINK, RTM_DELLINK = 16, 17
IFLA_IFNAME = 3
IFF_UP, IFF_RUNNING = 0x1, 0x40
_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_NLA = struct.Struct("=HH")

if TYPE_CHECKING:   # aliases for hints only, as in loop.py
    from collections.abc import Callable

    # (name, carrier, now) -> None; carrier: administratively up and operationally running (has link).
    LinkCallback = Callable[[str, bool, float], None]


def carrier(flags: int) -> bool:
    return bool(flags & IFF_UP and flags & IFF_RUNNING)


def parse_link_events(data: bytes) -> list[tuple[str, bool]]:
    """(name, carrier) of each RTM_NEWLINK/RTM_DELLINK in one datagram (a removed link has none)."""
    events = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        end = offset + length
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            body = offset + _NLMSGHDR.size
            _family, _type, _index, flags, _change = _IFINFOMSG.unpack_from(data, body)
            attr = body + _IFINFOMSG.size
            name = None
            while attr + _NLA.size <= end:
                alen, atype = _NLA.unpack_from(data, attr)
                if alen < _NLA.size:
                    break
                if atype & 0x3FFF == IFLA_IFNAME:
                    name = data[attr + _NLA.size:attr + alen].split(b"\0", 1)[0].decode(errors="replace")
                    break
                attr += (alen + 3) & ~3
            if name:
                events.append((name, kind == RTM_NEWLINK and carrier(flags)))
        offset += (length + 3) & ~3
    return events


class LinkMonitor:
    """Calls each subscriber when its link's carrier may have changed."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.subscribers: dict[str, list[LinkCallback]] = {}
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK,
                                  0)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, RTMGRP_LINK))
        loop.register(self.sock.fileno(), self._readable)

    def subscribe(self, name: str, callback: LinkCallback) -> None:
        self.subscribers.setdefault(name, []).append(callback)

    def unsubscribe(self, name: str, callback: LinkCallback) -> None:
        callbacks = self.subscribers.get(name, [])
        if callback in callbacks:
            callbacks.remove(callback)
        if not callbacks:
            self.subscribers.pop(name, None)

    def _readable(self, events: int, now: float) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as err:   # ENOBUFS: events were lost; the bonds' miimon poll catches up
                log.warning("link monitor: %s", err)
                return
            for name, up in parse_link_events(data):
                for callback in list(self.subscribers.get(name, ())):
                    callback(name, up, now)


_monitors: dict[int, LinkMonitor] = {}


def monitor_for(loop: Any) -> LinkMonitor:
    """The one monitor of ``loop`` (made on first use: a daemon without bonds opens no socket)."""
    monitor = _monitors.get(id(loop))
    if monitor is None or monitor.loop is not loop:
        monitor = _monitors[id(loop)] = LinkMonitor(loop)
    return monitor
