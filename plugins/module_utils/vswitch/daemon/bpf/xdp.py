"""Attach, replace, detach and query a device's XDP program over rtnetlink (IFLA_XDP), stdlib only.

Requests ask for extended acks, so a refusal carries the kernel's own words (for example a
driver's "MTU too large for XDP"), which is what ``vswitchctl show`` reports for the port.
"""
from __future__ import annotations

import os
import socket
import struct
from typing import Optional

NETLINK_ROUTE, NETLINK_EXT_ACK, SOL_NETLINK = 0, 11, 270
RTM_NEWLINK, RTM_GETLINK, RTM_SETLINK, NLMSG_ERROR = 16, 18, 19, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_ACK_TLVS = 0x1, 0x4, 0x200
NLA_F_NESTED = 0x8000
IFLA_XDP = 43
IFLA_XDP_FD, IFLA_XDP_ATTACHED, IFLA_XDP_FLAGS, IFLA_XDP_PROG_ID = 1, 2, 3, 4
XDP_FLAGS_UPDATE_IF_NOEXIST, XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE = 1, 2, 4
XDP_ATTACHED_DRV, XDP_ATTACHED_SKB = 1, 2
NLMSGERR_ATTR_MSG = 1

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_NLA = struct.Struct("=HH")


def _nla(kind: int, payload: bytes) -> bytes:
    raw = _NLA.pack(_NLA.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _attrs(data: bytes, start: int, end: int) -> dict:
    found = {}
    while start + 4 <= end:
        length, kind = _NLA.unpack_from(data, start)
        if length < 4 or start + length > end:
            break
        found[kind & 0x3FFF] = data[start + 4:start + length]
        start += (length + 3) & ~3
    return found


def _request(message_type: int, body: bytes, flags: int) -> tuple[int, str, bytes]:
    """One request: (errno or 0, the kernel's extack message, the reply's payload if it was data)."""
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
                    errno = -struct.unpack_from("=i", data, start)[0]
                    text = ""
                    if msg_flags & NLM_F_ACK_TLVS:
                        # After the error code comes the request's header (its payload too unless capped).
                        echoed = _NLMSGHDR.unpack_from(data, start + 4)[0] if msg_flags & 0x100 == 0 else 16
                        tlv_start = start + 4 + (echoed if msg_flags & 0x100 == 0 else _NLMSGHDR.size)
                        msg = _attrs(data, tlv_start, end).get(NLMSGERR_ATTR_MSG)
                        text = msg.split(b"\0", 1)[0].decode("utf-8", "replace") if msg else ""
                    return errno, text, b""
                return 0, "", data[start:end]


def attach(ifindex: int, prog_fd: int, native: bool = True) -> tuple[int, str]:
    """Put ``prog_fd`` on the device (replacing any program there); (errno, kernel's reason), 0 on success."""
    flags = XDP_FLAGS_DRV_MODE if native else XDP_FLAGS_SKB_MODE
    xdp = _nla(IFLA_XDP_FD, struct.pack("=i", prog_fd)) + _nla(IFLA_XDP_FLAGS, struct.pack("=I", flags))
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0) + _nla(IFLA_XDP | NLA_F_NESTED, xdp)
    errno, text, _reply = _request(RTM_SETLINK, body, NLM_F_ACK)
    return errno, text


def detach(ifindex: int) -> int:
    """Remove whatever XDP program the device has (native or generic); errno, 0 on success."""
    result = 0
    for flags in (XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE):
        xdp = _nla(IFLA_XDP_FD, struct.pack("=i", -1)) + _nla(IFLA_XDP_FLAGS, struct.pack("=I", flags))
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0) + _nla(IFLA_XDP | NLA_F_NESTED, xdp)
        errno, _text, _reply = _request(RTM_SETLINK, body, NLM_F_ACK)
        result = result or errno
    return result


def query(ifindex: int) -> Optional[tuple[int, int]]:
    """(attach mode, program id) of the device's XDP program, or None if it has none."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0)
    errno, _text, reply = _request(RTM_GETLINK, body, 0)
    if errno or not reply:
        return None
    info = _attrs(reply, _IFINFOMSG.size, len(reply)).get(IFLA_XDP)
    if info is None:
        return None
    nested = _attrs(info, 0, len(info))
    mode = nested.get(IFLA_XDP_ATTACHED, b"\0")[0]
    if not mode:
        return None
    prog_id = struct.unpack("=I", nested[IFLA_XDP_PROG_ID])[0] if IFLA_XDP_PROG_ID in nested else 0
    return mode, prog_id
