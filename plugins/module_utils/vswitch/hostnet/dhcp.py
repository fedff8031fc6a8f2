"""A small DHCPv4 client (RFC 2131): DISCOVER, OFFER, REQUEST, ACK over AF_PACKET.

Why our own: the host's DHCP client differs by distribution (dhclient, udhcpc, networkd's
built-in one, NetworkManager's), may be absent, and cannot be driven as one bounded step of
a transaction. AF_PACKET lets us talk before the bridge has an address and without the
kernel's reverse-path checks on broadcast replies. The lease is installed with its real
lifetime. Renewing it (RENEWING at T1, REBINDING at T2, RELEASE on stop) is ``renew``/``rebind``/
``release`` below, over a UDP socket on the addressed bridge; ``lease_keeper`` runs them as the
host's client when the host has no DHCP client of its own for the bridge.
"""
from __future__ import annotations

import ipaddress
import os
import random
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from .probe import _checksum, _mac_bytes, resend_until

ETH_P_IP = 0x0800
MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
OPT_MASK, OPT_ROUTER, OPT_DNS, OPT_DOMAIN, OPT_MTU = 1, 3, 6, 15, 26
OPT_REQUESTED_IP, OPT_LEASE, OPT_TYPE, OPT_SERVER, OPT_PARAMS, OPT_SEARCH = 50, 51, 53, 54, 55, 119
OPT_T1, OPT_T2 = 58, 59


class DhcpTimeout(Exception):
    """No lease within the time allowed."""


class KeptLease:
    """What a lease dataclass needs to be kept in a file: its fields as a dict, and back (fields a newer
    version wrote and this one does not know are left out)."""

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> Any:
        known = set(cls.__dataclass_fields__)  # pylint: disable=no-member
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass
class Lease(KeptLease):
    address: str
    prefixlen: int
    server: str
    lease_time: int
    routers: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    domain: Optional[str] = None
    mtu: Optional[int] = None
    renew_after: Optional[int] = None    # T1, seconds after ``obtained`` (option 58; RFC 2131: half the lease)
    rebind_after: Optional[int] = None   # T2 (option 59; RFC 2131: 7/8 of the lease)
    obtained: float = 0.0                # time.time() of the ACK

    @property
    def t1(self) -> float:
        return self.obtained + (self.renew_after if self.renew_after is not None else self.lease_time / 2)

    @property
    def t2(self) -> float:
        return self.obtained + (self.rebind_after if self.rebind_after is not None else self.lease_time * 7 / 8)

    @property
    def expires(self) -> float:
        return self.obtained + self.lease_time


def _options(pairs: list[tuple[int, bytes]]) -> bytes:
    out = b"".join(struct.pack("!BB", code, len(value)) + value for code, value in pairs)
    return out + b"\xff"


def build_message(kind: int, xid: int, mac: str, requested: Optional[str] = None,
                  server: Optional[str] = None, ciaddr: Optional[str] = None) -> bytes:
    """``ciaddr``: the address being renewed, rebound or released (the client can receive unicast, so
    no broadcast flag)."""
    chaddr = _mac_bytes(mac) + b"\x00" * 10
    flags = 0 if ciaddr else 0x8000
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, flags,
                         socket.inet_aton(ciaddr) if ciaddr else b"\x00" * 4,
                         b"\x00" * 4, b"\x00" * 4, b"\x00" * 4, chaddr, b"", b"")
    opts = [(OPT_TYPE, bytes([kind])),
            (OPT_PARAMS, bytes([OPT_MASK, OPT_ROUTER, OPT_DNS, OPT_DOMAIN, OPT_MTU, OPT_LEASE, OPT_SERVER]))]
    if requested:
        opts.append((OPT_REQUESTED_IP, socket.inet_aton(requested)))
    if server:
        opts.append((OPT_SERVER, socket.inet_aton(server)))
    return header + MAGIC + _options(opts)


def parse_message(payload: bytes) -> Optional[dict]:
    """The fields and options of a BOOTREPLY, or None if it is not one."""
    if len(payload) < 240 or payload[0] != 2 or payload[236:240] != MAGIC:
        return None
    xid = struct.unpack("!I", payload[4:8])[0]
    options: dict[int, bytes] = {}
    i = 240
    while i < len(payload):
        code = payload[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(payload):
            break
        length = payload[i + 1]
        options[code] = options.get(code, b"") + payload[i + 2:i + 2 + length]
        i += 2 + length
    return {"xid": xid, "yiaddr": socket.inet_ntoa(payload[16:20]), "chaddr": payload[28:34],
            "options": options}


def _ip_list(value: bytes) -> list[str]:
    return [socket.inet_ntoa(value[i:i + 4]) for i in range(0, len(value) - len(value) % 4, 4)]


def lease_from(message: dict) -> Lease:
    opts = message["options"]
    mask = socket.inet_ntoa(opts[OPT_MASK]) if OPT_MASK in opts else "255.255.255.0"
    return Lease(
        address=message["yiaddr"],
        prefixlen=ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen,
        server=socket.inet_ntoa(opts[OPT_SERVER]) if OPT_SERVER in opts else "",
        lease_time=struct.unpack("!I", opts[OPT_LEASE])[0] if OPT_LEASE in opts else 3600,
        routers=_ip_list(opts.get(OPT_ROUTER, b"")),
        dns=_ip_list(opts.get(OPT_DNS, b"")),
        domain=opts[OPT_DOMAIN].decode("ascii", "replace").strip("\x00") if OPT_DOMAIN in opts else None,
        mtu=struct.unpack("!H", opts[OPT_MTU])[0] if len(opts.get(OPT_MTU, b"")) == 2 else None,
        renew_after=struct.unpack("!I", opts[OPT_T1])[0] if len(opts.get(OPT_T1, b"")) == 4 else None,
        rebind_after=struct.unpack("!I", opts[OPT_T2])[0] if len(opts.get(OPT_T2, b"")) == 4 else None,
        obtained=time.time(),
    )


def _ip_udp(payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 68, 67, 8 + len(payload), 0) + payload  # UDP checksum 0: optional in IPv4
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0x10, 20 + len(udp), 0, 0, 64, 17, 0,
                         b"\x00" * 4, b"\xff" * 4)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


class _Channel:
    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        self.sock.bind((ifname, ETH_P_IP))

    def send(self, payload: bytes) -> None:
        self.sock.sendto(_ip_udp(payload), (self.ifname, ETH_P_IP, 0, 0, b"\xff" * 6))

    def receive(self, xid: int, mac: bytes, timeout: float) -> Optional[dict]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready = select.select([self.sock], [], [], left)[0]
            if not ready:
                return None
            packet = self.sock.recv(4096)
            if len(packet) < 28 or packet[9] != 17:
                continue
            ihl = (packet[0] & 0x0F) * 4
            if struct.unpack("!H", packet[ihl + 2:ihl + 4])[0] != 68:
                continue
            message = parse_message(packet[ihl + 8:])
            if message and message["xid"] == xid and message["chaddr"] == mac:
                return message

    def close(self) -> None:
        self.sock.close()


def obtain_lease(ifname: str, mac: str, timeout: float, requested: Optional[str] = None) -> Lease:
    """DISCOVER/OFFER/REQUEST/ACK on ``ifname`` within ``timeout`` seconds; raises DhcpTimeout."""
    deadline = time.monotonic() + timeout
    mac_bytes = _mac_bytes(mac)
    channel = _Channel(ifname)
    try:
        wait = 1.0
        while time.monotonic() < deadline:
            xid = random.SystemRandom().getrandbits(32) ^ os.getpid()
            channel.send(build_message(DISCOVER, xid, mac, requested=requested))
            offer = channel.receive(xid, mac_bytes, min(wait, max(0.0, deadline - time.monotonic())))
            wait = min(wait * 2, 4.0)
            if not offer or offer["options"].get(OPT_TYPE) != bytes([OFFER]):
                continue
            server = socket.inet_ntoa(offer["options"][OPT_SERVER]) if OPT_SERVER in offer["options"] else None
            channel.send(build_message(REQUEST, xid, mac, requested=offer["yiaddr"], server=server))
            ack = channel.receive(xid, mac_bytes, min(3.0, max(0.0, deadline - time.monotonic())))
            if ack and ack["options"].get(OPT_TYPE) == bytes([ACK]):
                return lease_from(ack)
        raise DhcpTimeout(f"no DHCP lease on {ifname} within {timeout:g} s")
    finally:
        channel.close()


class _Udp:
    """Port 68 on one interface, for a client that has an address: unicast to the server when renewing,
    broadcast when rebinding; replies come to the address or as broadcasts, both land here."""

    def __init__(self, ifname: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            self.sock.bind(("0.0.0.0", 68))
        except OSError:
            self.sock.close()
            raise

    def ask(self, message: bytes, xid: int, mac: bytes, destination: str, timeout: float) -> Optional[dict]:
        def ours(data: bytes, unused_peer: Any) -> Optional[dict]:
            reply = parse_message(data)
            return reply if reply and reply["xid"] == xid and reply["chaddr"] == mac else None

        return resend_until(self.sock, timeout, 2.0, lambda: self.sock.sendto(message, (destination, 67)), ours)

    def close(self) -> None:
        self.sock.close()


class LeaseRefused(Exception):
    """The server answered NAK: the address is not ours any more."""


def _request(ifname: str, mac: str, lease: Lease, destination: str, timeout: float,
             init_reboot: bool = False) -> Optional[Lease]:
    xid = random.SystemRandom().getrandbits(32)
    if init_reboot:  # RFC 2131 4.3.2: no ciaddr, requested-IP, broadcast reply
        message = build_message(REQUEST, xid, mac, requested=lease.address)
    else:
        message = build_message(REQUEST, xid, mac, ciaddr=lease.address)
    channel = _Udp(ifname)
    try:
        reply = channel.ask(message, xid, _mac_bytes(mac), destination, timeout)
    finally:
        channel.close()
    if reply is None:
        return None
    kind = reply["options"].get(OPT_TYPE)
    if kind == bytes([NAK]):
        raise LeaseRefused(f"the server refused {lease.address}")
    if kind != bytes([ACK]):
        return None
    renewed = lease_from(reply)
    if not renewed.server:
        renewed.server = lease.server
    return renewed


def renew(ifname: str, mac: str, lease: Lease, timeout: float) -> Optional[Lease]:
    """RENEWING (after T1): REQUEST with ciaddr, unicast to the server that gave the lease."""
    return _request(ifname, mac, lease, lease.server or "255.255.255.255", timeout)


def rebind(ifname: str, mac: str, lease: Lease, timeout: float) -> Optional[Lease]:
    """REBINDING (after T2): the same REQUEST broadcast, for any server that can extend it."""
    return _request(ifname, mac, lease, "255.255.255.255", timeout)


def reboot(ifname: str, mac: str, lease: Lease, timeout: float) -> Optional[Lease]:
    """INIT-REBOOT: confirm an address the link already has (a lease whose details were not kept)."""
    return _request(ifname, mac, lease, "255.255.255.255", timeout, init_reboot=True)


def release(ifname: str, mac: str, lease: Lease) -> None:
    """RELEASE to the server (no answer comes); best effort, the address is given up either way."""
    xid = random.SystemRandom().getrandbits(32)
    channel = _Udp(ifname)
    try:
        channel.sock.sendto(build_message(RELEASE, xid, mac, ciaddr=lease.address, server=lease.server or None),
                            (lease.server or "255.255.255.255", 67))
    except OSError:
        pass
    finally:
        channel.close()
