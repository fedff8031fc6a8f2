"""Is the new path alive? ARP for an on-link neighbour, ICMP echo for anything further.

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


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(target_ip: str, timeout: float, interval: float = 0.5) -> bool:
    """True once ``target_ip`` answers an ICMP echo within ``timeout`` (one request per interval)."""
    ipaddress.IPv4Address(target_ip)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    try:
        deadline = time.monotonic() + timeout
        next_send, seq = 0.0, 0
        while True:
            now = time.monotonic()
            if now >= deadline:
                return False
            if now >= next_send:
                seq += 1
                header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
                payload = b"openvif-verify"
                packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload
                try:
                    sock.sendto(packet, (target_ip, 0))
                except OSError:
                    pass  # no route yet: try again next interval
                next_send = now + interval
            ready = select.select([sock], [], [], max(0.0, min(deadline, next_send) - now))[0]
            if not ready:
                continue
            data, (source, _port) = sock.recvfrom(2048)
            ihl = (data[0] & 0x0F) * 4
            if source == target_ip and len(data) >= ihl + 8:
                kind, _icmp_code, _icmp_sum, rid, _icmp_seq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
                if kind == 0 and rid == ident:
                    return True
    finally:
        sock.close()
