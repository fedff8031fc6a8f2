"""Attach, replace, detach and query a device's XDP program over rtnetlink (IFLA_XDP), stdlib only."""
from __future__ import annotations

import socket
import struct
from typing import Optional

from .rtnetlink import NLA_F_NESTED, NLM_F_ACK, attrs, exchange, nla

RTM_GETLINK, RTM_SETLINK = 18, 19
IFLA_XDP = 43
IFLA_XDP_FD, IFLA_XDP_ATTACHED, IFLA_XDP_FLAGS, IFLA_XDP_PROG_ID = 1, 2, 3, 4
XDP_FLAGS_UPDATE_IF_NOEXIST, XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE = 1, 2, 4
XDP_ATTACHED_DRV, XDP_ATTACHED_SKB = 1, 2

_IFINFOMSG = struct.Struct("=BxHiII")


def _request(message_type: int, body: bytes, flags: int) -> tuple[int, str, bytes]:
    """(errno or 0, the kernel's reason, the reply's payload if it was data)."""
    errno, text, replies = exchange(message_type, body, flags)
    return errno, text, replies[0] if replies else b""


def attach(ifindex: int, prog_fd: int, native: bool = True) -> tuple[int, str]:
    """Put ``prog_fd`` on the device (replacing any program there); (errno, kernel's reason), 0 on success."""
    flags = XDP_FLAGS_DRV_MODE if native else XDP_FLAGS_SKB_MODE
    xdp = nla(IFLA_XDP_FD, struct.pack("=i", prog_fd)) + nla(IFLA_XDP_FLAGS, struct.pack("=I", flags))
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0) + nla(IFLA_XDP | NLA_F_NESTED, xdp)
    errno, text, _reply = _request(RTM_SETLINK, body, NLM_F_ACK)
    return errno, text


def detach(ifindex: int) -> int:
    """Remove whatever XDP program the device has (native or generic); errno, 0 on success."""
    result = 0
    for flags in (XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE):
        xdp = nla(IFLA_XDP_FD, struct.pack("=i", -1)) + nla(IFLA_XDP_FLAGS, struct.pack("=I", flags))
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0) + nla(IFLA_XDP | NLA_F_NESTED, xdp)
        errno, _text, _reply = _request(RTM_SETLINK, body, NLM_F_ACK)
        result = result or errno
    return result


def query(ifindex: int) -> Optional[tuple[int, int]]:
    """(attach mode, program id) of the device's XDP program, or None if it has none."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0)
    errno, _text, reply = _request(RTM_GETLINK, body, 0)
    if errno or not reply:
        return None
    info = attrs(reply, _IFINFOMSG.size, len(reply)).get(IFLA_XDP)
    if info is None:
        return None
    nested = attrs(info, 0, len(info))
    mode = nested.get(IFLA_XDP_ATTACHED, b"\0")[0]
    if not mode:
        return None
    prog_id = struct.unpack("=I", nested[IFLA_XDP_PROG_ID])[0] if IFLA_XDP_PROG_ID in nested else 0
    return mode, prog_id
