"""Is the new path alive? ARP (IPv4) or neighbour discovery (IPv6) for an on-link neighbour, a router
solicitation for "is there a router advertising here", ICMP echo of either family for anything further.

Both work before and without any route cache warm-up and need root (AF_PACKET, raw ICMP),
which a module that moves the host's IP has anyway. Every wait is bounded by ``timeout``.
"""
from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import time
from typing import Any, Callable, Optional

ETH_P_ARP = 0x0806


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def arp_probe(ifname: str, mac: str, source_ip: str, target_ip: str, timeout: float) -> bool:
    """True once ``target_ip`` answers an ARP request sent out of ``ifname`` within ``timeout``."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    try:
        sock.bind((ifname, ETH_P_ARP))
        own = _mac_bytes(mac)
        target = socket.inet_aton(target_ip)
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, own, socket.inet_aton(source_ip),
                          b"\x00" * 6, target)
        frame = b"\xff" * 6 + own + struct.pack("!H", ETH_P_ARP) + arp
        deadline = time.monotonic() + timeout
        next_send = 0.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                return False
            if now >= next_send:
                sock.send(frame)
                next_send = now + 0.5
            ready = select.select([sock], [], [], min(deadline, next_send) - now)[0]
            if not ready:
                continue
            data = sock.recv(2048)
            if len(data) < 42 or data[12:14] != b"\x08\x06":
                continue
            op = struct.unpack("!H", data[20:22])[0]
            if op == 2 and data[28:32] == target:
                return True
    finally:
        sock.close()


def resend_until(sock: socket.socket, timeout: float, interval: float, send: Callable[[], Any],
                 answer: Callable[[bytes, Any], Any]) -> Any:
    """Call ``send()`` every ``interval`` seconds and read what arrives on ``sock``; return the first
    ``answer(data, peer)`` that is not None, or None once ``timeout`` has passed. A send that fails
    (no route yet, the link or the source address not ready) is tried again at the next interval."""
    deadline = time.monotonic() + timeout
    next_send = 0.0
    while True:
        now = time.monotonic()
        if now >= deadline:
            return None
        if now >= next_send:
            try:
                send()
            except OSError:
                pass  # not ready yet: the next interval may be
            next_send = now + interval
        if not select.select([sock], [], [], max(0.0, min(deadline, next_send) - now))[0]:
            continue
        found = answer(*sock.recvfrom(4096))
        if found is not None:
            return found


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(target_ip: str, timeout: float, interval: float = 0.5) -> bool:
    """True once ``target_ip`` answers an ICMP echo within ``timeout`` (one request per interval)."""
    if ipaddress.ip_address(target_ip).version == 6:
        return ping6(target_ip, timeout, interval)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    sequence = [0]

    def send() -> None:
        sequence[0] += 1
        header = struct.pack("!BBHHH", 8, 0, 0, ident, sequence[0])
        payload = b"openvif-verify"
        packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, sequence[0]) + payload
        sock.sendto(packet, (target_ip, 0))

    def echo_reply(data: bytes, peer: Any) -> Optional[bool]:
        ihl = (data[0] & 0x0F) * 4
        if peer[0] == target_ip and len(data) >= ihl + 8:
            kind, unused_code, unused_sum, rid, unused_seq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if kind == 0 and rid == ident:
                return True
        return None

    try:
        return resend_until(sock, timeout, interval, send, echo_reply) is not None
    finally:
        sock.close()


# -- IPv6: ICMPv6 over a raw socket. The kernel fills in the ICMPv6 checksum (RFC 3542), and neighbour
# discovery insists on hop limit 255, which proves the answer came from the link itself.

ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY = 128, 129
ND_ROUTER_SOLICIT, ND_ROUTER_ADVERT, ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT = 133, 134, 135, 136
OPT_SOURCE_LLADDR = 1
ALL_ROUTERS = "ff02::2"


def solicited_node(target_ip: str) -> str:
    """ff02::1:ffXX:XXXX, the multicast group a neighbour solicitation for ``target_ip`` goes to."""
    low = ipaddress.IPv6Address(target_ip).packed[13:]
    return str(ipaddress.IPv6Address(b"\xff\x02" + b"\x00" * 9 + b"\x01\xff" + low))


def neighbor_solicitation(target_ip: str, mac: str) -> bytes:
    target = ipaddress.IPv6Address(target_ip).packed
    return struct.pack("!BBHI", ND_NEIGHBOR_SOLICIT, 0, 0, 0) + target + struct.pack(
        "!BB", OPT_SOURCE_LLADDR, 1) + _mac_bytes(mac)


def router_solicitation(mac: str) -> bytes:
    return struct.pack("!BBHI", ND_ROUTER_SOLICIT, 0, 0, 0) + struct.pack("!BB", OPT_SOURCE_LLADDR, 1) + _mac_bytes(mac)


def is_advert_for(message: bytes, target_ip: str) -> bool:
    """A neighbour advertisement whose target is ``target_ip`` (solicited or not: either proves it is there)."""
    return (len(message) >= 24 and message[0] == ND_NEIGHBOR_ADVERT and message[1] == 0
            and message[8:24] == ipaddress.IPv6Address(target_ip).packed)


def _icmp6_socket(ifname: str, source: str | None) -> tuple[socket.socket, int]:
    scope = socket.if_nametoindex(ifname)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, scope)
        if source:
            sock.bind((source, 0, 0, scope if ipaddress.IPv6Address(source).is_link_local else 0))
    except OSError:
        sock.close()
        raise
    return sock, scope


def _exchange6(ifname: str, source: str | None, message: bytes, destination: str, timeout: float,
               answered) -> str | None:
    """Send ``message`` every 0.5 s until ``answered(reply)``; returns the answering address, or None."""
    sock, scope = _icmp6_socket(ifname, source)
    try:
        return resend_until(sock, timeout, 0.5, lambda: sock.sendto(message, (destination, 0, 0, scope)),
                            lambda data, peer: peer[0].split("%")[0] if answered(data) else None)
    finally:
        sock.close()


def neighbour_probe(ifname: str, mac: str, source_ip: str | None, target_ip: str, timeout: float) -> bool:
    """True once ``target_ip`` answers a neighbour solicitation sent out of ``ifname`` within ``timeout``:
    IPv6's ARP, for the gateway."""
    target = target_ip.split("%")[0]
    return _exchange6(ifname, source_ip, neighbor_solicitation(target, mac), solicited_node(target), timeout,
                      lambda data: is_advert_for(data, target)) is not None


def router_probe(ifname: str, mac: str, source_ip: str | None, timeout: float) -> str | None:
    """The link-local address of a router that answers a router solicitation on ``ifname`` within
    ``timeout`` (the kernel learns the same advertisement), or None when no router advertises here."""
    return _exchange6(ifname, source_ip, router_solicitation(mac), ALL_ROUTERS, timeout,
                      lambda data: len(data) >= 16 and data[0] == ND_ROUTER_ADVERT and data[1] == 0)


def ping6(target_ip: str, timeout: float, interval: float = 0.5) -> bool:
    """True once ``target_ip`` answers an ICMPv6 echo within ``timeout``."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    ident = os.getpid() & 0xFFFF
    sequence = [0]

    def send() -> None:
        sequence[0] += 1
        sock.sendto(struct.pack("!BBHHH", ICMP6_ECHO_REQUEST, 0, 0, ident, sequence[0]) + b"openvif-verify",
                    (target_ip, 0, 0, 0))

    def echo_reply(data: bytes, peer: Any) -> Optional[bool]:
        if len(data) >= 8 and data[0] == ICMP6_ECHO_REPLY and peer[0] == target_ip:
            if struct.unpack("!H", data[4:6])[0] == ident:
                return True
        return None

    try:
        return resend_until(sock, timeout, interval, send, echo_reply) is not None
    finally:
        sock.close()
