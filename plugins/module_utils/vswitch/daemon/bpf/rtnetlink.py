"""rtnetlink requests from the standard library: what the XDP and tc attachments (xdp.py, tc.py) send.

Requests ask for extended acks, so a refusal carries the kernel's own words (for example a
driver's "MTU too large for XDP"), which is what ``vswitchctl show`` reports for the port.
"""
from __future__ import annotations

import os
import socket
import struct

NETLINK_ROUTE, NETLINK_EXT_ACK, SOL_NETLINK = 0, 11, 270
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP, NLM_F_ACK_TLVS = 0x1, 0x4, 0x200, 0x400, 0x300, 0x200
NLM_F_CAPPED = 0x100
NLA_F_NESTED = 0x8000
NLMSGERR_ATTR_MSG = 1

_NLMSGHDR = struct.Struct("=IHHII")
_NLA = struct.Struct("=HH")


def nla(kind: int, payload: bytes) -> bytes:
    raw = _NLA.pack(_NLA.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def attrs(data: bytes, start: int, end: int) -> dict:
    found = {}
    while start + 4 <= end:
        length, kind = _NLA.unpack_from(data, start)
        if length < 4 or start + length > end:
            break
        found[kind & 0x3FFF] = data[start + 4:start + length]
        start += (length + 3) & ~3
    return found


def _error(data: bytes, start: int, end: int, msg_flags: int) -> tuple[int, str]:
    """An NLMSG_ERROR's errno (0: an ack) and the kernel's extack message."""
    errno = -struct.unpack_from("=i", data, start)[0]
    text = ""
    if msg_flags & NLM_F_ACK_TLVS:
        # After the error code comes the request's header (its payload too unless capped).
        echoed = _NLMSGHDR.unpack_from(data, start + 4)[0] if msg_flags & NLM_F_CAPPED == 0 else _NLMSGHDR.size
        msg = attrs(data, start + 4 + echoed, end).get(NLMSGERR_ATTR_MSG)
        text = msg.split(b"\0", 1)[0].decode("utf-8", "replace") if msg else ""
    return errno, text


def exchange(message_type: int, body: bytes, flags: int) -> tuple[int, str, list[bytes]]:
    """One request: (errno or 0, the kernel's extack message, the payloads of its data replies).

    A plain request ends at its ack or first data reply; a dump (``NLM_F_DUMP``) at NLMSG_DONE.
    """
    dump = flags & NLM_F_DUMP == NLM_F_DUMP
    replies: list[bytes] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE) as sock:
        sock.settimeout(2.0)
        try:
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        except OSError:
            pass
        sock.bind((0, 0))
        seq = os.getpid() & 0x7FFFFFFF
        sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), message_type, NLM_F_REQUEST | flags, seq, 0) + body)
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, msg_flags, msg_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    raise OSError("malformed netlink message")
                start, end = offset + _NLMSGHDR.size, offset + length
                offset += (length + 3) & ~3
                if msg_seq != seq:
                    continue
                if kind == NLMSG_ERROR:
                    errno, text = _error(data, start, end, msg_flags)
                    return errno, text, replies
                if kind == NLMSG_DONE:
                    return 0, "", replies
                replies.append(data[start:end])
                if not dump:
                    return 0, "", replies
