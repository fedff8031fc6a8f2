"""Send and capture raw Ethernet frames on one interface (run inside a namespace with ip netns exec).

    rawframe.py send IFACE HEX [COUNT]          send the frame COUNT times
    rawframe.py flood IFACE COUNT DSTHEX        COUNT broadcast frames with distinct random sources
    rawframe.py recv IFACE SECONDS              print every received frame as JSON, one a line

Received frames get their 802.1Q tag put back from PACKET_AUXDATA (the kernel strips it on
receive), as libpcap does, so tests see exactly what was on the wire.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time

SOL_PACKET, PACKET_AUXDATA = 263, 8
TP_STATUS_VLAN_VALID = 0x10
ETH_P_ALL = 3


def open_sock(iface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, ETH_P_ALL))
    return sock


def send(iface: str, frame_hex: str, count: int = 1) -> None:
    sock = open_sock(iface)
    frame = bytes.fromhex(frame_hex)
    for _frame in range(count):
        sock.send(frame)


def flood(iface: str, count: int, dst_hex: str) -> None:
    sock = open_sock(iface)
    dst = bytes.fromhex(dst_hex)
    body = struct.pack("!H", 0x88B5) + b"\0" * 46
    for i in range(count):
        src = bytes([0x02, 0xEE]) + os.urandom(2) + struct.pack("!H", i & 0xFFFF)
        sock.send(dst + src + body)


def recv(iface: str, seconds: float) -> None:
    sock = open_sock(iface)
    sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, anc, _flags, addr = sock.recvmsg(65536, socket.CMSG_SPACE(64))
        except TimeoutError:
            break
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        for level, kind, cdata in anc:
            if level == SOL_PACKET and kind == PACKET_AUXDATA:
                status, _len, _snap, _mac, _net, tci, tpid = struct.unpack("IIIHHHH", cdata[:20])
                if status & TP_STATUS_VLAN_VALID:
                    data = data[:12] + struct.pack("!HH", tpid or 0x8100, tci) + data[12:]
        print(json.dumps({"hex": data.hex()}), flush=True)


if __name__ == "__main__":
    cmd, iface, *rest = sys.argv[1:]
    if cmd == "send":
        send(iface, rest[0], int(rest[1]) if len(rest) > 1 else 1)
    elif cmd == "flood":
        flood(iface, int(rest[0]), rest[1])
    elif cmd == "recv":
        recv(iface, float(rest[0]))
    else:
        sys.exit(f"unknown command {cmd}")
